"""Bundles compiled to ONNX: the same predictions as native, a reported fallback, a cache."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path

import lightgbm
import numpy as np
import onnx
import onnxruntime as ort
import orjson
import pandas as pd
import pytest
import xgboost
from onnx import helper
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.gaussian_process import GaussianProcessClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.semi_supervised import LabelSpreading

from loopml.cli.main import main
from loopml.errors import ConfigError, IntegrityError, UnsafeFormatError
from loopml.registry import ModelBundle, load_model, register_model
from loopml.registry.compiled import (
    STATS,
    CompiledModel,
    NativeFallback,
    Predictor,
    check_columns,
    check_onnx,
    compile_bundle,
    load_predictor,
    pointer_path,
)
from loopml.registry.flavors.sklearn import SklearnFlavor
from loopml.registry.onnx_graph import MISSING
from loopml.train.fit import fit_bundle
from loopml.workspace import Workspace


def frame(n: int = 600, seed: int = 0) -> pd.DataFrame:
    """Numeric (with missing values) and categorical (with missing values) features."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "age": rng.normal(40, 12, n),
            "income": rng.lognormal(10, 1, n),
            "city": rng.choice(["paris", "lyon", "nice", ""], n),
            "plan": rng.choice(["free", "pro"], n),
        }
    )
    df.loc[::11, "age"] = np.nan
    df.loc[::13, "city"] = None
    score = (df["age"].fillna(40) - 40) / 12 + (df["city"] == "paris") - (df["plan"] == "pro")
    df["churn"] = (score + rng.normal(0, 0.5, n) > 0).astype(int)
    df["spend"] = score * 100 + rng.normal(0, 5, n)
    return df


def bundle_of(estimator: object, target: str = "churn", **kwargs: object) -> ModelBundle:
    df = frame()
    other = "spend" if target == "churn" else "churn"
    return fit_bundle(df.drop(columns=[other]), target, estimator, **kwargs)[0]  # type: ignore[arg-type]


def assert_same(compiled: Predictor, bundle: ModelBundle, rows: int = 1000) -> None:
    """1000 rows drawn from the signature, with missing values and unknown categories."""
    cols = check_columns(bundle, rows, seed=7)
    cats = [f.name for f in bundle.signature.inputs if f.kind == "categorical"]
    nums = [f.name for f in bundle.signature.inputs if f.kind == "numeric"]
    assert any(np.isnan(cols[c]).any() for c in nums)
    for c in cats:
        known = set(bundle.signature.inputs[bundle.signature.names.index(c)].categories or [])
        values = cols[c]
        assert pd.isna(values).any() and any(isinstance(v, str) and v not in known for v in values)
    got = compiled.predict_columns(cols)
    want = bundle.predict_columns(cols)
    if want.probabilities is None:
        np.testing.assert_allclose(got.labels, want.labels, rtol=1e-6, atol=1e-6)
        return
    assert got.probabilities is not None
    assert np.abs(got.probabilities - want.probabilities).max() <= 1e-6
    assert (got.labels == want.labels).all()
    assert got.classes == want.classes and got.positive_index == want.positive_index


CLASSIFIERS = {
    "forest": lambda: RandomForestClassifier(n_estimators=40, random_state=0),
    "lightgbm": lambda: lightgbm.LGBMClassifier(n_estimators=40, verbose=-1),
    "xgboost": lambda: xgboost.XGBClassifier(n_estimators=40),
    "logistic": lambda: LogisticRegression(max_iter=1000),
}


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_classifiers_compile_and_match_native(name: str) -> None:
    bundle = bundle_of(CLASSIFIERS[name]())
    compiled = compile_bundle(bundle)
    assert isinstance(compiled, CompiledModel), compiled.reason
    assert compiled.kind == "onnx" and compiled.reason is None
    assert compiled.check is not None and compiled.check.max_abs_diff is not None
    assert compiled.check.max_abs_diff <= 1e-6 and compiled.check.rows > 300
    assert_same(compiled, bundle)


@pytest.mark.parametrize(
    "estimator",
    [RandomForestRegressor(n_estimators=20, random_state=0), Ridge()],
    ids=["forest", "ridge"],
)
def test_regressors_compile_and_match_native(estimator: object) -> None:
    bundle = bundle_of(estimator, target="spend")
    compiled = compile_bundle(bundle)
    assert compiled.kind == "onnx", compiled.reason
    assert_same(compiled, bundle)


def test_the_decision_threshold_is_applied_after_onnx() -> None:
    bundle = bundle_of(LogisticRegression(max_iter=1000))
    sig = replace(bundle.signature, extra={"threshold": 0.9, "positive": 1})
    strict = ModelBundle(bundle.features, bundle.estimator, sig, "sklearn", sample=bundle.sample)
    compiled = compile_bundle(strict)
    assert compiled.kind == "onnx", compiled.reason
    cols = check_columns(strict, 1000, seed=3)
    got = compiled.predict_columns(cols)
    assert got.probabilities is not None
    argmax = np.asarray(strict.signature.classes)[got.probabilities.argmax(axis=1)]
    assert (got.labels != argmax).any()  # the threshold moved some rows
    assert (got.labels == strict.predict_columns(cols).labels).all()


def test_missing_and_the_sentinel_text_are_told_apart() -> None:
    bundle = bundle_of(LogisticRegression(max_iter=1000))
    compiled = compile_bundle(bundle)
    row = {"age": np.array([30.0] * 4), "income": np.array([2e4] * 4)}
    row["plan"] = np.array(["pro"] * 4, dtype=object)
    # None and NaN are missing (imputed); the sentinel's own text is an unknown category
    row["city"] = np.array([None, np.nan, MISSING, "never-seen"], dtype=object)
    got = compiled.predict_columns(row)
    want = bundle.predict_columns(row)
    assert got.probabilities is not None and want.probabilities is not None
    np.testing.assert_allclose(got.probabilities, want.probabilities, atol=1e-9)
    np.testing.assert_allclose(want.probabilities[0], want.probabilities[1])
    np.testing.assert_allclose(want.probabilities[2], want.probabilities[3])
    assert not np.allclose(want.probabilities[0], want.probabilities[2])


def test_native_predict_columns_matches_predict_frame() -> None:
    bundle = bundle_of(RandomForestClassifier(n_estimators=10, random_state=0))
    df = frame(50, seed=4)
    checked = bundle.signature.check_frame(df, unknown="flag")
    cols = {c: checked.frame[c].to_numpy(dtype=object) for c in ("city", "plan")}
    cols["city"] = np.asarray([None if pd.isna(v) else v for v in cols["city"]], dtype=object)
    for c in ("age", "income"):
        cols[c] = checked.frame[c].to_numpy(dtype=np.float64)
    got = bundle.predict_columns(cols)
    want = bundle.predict_frame(checked.frame)
    assert got.probabilities is not None and want.probabilities is not None
    np.testing.assert_array_equal(got.probabilities, want.probabilities)


def test_a_datetime_model_is_served_natively_with_the_reason(workspace: Workspace) -> None:
    df = frame()
    df["signup"] = pd.date_range("2021-01-01", periods=len(df), freq="h")
    bundle = fit_bundle(df.drop(columns=["spend"]), "churn", RandomForestClassifier(5))[0]
    fallback = compile_bundle(bundle)
    assert isinstance(fallback, NativeFallback) and fallback.kind == "native"
    assert fallback.reason == "features.dates.DatetimeFeatures has no ONNX converter"
    cols = check_columns(bundle, 20)
    assert (fallback.predict_columns(cols).labels == bundle.predict_columns(cols).labels).all()
    register_model(workspace, "dated", bundle)
    assert load_model(workspace, "dated@1").predictor.kind == "native"
    with pytest.raises(ConfigError, match=r"does not compile to ONNX: features\.dates"):
        load_model(workspace, "dated@1", compile="onnx")


def test_an_estimator_without_a_converter_falls_back() -> None:
    bundle = bundle_of(LabelSpreading())
    fallback = compile_bundle(bundle)
    assert fallback.kind == "native" and fallback.reason is not None
    assert fallback.reason.startswith(
        "sklearn.semi_supervised.LabelSpreading has no ONNX converter"
    )
    with pytest.raises(ConfigError, match="LabelSpreading has no ONNX converter"):
        load_predictor(None, bundle, "", mode="onnx")


def test_a_converter_that_needs_a_custom_operator_falls_back() -> None:
    # skl2onnx writes GaussianProcessClassifier with com.microsoft.Solve: not loaded
    fallback = compile_bundle(bundle_of(GaussianProcessClassifier(random_state=0)))
    assert fallback.kind == "native" and fallback.reason is not None
    assert "com.microsoft.Solve" in fallback.reason


def test_a_graph_that_does_not_match_native_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = bundle_of(LogisticRegression(max_iter=1000))
    real = SklearnFlavor.to_onnx

    def wrong(self: SklearnFlavor, model: object, n: int, task: str) -> tuple[object, str]:
        # a converter that gets the model wrong: another model of the same shape
        other = LogisticRegression().fit(np.eye(n).repeat(2, axis=0), np.arange(2 * n) % 2)
        return real(self, other, n, task)

    monkeypatch.setattr(SklearnFlavor, "to_onnx", wrong)
    fallback = compile_bundle(bundle)
    assert fallback.kind == "native"
    assert fallback.reason is not None and "differ from the native model's" in fallback.reason


def test_a_second_load_uses_the_cached_graph(workspace: Workspace) -> None:
    bundle = bundle_of(RandomForestClassifier(n_estimators=20, random_state=0))
    mv = register_model(workspace, "churn", bundle)
    before = STATS["compiled"]
    first = load_model(workspace, "churn@1", compile="auto").predictor
    assert first.kind == "onnx" and STATS["compiled"] == before + 1
    pointer = orjson.loads(workspace.lake.read_bytes(pointer_path(mv.artifact_sha256)))
    assert pointer["kind"] == "onnx" and pointer["max_abs_diff"] <= 1e-6
    assert workspace.artifacts.exists(pointer["onnx_sha256"])
    second = load_model(workspace, "churn@1").predictor  # the setting: auto
    assert STATS["compiled"] == before + 1  # not compiled again
    assert isinstance(second, CompiledModel) and second.check is not None
    assert second.check.cached and second.check.onnx_sha256 == pointer["onnx_sha256"]
    assert_same(second, load_model(workspace, "churn@1").bundle)
    native = load_model(workspace, "churn@1", compile="native").predictor
    assert native.kind == "native" and STATS["compiled"] == before + 1


def test_a_tampered_cached_graph_is_refused(workspace: Workspace) -> None:
    bundle = bundle_of(LogisticRegression(max_iter=1000))
    mv = register_model(workspace, "churn", bundle)
    load_model(workspace, "churn@1", compile="auto")
    path = pointer_path(mv.artifact_sha256)
    pointer = orjson.loads(workspace.lake.read_bytes(path))
    model = onnx.ModelProto.FromString(workspace.artifacts.get(pointer["onnx_sha256"]))
    # a custom-domain operator (the kind that loads native code) slipped into the graph
    out = model.graph.output[0].name
    for node in model.graph.node:
        node.output[:] = [f"{o}_raw" if o == out else o for o in node.output]
    model.graph.node.append(helper.make_node("Exfiltrate", [f"{out}_raw"], [out], domain="evil"))
    model.opset_import.append(helper.make_opsetid("evil", 1))
    bad = model.SerializeToString()
    with pytest.raises(UnsafeFormatError, match=r"operator evil\.Exfiltrate"):
        check_onnx(bad, "churn@1")
    with pytest.raises(UnsafeFormatError):
        CompiledModel(bad, bundle.signature)
    pointer["onnx_sha256"] = workspace.artifacts.put(bad)
    workspace.lake.write_bytes(path, orjson.dumps(pointer))
    before = STATS["compiled"]
    again = load_model(workspace, "churn@1", compile="auto").predictor
    assert isinstance(again, CompiledModel) and again.check is not None
    assert again.check.refused is not None and "evil" in again.check.refused
    assert STATS["compiled"] == before + 1 and again.onnx_bytes != bad
    fixed = orjson.loads(workspace.lake.read_bytes(path))
    assert workspace.artifacts.get(fixed["onnx_sha256"]) == again.onnx_bytes


def test_external_data_and_foreign_inputs_are_refused() -> None:
    bundle = bundle_of(LogisticRegression(max_iter=1000))
    compiled = compile_bundle(bundle)
    assert isinstance(compiled, CompiledModel)
    model = onnx.ModelProto.FromString(compiled.onnx_bytes)
    outside = onnx.ModelProto()
    outside.CopyFrom(model)
    tensor = outside.graph.initializer[0]
    tensor.data_location = onnx.TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "/etc/passwd"
    with pytest.raises(UnsafeFormatError, match="external data"):
        check_onnx(outside.SerializeToString())
    other = replace(
        bundle.signature,
        inputs=[replace(bundle.signature.inputs[0], name="renamed"), *bundle.signature.inputs[1:]],
    )
    with pytest.raises(IntegrityError, match="does not take this model's columns"):
        check_onnx(compiled.onnx_bytes, "m", other)


def test_the_session_is_safe_across_threads() -> None:
    bundle = bundle_of(lightgbm.LGBMClassifier(n_estimators=20, verbose=-1))
    compiled = compile_bundle(bundle)
    cols = check_columns(bundle, 200, seed=9)
    want = bundle.predict_columns(cols).probabilities
    problems: list[str] = []

    def work() -> None:
        for _ in range(20):
            got = compiled.predict_columns(cols).probabilities
            if got is None or want is None or np.abs(got - want).max() > 1e-6:
                problems.append("differs")

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not problems and not any(t.is_alive() for t in threads)


def test_compile_command_and_onnx_export(
    workspace: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    register_model(workspace, "churn", bundle_of(xgboost.XGBClassifier(n_estimators=10)))
    capsys.readouterr()
    assert main(["models", "compile", "churn@1", "--json", "-w", str(workspace.root)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["kind"] == "onnx" and doc["reason"] is None and doc["max_abs_diff"] <= 1e-6
    assert doc["seconds"] > 0 and doc["onnx_sha256"]
    assert main(["models", "compile", "churn@1", "-w", str(workspace.root)]) == 0
    assert "churn@1: onnx (max abs difference" in capsys.readouterr().out
    target = tmp_path / "churn.onnx"
    args = ["models", "export", "churn@1", "-o", str(target), "--format", "onnx"]
    assert main([*args, "-w", str(workspace.root)]) == 0
    check_onnx(target.read_bytes())
    session = ort.InferenceSession(target.read_bytes(), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["age", "income", "city", "plan"]
    feeds = {
        "age": np.array([[35.0]]),
        "income": np.array([[3e4]]),
        "city": np.array([["paris"]], dtype=object),
        "plan": np.array([["free"]], dtype=object),
    }
    proba = session.run(None, feeds)[0]
    native = load_model(workspace, "churn@1").predict(
        [{"age": 35.0, "income": 3e4, "city": "paris", "plan": "free"}]
    )
    assert native.probabilities is not None
    np.testing.assert_allclose(proba, native.probabilities, atol=1e-6)


def test_registering_with_compile_caches_the_graph(workspace: Workspace) -> None:
    bundle = bundle_of(lightgbm.LGBMClassifier(n_estimators=10, verbose=-1))
    mv = register_model(workspace, "churn", bundle, compile=True)
    assert workspace.lake.exists(pointer_path(mv.artifact_sha256))
    before = STATS["compiled"]
    predictor = load_model(workspace, "churn@1").predictor
    assert predictor.kind == "onnx" and STATS["compiled"] == before


def test_lightgbm_regression_compares_and_sums_in_double() -> None:
    # onnxmltools' float32 thresholds send some rows down the other branch: mapped back to
    # LightGBM's doubles, 300 trees on values in the hundreds still match to 1e-6
    bundle = bundle_of(lightgbm.LGBMRegressor(n_estimators=300, verbose=-1), target="spend")
    compiled = compile_bundle(bundle)
    assert isinstance(compiled, CompiledModel), compiled.reason
    model = onnx.ModelProto.FromString(compiled.onnx_bytes)
    names = {a.name for n in model.graph.node for a in n.attribute}
    assert "nodes_values_as_tensor" in names and "nodes_values" not in names
    assert_same(compiled, bundle)


@pytest.mark.parametrize(
    "features",
    [
        {"categorical": {"impute": "none"}},  # missing is a category of its own
        {"categorical": {"impute": "missing"}, "numeric": {"impute": "zero"}},
        {"numeric": {"impute": "mean", "scale": "none"}},
    ],
    ids=["no-impute", "constant", "mean"],
)
def test_each_feature_option_compiles_to_the_same_answers(features: dict[str, object]) -> None:
    bundle = bundle_of(LogisticRegression(max_iter=1000), features=features)
    compiled = compile_bundle(bundle)
    assert compiled.kind == "onnx", compiled.reason
    assert_same(compiled, bundle)
