"""A Keras fine-tune (``loopml train --from``) goes on with the parent's optimizer: Adam's
step count and moments are the parent's, the learning rate this run's; a parent without
an optimizer state starts a fresh Adam, saying so."""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

if importlib.util.find_spec("tensorflow") is None:  # found, not imported: collecting stays fast
    pytest.skip("needs loopml[tensorflow]", allow_module_level=True)

import loopml
from loopml.data import ingest
from loopml.project import ProjectConfig
from loopml.registry import load_model
from loopml.workspace import Workspace

MLP = "loopml.train.deep.keras.MLPClassifier"
# no validation split and no early stopping: every epoch takes the same number of steps
PARAMS = {"hidden": [8], "epochs": 2, "lr": 0.01, "batch_size": 32, "random_state": 0,
          "validation_fraction": 0.0}  # fmt: skip


def _config(dataset: str, params: dict[str, Any]) -> ProjectConfig:
    return ProjectConfig.from_dict(
        {
            "name": "cancer",
            "data": {"dataset": dataset, "target": "target", "positive": 1},
            "model": {"class": MLP, "params": params},
            "evaluation": {
                "metric": "roc_auc",
                "folds": 0,
                "holdout": 0.2,
                "gate": "roc_auc >= 0",
                "refit": False,  # the registered model is the fit whose steps are recorded
            },
        }
    )


def _iterations(ws: Workspace, run_id: str) -> list[float]:
    return [s.value for s in ws.metadata.list_steps(run_id, "epoch.iterations")]


def test_a_fine_tune_continues_the_parents_adam_state(workspace: Workspace) -> None:
    frame = load_breast_cancer(as_frame=True).frame.sample(n=200, random_state=3)
    frame = frame.reset_index(drop=True)
    ingest(workspace, frame.iloc[:100].reset_index(drop=True), "cancer")
    ingest(workspace, frame.iloc[100:].reset_index(drop=True), "cancer")
    parent = loopml.train(workspace, _config("cancer@1", PARAMS))
    assert parent.passed, parent.reason
    steps = -(-80 // 32)  # 80 training rows (the holdout is 20), batches of 32
    assert _iterations(workspace, parent.run.id) == [steps, 2 * steps]
    child_params = {**PARAMS, "epochs": 1, "lr": 0.005}
    child = loopml.train(workspace, _config("cancer@2", child_params), from_version="cancer@1")
    assert child.passed, child.reason
    # the step count goes on from the parent's: the parent's plus the new steps
    assert _iterations(workspace, child.run.id) == [3 * steps]
    before = load_model(workspace, "cancer@1").bundle.estimator.optimizer_state()
    after = load_model(workspace, "cancer@2").bundle.estimator.optimizer_state()
    assert before is not None and after is not None
    assert before[0] == after[0] == "Adam"
    by_role = {p.rsplit("/", 1)[-1]: v for p, v in after[1][:2]}
    assert int(by_role["iteration"]) == 3 * steps
    assert float(by_role["learning_rate"]) == pytest.approx(0.005)  # this run's lr
    # the moments went on from the parent's (a fresh Adam after 3 steps has others)
    fresh = {**child_params, "validation_fraction": 0.0}
    alone = loopml.train(workspace, _config("cancer@2", fresh))
    assert alone.passed and _iterations(workspace, alone.run.id) == [steps]


def test_a_parent_without_an_optimizer_state_starts_adam_afresh_saying_so() -> None:
    from loopml.registry.flavors.keras import KerasModel, keras_module
    from loopml.train.deep.keras import FineTuneWarning, MLPClassifier

    frame = load_breast_cancer(as_frame=True).frame.head(64)
    x, y = frame.drop(columns="target").to_numpy(), frame["target"].to_numpy()
    fitted = MLPClassifier(**{**PARAMS, "epochs": 1}).fit(x, y)
    keras = keras_module()
    bare = keras.Sequential.from_config(fitted.model_.model.get_config())  # no optimizer
    bare.set_weights(fitted.model_.model.get_weights())
    init = KerasModel(bare, "classification")
    with pytest.warns(FineTuneWarning, match="holds no optimizer state: Adam starts afresh"):
        again = MLPClassifier(**{**PARAMS, "epochs": 1}).fit(x, y, init=init, classes=[0, 1])
    assert again.notes_ and "afresh" in again.notes_[0]
    assert [row["iterations"] for row in again.history_] == [2.0]  # 64 rows, batches of 32
    # an in-process parent carries its optimizer: its 2 steps, then 2 more
    more = MLPClassifier(**{**PARAMS, "epochs": 1}).fit(x, y, init=fitted.model_, classes=[0, 1])
    assert more.notes_ == [] and [row["iterations"] for row in more.history_] == [4.0]
    assert isinstance(pd.DataFrame(more.history_), pd.DataFrame)
    assert np.isfinite(more.predict_proba(x)).all()


def test_the_moments_and_step_count_are_the_parents_the_learning_rate_this_runs() -> None:
    from loopml.registry.flavors.keras import keras_module
    from loopml.train.deep.keras import MLPClassifier, continue_optimizer

    frame = load_breast_cancer(as_frame=True).frame.head(64)
    x, y = frame.drop(columns="target").to_numpy(), frame["target"].to_numpy()
    parent = MLPClassifier(**{**PARAMS, "epochs": 1}).fit(x, y).model_
    keras = keras_module()
    net = keras.Sequential.from_config(parent.model.get_config())
    net.compile(optimizer=keras.optimizers.Adam(learning_rate=0.25), loss="mse")
    assert continue_optimizer(net, parent) == []
    was = parent.optimizer_state()
    assert was is not None
    for var, (path, value) in zip(net.optimizer.variables, was[1], strict=True):
        now = keras.ops.convert_to_numpy(var)
        if path.endswith("learning_rate"):
            assert float(now) == pytest.approx(0.25)
        else:
            np.testing.assert_array_equal(now, value)
    assert int(keras.ops.convert_to_numpy(net.optimizer.iterations)) == 2
