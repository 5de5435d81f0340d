"""Drift checks over the real prediction log, with features that clash with log columns."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from loopml.data import ingest
from loopml.errors import InvalidInputError
from loopml.monitor import check_drift
from loopml.registry import register_model, set_alias
from loopml.serve import create_app
from loopml.train import fit_bundle
from loopml.workspace import Workspace

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


def _frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    color = rng.choice(["red", "green", "blue"], n, p=[0.5, 0.3, 0.2])
    if shift:
        color = rng.choice(["red", "green", "blue"], n, p=[0.1, 0.2, 0.7])
    return pd.DataFrame(
        {
            "score": rng.normal(600 + shift * 100, 50, n),  # clashes with a log column
            "color": color,
            "label": rng.integers(0, 2, n),
        }
    )


@pytest.fixture
def served(workspace: Workspace) -> Workspace:
    train = _frame(800, 0)
    dv = ingest(workspace, train, "applicants").dataset
    bundle, _ = fit_bundle(train, "label", LogisticRegression())
    mv = register_model(
        workspace,
        "credit",
        bundle,
        metrics={},
        dataset_name=dv.name,
        dataset_version=dv.version,
    )
    set_alias(workspace, "credit", "champion", mv.version)
    return workspace


def _send(ws: Workspace, frame: pd.DataFrame) -> None:
    app = create_app(ws, reload_interval=0)
    with TestClient(
        app, base_url="http://127.0.0.1"
    ) as client:  # leaving the block flushes the log
        rows = frame.drop(columns=["label"]).to_dict(orient="records")
        for start in range(0, len(rows), 50):
            r = client.post(
                "/v1/models/credit:predict", json={"instances": rows[start : start + 50]}
            )
            assert r.status_code == 200, r.text


def test_empty_log_is_a_clear_error(served: Workspace) -> None:
    with pytest.raises(InvalidInputError, match="prediction log of credit@1 is empty"):
        check_drift(served, "credit")


def test_log_from_the_same_distribution_does_not_drift(served: Workspace) -> None:
    _send(served, _frame(300, 1))
    check = check_drift(served, "credit")
    assert not check.drifted
    assert {f.feature for f in check.features.features} == {"score", "color"}
    assert "300 rows" in check.current


def test_shifted_log_drifts_and_writes_a_report(served: Workspace, tmp_path: Path) -> None:
    _send(served, _frame(300, 2, shift=1.0))
    check = check_drift(served, "credit")
    assert check.drifted
    assert set(check.features.drifted_features) == {"score", "color"}
    html = served.lake.read_bytes(check.report_url.split("/lake/", 1)[1]).decode()
    assert html.count("<svg") >= 2


def test_report_shows_score_drift_without_counting_it_as_a_feature(served: Workspace) -> None:
    _send(served, _frame(300, 2, shift=1.0))
    check = check_drift(served, "credit")
    html = served.lake.read_bytes(check.report_url.split("/lake/", 1)[1]).decode()
    assert "2 of 2 features drifted" in html
    assert "prediction_score" in html


# -- what the check says, unseen categories, windows too small ---------------------------------


def test_the_summary_names_the_drifting_features_and_the_predictions(served: Workspace) -> None:
    _send(served, _frame(300, 2, shift=1.0))
    check = check_drift(served, "credit")
    assert check.verdict == "drift"
    pred = "yes" if check.prediction.drifted else "no"
    assert check.summary == f"drift: 2 of 2 features (score, color); predictions: {pred}"
    doc = check.to_dict()
    assert doc["verdict"] == "drift" and doc["summary"] == check.summary
    assert doc["drifted_features"] == ["score", "color"]
    assert doc["predictions_drifted"] is check.prediction.drifted
    html = served.lake.read_bytes(check.report_url.split("/lake/", 1)[1]).decode()
    assert check.summary in html


def test_unseen_categories_in_a_file_are_their_own_bucket(served: Workspace) -> None:
    frame = _frame(300, 5).drop(columns=["label"])
    frame.loc[:99, "color"] = "purple"  # never seen in training
    check = check_drift(served, "credit", data=frame)
    color = next(f for f in check.features.features if f.feature == "color")
    assert color.unseen_categories == ["purple"]
    assert color.drifted
    assert color.histogram.categories is not None and "(unseen)" in color.histogram.categories
    assert color.n_current == 300  # counted, not dropped
    assert any("100 rows" in w and "never had" in w for w in check.warnings)


def test_a_window_too_small_is_insufficient_data_and_no_verdict(served: Workspace) -> None:
    _send(served, _frame(12, 2, shift=3.0))
    check = check_drift(served, "credit")
    assert not check.drifted
    assert check.verdict == "insufficient data"
    assert any("12 rows" in w and "at least 30" in w for w in check.warnings)
    assert check.summary.startswith("insufficient data")
    decided = check_drift(served, "credit", min_rows=10)
    assert decided.verdict == "drift"
