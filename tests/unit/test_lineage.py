"""Lineage: every id loopml hands out, server or batch, traces back to its data."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression

from loopml.data import ingest
from loopml.errors import InvalidInputError, NotFoundError
from loopml.lineage import trace_prediction
from loopml.predictions import read_prediction_log
from loopml.registry import register_model, set_alias
from loopml.serve.scoring import predict_file
from loopml.train import fit_bundle
from loopml.workspace import Workspace


@pytest.fixture
def registered(workspace: Workspace) -> Workspace:
    frame = load_breast_cancer(as_frame=True).frame.iloc[:, [0, 1, 2, -1]]
    dv = ingest(workspace, frame, "cancer").dataset
    bundle, _ = fit_bundle(frame, "target", LogisticRegression(max_iter=1000))
    mv = register_model(
        workspace, "cancer", bundle, dataset_name=dv.name, dataset_version=dv.version
    )
    set_alias(workspace, "cancer", "champion", mv.version)
    return workspace


def _score(ws: Workspace, tmp_path: Path, rows: int = 7) -> tuple[Path, pd.DataFrame]:
    frame = load_breast_cancer(as_frame=True).frame.iloc[:rows, [0, 1, 2]]
    path = tmp_path / "rows.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / "scored.csv"
    predict_file(ws, "cancer", path, out)
    return path, pd.read_csv(out)


def test_batch_predictions_are_logged_as_batch(registered: Workspace, tmp_path: Path) -> None:
    path, scored = _score(registered, tmp_path)
    log = read_prediction_log(registered.lake, "cancer")
    assert log["prediction_id"].tolist() == scored["prediction_id"].tolist()
    assert (log["source"] == "batch").all()
    assert (log["input_file"] == str(path.resolve())).all()
    pd.testing.assert_series_equal(
        log["mean radius"], scored["mean radius"], check_names=False, check_index=False
    )


def test_a_batch_id_traces_to_its_input_file_by_a_prefix(
    registered: Workspace, tmp_path: Path
) -> None:
    path, scored = _score(registered, tmp_path)
    pid = str(scored["prediction_id"].iloc[2])
    doc = trace_prediction(registered, pid[:12])
    p = doc["prediction"]
    assert p["id"] == pid
    assert (p["source"], p["input_file"]) == ("batch", str(path.resolve()))
    assert p["inputs"]["mean radius"] == scored["mean radius"].iloc[2]
    assert doc["model"]["name"] == "cancer" and doc["dataset"]["name"] == "cancer"
    assert doc["run"]["id"] == registered.metadata.get_model_version("cancer", 1).run_id
    assert trace_prediction(registered, pid.upper())["prediction"]["id"] == pid


def test_unknown_and_malformed_prediction_ids(registered: Workspace, tmp_path: Path) -> None:
    _score(registered, tmp_path)
    with pytest.raises(NotFoundError):
        trace_prediction(registered, "0" * 32)
    with pytest.raises(InvalidInputError, match="at least 4"):
        trace_prediction(registered, "abc")
    with pytest.raises(InvalidInputError):
        trace_prediction(registered, "not-an-id")
