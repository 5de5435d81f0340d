"""Incremental mode: continue a registered version on a new dataset version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_breast_cancer
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

import loopml
from loopml.data import ingest
from loopml.errors import ConfigError, InvalidInputError
from loopml.project import ProjectConfig
from loopml.registry import load_model
from loopml.workspace import Workspace

LGBM = {"class": "lightgbm.LGBMClassifier", "params": {"n_estimators": 30}}
SGD = {
    "class": "sklearn.linear_model.SGDClassifier",
    "params": {"loss": "log_loss", "random_state": 0},
}


def _config(dataset: str, model: dict[str, Any], **over: Any) -> ProjectConfig:
    base: dict[str, Any] = {
        "name": "cancer",
        "data": {"dataset": dataset, "target": "target", "positive": 1},
        "features": {"numeric": {"impute": "median", "scale": "standard"}},
        "model": model,
        "evaluation": {"metric": "roc_auc", "folds": 0, "gate": "roc_auc >= 0.5"},
    }
    base.update(over)
    return ProjectConfig.from_dict(base)


@pytest.fixture
def halves(workspace: Workspace) -> pd.DataFrame:
    """cancer@1 and cancer@2: two disjoint halves of the data; returns the rows of neither."""
    frame = load_breast_cancer(as_frame=True).frame.sample(frac=1.0, random_state=7)
    frame = frame.reset_index(drop=True)
    holdout, rest = frame.iloc[:114], frame.iloc[114:]
    ingest(workspace, rest.iloc[: len(rest) // 2].reset_index(drop=True), "cancer")
    ingest(workspace, rest.iloc[len(rest) // 2 :].reset_index(drop=True), "cancer")
    return holdout.reset_index(drop=True)


def _auc(ws: Workspace, ref: str, rows: pd.DataFrame) -> float:
    p = load_model(ws, ref).predict(rows)
    assert p.probabilities is not None
    return float(roc_auc_score(rows["target"], p.probabilities[:, 1]))


def test_lightgbm_continues_with_more_trees_on_the_new_version(
    workspace: Workspace, halves: pd.DataFrame
) -> None:
    pytest.importorskip("lightgbm")
    parent = loopml.train(workspace, _config("cancer@1", LGBM))
    assert parent.model_version is not None and parent.model_version.version == 1
    child = loopml.train(workspace, _config("cancer@2", LGBM), from_version="cancer@1")
    assert child.passed, child.reason
    assert child.model_version is not None and child.model_version.version == 2
    old, new = load_model(workspace, "cancer@1"), load_model(workspace, "cancer@2")
    assert old.bundle.estimator.num_trees() == 30
    assert new.bundle.estimator.num_trees() == 60
    assert _auc(workspace, "cancer@2", halves) >= _auc(workspace, "cancer@1", halves)
    # the parent's fitted features, unchanged: same inputs, same transformed values
    assert new.signature.inputs == old.signature.inputs
    x = halves.drop(columns="target")
    np.testing.assert_array_equal(
        new.bundle.features.transform(x), old.bundle.features.transform(x)
    )
    run = workspace.metadata.get_run(child.run.id)
    assert run.parent_id == parent.run.id
    assert run.params["continued_from"] == "cancer@1"
    assert (run.dataset_name, run.dataset_version) == ("cancer", 2)
    assert run.tags["parent_dataset"] == "cancer@1"
    assert run.tags["dataset"] == "cancer@2"
    assert [r.id for r in workspace.metadata.list_runs(parent=parent.run.id)] == [run.id]
    assert child.model_version.dataset_version == 2


def test_xgboost_continues_from_its_booster(workspace: Workspace, halves: pd.DataFrame) -> None:
    pytest.importorskip("xgboost")
    model = {"class": "xgboost.XGBClassifier", "params": {"n_estimators": 20, "max_depth": 3}}
    loopml.train(workspace, _config("cancer@1", model))
    child = loopml.train(workspace, _config("cancer@2", model), from_version="cancer@1")
    assert child.passed, child.reason
    assert load_model(workspace, "cancer@1").bundle.estimator.num_boosted_rounds() == 20
    assert load_model(workspace, "cancer@2").bundle.estimator.num_boosted_rounds() == 40
    assert _auc(workspace, "cancer@2", halves) > 0.95


def test_sgd_partial_fit_continues(workspace: Workspace, halves: pd.DataFrame) -> None:
    loopml.train(workspace, _config("cancer@1", SGD))
    child = loopml.train(workspace, _config("cancer@2", SGD), from_version="cancer@1")
    assert child.passed, child.reason
    old = load_model(workspace, "cancer@1").bundle.estimator
    new = load_model(workspace, "cancer@2").bundle.estimator
    assert type(new).__name__ == "SGDClassifier"
    assert new.t_ > old.t_  # it went on from the parent's state, not from zero
    assert not np.allclose(new.coef_, old.coef_)
    assert _auc(workspace, "cancer@2", halves) > 0.9


def test_a_random_forest_is_refused_before_any_run(
    workspace: Workspace, halves: pd.DataFrame
) -> None:
    loopml.train(workspace, _config("cancer@1", SGD))
    before = workspace.metadata.list_runs()
    forest = {"class": "sklearn.ensemble.RandomForestClassifier", "params": {"n_estimators": 5}}
    with pytest.raises(ConfigError) as err:
        loopml.train(workspace, _config("cancer@2", forest), from_version="cancer@1")
    assert err.value.where["field"] == "model.class"
    assert "RandomForestClassifier" in str(err.value)
    for name in ("lightgbm", "xgboost", "partial_fit"):
        assert name in (err.value.hint or "")
    assert workspace.metadata.list_runs() == before


def test_another_class_than_the_parent_is_refused(
    workspace: Workspace, halves: pd.DataFrame
) -> None:
    pytest.importorskip("lightgbm")
    loopml.train(workspace, _config("cancer@1", LGBM))
    with pytest.raises(ConfigError) as err:
        loopml.train(workspace, _config("cancer@2", SGD), from_version="cancer@1")
    assert err.value.where["field"] == "model.class"
    assert "lightgbm" in str(err.value)


def test_columns_must_match_the_parent(workspace: Workspace, halves: pd.DataFrame) -> None:
    loopml.train(workspace, _config("cancer@1", SGD))
    before = workspace.metadata.list_runs()
    ingest(workspace, halves.drop(columns="mean radius"), "cancer")  # cancer@3
    with pytest.raises(InvalidInputError) as err:
        loopml.train(workspace, _config("cancer@3", SGD), from_version="cancer@1")
    assert err.value.where["column"] == "mean radius"
    assert "mean radius" in str(err.value)
    assert workspace.metadata.list_runs() == before


def test_new_classes_are_refused(workspace: Workspace, halves: pd.DataFrame) -> None:
    loopml.train(workspace, _config("cancer@1", SGD))
    third = halves.assign(target=np.where(halves.index % 3 == 0, 2, halves["target"]))
    ingest(workspace, third, "cancer")
    cfg = _config("cancer@3", SGD, data={"dataset": "cancer@3", "target": "target"})
    with pytest.raises(InvalidInputError, match="never had: 2"):
        loopml.train(workspace, cfg, from_version="cancer@1")


def test_the_command_line_takes_from(
    workspace: Workspace, halves: pd.DataFrame, tmp_path: Path
) -> None:
    from loopml.cli.main import app

    loopml.train(workspace, _config("cancer@1", SGD))
    project = _config("cancer@2", SGD).to_dict()
    path = tmp_path / "loopml.yaml"
    path.write_text(yaml.safe_dump(project))
    args = ["train", "-f", str(path), "--from", "cancer@1", "--workspace", str(workspace.root)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    run = workspace.metadata.list_runs("cancer")[0]
    assert run.params["continued_from"] == "cancer@1"
