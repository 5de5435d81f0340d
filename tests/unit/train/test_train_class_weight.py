"""``model.class_weight`` for estimators without a class_weight parameter: applied as per-row
sample weights in their fit (XGBoost, gradient boosting, a Pipeline's last step), recorded
on the run, the same in cross-validation, search and the final fit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.utils.class_weight import compute_sample_weight

from loopml.data import ingest
from loopml.errors import ConfigError
from loopml.project import ProjectConfig
from loopml.train import train
from loopml.train.imbalance import RowWeights, weigh_classes
from loopml.workspace import Workspace

GB = {"class": "sklearn.ensemble.GradientBoostingClassifier", "params": {"n_estimators": 30}}
XGB = {"class": "xgboost.XGBClassifier", "params": {"n_estimators": 30, "max_depth": 3}}


@pytest.fixture
def cancer(workspace: Workspace, tmp_path: Path) -> Workspace:
    path = tmp_path / "cancer.csv"
    load_breast_cancer(as_frame=True).frame.to_csv(path, index=False)
    ingest(workspace, path, "cancer")
    return workspace


def _config(model: dict[str, Any], **evaluation: Any) -> ProjectConfig:
    return ProjectConfig.from_dict(
        {
            "name": "cancer",
            "data": {"dataset": "cancer", "target": "target", "positive": 0},
            "model": model,
            "evaluation": {"metric": "roc_auc", "folds": 0, "bootstrap": 0, **evaluation},
            "registry": {"alias": None},
        }
    )


def test_row_weights_are_scikit_learns() -> None:
    y = np.array(["a", "b", "b", "b", "c", "c"])
    np.testing.assert_allclose(RowWeights("balanced").of(y), compute_sample_weight("balanced", y))
    np.testing.assert_allclose(RowWeights({"a": 4.0, "c": 0.5}).of(y), [4, 1, 1, 1, 0.5, 0.5])


@pytest.mark.parametrize("model", [XGB, GB], ids=["xgboost", "gradient-boosting"])
def test_class_weight_reaches_a_model_without_the_parameter(
    cancer: Workspace, model: dict[str, Any]
) -> None:
    pytest.importorskip("xgboost")
    plain = train(cancer, _config(model))
    weighted = train(cancer, _config({**model, "class_weight": {0: 20}}))
    assert weighted.run.params["class_weight"] == {
        "applied_as": "sample_weight",
        "weights": {0: 20},
    }
    assert "class_weight" not in plain.run.params
    # weighing the positive class up flags more of it at the default cut
    rec_w = weighted.run.metrics["holdout"]["recall"]
    rec_p = plain.run.metrics["holdout"]["recall"]
    assert rec_w > rec_p or rec_w == 1.0
    assert weighted.run.metrics["holdout"]["precision"] < plain.run.metrics["holdout"]["precision"]


def test_class_weight_in_a_pipeline_goes_to_its_last_step() -> None:
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = Pipeline([("scale", StandardScaler()), ("gb", GradientBoostingClassifier())])
    est, rows = weigh_classes(pipe, "balanced", [0, 1], "loopml.yaml")
    assert est is pipe and rows == RowWeights("balanced")
    from loopml.registry.flavors.base import weight_kwargs

    w = np.ones(3)
    assert weight_kwargs(pipe, w) == {"gb__sample_weight": w}


def test_continuing_with_row_weights_is_refused_before_any_run(cancer: Workspace) -> None:
    pytest.importorskip("xgboost")
    first = train(cancer, _config(XGB))
    assert first.model_version is not None
    runs = len(cancer.metadata.list_runs("cancer"))
    with pytest.raises(ConfigError) as err:
        train(cancer, _config({**XGB, "class_weight": "balanced"}), from_version="cancer@1")
    assert err.value.where["field"] == "model.class_weight"
    assert len(cancer.metadata.list_runs("cancer")) == runs
