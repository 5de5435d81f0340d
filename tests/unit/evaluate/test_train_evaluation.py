"""Evaluation through `train`: declared splits, confusion matrix, CIs, slices, reproducibility."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from loopml.data import ingest
from loopml.errors import ConfigError, InvalidInputError
from loopml.project import ProjectConfig
from loopml.train import train
from loopml.workspace import Workspace


@pytest.fixture
def cancer(workspace: Workspace, tmp_path: Path) -> Workspace:
    """Breast cancer with a timestamp (one row per hour), a patient group and a site."""
    frame = load_breast_cancer(as_frame=True).frame
    rng = np.random.default_rng(0)
    frame["ts"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(len(frame)), unit="h")
    frame["patient"] = rng.integers(0, 60, len(frame))
    frame["site"] = rng.choice(["north", "south", "east"], len(frame))
    path = tmp_path / "cancer.parquet"
    frame.to_parquet(path, index=False)
    ingest(workspace, path, "cancer")
    return workspace


def _config(evaluation: dict, **over: object) -> ProjectConfig:
    base: dict = {
        "name": "cancer",
        "data": {"dataset": "cancer", "target": "target"},
        "features": {"exclude": ["patient", "site"]},
        "model": {"class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 3000}},
        "evaluation": {"metric": "roc_auc", "folds": 3, "bootstrap": 100, **evaluation},
        "registry": {"alias": None},
    }
    base.update(over)
    return ProjectConfig.from_dict(base)


def test_time_split_trains_on_the_past_and_drops_the_split_column(cancer: Workspace) -> None:
    steps: list[str] = []
    config = _config({"split": {"kind": "time", "column": "ts", "gap": "1d"}})
    res = train(cancer, config, progress=steps.append)
    m = res.run.metrics
    assert m["split"] == {"kind": "time", "column": "ts", "gap": "1d"}
    # the latest 20% is the holdout; a day (24 rows) is dropped before it
    assert m["rows"]["holdout"] == 114
    assert m["rows"]["train"] == 569 - 114 - 24
    assert any("split column 'ts'" in s and "not used as a feature" in s for s in steps)
    assert res.model_version is not None
    inputs = [f["name"] for f in res.model_version.signature["inputs"]]
    assert "ts" not in inputs
    assert "mean radius" in inputs
    assert set(m["cv"]) >= {"roc_auc", "accuracy"}
    lo, hi = m["holdout_ci"]["roc_auc"]
    assert lo <= m["holdout"]["roc_auc"] <= hi
    assert m["bootstrap"] == {"resamples": 100, "level": 0.95, "seed": 42}
    cm = m["confusion_matrix"]
    assert cm["labels"] == [0, 1]
    assert sum(map(sum, cm["matrix"])) == 114


def test_group_split_and_slices_are_recorded_and_flagged(cancer: Workspace) -> None:
    steps: list[str] = []
    config = _config(
        {
            "split": {"kind": "group", "column": "patient"},
            "slices": ["site", {"column": "mean radius", "bins": 3}],
            "metric": "accuracy",
        }
    )
    res = train(cancer, config, progress=steps.append)
    s = res.run.metrics["slices"]
    assert s["metric"] == "accuracy"
    assert s["rule"] == {"worse_by": 0.05, "min_rows": 30}
    assert {r["slice"] for r in s["columns"]["site"]} == {"north", "south", "east"}
    assert sum(r["rows"] for r in s["columns"]["site"]) == res.run.metrics["rows"]["holdout"]
    assert len(s["columns"]["mean radius"]) == 3
    for rows in s["columns"].values():
        for r in rows:
            assert r["flagged"] == (r["delta"] < -0.05 and r["rows"] >= 30)
    for f in s["flagged"]:
        assert any(f"slice {f['column']}={f['slice']}" in line for line in steps)


def test_same_file_data_and_seed_give_the_same_metrics(cancer: Workspace) -> None:
    config = _config(
        {"slices": ["site"], "seed": 7},
        model={"class": "sklearn.ensemble.RandomForestClassifier", "params": {"n_estimators": 20}},
    )
    runs = [train(cancer, config).run for _ in range(2)]
    # paths in the metrics name the run's own id; everything else is the same
    first, second = (json.loads(json.dumps(r.metrics).replace(r.id, "RUN")) for r in runs)
    assert first == second
    assert runs[0].params["estimator"]["random_state"] == 7  # from evaluation.seed
    assert first["holdout"]["roc_auc"] > 0.9


def test_split_mistakes_are_found_before_any_work(cancer: Workspace) -> None:
    before = len(cancer.metadata.list_runs())
    with pytest.raises(ConfigError) as e:
        train(cancer, _config({"split": {"kind": "time", "column": "tss"}}))
    assert e.value.where["field"] == "evaluation.split.column"
    assert "Did you mean 'ts'" in str(e.value.hint)
    with pytest.raises(ConfigError, match="not a time or a number"):
        train(cancer, _config({"split": {"kind": "time", "column": "site"}}))
    with pytest.raises(ConfigError, match="groups"):
        train(cancer, _config({"split": {"kind": "group", "column": "site"}, "folds": 5}))
    with pytest.raises(ConfigError) as e:
        train(cancer, _config({"slices": ["sitee"]}))
    assert e.value.where["field"] == "evaluation.slices"
    with pytest.raises(InvalidInputError, match="no training rows"):  # 569 hours of data
        train(cancer, _config({"split": {"kind": "time", "column": "ts", "gap": "60d"}}))
    assert len(cancer.metadata.list_runs()) == before


def test_evaluate_on_other_data_measures_the_slices_on_those_rows(cancer: Workspace) -> None:
    """Defect: ``evaluate --data`` showed the run's holdout slices, not the given rows'."""
    from loopml.train.evaluation import evaluate_model

    res = train(cancer, _config({"slices": ["site"], "metric": "accuracy", "folds": 0}))
    assert res.model_version is not None
    frame = cancer.lake.read_table(cancer.metadata.get_dataset_version("cancer").path)
    north = frame.to_pandas().query("site == 'north'")
    ev = evaluate_model(cancer, f"cancer@{res.model_version.version}", north, permutation=False)
    slices = ev.doc["slices"]["columns"]["site"]
    assert [(r["slice"], r["rows"]) for r in slices] == [("north", len(north))]
    assert slices[0]["value"] == pytest.approx(ev.metrics["accuracy"])
    held_out = res.run.metrics["slices"]["columns"]["site"]
    assert sum(r["rows"] for r in held_out) == res.run.metrics["rows"]["holdout"]
