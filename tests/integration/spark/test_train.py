"""Training on Spark (local[2]): XGBoost through xgboost.spark registered as an ordinary
version; cross-validation folds as Spark tasks, equal to the local CV; the retraining job
over the newest dataset version, from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier

from loopml.cli.main import main
from loopml.data.ingest import ingest
from loopml.evaluate.cv import cross_validate as local_cross_validate
from loopml.evaluate.split import fold_indices
from loopml.features.spec import prepare_frame, resolve_kinds
from loopml.project import FeatureSpec
from loopml.registry import load_model, register_model, set_alias
from loopml.serve import start_background_server
from loopml.workspace import Workspace

pytestmark = pytest.mark.slow


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "b": rng.uniform(0, 5, size=n),
            "kind": rng.choice(["x", "y", "z"], n),
        }
    )
    df.loc[df.index % 31 == 0, "a"] = np.nan
    df["label"] = np.where(df.a.fillna(0) + (df.kind == "x") + rng.normal(0, 0.3, n) > 0.5, 1, 0)
    return df


def _prepared(df: pd.DataFrame) -> tuple[FeatureSpec, dict[str, str], pd.DataFrame, pd.Series]:
    spec = FeatureSpec.from_config({"numeric": {"impute": "median"}})
    kinds = resolve_kinds(spec, df, "label")
    return spec, kinds, prepare_frame(df, kinds), df["label"].reset_index(drop=True)


def test_xgboost_on_spark_is_an_ordinary_version(spark: Any, workspace: Workspace) -> None:
    import xgboost

    from loopml.engines.spark.train import fit_xgboost, spark_model_predictions

    df = _frame(600, 0)
    spec, kinds, x, y = _prepared(df)
    estimator = xgboost.XGBClassifier(n_estimators=30, max_depth=3, random_state=0)
    bundle, spark_model = fit_xgboost(
        spark, spec, kinds, estimator, x, y, task="classification", target="label"
    )
    assert bundle.flavor == "xgboost"
    mv = register_model(workspace, "boost", bundle)
    set_alias(workspace, "boost", "champion", mv.version)
    loaded = load_model(workspace, "boost")
    assert loaded.record.flavor == "xgboost"
    mine = loaded.predict(x).probabilities
    theirs = spark_model_predictions(spark_model, spark, loaded.bundle.features.transform(x))
    assert mine is not None and theirs.shape == mine.shape
    np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-6)
    # and the ordinary server answers the same
    rows = [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
        for r in x.iloc[:50].to_dict("records")
    ]
    server = start_background_server(workspace, reload_interval=0, log_predictions=False)
    try:
        resp = httpx.post(
            f"{server.url}/v1/models/boost:predict", json={"instances": rows}, timeout=30
        )
    finally:
        server.stop()
    assert resp.status_code == 200, resp.text
    served = np.array([p["probabilities"]["1"] for p in resp.json()["predictions"]])
    np.testing.assert_allclose(served, theirs[:50, 1], rtol=0, atol=1e-6)


def test_folds_as_spark_tasks_equal_the_local_cross_validation(spark: Any) -> None:
    from loopml.engines.spark.train import cross_validate, fold_scorer

    df = _frame(400, 1)
    spec, kinds, x, y = _prepared(df)
    forest = RandomForestClassifier(n_estimators=20, max_depth=4, random_state=7)
    scorer = fold_scorer(
        spec, kinds, forest, task="classification", target="label", flavor="sklearn", positive=1
    )
    splits = fold_indices(
        y, spec=_split_spec(), n_folds=4, task="classification", seed=3, column=None
    )
    local = local_cross_validate(
        x, y, scorer, n_folds=4, task="classification", seed=3, splits=splits
    )
    spread, per_fold = cross_validate(spark, x, y, scorer, splits=splits)
    assert len(per_fold) == 4 and sorted(spread) == sorted(local)
    for metric, summary in local.items():
        for key, value in summary.items():
            assert spread[metric][key] == pytest.approx(value, abs=1e-12), (metric, key)


def _split_spec() -> Any:
    from loopml.project.evaluation import SplitSpec

    return SplitSpec()


PROJECT = """
name: boosted
data: {dataset: events, target: label}
features: {numeric: {impute: median}}
model: {class: xgboost.XGBClassifier, params: {n_estimators: 20, max_depth: 3}}
evaluation: {metric: roc_auc, folds: 3, holdout: 0.25, gate: "roc_auc >= 0.6"}
registry: {alias: champion}
"""


def test_the_retraining_job_trains_on_the_newest_version(
    spark: Any, workspace: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for version, seed in ((1, 2), (2, 3)):
        path = tmp_path / f"events-{version}.parquet"
        _frame(400, seed).to_parquet(path)
        ingest(workspace, str(path), "events")
    project = tmp_path / "loopml.yaml"
    project.write_text(PROJECT)
    capsys.readouterr()
    code = main(
        ["train", "--engine", "spark", "-f", str(project), "-w", str(workspace.root), "--json"]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    doc = json.loads(out.out)
    run = doc["run"]
    assert run["dataset_version"] == 2 and run["params"]["engine"]["name"] == "spark"
    assert set(run["metrics"]["cv"]) >= {"roc_auc"} and doc["promoted_alias"] == "champion"
    mv = load_model(workspace, "boosted")
    assert mv.record.flavor == "xgboost" and mv.record.dataset_version == 2
    # cron's view: one line, exit 0
    code = main(["train", "--engine", "spark", "-f", str(project), "-w", str(workspace.root)])
    out = capsys.readouterr()
    assert code == 0, out.err
    lines = out.out.strip().splitlines()
    assert len(lines) == 1 and "on events@2 (Spark" in lines[0] and "boosted@2" in lines[0]


def test_options_the_spark_trainer_does_not_run_are_usage_errors(
    workspace: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "loopml.yaml"
    project.write_text(PROJECT)
    code = main(
        ["train", "--engine", "spark", "--search", "-f", str(project), "-w", str(workspace.root)]
    )
    assert code == 2 and "--search is not run by --engine spark" in capsys.readouterr().err
    code = main(["train", "--engine", "nope", "-f", str(project), "-w", str(workspace.root)])
    assert code == 2 and "unknown engine 'nope'" in capsys.readouterr().err


def test_the_spark_trainer_equals_the_local_trainer_for_scikit_learn(
    spark: Any, workspace: Workspace, tmp_path: Path
) -> None:
    from loopml.engines.spark.train import train_on_spark
    from loopml.project import ProjectConfig
    from loopml.train import train

    path = tmp_path / "events.parquet"
    _frame(300, 5).to_parquet(path)
    ingest(workspace, str(path), "events")
    project = tmp_path / "loopml.yaml"
    project.write_text(
        PROJECT.replace("boosted", "linear").replace(
            "{class: xgboost.XGBClassifier, params: {n_estimators: 20, max_depth: 3}}",
            "{class: sklearn.linear_model.LogisticRegression, params: {max_iter: 500}}",
        )
    )
    config = ProjectConfig.from_file(project)
    local = train(workspace, config)
    spread = train_on_spark(workspace, config, spark=spark)
    assert spread.run.params["engine"]["name"] == "spark"
    for metric, summary in local.run.metrics["cv"].items():
        for key, value in summary.items():
            assert spread.run.metrics["cv"][metric][key] == pytest.approx(value, abs=1e-12)
    assert spread.run.metrics["holdout"] == pytest.approx(local.run.metrics["holdout"])
    assert spread.passed and spread.model_version is not None
    assert spread.model_version.flavor == "sklearn"
