"""Feature pipelines as declared JSON (registry.statejson): every pipeline loopml builds is
written without skops and transforms exactly as before after a reload; what the format does
not hold falls back to skops; a crafted or damaged file is refused before anything runs."""

from __future__ import annotations

import io
import sys
import zipfile
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import FunctionTransformer

from loopml.errors import IntegrityError, UnsafeFormatError
from loopml.registry import statejson
from loopml.registry.allowlist import allowed_types
from loopml.registry.bundle import FEATURES_FILE, FEATURES_JSON, ModelBundle
from loopml.train import fit_bundle
from tests.unit.features.test_transforms import ISSUE_EXAMPLE, mixed
from tests.unit.registry.crafted import member, replace_member

SPECS: dict[str, dict[str, Any] | None] = {
    "defaults": None,
    "issue-example": ISSUE_EXAMPLE,
    "every-numeric": {
        "numeric": {"impute": "constant", "fill_value": -1, "indicator": True},
        "columns": {
            "a": {"clip": [0.1, 0.9], "scale": "minmax"},
            "b": {"power": "log1p", "bucketize": {"bins": 4}, "scale": "robust"},
        },
    },
    "encoders": {
        "categorical": {"encode": "ordinal"},
        "columns": {
            "city": {"encode": "onehot", "max_categories": 3},
            "plan": {"encode": "frequency"},
        },
        "numeric": {"polynomial": {"degree": 2, "interaction_only": True}},
    },
    "dates": {
        "datetime": {"parts": ["hour", "weekday", "month"], "cyclical": True},
        "columns": {"signup": {"since": "created"}},
    },
    "selection": {"selection": {"method": "f_classif", "k": 4}},
}


def _members(data: bytes) -> list[str]:
    return zipfile.ZipFile(io.BytesIO(data)).namelist()


@pytest.mark.parametrize("spec", sorted(SPECS))
def test_loopml_pipelines_are_written_as_json_and_transform_alike(spec: str) -> None:
    df = mixed()
    bundle, x = fit_bundle(df, "y", LogisticRegression(max_iter=500), features=SPECS[spec])
    data = bundle.to_bytes()
    assert FEATURES_JSON in _members(data) and FEATURES_FILE not in _members(data)
    manifest = orjson.loads(member(data, "manifest.json"))
    assert manifest["features"] == FEATURES_JSON
    loaded = ModelBundle.from_bytes(data, what="mixed@1")
    np.testing.assert_array_equal(
        np.asarray(loaded.features.transform(x)), np.asarray(bundle.features.transform(x))
    )
    np.testing.assert_array_equal(
        loaded.predict_frame(x).probabilities, bundle.predict_frame(x).probabilities
    )
    # written again, the same JSON: nothing lost or changed in the round trip
    assert member(loaded.to_bytes(), FEATURES_JSON) == member(data, FEATURES_JSON)


def test_reading_and_writing_a_tree_model_does_not_import_skops() -> None:
    import lightgbm

    code = (
        "import sys, numpy as np\n"
        "from tests.unit.features.test_transforms import mixed\n"
        "from loopml.train import fit_bundle\n"
        "from loopml.registry.bundle import ModelBundle\n"
        "import lightgbm\n"
        "b, x = fit_bundle(mixed(), 'y', lightgbm.LGBMClassifier(n_estimators=5, verbose=-1))\n"
        "ModelBundle.from_bytes(b.to_bytes()).predict_frame(x)\n"
        "print('skops.io' in sys.modules)\n"
    )
    import subprocess

    assert lightgbm  # installed: the subprocess trains with it
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "False", out.stderr


def test_values_of_every_kind_round_trip() -> None:
    value = {
        "nan": float("nan"),
        "inf": [float("inf"), float("-inf"), 1.5, 0.1],
        "tuple": (1, "a", None, True),
        "slice": slice(0, 3, None),
        "floats": np.array([[1.5, np.nan], [-np.inf, 2.0]]),
        "ints": np.arange(6, dtype=np.int32).reshape(2, 3),
        "big-endian": np.array([1.0, 2.0], dtype=">f8"),
        "objects": np.array(["x", None, np.nan, 3], dtype=object),
        "text": np.array(["ab", "c"]),
        "scalars": [np.float64(0.25), np.int64(7), np.bool_(True), np.str_("s")],
        "dtypes": [np.dtype("float64"), np.dtype("O"), np.float64, int],
    }
    doc = statejson.parse(statejson.dumps(value, allowed_types()), FEATURES_JSON, "t")
    back = statejson.build(doc, (), allowed_types())
    assert np.isnan(back["nan"]) and back["inf"] == [float("inf"), float("-inf"), 1.5, 0.1]
    assert back["tuple"] == (1, "a", None, True) and back["slice"] == slice(0, 3, None)
    np.testing.assert_array_equal(back["floats"], value["floats"])
    assert back["ints"].dtype == np.int32 and back["ints"].shape == (2, 3)
    assert back["ints"].flags.writeable
    np.testing.assert_array_equal(back["big-endian"], [1.0, 2.0])
    objects = back["objects"]
    assert objects[0] == "x" and objects[1] is None and np.isnan(objects[2]) and objects[3] == 3
    assert back["text"].dtype == np.dtype("<U2")
    assert [type(s) for s in back["scalars"]] == [np.float64, np.int64, np.bool_, np.str_]
    assert back["dtypes"] == [np.dtype("float64"), np.dtype("O"), np.float64, int]


def _bunch() -> object:
    from sklearn.utils import Bunch

    return Bunch(a=1)


@pytest.mark.parametrize(
    "value",
    [np.log1p, {1: "a"}, np.array([1 + 2j]), pd.Series([1]), object(), {1, 2}, b"raw", _bunch()],
    ids=["function", "int-keys", "complex", "series", "object", "set", "bytes", "bunch"],
)
def test_what_the_format_does_not_hold_is_not_encodable(value: Any) -> None:
    with pytest.raises(statejson.NotEncodable):
        statejson.dumps({"v": value}, allowed_types())


def test_a_pipeline_with_a_function_falls_back_to_skops_and_still_needs_trust() -> None:
    df = mixed()
    path = "tests.unit.features.custom_step.Scale"
    cfg = {"columns": {"b": {"transform": path, "params": {"factor": 3.0}}}, "include": ["b"]}
    bundle, _ = fit_bundle(df, "y", LogisticRegression(), features=cfg, trust=[path])
    data = bundle.to_bytes()
    assert FEATURES_FILE in _members(data) and FEATURES_JSON not in _members(data)
    with pytest.raises(UnsafeFormatError, match=r"custom_step\.Scale"):
        ModelBundle.from_bytes(data)
    ModelBundle.from_bytes(data, trusted=[path])
    ft = FunctionTransformer(np.log1p).fit(np.ones((2, 1)))
    with pytest.raises(statejson.NotEncodable):
        statejson.dumps(ft, allowed_types())


def _genuine_json() -> tuple[bytes, dict[str, Any]]:
    bundle, _ = fit_bundle(mixed(), "y", LogisticRegression(max_iter=500))
    data = bundle.to_bytes()
    return data, orjson.loads(member(data, FEATURES_JSON))


def _with_json(data: bytes, doc: Any) -> bytes:
    return replace_member(data, FEATURES_JSON, orjson.dumps(doc))


def _first(tree: Any, pred: Any) -> dict[str, Any]:
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if pred(node):
                return node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    raise AssertionError("no such node")


def test_a_class_not_on_the_allowlist_is_refused_by_name() -> None:
    data, doc = _genuine_json()
    node = _first(doc, lambda n: n.get("cls", "").endswith("SimpleImputer"))
    node["cls"] = "sklearn.preprocessing._function_transformer.FunctionTransformer"
    node["state"] = {"func": {"t": "type", "v": "builtins.object"}}
    with pytest.raises(UnsafeFormatError) as info:
        ModelBundle.from_bytes(_with_json(data, doc), what="mixed@2")
    assert "FunctionTransformer" in info.value.message
    assert info.value.where["artifact"] == "mixed@2"


def _damage_type(doc: dict[str, Any]) -> None:
    _first(doc, lambda n: n.get("t") == "type")["v"] = "builtins.eval"


def _damage_size(doc: dict[str, Any]) -> None:
    _first(doc, lambda n: n.get("t") == "array" and "b64" in n)["shape"] = [10_000]


def _damage_dtype(doc: dict[str, Any]) -> None:
    _first(doc, lambda n: n.get("t") == "array" and "b64" in n)["dtype"] = "V8"


def _damage_kind(doc: dict[str, Any]) -> None:
    _first(doc, lambda n: n.get("t") == "tuple")["t"] = "eval"


def _damage_state(doc: dict[str, Any]) -> None:
    _first(doc, lambda n: n.get("t") == "obj")["state"] = [1, 2]


def _damage_class(doc: dict[str, Any]) -> None:
    _first(doc, lambda n: n.get("t") == "obj")["cls"] = 3


DAMAGE = {
    "type-not-a-scalar-type": _damage_type,
    "array-size": _damage_size,
    "array-dtype": _damage_dtype,
    "unknown-node": _damage_kind,
    "state-not-a-dict": _damage_state,
    "class-not-text": _damage_class,
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_json_is_an_integrity_error(kind: str) -> None:
    data, doc = _genuine_json()
    DAMAGE[kind](doc)
    with pytest.raises(IntegrityError) as info:
        ModelBundle.from_bytes(_with_json(data, doc), what="mixed@3")
    assert info.value.where["artifact"] == "mixed@3"


@pytest.mark.parametrize(
    "blob", [b"", b"\xff", b"[]", b'{"format": "x", "root": 1}', b"[" * 100_000 + b"]" * 100_000]
)
def test_unreadable_json_is_an_integrity_error(blob: bytes) -> None:
    data, _ = _genuine_json()
    with pytest.raises(IntegrityError) as info:
        ModelBundle.from_bytes(replace_member(data, FEATURES_JSON, blob), what="mixed@4")
    assert info.value.where["file"] == FEATURES_JSON


def test_a_manifest_naming_another_features_file_is_refused() -> None:
    data, _ = _genuine_json()
    manifest = orjson.loads(member(data, "manifest.json"))
    manifest["features"] = "model.skops"
    with pytest.raises(IntegrityError, match="feature pipeline"):
        ModelBundle.from_bytes(replace_member(data, "manifest.json", orjson.dumps(manifest)))


def test_bundles_written_before_still_load(tmp_path: Any) -> None:
    """A bundle with features.skops and no ``features`` in its manifest (the old layout)."""
    from loopml.registry.skopsio import skops_io

    bundle, x = fit_bundle(mixed(), "y", LogisticRegression(max_iter=500))
    data = bundle.to_bytes()
    manifest = orjson.loads(member(data, "manifest.json"))
    del manifest["features"]
    old = replace_member(data, "manifest.json", orjson.dumps(manifest))
    old = replace_member(old, FEATURES_FILE, skops_io().dumps(bundle.features))
    loaded = ModelBundle.from_bytes(old)
    np.testing.assert_array_equal(
        loaded.predict_frame(x).probabilities, bundle.predict_frame(x).probabilities
    )
