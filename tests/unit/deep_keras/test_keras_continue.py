"""`loopml train --from NAME@VERSION` for Keras: the parent's .keras (loaded with safe mode)
is fine-tuned on a new dataset version and recorded as its child; another architecture, or
another builder, is refused naming the field before any run is recorded."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.metrics import roc_auc_score

if importlib.util.find_spec("tensorflow") is None:  # found, not imported: collecting stays fast
    pytest.skip("needs loopml[tensorflow]", allow_module_level=True)

import loopml
from loopml.data import ingest
from loopml.errors import ConfigError
from loopml.project import ProjectConfig
from loopml.registry import load_model
from loopml.workspace import Workspace

HERE = Path(__file__).parent
MLP = "loopml.train.deep.keras.MLPClassifier"
PARAMS = {"hidden": [16], "epochs": 3, "lr": 0.01, "patience": 3, "random_state": 0}


def _config(dataset: str, cls: str, params: dict[str, Any], **over: Any) -> ProjectConfig:
    base: dict[str, Any] = {
        "name": "cancer",
        "data": {"dataset": dataset, "target": "target", "positive": 1},
        "features": {"numeric": {"impute": "median", "scale": "standard"}},
        "model": {"class": cls, "params": params},
        "evaluation": {"metric": "roc_auc", "folds": 0, "gate": "roc_auc >= 0.5"},
    }
    base.update(over)
    return ProjectConfig.from_dict(base)


@pytest.fixture
def halves(workspace: Workspace) -> pd.DataFrame:
    """cancer@1 and cancer@2: two disjoint parts of the data; returns the rows of neither."""
    frame = load_breast_cancer(as_frame=True).frame.sample(frac=1.0, random_state=7)
    frame = frame.reset_index(drop=True)
    holdout, rest = frame.iloc[:114], frame.iloc[114:]
    ingest(workspace, rest.iloc[: len(rest) // 2].reset_index(drop=True), "cancer")
    ingest(workspace, rest.iloc[len(rest) // 2 :].reset_index(drop=True), "cancer")
    return holdout.reset_index(drop=True)


def _proba(ws: Workspace, ref: str, rows: pd.DataFrame) -> np.ndarray:
    p = load_model(ws, ref).predict(rows.drop(columns="target", errors="ignore"))
    assert p.probabilities is not None
    return p.probabilities


def test_a_keras_mlp_continues_from_its_weights_as_the_parents_child(
    workspace: Workspace, halves: pd.DataFrame
) -> None:
    parent = loopml.train(workspace, _config("cancer@1", MLP, PARAMS))
    assert parent.passed, parent.reason
    # lr 0: a continuation keeps the parent's weights exactly (a fresh start would not)
    still = {**PARAMS, "epochs": 1, "lr": 0.0}
    child = loopml.train(workspace, _config("cancer@2", MLP, still), from_version="cancer@1")
    assert child.passed, child.reason
    assert child.model_version is not None and child.model_version.version == 2
    np.testing.assert_array_equal(
        _proba(workspace, "cancer@2", halves), _proba(workspace, "cancer@1", halves)
    )
    run = workspace.metadata.get_run(child.run.id)
    assert run.parent_id == parent.run.id
    assert run.params["continued_from"] == "cancer@1"
    assert (run.params["parent_dataset"], run.params["dataset"]) == ("cancer@1", "cancer@2")
    assert (run.tags["parent_dataset"], run.tags["dataset"]) == ("cancer@1", "cancer@2")
    assert (run.dataset_name, run.dataset_version) == ("cancer", 2)
    assert child.model_version.dataset_version == 2
    old, new = load_model(workspace, "cancer@1"), load_model(workspace, "cancer@2")
    assert new.bundle.flavor == "keras" and new.signature.inputs == old.signature.inputs
    assert list(new.signature.classes or []) == list(old.signature.classes or [])
    # epochs on top, on the new rows: the weights move, the model stays good
    more = loopml.train(workspace, _config("cancer@2", MLP, PARAMS), from_version="cancer@1")
    assert more.passed, more.reason
    moved = _proba(workspace, "cancer@3", halves)
    assert not np.allclose(moved, _proba(workspace, "cancer@1", halves))
    assert roc_auc_score(halves["target"], moved[:, 1]) > 0.9
    steps = workspace.metadata.list_steps(more.run.id, "epoch.loss")
    assert 1 <= len(steps) <= 3  # the continued fit's own epochs


def test_a_keras_regressor_keeps_the_parents_target_scale(workspace: Workspace) -> None:
    frame = load_diabetes(as_frame=True).frame
    ingest(workspace, frame.iloc[:220].reset_index(drop=True), "diabetes")
    ingest(workspace, frame.iloc[220:].reset_index(drop=True), "diabetes")
    cls = "loopml.train.deep.keras.MLPRegressor"

    def config(dataset: str, params: dict[str, Any]) -> ProjectConfig:
        return ProjectConfig.from_dict(
            {
                "name": "diabetes",
                "data": {"dataset": dataset, "target": "target"},
                "model": {"class": cls, "params": params},
                "evaluation": {"metric": "rmse", "folds": 0},
            }
        )

    loopml.train(workspace, config("diabetes@1", {"hidden": [8], "epochs": 2, "random_state": 0}))
    still = {"hidden": [8], "epochs": 1, "lr": 0.0, "random_state": 0}
    child = loopml.train(workspace, config("diabetes@2", still), from_version="diabetes@1")
    assert child.model_version is not None
    rows = frame.drop(columns="target").head(30)
    old, new = load_model(workspace, "diabetes@1"), load_model(workspace, "diabetes@2")
    # the second half has another mean and spread: only the parent's scale gives its answers
    assert new.bundle.estimator.y_mean == old.bundle.estimator.y_mean
    assert new.bundle.estimator.y_scale == old.bundle.estimator.y_scale
    np.testing.assert_array_equal(new.predict(rows).labels, old.predict(rows).labels)


def test_another_architecture_is_refused_naming_the_field_before_any_run(
    workspace: Workspace, halves: pd.DataFrame
) -> None:
    loopml.train(workspace, _config("cancer@1", MLP, PARAMS))
    before = workspace.metadata.list_runs()
    wide = {**PARAMS, "hidden": [32]}
    with pytest.raises(ConfigError) as err:
        loopml.train(workspace, _config("cancer@2", MLP, wide), from_version="cancer@1")
    assert err.value.where == {"field": "model.params", "option": "--from"}
    assert "hidden=[16] (not [32])" in str(err.value)
    dropped = {**PARAMS, "dropout": 0.2}
    with pytest.raises(ConfigError, match=r"dropout=0.0 \(not 0.2\)"):
        loopml.train(workspace, _config("cancer@2", MLP, dropped), from_version="cancer@1")
    assert workspace.metadata.list_runs() == before  # nothing recorded
    assert [v.version for v in workspace.metadata.list_model_versions("cancer")] == [1]


def test_a_users_model_continues_and_another_builder_or_width_is_refused(
    workspace: Workspace, halves: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(HERE))
    cls = "loopml.train.deep.keras.ModelClassifier"
    trust = {"trust": ["keras_user_models.wide"]}

    def user(dataset: str, width: int, **extra: Any) -> ProjectConfig:
        params = {
            "model": "keras_user_models.wide",
            "args": {"width": width},
            "epochs": 5,
            "lr": 0.01,
            "random_state": 0,
            **extra,
        }
        cfg = _config(dataset, cls, params)
        return ProjectConfig.from_dict(
            {**cfg.to_dict(), "model": {**cfg.to_dict()["model"], **trust}}
        )

    parent = loopml.train(workspace, user("cancer@1", 8))
    assert parent.passed, parent.reason
    child = loopml.train(workspace, user("cancer@2", 8, lr=0.0), from_version="cancer@1")
    assert child.passed, child.reason
    np.testing.assert_array_equal(
        _proba(workspace, "cancer@2", halves), _proba(workspace, "cancer@1", halves)
    )
    before = workspace.metadata.list_runs()
    with pytest.raises(ConfigError) as err:
        loopml.train(workspace, user("cancer@2", 16), from_version="cancer@1")
    assert err.value.where["field"] == "model.params"
    assert "units=8 (not 16)" in str(err.value)
    # the parent was built by the user's function; loopml's MLP cannot continue it
    with pytest.raises(ConfigError) as err:
        loopml.train(workspace, _config("cancer@2", MLP, PARAMS), from_version="cancer@1")
    assert err.value.where["field"] == "model.params.model"
    assert "keras_user_models.wide" in str(err.value)
    assert workspace.metadata.list_runs() == before


def test_the_command_line_fine_tunes_a_keras_version(
    workspace: Workspace,
    halves: pd.DataFrame,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from loopml.cli.main import main

    loopml.train(workspace, _config("cancer@1", MLP, PARAMS))
    path = tmp_path / "loopml.yaml"
    path.write_text(yaml.safe_dump(_config("cancer@2", MLP, {**PARAMS, "epochs": 1}).to_dict()))
    args = ["train", "-f", str(path), "--from", "cancer@1", "--workspace", str(workspace.root)]
    assert main(args) == 0, capsys.readouterr().err
    run = workspace.metadata.list_runs("cancer")[0]
    assert run.params["continued_from"] == "cancer@1" and run.parent_id is not None
    path.write_text(yaml.safe_dump(_config("cancer@2", MLP, {**PARAMS, "hidden": [4]}).to_dict()))
    capsys.readouterr()
    assert main(args) != 0
    err = capsys.readouterr().err
    assert "hidden=[16] (not [4])" in err and "model.params" in err and "Traceback" not in err
