"""``policy.data.weight``: the closed loop's retrains weigh their rows (recency by row order,
or by time: the base dataset's column, the prediction time of labelled traffic)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from loopml.data import ingest
from loopml.data.ingest import load_table
from loopml.errors import ConfigError
from loopml.project.config import ProjectConfig
from loopml.train import train
from loopml.workspace import Workspace

sys.path.insert(0, str(Path(__file__).parent))
from test_watch_loop import _serve, _world

from loopml.pipeline.loop import run_once


def _config(weight: Any) -> ProjectConfig:
    return ProjectConfig.from_dict(
        {
            "name": "shop",
            "data": {"dataset": "shop", "target": "y", "task": "classification"},
            "features": {"include": ["a", "b"]},
            "model": {"class": "sklearn.linear_model.LogisticRegression"},
            "evaluation": {"metric": "roc_auc", "folds": 0, "holdout": 0.2, "bootstrap": 0},
            "policy": {
                "trigger": {"on": "decay", "drop": 0.05, "min_labels": 100},
                "data": {"window": "all", "weight": weight},
                "challenger": {"evaluate_on": 0.3, "min_rows": 50, "refit": False},
                "rollout": {"mode": "direct"},
            },
        }
    )


@pytest.fixture
def champion(workspace: Workspace) -> Workspace:
    base = _world(600, 0, by="a")
    base["when"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(600), "min")
    ingest(workspace, base, "shop")
    assert train(workspace, _config(None)).promoted_alias == "champion"
    return workspace


def _retrain_run(ws: Workspace) -> Any:
    runs = [r for r in ws.metadata.list_runs("shop") if r.dataset_name == "shop-loop"]
    assert len(runs) == 1
    return runs[0]


def test_the_policy_parses_its_weight() -> None:
    spec = _config({"recency": {"half_life": 50}}).policy
    assert spec is not None and spec.data.weight is not None
    assert spec.data.weight.field == "policy.data.weight"
    assert spec.to_dict()["data"]["weight"] == {"recency": {"half_life": 50}}
    with pytest.raises(ConfigError) as err:
        _config({"recency": {"half_life": "3 days"}})
    assert err.value.where["field"] == "policy.data.weight.recency.half_life"


def test_a_retrain_weighs_rows_by_their_order(champion: Workspace) -> None:
    _serve(champion, _world(800, 2, by="b"))
    actions = run_once(champion, _config({"recency": {"half_life": 50}}))
    assert [a.kind for a in actions] == ["retrain", "rollout", "promote"], actions
    weight = _retrain_run(champion).params["weight"]
    assert weight["field"] == "policy.data.weight" and weight["recency"] == {"half_life": 50}
    assert weight["rows"] == 600 + 560 and weight["effective_rows"] < 150  # 2 x 50 / ln 2


def test_a_time_weight_dates_traffic_by_its_prediction_time(champion: Workspace) -> None:
    _serve(champion, _world(800, 2, by="b"))
    actions = run_once(champion, _config({"recency": {"time": "when", "half_life": "1d"}}))
    assert [a.kind for a in actions] == ["retrain", "rollout", "promote"], actions
    run = _retrain_run(champion)
    assert run.params["weight"]["recency"]["time"] == "when"
    frame = load_table(champion, "shop-loop", run.dataset_version).to_pandas()
    assert frame["when"].notna().all() and len(frame) == 600 + 560
    # the base rows keep their 2024 times; the traffic's are when it was predicted (now)
    assert frame["when"].iloc[:600].max() < pd.Timestamp("2025-01-01")
    assert frame["when"].iloc[600:].min() > pd.Timestamp("2025-01-01")
    # January 2024 is hundreds of half-lives old: only the traffic's rows count
    assert run.params["weight"]["effective_rows"] <= 560
