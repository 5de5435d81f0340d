"""Safe loading of bundles: crafted files are refused before anything runs, damage is an
IntegrityError (never an internal error), and tampered tree indices are caught."""

from __future__ import annotations

import io
import json
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io as sio
from sklearn.ensemble import (
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

from loopml.errors import IntegrityError, LoopmlError, UnsafeFormatError
from loopml.registry import ModelBundle, safeload
from loopml.registry.allowlist import allowed_types
from loopml.train import fit_bundle
from tests.unit.registry.crafted import (
    CRAFTED,
    FT,
    cancer_frame,
    edit_schema,
    genuine,
    member,
    nodes,
    replace_member,
)


@pytest.mark.parametrize("name", ["exec-pipeline", "reduce-exec", "reduce-os-system"])
def test_the_crafted_payloads_do_run_when_loaded_blindly(name: str, tmp_path: Path) -> None:
    """The control: trusting whatever skops reports (the old prefix rule let these two
    through) runs the payload, on load or on the first predict."""
    make, _ = CRAFTED[name]
    marker = tmp_path / "pwned"
    blob = member(make(marker), "model.skops")
    model = sio.loads(blob, trusted=sio.get_untrusted_types(data=blob))
    bundle, x = genuine()
    if not marker.exists():
        with pytest.raises(Exception):  # noqa: B017 - exec returns None; the next step fails
            model.predict(bundle.features.transform(x))
    assert marker.exists()


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_crafted_bundles_are_refused_naming_the_type(name: str, tmp_path: Path) -> None:
    make, refused_type = CRAFTED[name]
    marker = tmp_path / "pwned"
    with pytest.raises(UnsafeFormatError) as info:
        ModelBundle.from_bytes(make(marker), what="cancer@2")
    err = info.value
    assert isinstance(err, IntegrityError) and err.code == "unsafe_format"
    assert refused_type in err.message and FT in err.message
    assert err.where["artifact"] == "cancer@2"
    assert "trust=" in (err.hint or "")
    assert not marker.exists()


def test_a_refusal_names_every_type_of_every_file(tmp_path: Path) -> None:
    data = CRAFTED["exec-pipeline"][0](tmp_path / "m")
    data = replace_member(
        data,
        "features.skops",
        member(CRAFTED["function-os-system"][0](tmp_path / "n"), "features.skops"),
    )
    with pytest.raises(UnsafeFormatError) as info:
        ModelBundle.from_bytes(data)
    for name in ("builtins.exec", "numpy.full_like", "builtins.max", "os.system"):
        assert name in info.value.message


def test_trusting_the_reported_names_is_what_loads_a_function(tmp_path: Path) -> None:
    """A FunctionTransformer of the user's own loads once its names are trusted, and the
    bundle reports the opt-ins it needed (a subset of what was trusted)."""
    pipe = Pipeline([("log", FunctionTransformer(np.tanh)), ("m", LogisticRegression())])
    bundle, x = fit_bundle(cancer_frame(), "target", pipe)
    data = bundle.to_bytes()
    with pytest.raises(UnsafeFormatError) as info:
        ModelBundle.from_bytes(data)
    assert "numpy.tanh" in info.value.message
    needed = [FT, "numpy.tanh"]
    loaded = ModelBundle.from_bytes(data, trusted=[*needed, "not.needed.Thing"])
    assert loaded.trusted == tuple(sorted(needed))
    np.testing.assert_allclose(
        loaded.predict_frame(x).probabilities, bundle.predict_frame(x).probabilities
    )


@pytest.mark.parametrize("bad", ["builtins.*", "sklearn.", "exec", "", "a..b", "os:system"])
def test_trust_takes_exact_dotted_names_only(bad: str) -> None:
    from loopml.errors import InvalidInputError

    bundle, _ = genuine()
    with pytest.raises(InvalidInputError, match="exact dotted"):
        ModelBundle.from_bytes(bundle.to_bytes(), trusted=[bad])
    with pytest.raises(InvalidInputError, match="list of type names"):
        ModelBundle.from_bytes(bundle.to_bytes(), trusted="numpy.log1p")  # type: ignore[arg-type]


def test_the_allowlist_holds_no_function_and_no_prefix() -> None:
    allowed = allowed_types()
    assert FT not in allowed
    for name in ("builtins.exec", "builtins.eval", "builtins.getattr", "builtins.object",
                 "builtins.type", "functools.partial", "operator.attrgetter", "os.system",
                 "numpy.full_like", "numpy.log1p", "numpy.load", "scipy.special.expit",
                 "collections.defaultdict", "sklearn.neighbors._kd_tree.KDTree"):  # fmt: skip
        assert name not in allowed
    assert not [n for n in allowed if n.endswith(".") or "*" in n]


def _pickled(obj: Any) -> bytes:
    return pickle.dumps(obj)


def _zip_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


DAMAGE = {
    "pickle": _pickled(LogisticRegression()),
    "pickle-protocol-0": pickle.dumps({"a": 1}, protocol=0),
    "garbage": b"\x00\x01garbage" * 10,
    "empty": b"",
    "zip-without-schema": _zip_of({"x.npy": b"123"}),
    "schema-not-json": _zip_of({"schema.json": b"{not json"}),
    "schema-node-without-module": _zip_of(
        {"schema.json": json.dumps({"__loader__": "ObjectNode", "__class__": "X"}).encode()}
    ),
    "schema-unknown-loader": _zip_of(
        {
            "schema.json": json.dumps(
                {"__loader__": "EvilNode", "__class__": "dict", "__module__": "builtins"}
            ).encode()
        }
    ),
    "schema-deeply-nested": _zip_of({"schema.json": b"[" * 100_000 + b"]" * 100_000}),
}


@pytest.mark.parametrize("file", ["features.skops", "model.skops"])
@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_files_inside_a_bundle_are_integrity_errors(kind: str, file: str) -> None:
    bundle, _ = genuine()
    data = replace_member(bundle.to_bytes(), file, DAMAGE[kind])
    with pytest.raises(IntegrityError) as info:
        ModelBundle.from_bytes(data, what="cancer@1")
    assert info.value.where["artifact"] == "cancer@1"
    if kind == "pickle":
        assert isinstance(info.value, UnsafeFormatError) and "pickle" in info.value.message


@pytest.mark.parametrize(
    "manifest",
    [b"[]", b"null", b'{"format": 1, "flavor": "sklearn"}',
     b'{"format": 1, "flavor": "sklearn", "signature": 3}', b'{"format": 2}', b"\xff"],
)  # fmt: skip
def test_damaged_manifests_are_integrity_errors(manifest: bytes) -> None:
    bundle, _ = genuine()
    with pytest.raises(IntegrityError):
        ModelBundle.from_bytes(replace_member(bundle.to_bytes(), "manifest.json", manifest))


@pytest.mark.parametrize("data", [b"", b"PK\x03\x04broken", pickle.dumps(object)])
def test_a_bundle_that_is_not_a_zip_is_an_integrity_error(data: bytes) -> None:
    with pytest.raises(IntegrityError, match="not a loopml model bundle"):
        ModelBundle.from_bytes(data)


def test_a_damaged_lightgbm_model_is_an_integrity_error() -> None:
    lightgbm = pytest.importorskip("lightgbm")
    bundle, _ = fit_bundle(cancer_frame(), "target", lightgbm.LGBMClassifier(n_estimators=5))
    data = replace_member(bundle.to_bytes(), "model.lgb.txt", b"tree\nversion=v4\nnonsense")
    with pytest.raises(IntegrityError):
        ModelBundle.from_bytes(data)


def test_a_random_generator_naming_another_function_is_refused() -> None:
    """skops keeps a Generator's bit-generator class name as a plain string and calls it."""
    bundle, _ = genuine()
    blob = sio.dumps({"rng": np.random.default_rng(0)})

    def edit(schema: dict[str, Any]) -> None:
        for node in nodes(schema):
            if node.get("__loader__") == "RandomGeneratorNode":
                state = node["content"]["bit_generator"]["content"]["bit_generator"]
                state["content"] = json.dumps("seed")

    data = replace_member(bundle.to_bytes(), "model.skops", edit_schema(blob, edit))
    with pytest.raises(UnsafeFormatError, match=r"numpy\.random\.seed"):
        ModelBundle.from_bytes(data)


def test_a_bound_method_is_refused() -> None:
    bundle, _ = genuine()
    blob = sio.dumps({"f": StandardScaler().fit})
    data = replace_member(bundle.to_bytes(), "model.skops", blob)
    with pytest.raises(UnsafeFormatError, match=r"StandardScaler\.fit"):
        ModelBundle.from_bytes(data)


# -- tampered tree indices (would read out of bounds in compiled code on predict) ---------


def _tree_bundle(estimator: Any) -> tuple[ModelBundle, bytes]:
    bundle, _ = fit_bundle(cancer_frame(), "target", estimator)
    return bundle, bundle.to_bytes()


def _with_model(bundle: ModelBundle, model: Any) -> bytes:
    # never predict with ``model``: its indices point outside its arrays
    return replace_member(bundle.to_bytes(), "model.skops", sio.dumps(model))


@pytest.mark.parametrize(
    ("field", "value"),
    [("children_left", 10**6), ("children_right", 0), ("feature", 999), ("feature", -5)],
)
def test_a_tree_with_indices_outside_it_is_refused(field: str, value: int) -> None:
    bundle, data = _tree_bundle(DecisionTreeClassifier(max_depth=3, random_state=0))
    ModelBundle.from_bytes(data)  # the genuine one loads
    tampered = ModelBundle.from_bytes(data).estimator
    getattr(tampered.tree_, field)[0] = value
    with pytest.raises(IntegrityError, match="malformed tree"):
        ModelBundle.from_bytes(_with_model(bundle, tampered))


def test_a_forest_member_given_other_columns_is_refused() -> None:
    bundle, data = _tree_bundle(RandomForestClassifier(n_estimators=3, random_state=0))
    forest = ModelBundle.from_bytes(data).estimator
    forest.estimators_[1].n_features_in_ = 500
    with pytest.raises(IntegrityError, match="malformed tree"):
        ModelBundle.from_bytes(_with_model(bundle, forest))


@pytest.mark.parametrize(("field", "value"), [("left", 10**6), ("feature_idx", 999)])
def test_a_histogram_boosting_predictor_outside_its_nodes_is_refused(
    field: str, value: int
) -> None:
    bundle, data = _tree_bundle(HistGradientBoostingClassifier(max_iter=3))
    model = ModelBundle.from_bytes(data).estimator
    nodes_ = model._predictors[0][0].nodes
    inner = int(np.flatnonzero(nodes_["is_leaf"] == 0)[0])
    nodes_[field][inner] = value
    with pytest.raises(IntegrityError, match="malformed tree"):
        ModelBundle.from_bytes(_with_model(bundle, model))


def test_boosting_stages_wider_than_the_predictions_are_refused() -> None:
    bundle, data = _tree_bundle(GradientBoostingClassifier(n_estimators=3, random_state=0))
    model = ModelBundle.from_bytes(data).estimator
    model.estimators_ = np.hstack([model.estimators_, model.estimators_])  # writes past k
    with pytest.raises(IntegrityError, match="malformed tree"):
        ModelBundle.from_bytes(_with_model(bundle, model))


@pytest.mark.parametrize("field", ["_intercept_", "_dual_coef_", "_probA", "support_vectors_"])
def test_a_support_vector_machine_whose_arrays_disagree_is_refused(field: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # probability=True is deprecated
        bundle, data = _tree_bundle(SVC(probability=True, random_state=0))
    model = ModelBundle.from_bytes(data).estimator
    value = getattr(model, field)
    setattr(model, field, np.zeros((value.shape[0] + 3, *value.shape[1:])))
    with pytest.raises(IntegrityError, match="malformed support vector machine"):
        ModelBundle.from_bytes(_with_model(bundle, model))


def test_every_error_is_a_loopml_error_for_truncated_bundles() -> None:
    """Any prefix of a genuine bundle is refused with a LoopmlError, never something else."""
    data = genuine()[0].to_bytes()
    for cut in range(0, len(data), max(1, len(data) // 40)):
        with pytest.raises(LoopmlError):
            ModelBundle.from_bytes(data[:cut])


def test_a_function_named_the_old_way_is_refused() -> None:
    """skops's protocol 0 imported a FunctionNode's content, not its module and class."""
    bundle, _ = genuine()
    blob = sio.dumps(Pipeline([("f", FunctionTransformer(func=np.tanh)), ("m", bundle.estimator)]))

    def edit(schema: dict[str, Any]) -> None:
        schema["protocol"] = 0
        for node in nodes(schema):
            if node.get("__class__") == "tanh":
                node["__loader__"] = "FunctionNode"
                node["__module__"], node["__class__"] = "numpy", "ndarray"
                node["content"] = {"module_path": "scipy.special", "function": "expit"}

    data = replace_member(bundle.to_bytes(), "model.skops", edit_schema(blob, edit))
    with pytest.raises(UnsafeFormatError) as info:
        ModelBundle.from_bytes(data)
    assert "scipy.special.expit" in info.value.types


@pytest.mark.parametrize("where", ["bundle", "features.skops"])
def test_a_zip_that_would_unpack_past_the_limit_is_refused(
    where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle, _ = genuine()
    data = bundle.to_bytes()
    bomb = b"\0" * (8 << 20)  # 8 MiB of zeros deflates to a few KiB
    if where == "bundle":
        data = replace_member(data, "padding.bin", bomb)
    else:
        inner = sio.dumps(bundle.features)  # a pipeline written with skops, as before
        buf = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(inner)) as src, zipfile.ZipFile(buf, "w") as dst:
            for info in src.infolist():
                dst.writestr(info, src.read(info))
            dst.writestr(zipfile.ZipInfo("padding.bin"), bomb, zipfile.ZIP_DEFLATED)
        data = replace_member(data, "features.skops", buf.getvalue())
    assert len(data) < 1 << 20
    monkeypatch.setattr(safeload, "MAX_UNPACKED_BYTES", 4 << 20)
    with pytest.raises(UnsafeFormatError, match="would unpack to"):
        ModelBundle.from_bytes(data)
    monkeypatch.setattr(safeload, "MAX_UNPACKED_BYTES", 64 << 20)
    ModelBundle.from_bytes(data)  # under a larger limit the same file loads
