"""The reference for prediction drift is the model's out-of-sample scores, kept with the version.

A forest that fits its training rows (bootstrap=False: every tree sees every row) scores them
near 0 or 1, so its own training rows are no reference for the scores of rows it never saw:
against them, its own holdout looked drifted (PSI about 0.5). Out-of-fold and holdout scores
are what the model does on new rows.
"""

from __future__ import annotations

import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier

from loopml.data import ingest
from loopml.evaluate.cv import holdout_split
from loopml.monitor import check_drift
from loopml.project import ProjectConfig
from loopml.registry import register_model, set_alias
from loopml.train import fit_bundle, train
from loopml.workspace import Workspace

FOREST = {"n_estimators": 50, "bootstrap": False, "random_state": 0, "n_jobs": 1}


@pytest.fixture(scope="module")
def cancer() -> pd.DataFrame:
    return load_breast_cancer(as_frame=True).frame


def _train(ws: Workspace, cancer: pd.DataFrame, folds: int) -> pd.DataFrame:
    """Train the forest with a 20% holdout (seed 42); returns the holdout rows' features."""
    ingest(ws, cancer, "cancer")
    config = ProjectConfig.from_dict(
        {
            "name": "cancer",
            "data": {"dataset": "cancer", "target": "target"},
            "model": {"class": "sklearn.ensemble.RandomForestClassifier", "params": FOREST},
            # refit: false keeps the holdout rows unseen by the registered model
            "evaluation": {"folds": folds, "holdout": 0.2, "seed": 42, "refit": False},
        }
    )
    assert train(ws, config).passed
    x, y = cancer.drop(columns=["target"]), cancer["target"]
    _, holdout, _, _ = holdout_split(x, y, fraction=0.2, task="classification", seed=42)
    return holdout


@pytest.mark.parametrize(
    ("folds", "source", "rows"), [(5, "out_of_fold+holdout", 569), (0, "holdout", 114)]
)
def test_a_forest_does_not_drift_from_its_own_holdout(
    workspace: Workspace, cancer: pd.DataFrame, folds: int, source: str, rows: int
) -> None:
    holdout = _train(workspace, cancer, folds)
    check = check_drift(workspace, "cancer", data=holdout)
    assert not check.prediction.drifted, check.prediction.features[0]
    assert not check.features.drifted
    assert not check.drifted
    assert check.verdict == "no drift"
    assert check.warnings == []
    ref = workspace.metadata.get_model_version("cancer", 1).metrics["reference_scores"]
    assert (ref["source"], ref["rows"]) == (source, rows)
    assert workspace.lake.exists(ref["path"])
    assert source.replace("+", " and ").replace("_", "-") in check.reference_scores


def test_shifted_rows_still_drift_against_out_of_sample_scores(
    workspace: Workspace, cancer: pd.DataFrame
) -> None:
    holdout = _train(workspace, cancer, 5)
    check = check_drift(workspace, "cancer", data=holdout * 1.5)
    assert check.drifted and check.features.drifted


def test_a_version_without_out_of_sample_scores_falls_back_with_a_warning(
    workspace: Workspace, cancer: pd.DataFrame
) -> None:
    dv = ingest(workspace, cancer, "cancer").dataset
    bundle, _ = fit_bundle(cancer, "target", RandomForestClassifier(**FOREST))
    mv = register_model(workspace, "cancer", bundle, dataset_name=dv.name, dataset_version=1)
    set_alias(workspace, "cancer", "champion", mv.version)
    check = check_drift(workspace, "cancer", data=cancer.sample(150, random_state=0))
    assert len(check.warnings) == 1
    assert "scoring its own training rows" in check.warnings[0]
    assert "training rows" in check.reference_scores
    html = workspace.lake.read_bytes(check.report_url.split("/lake/", 1)[1]).decode()
    assert "scoring its own training rows" in html
    assert check.to_dict()["warnings"] == check.warnings
