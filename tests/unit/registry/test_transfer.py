"""Importing model files (safe formats only; pickles refused unless trusted) and exporting."""

from __future__ import annotations

import pickle
from pathlib import Path

import joblib
import lightgbm
import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import FunctionTransformer

from loopml.errors import IntegrityError, InvalidInputError, UnsafeFormatError
from loopml.registry import (
    alias_history,
    export_model,
    import_model,
    load_model,
    register_model,
)
from loopml.registry.transfer import detect_format
from loopml.train import fit_bundle
from loopml.workspace import Workspace

COLUMNS = ["mean radius", "mean texture", "mean perimeter", "mean area"]


@pytest.fixture(scope="module")
def cancer() -> pd.DataFrame:
    return load_breast_cancer(as_frame=True).frame[[*COLUMNS, "target"]]


@pytest.fixture(scope="module")
def logistic(cancer: pd.DataFrame) -> LogisticRegression:
    return LogisticRegression(max_iter=5000).fit(cancer[COLUMNS], cancer["target"])


class _Marker:
    """Unpickling this creates the file at ``path``: code a pickle's author chose."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.path), "w"))


def _lightgbm_file(tmp_path: Path, cancer: pd.DataFrame) -> Path:
    x = cancer[COLUMNS].to_numpy()  # no names: the booster calls them Column_0...
    booster = lightgbm.train(
        {"objective": "binary", "verbose": -1, "num_leaves": 7},
        lightgbm.Dataset(x, cancer["target"].to_numpy()),
        num_boost_round=20,
    )
    path = tmp_path / "model.txt"
    booster.save_model(str(path))
    return path


def test_a_lightgbm_text_model_needs_its_features_named(
    workspace: Workspace, tmp_path: Path, cancer: pd.DataFrame
) -> None:
    path = _lightgbm_file(tmp_path, cancer)
    with pytest.raises(InvalidInputError, match="does not name its features"):
        import_model(workspace, path, "boost")
    with pytest.raises(InvalidInputError, match=r"3 features given, but the model .* takes 4"):
        import_model(workspace, path, "boost", features=COLUMNS[:3])
    done = import_model(workspace, path, "boost", features=COLUMNS)
    assert (done.format, done.alias, done.version.flavor) == ("lightgbm", "champion", "lightgbm")
    model = load_model(workspace, "boost")  # served at once: the first version is champion
    got = model.predict(cancer.head(20)).scores
    want = lightgbm.Booster(model_file=str(path)).predict(cancer[COLUMNS].head(20).to_numpy())
    np.testing.assert_allclose(got, want)
    run = workspace.metadata.get_run(done.version.run_id)
    assert run.params["imported_from"] == str(path) and run.status == "succeeded"
    assert alias_history(workspace, "boost")[0].reason.startswith("first version of boost")


def test_a_sample_gives_kinds_and_ranges(
    workspace: Workspace, tmp_path: Path, cancer: pd.DataFrame
) -> None:
    path = _lightgbm_file(tmp_path, cancer)
    sample = tmp_path / "rows.parquet"
    cancer.head(100).to_parquet(sample)
    done = import_model(workspace, path, "boost", sample=sample, target="target")
    inputs = done.version.signature["inputs"]
    assert [f["name"] for f in inputs] == COLUMNS
    assert inputs[0]["min"] == float(cancer["mean radius"].head(100).min())
    second = import_model(workspace, path, "boost", sample=sample)
    assert (second.version.version, second.alias) == (2, None)  # champion stays on 1


def test_a_skops_file_of_a_logistic_regression(
    workspace: Workspace, tmp_path: Path, cancer: pd.DataFrame, logistic: LogisticRegression
) -> None:
    path = tmp_path / "model.skops"
    sio.dump(logistic, path)
    assert detect_format(path, path.read_bytes()) == "skops"
    done = import_model(workspace, path, "lr", task="classification")
    assert [f["name"] for f in done.version.signature["inputs"]] == COLUMNS  # its own names
    got = load_model(workspace, "lr").predict(cancer.head(30)).probabilities
    np.testing.assert_allclose(got, logistic.predict_proba(cancer[COLUMNS].head(30)))
    with pytest.raises(InvalidInputError, match="holds a classification model"):
        import_model(workspace, path, "lr", task="regression")


def test_a_skops_file_with_a_function_needs_trust(workspace: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "fn.skops"
    sio.dump(FunctionTransformer(np.log1p).fit(np.ones((3, 2))), path)
    with pytest.raises(UnsafeFormatError, match="numpy"):
        import_model(workspace, path, "fn")


def test_a_pickle_is_refused_without_ever_being_unpickled(
    workspace: Workspace, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    payload = pickle.dumps(_Marker(marker))
    for name in ("model.pkl", "model.bin", "model.joblib"):
        path = tmp_path / name
        path.write_bytes(payload)
        with pytest.raises(UnsafeFormatError, match="does not unpickle") as info:
            import_model(workspace, path, "evil", features=["a"])
        assert "skops.io.dump" in str(info.value) and "booster.save_model" in str(info.value)
        assert not marker.exists()
    compressed = tmp_path / "model.dat"  # joblib's zlib + pickle, under a neutral name
    joblib.dump(_Marker(marker), compressed, compress=3)
    assert not marker.exists()
    assert detect_format(compressed, compressed.read_bytes()) == "pickle"
    with pytest.raises(UnsafeFormatError):
        import_model(workspace, compressed, "evil")
    assert not marker.exists()
    assert workspace.metadata.list_model_versions() == []


def test_a_trusted_pickle_is_converted_and_the_opt_in_recorded(
    workspace: Workspace, tmp_path: Path, cancer: pd.DataFrame, logistic: LogisticRegression
) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(logistic))
    done = import_model(workspace, path, "lr", trust_pickle=True)
    assert done.version.trusted == ["pickle"]
    assert done.format == "pickle" and done.version.flavor == "sklearn"
    got = load_model(workspace, "lr").predict(cancer.head(10)).labels
    np.testing.assert_array_equal(got, logistic.predict(cancer[COLUMNS].head(10)))


def test_an_xgboost_json_model(workspace: Workspace, tmp_path: Path) -> None:
    xgboost = pytest.importorskip("xgboost")
    data = load_diabetes(as_frame=True).frame
    x = data.drop(columns="target")
    booster = xgboost.train(
        {"objective": "reg:squarederror", "max_depth": 3},
        xgboost.DMatrix(x, label=data["target"]),
        num_boost_round=10,
    )
    path = tmp_path / "model.json"
    booster.save_model(str(path))
    done = import_model(workspace, path, "diabetes")  # the booster names its features
    assert done.version.signature["task"] == "regression"
    got = load_model(workspace, "diabetes").predict(data.head(15)).labels
    np.testing.assert_allclose(got, booster.inplace_predict(x.head(15)), rtol=1e-6)


def test_damaged_onnx_and_unknown_files_are_refused(workspace: Workspace, tmp_path: Path) -> None:
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"\x08\x07")
    with pytest.raises(IntegrityError, match="is not an ONNX model"):
        import_model(workspace, onnx, "m")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(InvalidInputError, match="not a model file loopml imports"):
        import_model(workspace, text, "m")


def test_export_then_import_round_trips(
    workspace: Workspace, tmp_path: Path, cancer: pd.DataFrame
) -> None:
    bundle = fit_bundle(cancer, "target", LogisticRegression(max_iter=5000))[0]
    mv = register_model(workspace, "cancer", bundle)
    out = export_model(workspace, f"cancer@{mv.version}", tmp_path / "cancer.zip")
    assert out.read_bytes() == workspace.artifacts.get(mv.artifact_sha256)
    done = import_model(workspace, out, "copy")
    assert done.format == "bundle" and done.version.signature == mv.signature
    again = load_model(workspace, "copy").predict(cancer.head(25)).probabilities
    np.testing.assert_allclose(
        again, load_model(workspace, "cancer@1").predict(cancer.head(25)).probabilities
    )
    onnx_file = export_model(workspace, "cancer@1", tmp_path / "m.onnx", format="onnx")
    assert onnx_file.read_bytes()[:2] != b"PK"  # the compiled graph, not the bundle
    with pytest.raises(InvalidInputError, match="is not bundle or onnx"):
        export_model(workspace, "cancer@1", tmp_path / "m.txt", format="text")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_recognising_a_file_never_unpickles_it(data: bytes) -> None:
    """Whatever the bytes, recognising them reads them only; a PROTO opcode is a pickle."""
    fmt = detect_format(Path("upload.bin"), data)
    assert fmt in ("pickle", "bundle", "skops", "lightgbm", "xgboost", "onnx", "unknown")
    if data[:1] == b"\x80":
        assert fmt == "pickle"
    assert detect_format(Path("model.joblib"), data) == "pickle"
