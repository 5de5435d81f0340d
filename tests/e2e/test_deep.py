"""A torch MLP from loopml.yaml: `loopml train`, then `loopml predict`, HTTP and the Python
API give the same probabilities; a user's module needs its trust recorded."""

from __future__ import annotations

import importlib.util
import json
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

EXAMPLES = Path(__file__).parents[2] / "examples"
MYNETS = EXAMPLES / "images"  # a user's module: mynets.py
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
    monkeypatch.syspath_prepend(str(MYNETS))
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


@pytest.mark.slow
def test_fine_tune_a_torch_version_from_its_weights(
    tmp_path: Path, cli: Callable[..., Result], ws: Path, cancer_csv: Path
) -> None:
    params = "{hidden: [16], epochs: 3, patience: 3, random_state: 0}"
    project = project_file(tmp_path, cls=MLP, params=params, gate="roc_auc >= 0.5")
    project.write_text(project.read_text().replace("folds: 5", "folds: 0"))
    assert cli("train", "-f", project, "-w", ws).code == 0
    newer = tmp_path / "newer.csv"
    pd.read_csv(cancer_csv).sample(frac=0.8, random_state=1).to_csv(newer, index=False)
    assert cli("data", "ingest", newer, "--name", "cancer", "-w", ws).code == 0
    # another architecture: the parent's weights cannot be the start, and nothing is recorded
    wide = project.read_text().replace("hidden: [16]", "hidden: [32]")
    other = tmp_path / "wide.yaml"
    other.write_text(wide)
    with open_workspace(ws) as w:
        runs = len(w.metadata.list_runs())
    res = cli("train", "-f", other, "-w", ws, "--from", "cancer@1")
    assert res.code != 0 and "model.params" in res.err and "hidden=[16] (not [32])" in res.err
    assert "Traceback" not in res.err
    with open_workspace(ws) as w:  # refused before the run is recorded, not as a failed run
        assert len(w.metadata.list_runs()) == runs
    # lr 0: a continuation keeps the parent's weights exactly (a fresh start would not)
    still = tmp_path / "still.yaml"
    still.write_text(project.read_text().replace("epochs: 3", "epochs: 1, lr: 0.0"))
    res = cli("train", "-f", still, "-w", ws, "--from", "cancer@1")
    assert res.code == 0, res.err
    with open_workspace(ws) as w:
        assert [v.version for v in w.metadata.list_model_versions("cancer")] == [1, 2]
        parent, child = load_model(w, "cancer@1"), load_model(w, "cancer@2")
        run = w.metadata.get_run(child.record.run_id)
        assert run.parent_id == parent.record.run_id
        assert (run.params["parent_dataset"], run.params["dataset"]) == ("cancer@1", "cancer@2")
        rows = pd.read_csv(cancer_csv).drop(columns="target").head(20)
        np.testing.assert_array_equal(
            child.predict(rows).probabilities, parent.predict(rows).probabilities
        )
    res = cli("train", "-f", project, "-w", ws, "--from", "cancer@1")  # epochs on top
    assert res.code == 0, res.err
    with open_workspace(ws) as w:
        moved = load_model(w, "cancer@3").predict(rows).probabilities
        assert not np.allclose(moved, load_model(w, "cancer@1").predict(rows).probabilities)


def _example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / name / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_images_example_cnn_served_through_v2_tensors(tmp_path: Path) -> None:
    out = _example("images").main(str(tmp_path / "ws"), quick=True)
    assert out["dataset"] in ("digits", "fashion-mnist")
    assert out["accuracy"] > 0.8 and out["http_accuracy"] > 0.75
    assert out["http_matches_python"] is True
    assert (out["wrong_shape_status"], out["wrong_shape_field"]) == (422, "inputs[0].shape")
    assert out["epochs"] >= 2
    assert out["predictor"] == "onnx", out["predictor_reason"]  # the float32 CNN, checked


@pytest.mark.slow
def test_recommender_example_beats_most_popular_on_movielens(tmp_path: Path) -> None:
    if importlib.util.find_spec("recbole") is None:
        pytest.skip("MovieLens 100k comes with recbole: pip install --no-deps recbole==1.2.1")
    out = _example("recommender").main(str(tmp_path / "ws"), quick=True)
    assert out["users"] == 943
    assert out["ndcg_at_10"] > out["popular_ndcg_at_10"] * 1.1
    assert out["recall_at_10"] > out["popular_recall_at_10"]
    assert out["coverage_at_10"] > out["popular_coverage_at_10"]
    assert out["http_matches_python"] is True
    assert all(len(items) == 10 for items in out["http_top_10"].values())
    assert out["unknown_user_fallback"] == "popular"


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
    # both distributed fits ran, the evaluated one and the refit on every row (the
    # kill-and-resume test in test_deep_resume.py does not refit), and a passed run keeps
    # the checkpoints of neither
    rows = json.loads(res.out)["run"]["metrics"]["rows"]
    assert rows["fit"] == rows["train"] + rows["holdout"], rows
    assert not list((ws / "checkpoints").glob("*/fit-*")), "a passed run keeps no checkpoint"
    with open_workspace(ws) as w:
        run = w.metadata.list_runs()[0]
        assert run.params["project"]["model"]["params"]["workers"] == 2
        assert len(w.metadata.list_steps(run.id, "epoch.val_loss")) >= 1
