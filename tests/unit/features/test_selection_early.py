"""A variance selection that keeps no feature fails before the run is recorded (issue 10)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sklearn.datasets import load_breast_cancer

from loopml.data import ingest
from loopml.errors import ConfigError
from loopml.project import ProjectConfig
from loopml.train import train
from loopml.workspace import Workspace


def _config(threshold: float) -> ProjectConfig:
    return ProjectConfig.from_dict(
        {
            "name": "cancer",
            "data": {"dataset": "cancer", "target": "target"},
            "model": {"class": "sklearn.linear_model.LogisticRegression"},
            "features": {
                "numeric": {"scale": "standard"},
                "selection": {"method": "variance", "threshold": threshold},
            },
            "evaluation": {"folds": 2, "bootstrap": 0},
            "registry": {"alias": None},
        }
    )


def test_a_variance_threshold_above_every_feature_fails_before_any_run(
    workspace: Workspace, tmp_path: Path
) -> None:
    path = tmp_path / "cancer.csv"
    load_breast_cancer(as_frame=True).frame.iloc[:200].to_csv(path, index=False)
    ingest(workspace, path, "cancer")
    with pytest.raises(ConfigError, match="keeps none of the 30 features") as info:
        train(workspace, _config(5.0))  # standardized: every variance is 1
    assert info.value.where["field"] == "features.selection.threshold"
    assert "below" in (info.value.hint or "")
    assert workspace.metadata.list_runs("cancer") == []
    run = train(workspace, _config(0.5))  # a threshold that keeps features trains
    assert workspace.metadata.list_runs("cancer") != [] and run is not None


def test_a_search_with_such_a_selection_fails_before_its_parent_run(
    workspace: Workspace, tmp_path: Path
) -> None:
    pytest.importorskip("optuna")
    from loopml.train.search import search

    path = tmp_path / "cancer.csv"
    load_breast_cancer(as_frame=True).frame.iloc[:200].to_csv(path, index=False)
    ingest(workspace, path, "cancer")
    data = _config(5.0).to_dict()
    data["search"] = {"trials": 2, "space": {"C": {"float": [0.01, 10.0], "log": True}}}
    with pytest.raises(ConfigError, match="keeps none") as info:
        search(workspace, ProjectConfig.from_dict(data))
    assert info.value.where["field"] == "features.selection.threshold"
    assert workspace.metadata.list_runs("cancer") == []
