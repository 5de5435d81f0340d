"""Every flavor through the same contract: save -> load -> the same predictions."""

from __future__ import annotations

import io
import json
import sys
import zipfile
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits
from sklearn.linear_model import LogisticRegression, Ridge

from loopml.errors import IntegrityError
from loopml.registry import ModelBundle
from loopml.registry.flavors import FLAVORS, flavor_for, get_flavor
from loopml.train import fit_bundle
from loopml.train.estimators import ALLOWED_ROOTS, flavor_of
from tests.unit.registry.crafted import replace_member

TASKS = ("binary", "multiclass", "regression")
# Flavors a trainer fits from a DataFrame. ONNX models are imported, not trained
# (tests/unit/registry/test_onnx_import.py); online learners learn from streams
# (tests/integration/test_river_flavor.py).
# the recommender learns from interactions (tests/e2e/test_deep_recommender.py)
# SavedModels are imported (tests/integration/test_keras.py)
FITTED = [name for name in FLAVORS if name not in ("onnx", "online", "recommender", "savedmodel")]


def _frame(task: str) -> pd.DataFrame:
    loader = {"binary": load_breast_cancer, "multiclass": load_digits, "regression": load_diabetes}
    frame = loader[task](as_frame=True).frame
    frame.columns = [str(c).replace(" ", "_") for c in frame.columns]
    return frame


def _estimator(flavor: str, task: str) -> Any:
    regression = task == "regression"
    if flavor == "sklearn":
        return Ridge() if regression else LogisticRegression(max_iter=3000)
    if flavor == "torch":
        pytest.importorskip("torch")
        from loopml.train.deep import MLPClassifier, MLPRegressor

        net = MLPRegressor if regression else MLPClassifier
        return net(hidden=[32], epochs=30, lr=3e-3, random_state=0)
    if flavor == "keras":
        pytest.importorskip("tensorflow")
        from loopml.train.deep import keras as deep_keras

        keras_net = deep_keras.MLPRegressor if regression else deep_keras.MLPClassifier
        return keras_net(hidden=[16], epochs=5, lr=1e-2, random_state=0)
    lib = pytest.importorskip(flavor)
    if flavor == "lightgbm":
        cls = lib.LGBMRegressor if regression else lib.LGBMClassifier
        return cls(n_estimators=20, verbose=-1)
    cls = lib.XGBRegressor if regression else lib.XGBClassifier
    return cls(n_estimators=20, max_depth=3)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("flavor", FITTED)
def test_save_load_predicts_the_same(flavor: str, task: str) -> None:
    frame = _frame(task)
    bundle, x = fit_bundle(
        frame,
        "target",
        _estimator(flavor, task),
        task="regression" if task == "regression" else "classification",
    )
    assert bundle.flavor == flavor
    again = ModelBundle.from_bytes(bundle.to_bytes(), what="m@1")
    assert again.flavor == flavor
    before, after = bundle.predict_frame(x), again.predict_frame(x)
    if task == "regression":
        assert before.probabilities is None and after.probabilities is None
        np.testing.assert_allclose(after.labels, before.labels, rtol=0, atol=1e-9)
        return
    classes = sorted(frame["target"].unique().tolist())
    assert after.classes == classes
    assert after.probabilities is not None and before.probabilities is not None
    assert after.probabilities.shape == (len(x), len(classes))
    np.testing.assert_allclose(after.probabilities, before.probabilities, rtol=0, atol=1e-9)
    np.testing.assert_allclose(after.probabilities.sum(axis=1), 1.0, atol=1e-6)
    assert (after.labels == before.labels).all()
    assert (after.labels == frame["target"].to_numpy()).mean() > 0.9


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_xgboost_bundle_answers_the_native_probabilities(task: str) -> None:
    xgboost = pytest.importorskip("xgboost")
    frame = _frame(task)
    x = frame.drop(columns="target")
    native = xgboost.XGBClassifier(n_estimators=20, max_depth=3).fit(x.to_numpy(), frame["target"])
    bundle, _ = fit_bundle(frame, "target", xgboost.XGBClassifier(n_estimators=20, max_depth=3))
    loaded = ModelBundle.from_bytes(bundle.to_bytes())
    got = loaded.predict(x).probabilities
    np.testing.assert_allclose(got, native.predict_proba(x.to_numpy()), rtol=0, atol=1e-6)


def test_xgboost_classes_need_not_be_codes() -> None:
    xgboost = pytest.importorskip("xgboost")
    frame = _frame("binary")
    frame["target"] = frame["target"].map({0: "malignant", 1: "benign"})
    bundle, x = fit_bundle(frame, "target", xgboost.XGBClassifier(n_estimators=10))
    loaded = ModelBundle.from_bytes(bundle.to_bytes())
    p = loaded.predict_frame(x)
    assert p.classes == ["benign", "malignant"]
    assert (p.labels == frame["target"].to_numpy()).mean() > 0.95
    manifest = zipfile.ZipFile(io.BytesIO(bundle.to_bytes())).read("manifest.json")
    assert b'"objective":"binary:logistic"' in manifest


@pytest.mark.parametrize(
    ("flavor", "member"), [("lightgbm", "model.lgb.txt"), ("xgboost", "model.xgb.json")]
)
@pytest.mark.parametrize("garbage", [b"", b"\x00\xff garbage {[", b'{"learner": 3}'])
def test_a_garbage_native_model_is_an_integrity_error(
    flavor: str, member: str, garbage: bytes
) -> None:
    bundle, _ = fit_bundle(_frame("binary"), "target", _estimator(flavor, "binary"))
    data = replace_member(bundle.to_bytes(), member, garbage)
    with pytest.raises(IntegrityError) as err:
        ModelBundle.from_bytes(data, what="m@1")
    assert err.value.where["artifact"] == "m@1"


@pytest.mark.parametrize(
    ("field", "value"),
    [("left_children", 10**6), ("right_children", 0), ("split_indices", 10**6)],
)
def test_a_crafted_xgboost_tree_is_refused_before_xgboost_reads_it(field: str, value: int) -> None:
    pytest.importorskip("xgboost")
    bundle, _ = fit_bundle(_frame("binary"), "target", _estimator("xgboost", "binary"))
    zf = zipfile.ZipFile(io.BytesIO(bundle.to_bytes()))
    doc = json.loads(zf.read("model.xgb.json"))
    doc["learner"]["gradient_booster"]["model"]["trees"][0][field][0] = value  # the root
    data = replace_member(bundle.to_bytes(), "model.xgb.json", json.dumps(doc).encode())
    with pytest.raises(IntegrityError, match="tree 0"):
        ModelBundle.from_bytes(data, what="m@1")


def test_a_missing_native_model_is_an_integrity_error() -> None:
    pytest.importorskip("xgboost")
    bundle, _ = fit_bundle(_frame("binary"), "target", _estimator("xgboost", "binary"))
    src = zipfile.ZipFile(io.BytesIO(bundle.to_bytes()))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as dst:
        for name in src.namelist():
            if name != "model.xgb.json":
                dst.writestr(name, src.read(name))
    with pytest.raises(IntegrityError, match=r"model\.xgb\.json"):
        ModelBundle.from_bytes(buf.getvalue(), what="m@1")


def test_an_unknown_flavor_in_a_manifest_is_an_integrity_error() -> None:
    bundle, _ = fit_bundle(_frame("binary"), "target", LogisticRegression(max_iter=3000))
    zf = zipfile.ZipFile(io.BytesIO(bundle.to_bytes()))
    manifest = zf.read("manifest.json").replace(b'"flavor":"sklearn"', b'"flavor":"keras"')
    with pytest.raises(IntegrityError, match="keras"):
        ModelBundle.from_bytes(replace_member(bundle.to_bytes(), "manifest.json", manifest))


def test_the_table_is_where_flavors_come_from() -> None:
    assert flavor_of("sklearn.ensemble.RandomForestClassifier") == "sklearn"
    assert flavor_of("lightgbm.LGBMClassifier") == "lightgbm"
    assert flavor_of("xgboost.XGBRegressor") == "xgboost"
    assert set(ALLOWED_ROOTS) == {r for n in FLAVORS for r in get_flavor(n).roots}
    for name in FLAVORS:
        flavor = get_flavor(name)
        assert flavor.name == name
        assert set(flavor.skops_members) <= set(flavor.members)
    # an estimator no flavor claims is a scikit-learn-style object, saved by skops
    assert flavor_for(object()).name == "sklearn"


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("flavor", ["lightgbm", "xgboost"])
def test_boosting_flavors_continue_a_loaded_model(flavor: str, task: str) -> None:
    from sklearn.base import clone

    frame = _frame(task)
    kind = "regression" if task == "regression" else "classification"
    est = _estimator(flavor, task)
    first, second = frame.iloc[::2], frame.iloc[1::2]
    bundle, _ = fit_bundle(first, "target", est, task=kind)
    loaded = ModelBundle.from_bytes(bundle.to_bytes())
    impl = get_flavor(flavor)
    assert impl.can_continue(type(est))
    x2 = loaded.features.transform(second.drop(columns="target"))
    model = impl.continue_training(
        loaded.estimator,
        clone(est),
        x2,
        second["target"].to_numpy(),
        task=kind,
        classes=loaded.signature.classes,
    )
    rounds = {"lightgbm": "current_iteration", "xgboost": "num_boosted_rounds"}[flavor]
    assert getattr(model, rounds)() == 2 * getattr(loaded.estimator, rounds)()
    out = impl.predict(model, x2, kind)
    assert out.shape == (
        (len(second),) if kind == "regression" else (len(second), len(set(frame["target"])))
    )
    # the parent is left as it was
    np.testing.assert_allclose(
        impl.predict(loaded.estimator, x2, kind),
        bundle.flavor_impl.predict(bundle.estimator, x2, kind),
    )


def test_only_partial_fit_sklearn_estimators_continue() -> None:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import SGDClassifier

    sk = get_flavor("sklearn")
    assert sk.can_continue(SGDClassifier)
    assert not sk.can_continue(RandomForestClassifier)
    assert "partial_fit" in (sk.continues or "")


def test_a_model_whose_library_is_missing_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sklearn.datasets import load_breast_cancer
    from xgboost import XGBClassifier

    from loopml.errors import IntegrityError, LoopmlError
    from loopml.registry import ModelBundle
    from loopml.train import fit_bundle

    frame = load_breast_cancer(as_frame=True).frame
    bundle, _ = fit_bundle(frame, "target", XGBClassifier(n_estimators=5))
    data = bundle.to_bytes()
    monkeypatch.setitem(sys.modules, "xgboost", None)  # import xgboost now fails
    with pytest.raises(LoopmlError, match="xgboost is not installed") as info:
        ModelBundle.from_bytes(data, what="cancer@1")
    assert not isinstance(info.value, IntegrityError)  # not "damaged": a missing extra
    assert info.value.code == "missing_dependency"
    assert "loopml[xgboost]" in str(info.value.hint)
