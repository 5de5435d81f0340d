"""Importing a user's ONNX file (issue 7): kept as it came, run with ONNX Runtime behind a
numeric signature, served natively and compiled alike; unsafe or unusable graphs refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.linear_model import LogisticRegression, Ridge

from loopml.cli.main import main
from loopml.errors import InvalidInputError, UnsafeFormatError
from loopml.registry import import_model, load_model
from loopml.workspace import Workspace

pytest.importorskip("onnxruntime")
skl2onnx = pytest.importorskip("skl2onnx")
COLUMNS = ["mean radius", "mean texture", "mean perimeter", "mean area"]


@pytest.fixture(scope="module")
def cancer() -> pd.DataFrame:
    return load_breast_cancer(as_frame=True).frame[[*COLUMNS, "target"]]


def _to_onnx(model: object, n: int, path: Path, **options: object) -> Path:
    from skl2onnx.common.data_types import FloatTensorType

    onx = skl2onnx.convert_sklearn(
        model,
        initial_types=[("x", FloatTensorType([None, n]))],
        options={id(model): options} if options else None,
        target_opset=17,
    )
    path.write_bytes(onx.SerializeToString())
    return path


@pytest.mark.parametrize("zipmap", [True, False], ids=["zipmap", "tensor"])
def test_an_onnx_classifier_predicts_as_the_model_it_came_from(
    workspace: Workspace, tmp_path: Path, cancer: pd.DataFrame, zipmap: bool
) -> None:
    x = cancer[COLUMNS].to_numpy(np.float32)
    clf = LogisticRegression(max_iter=5000).fit(x, cancer["target"])
    path = _to_onnx(clf, 4, tmp_path / "cancer.onnx", **({} if zipmap else {"zipmap": False}))
    rows = tmp_path / "rows.parquet"  # sample rows: ranges, and what a compiled graph is checked on
    cancer.sample(60, random_state=0).to_parquet(rows)
    done = import_model(workspace, path, "cancer", features=COLUMNS, sample=rows)
    assert done.format == "onnx" and done.alias == "champion"
    assert done.version.flavor == "onnx"
    sig = done.version.signature
    assert [f["name"] for f in sig["inputs"]] == COLUMNS
    assert {f["kind"] for f in sig["inputs"]} == {"numeric"}
    assert sig["task"] == "classification" and sig["classes"] == [0, 1]
    loaded = load_model(workspace, "cancer", compile="native")
    got = loaded.predict(cancer.head(40))
    np.testing.assert_allclose(got.probabilities, clf.predict_proba(x[:40]), atol=1e-5)
    np.testing.assert_array_equal(got.labels, clf.predict(x[:40]))
    # compiled for serving: the user's graph behind the feature pipeline, same answers
    served = load_model(workspace, "cancer", compile="onnx")
    assert served.predictor.kind == "onnx"
    records = cancer.head(40)[COLUMNS].to_dict("records")
    np.testing.assert_allclose(served.predict(records).probabilities, got.probabilities, atol=1e-6)


def test_an_onnx_regressor_with_sample_rows(workspace: Workspace, tmp_path: Path) -> None:
    data = load_diabetes(as_frame=True).frame
    cols = [c for c in data.columns if c != "target"]
    reg = Ridge().fit(data[cols].to_numpy(np.float32), data["target"])
    path = _to_onnx(reg, len(cols), tmp_path / "diabetes.onnx")
    sample = tmp_path / "rows.csv"
    data.head(50).to_csv(sample, index=False)
    done = import_model(workspace, path, "diabetes", sample=sample)
    sig = done.version.signature
    assert sig["task"] == "regression" and [f["name"] for f in sig["inputs"]] == cols
    got = load_model(workspace, "diabetes").predict(data.head(30)).labels
    want = reg.predict(data[cols].head(30).to_numpy(np.float32))
    np.testing.assert_allclose(got, want, rtol=1e-4)


def test_an_onnx_model_needs_its_features_named(
    workspace: Workspace, tmp_path: Path, cancer: pd.DataFrame
) -> None:
    clf = LogisticRegression(max_iter=5000).fit(cancer[COLUMNS].to_numpy(), cancer["target"])
    path = _to_onnx(clf, 4, tmp_path / "m.onnx")
    with pytest.raises(InvalidInputError, match="does not name its features"):
        import_model(workspace, path, "m")
    with pytest.raises(InvalidInputError, match="3 features given, but the model"):
        import_model(workspace, path, "m", features=COLUMNS[:3])
    with pytest.raises(InvalidInputError, match="holds a classification model"):
        import_model(workspace, path, "m", features=COLUMNS, task="regression")
    assert workspace.metadata.list_runs("m") == []


def test_a_graph_with_a_custom_operator_is_refused(workspace: Workspace, tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    node = helper.make_node("RunShell", ["x"], ["y"], domain="com.evil")
    graph = helper.make_graph(
        [node],
        "evil",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.evil", 1)]
    )
    path = tmp_path / "evil.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(UnsafeFormatError, match=r"com\.evil"):
        import_model(workspace, path, "evil", features=["a", "b"])


def test_a_graph_with_two_inputs_is_refused(workspace: Workspace, tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["y"])],
        "two",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [None, 1]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [None, 1]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])],
    )
    path = tmp_path / "two.onnx"
    path.write_bytes(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    )
    with pytest.raises(InvalidInputError, match="takes 2 inputs"):
        import_model(workspace, path, "two", features=["a"])


def test_models_import_an_onnx_file_from_the_cli(
    workspace: Workspace, tmp_path: Path, cancer: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    clf = LogisticRegression(max_iter=5000).fit(cancer[COLUMNS].to_numpy(), cancer["target"])
    path = _to_onnx(clf, 4, tmp_path / "m.onnx")
    args = ["-w", str(workspace.root), "models", "import", str(path), "--name", "cli"]
    assert main([*args, "--features", ",".join(COLUMNS)]) == 0
    assert "onnx" in capsys.readouterr().out
    assert main([*args]) == 2  # no features: a one-line usage error
    assert "does not name its features" in capsys.readouterr().err
