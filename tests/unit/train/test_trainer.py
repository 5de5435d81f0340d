from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes

from loopml.data import ingest
from loopml.errors import ConfigError, InvalidInputError, NotFoundError
from loopml.project import ModelSpec, ProjectConfig
from loopml.registry import load_model
from loopml.train import infer_task, make_estimator, train
from loopml.workspace import Workspace


def _config(**over: object) -> ProjectConfig:
    base: dict = {
        "name": "cancer",
        "data": {"dataset": "cancer", "target": "target"},
        "model": {"class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 2000}},
        "evaluation": {"metric": "roc_auc", "folds": 3, "gate": "roc_auc >= 0.9"},
    }
    base.update(over)
    return ProjectConfig.from_dict(base)


@pytest.fixture
def cancer(workspace: Workspace, tmp_path: Path) -> Workspace:
    path = tmp_path / "cancer.csv"
    load_breast_cancer(as_frame=True).frame.to_csv(path, index=False)
    ingest(workspace, path, "cancer")
    return workspace


def test_train_records_run_registers_and_promotes(cancer: Workspace) -> None:
    steps: list[str] = []
    res = train(cancer, _config(), progress=steps.append)
    assert res.passed
    assert res.promoted_alias == "champion"
    run = cancer.metadata.get_run(res.run.id)
    assert run.status == "succeeded"
    assert run.model_version == 1
    assert run.dataset_name == "cancer"
    assert run.dataset_version == 1
    assert run.metrics["cv"]["roc_auc"]["std"] >= 0
    assert run.metrics["holdout"]["roc_auc"] > 0.95
    assert run.params["project"]["model"]["class"].endswith("LogisticRegression")
    assert any("fold 3/3" in s for s in steps)
    model = load_model(cancer, "cancer")
    assert model.version == 1
    frame = load_breast_cancer(as_frame=True).frame
    p = model.predict(frame)
    assert (p.labels == frame["target"].to_numpy()).mean() > 0.95
    # a second passing run becomes version 2 and takes the alias
    res2 = train(cancer, _config())
    assert res2.model_version is not None
    assert res2.model_version.version == 2
    assert cancer.metadata.get_aliases("cancer") == {"champion": 2}


def test_failed_gate_is_recorded_not_registered(cancer: Workspace) -> None:
    res = train(
        cancer, _config(evaluation={"metric": "roc_auc", "folds": 0, "gate": "roc_auc > 0.99999"})
    )
    assert not res.passed
    assert res.model_version is None
    assert cancer.metadata.get_run(res.run.id).status == "gate_failed"
    assert cancer.metadata.list_model_versions("cancer") == []


def test_lightgbm_and_regression(workspace: Workspace, tmp_path: Path) -> None:
    pytest.importorskip("lightgbm")
    path = tmp_path / "diabetes.parquet"
    load_diabetes(as_frame=True).frame.to_parquet(path)
    ingest(workspace, path, "diabetes")
    cfg = _config(
        name="diabetes",
        data={"dataset": "diabetes", "target": "target"},
        model={"class": "lightgbm.LGBMRegressor", "params": {"n_estimators": 30}},
        evaluation={"metric": "rmse", "folds": 3, "gate": "r2 > 0.1"},
    )
    res = train(workspace, cfg)
    assert res.passed, res.reason
    assert res.model_version is not None
    assert res.model_version.flavor == "lightgbm"
    model = load_model(workspace, "diabetes")
    p = model.predict(load_diabetes(as_frame=True).frame)
    assert p.probabilities is None
    assert np.isfinite(p.labels.astype(float)).all()


def test_bad_inputs_leave_no_run(cancer: Workspace) -> None:
    with pytest.raises(InvalidInputError, match="target column 'nope'"):
        train(cancer, _config(data={"dataset": "cancer", "target": "nope"}))
    with pytest.raises(NotFoundError):
        train(cancer, _config(data={"dataset": "absent", "target": "target"}))
    with pytest.raises(ConfigError, match="unknown model class"):
        train(cancer, _config(model={"class": "sklearn.ensemble.NoSuchForest"}))
    with pytest.raises(ConfigError, match="do not fit"):
        train(
            cancer,
            _config(
                model={"class": "sklearn.linear_model.LogisticRegression", "params": {"bogus": 1}}
            ),
        )
    with pytest.raises(ConfigError, match="not a classifier"):
        train(cancer, _config(model={"class": "sklearn.linear_model.Ridge"}))
    assert cancer.metadata.list_runs() == []


def test_infer_task_and_estimators() -> None:
    assert infer_task(pd.Series([0, 1, 1])) == "classification"
    assert infer_task(pd.Series(["a", "b"])) == "classification"
    assert infer_task(pd.Series(np.linspace(0, 1, 50))) == "regression"
    est = make_estimator(
        ModelSpec("sklearn.ensemble.RandomForestClassifier", {"n_estimators": 3}), "classification"
    )
    assert est.n_estimators == 3
    with pytest.raises(ConfigError, match="predict_proba"):
        make_estimator(ModelSpec("sklearn.svm.LinearSVC"), "classification")


@pytest.mark.parametrize(
    ("over", "field", "suggested"),
    [
        ({"evaluation": {"folds": 3, "gate": "cv.rocauc >= 0.9"}}, "evaluation.gate", "cv.roc_auc"),
        ({"evaluation": {"metric": "acuracy"}}, "evaluation.metric", "accuracy"),
        ({"data": {"dataset": "cancer", "target": "targt"}}, "data.target", "target"),
        ({"features": {"include": ["mean radius", "mean textre"]}}, "features.include", None),
        (
            {"model": {"class": "sklearn.ensemble.RandomForestClassifer"}},
            "model.class",
            "sklearn.ensemble.RandomForestClassifier",
        ),
        (
            {"model": {"class": "sklearn.ensembel.RandomForestClassifier"}},
            "model.class",
            "sklearn.ensemble.RandomForestClassifier",
        ),
        (
            {
                "model": {
                    "class": "sklearn.ensemble.RandomForestClassifier",
                    "params": {"n_estimator": 5},
                }
            },
            "model.params.n_estimator",
            "n_estimators",
        ),
    ],
)
def test_project_mistakes_are_found_before_any_work(
    cancer: Workspace, over: dict, field: str, suggested: str | None
) -> None:
    steps: list[str] = []
    with pytest.raises(ConfigError) as info:
        train(cancer, _config(**over), progress=steps.append)
    err = info.value
    assert err.where["field"] == field
    assert f"Did you mean '{suggested or 'mean texture'}'" in (err.hint or "")
    assert err.exit_code == 2
    assert steps == []  # nothing started
    assert cancer.metadata.list_runs() == []


def test_a_parameter_value_the_estimator_refuses_is_found_before_any_work(
    cancer: Workspace,
) -> None:
    cfg = _config(
        model={"class": "sklearn.ensemble.RandomForestClassifier", "params": {"n_estimators": -3}}
    )
    with pytest.raises(ConfigError, match="n_estimators") as info:
        train(cancer, cfg)
    assert info.value.where["field"] == "model.params"
    assert cancer.metadata.list_runs() == []


def test_training_reads_every_row_of_an_appended_version(
    workspace: Workspace, tmp_path: Path
) -> None:
    """An append version is the parent's rows plus the new ones: training reads them all (it
    read only the version's own folder, i.e. the appended rows, and said nothing)."""
    frame = load_breast_cancer(as_frame=True).frame
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    frame.iloc[:300].to_csv(first, index=False)
    frame.iloc[300:].to_csv(second, index=False)
    ingest(workspace, first, "cancer")
    appended = ingest(workspace, second, "cancer", mode="append").dataset
    assert appended.version == 2 and appended.num_rows == len(frame)
    res = train(workspace, _config())
    rows = res.run.metrics["rows"]
    assert rows["train"] + rows["holdout"] == len(frame)
