"""A version always points at a real run: one registered from Python records its own."""

from __future__ import annotations

import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression

from loopml.data import ingest
from loopml.errors import InvalidInputError, NotFoundError
from loopml.registry import ModelBundle, register_model
from loopml.stores.records import Run
from loopml.train import fit_bundle
from loopml.utils import new_id, utcnow
from loopml.workspace import Workspace


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return load_breast_cancer(as_frame=True).frame.iloc[:, [0, 1, 2, -1]].head(120)


@pytest.fixture(scope="module")
def bundle(frame: pd.DataFrame) -> ModelBundle:
    return fit_bundle(frame, "target", LogisticRegression(max_iter=1000))[0]


def test_without_a_run_id_a_succeeded_run_is_recorded(
    workspace: Workspace, bundle: ModelBundle
) -> None:
    mv = register_model(workspace, "cancer", bundle)
    run = workspace.metadata.get_run(mv.run_id)
    assert (run.name, run.status, run.model_version) == ("cancer", "succeeded", mv.version)
    assert run.params == {"registered_from": "python"}
    assert run.dataset_name is None and mv.metrics == {}
    assert [r.id for r in workspace.metadata.list_runs("cancer")] == [mv.run_id]


def test_the_recorded_run_carries_the_dataset_and_metrics(
    workspace: Workspace, bundle: ModelBundle, frame: pd.DataFrame
) -> None:
    dv = ingest(workspace, frame, "cancer").dataset
    mv = register_model(
        workspace,
        "cancer",
        bundle,
        metrics={"metric": "roc_auc", "holdout": {"roc_auc": 0.97}},
        dataset_name=dv.name,
        dataset_version=dv.version,
    )
    run = workspace.metadata.get_run(mv.run_id)
    assert (run.dataset_name, run.dataset_version) == ("cancer", 1)
    assert run.metrics == mv.metrics == {"metric": "roc_auc", "holdout": {"roc_auc": 0.97}}


def test_an_existing_run_is_used_as_it_is(workspace: Workspace, bundle: ModelBundle) -> None:
    run = Run(id=new_id(), name="cancer", status="succeeded", started_at=utcnow())
    workspace.metadata.add_run(run)
    mv = register_model(workspace, "cancer", bundle, run_id=run.id, metrics={})
    assert mv.run_id == run.id
    assert len(workspace.metadata.list_runs()) == 1


def test_an_unknown_run_id_is_refused_and_nothing_is_registered(
    workspace: Workspace, bundle: ModelBundle
) -> None:
    with pytest.raises(InvalidInputError) as info:
        register_model(workspace, "cancer", bundle, run_id="notebook", metrics={})
    err = info.value
    assert "'notebook'" in str(err) and err.where == {"run": "notebook"}
    assert "run_id" in (err.hint or "") and "loopml runs list" in (err.hint or "")
    assert workspace.metadata.list_model_versions() == []
    assert workspace.metadata.list_runs() == []


@pytest.mark.parametrize(
    ("dataset", "error"),
    [
        ({"dataset_name": "nope", "dataset_version": 1}, NotFoundError),
        ({"dataset_name": "cancer"}, InvalidInputError),
        ({"dataset_version": 1}, InvalidInputError),
    ],
)
def test_a_dataset_that_is_not_there_is_refused(
    workspace: Workspace,
    bundle: ModelBundle,
    dataset: dict[str, object],
    error: type[Exception],
) -> None:
    with pytest.raises(error):
        register_model(workspace, "cancer", bundle, **dataset)  # type: ignore[arg-type]
    assert workspace.metadata.list_model_versions() == []
    assert workspace.metadata.list_runs() == []
