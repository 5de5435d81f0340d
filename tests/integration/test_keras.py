"""Keras from loopml.yaml and TensorFlow SavedModels through `loopml models import`:
`loopml train`, then `loopml predict`, HTTP and the Python API give the same probabilities; a
user's model needs its trust; a SavedModel is served from ONNX, or kept only with --trust."""

from __future__ import annotations

import importlib.util
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

if importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("tf2onnx") is None:
    pytest.skip("needs loopml[tensorflow]", allow_module_level=True)

from loopml.cli.main import main
from loopml.errors import UnsafeFormatError
from loopml.registry import ModelBundle, load_model
from loopml.serve import create_app
from loopml.workspace import open_workspace

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's notice about httpx in its TestClient
    from starlette.testclient import TestClient

USER_MODELS = Path(__file__).parents[1] / "unit" / "deep_keras"
TRUST = "tensorflow.saved_model"
PROJECT = """
name: cancer
data: {{dataset: cancer, target: target}}
features: {{numeric: {{impute: median, scale: standard}}}}
model: {{class: {cls}, {trust}params: {params}}}
evaluation: {{metric: roc_auc, folds: 0, holdout: 0.2, seed: 0, gate: "roc_auc >= 0.5"}}
registry: {{alias: champion}}
"""
Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    def run(*args: object) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture
def cancer_csv(tmp_path: Path) -> Path:
    path = tmp_path / "cancer.csv"
    load_breast_cancer(as_frame=True).frame.to_csv(path, index=False)
    return path


@pytest.fixture
def ws(tmp_path: Path, cli: Cli, cancer_csv: Path) -> Path:
    folder = tmp_path / "ws"
    assert cli("init", "--workspace", folder)[0] == 0
    assert cli("data", "ingest", cancer_csv, "--name", "cancer", "-w", folder)[0] == 0
    return folder


def _project(folder: Path, cls: str, params: str, trust: str = "") -> Path:
    path = folder / "loopml.yaml"
    path.write_text(PROJECT.format(cls=cls, params=params, trust=trust))
    return path


@pytest.mark.slow
def test_train_predict_and_serve_a_keras_mlp_alike(
    tmp_path: Path, cli: Cli, ws: Path, cancer_csv: Path
) -> None:
    params = "{hidden: [16], epochs: 30, lr: 0.01, patience: 3, random_state: 0}"
    project = _project(tmp_path, "loopml.train.deep.keras.MLPClassifier", params)
    code, _, err = cli("train", "-f", project, "-w", ws)
    assert code == 0, err
    rows = pd.read_csv(cancer_csv).drop(columns="target")
    with open_workspace(ws) as w:
        model = load_model(w, "cancer")
        assert model.bundle.flavor == "keras"
        assert model.predictor.kind == "onnx", model.predictor.reason  # served compiled
        expected = model.predict(rows)
        run = w.metadata.list_runs()[0]
        steps = w.metadata.list_steps(run.id, "epoch.val_loss")
        assert 1 <= len(steps) <= 30 and [s.step for s in steps] == list(range(len(steps)))
        app = create_app(w, reload_interval=0, log_predictions=False)
        with TestClient(app, base_url="http://127.0.0.1") as client:
            records = rows.head(50).to_dict(orient="records")
            answer = client.post("/v1/models/cancer:predict", json={"instances": records})
            assert answer.status_code == 200, answer.text
            served = answer.json()
    out = tmp_path / "scored.csv"
    code, _, err = cli("predict", "-m", "cancer", "-i", cancer_csv, "-o", out, "-w", ws, "--json")
    assert code == 0, err
    assert expected.probabilities is not None
    assert (expected.labels == pd.read_csv(cancer_csv)["target"]).mean() > 0.9
    np.testing.assert_allclose(pd.read_csv(out)["proba_1"], expected.probabilities[:, 1], atol=1e-6)
    http = np.array([p["probabilities"]["1"] for p in served["predictions"]])
    np.testing.assert_allclose(http, expected.probabilities[:50, 1], atol=1e-6)


@pytest.mark.slow
def test_a_users_keras_model_is_refused_before_import_then_trained_when_trusted(
    tmp_path: Path, cli: Cli, ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(USER_MODELS))
    monkeypatch.delitem(sys.modules, "keras_user_models", raising=False)
    cls, params = (
        "loopml.train.deep.keras.ModelClassifier",
        "{model: keras_user_models.wide, epochs: 10, lr: 0.01, random_state: 0}",
    )
    code, _, err = cli("train", "-f", _project(tmp_path, cls, params), "-w", ws)
    assert code == 2, err
    assert "model.trust" in err and "keras_user_models.wide" in err and "Traceback" not in err
    assert "keras_user_models" not in sys.modules  # refused before it was imported
    with open_workspace(ws) as w:
        assert w.metadata.list_model_versions("cancer") == []  # nothing from the failed run
    project = _project(tmp_path, cls, params, trust="trust: [keras_user_models.wide], ")
    code, _, err = cli("train", "-f", project, "-w", ws)
    assert code == 0, err
    with open_workspace(ws) as w:
        (mv,) = w.metadata.list_model_versions("cancer")
        assert mv.flavor == "keras" and "keras_user_models.wide" in mv.trusted
        assert load_model(w, "cancer").bundle.estimator.builder == "keras_user_models.wide"


def _savedmodels(root: Path) -> tuple[Path, Path, np.ndarray]:
    """A softmax classifier over 4 inputs, one that reads a file, and the classifier's
    answers to 5 rows (as TensorFlow computes them)."""
    from loopml.registry.flavors.keras import keras_module

    keras_module()
    import tensorflow as tf

    class Softmax(tf.Module):
        def __init__(self) -> None:
            self.w = tf.Variable(tf.random.stateless_normal([4, 3], seed=[1, 2]))
            self.b = tf.Variable(tf.constant([0.1, -0.2, 0.3]))

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
        def __call__(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"probabilities": tf.nn.softmax(x @ self.w + self.b)}

    class Reader(tf.Module):
        def __init__(self) -> None:
            self.w = tf.Variable(tf.ones([4, 1]))

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
        def __call__(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            size = tf.strings.length(tf.io.read_file(str(root / "secret.txt")))
            return {"y": x @ self.w + tf.cast(size, tf.float32)}

    (root / "secret.txt").write_text("secret")
    rows = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    softmax, reader = Softmax(), Reader()
    tf.saved_model.save(softmax, str(root / "clf"), signatures=softmax.__call__)
    tf.saved_model.save(reader, str(root / "reader"), signatures=reader.__call__)
    return root / "clf", root / "reader", softmax(rows)["probabilities"].numpy()


@pytest.mark.slow
def test_savedmodel_import_converts_to_onnx_or_is_kept_only_with_trust(
    tmp_path: Path, cli: Cli, ws: Path
) -> None:
    clf, reader, answers = _savedmodels(tmp_path)
    features = "a,b,c,d"
    code, out, err = cli(
        "models", "import", clf, "--name", "tfclf", "--features", features, "-w", ws
    )
    assert code == 0, err
    assert "(savedmodel-onnx)" in out
    rows = pd.DataFrame(
        np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32), columns=list("abcd")
    )
    with open_workspace(ws) as w:
        model = load_model(w, "tfclf")
        assert model.bundle.flavor == "onnx" and model.record.trusted == []
        assert model.bundle.signature.classes == [0, 1, 2]
        got = model.predict(rows).probabilities
    np.testing.assert_allclose(got, answers, atol=1e-5)

    # a graph that reads a file: refused with the reason, in one line, nothing registered
    code, _, err = cli(
        "models", "import", reader, "--name", "tfreader", "--features", features, "-w", ws
    )
    assert code == 2, err
    assert "ReadFile" in err and "file-system ops" in err and f"--trust {TRUST}" in err
    assert "Traceback" not in err
    with open_workspace(ws) as w:
        assert w.metadata.list_model_versions("tfreader") == []

    # kept as a SavedModel with the explicit trust, recorded on the version
    code, out, err = cli(
        "models", "import", reader, "--name", "tfreader", "--features", features,
        "--trust", TRUST, "-w", ws,
    )  # fmt: skip
    assert code == 0, err
    assert "(savedmodel)" in out and TRUST in out
    with open_workspace(ws) as w:
        model = load_model(w, "tfreader")
        assert model.bundle.flavor == "savedmodel" and model.record.trusted == [TRUST]
        assert model.predictor.kind == "native"  # run by TensorFlow
        values = model.predict(rows).labels
        with pytest.raises(UnsafeFormatError, match=r"tensorflow\.saved_model"):
            ModelBundle.from_bytes(w.artifacts.get(model.record.artifact_sha256))
    np.testing.assert_allclose(values, rows.sum(axis=1) + len("secret"), rtol=1e-6)


def test_a_folder_that_is_not_a_savedmodel_is_a_clear_error(
    tmp_path: Path, cli: Cli, ws: Path
) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    code, _, err = cli("models", "import", folder, "--name", "m", "-w", ws)
    assert code == 2, err
    assert "without saved_model.pb" in err and "Traceback" not in err
