"""Names on every path that turns one into a folder or a key: the same checks, and one
spelling per name whatever its case (a second "Cancer" would share cancer's folder)."""

from __future__ import annotations

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from loopml.data import ingest
from loopml.errors import ConflictError, InvalidInputError
from loopml.predictions import read_prediction_log
from loopml.registry import register_model, resolve_version, set_alias
from loopml.serve.runtime import resolve_models
from loopml.train import fit_bundle
from loopml.workspace import Workspace
from tests.unit.registry.crafted import cancer_frame

BAD_NAMES = ["cancer\n", "cancer\r\n", "can\x00cer", "%2e%2e", "a#b", "C:", "con", "nul.txt", "x."]


def _table(seed: int = 0) -> pd.DataFrame:
    return cancer_frame().sample(frac=1.0, random_state=seed).reset_index(drop=True)


def test_a_dataset_named_like_another_but_for_case_is_refused_before_any_write(
    workspace: Workspace,
) -> None:
    first = ingest(workspace, _table(), "cancer").dataset
    before = workspace.lake.list("datasets/")
    for other in ("Cancer", "CANCER"):
        with pytest.raises(ConflictError, match="'cancer'") as info:
            ingest(workspace, _table(1), other)
        assert info.value.where == {"dataset": other, "existing": "cancer"}
    assert workspace.lake.list("datasets/") == before  # nothing written, nothing deleted
    assert [d.name for d in workspace.metadata.list_dataset_versions()] == ["cancer"]
    assert workspace.metadata.get_dataset_version("cancer") == first
    assert ingest(workspace, _table(2), "cancer").dataset.version == 2


def test_a_model_named_like_another_but_for_case_is_refused(workspace: Workspace) -> None:
    bundle, _ = fit_bundle(cancer_frame(), "target", LogisticRegression(max_iter=1000))
    register_model(workspace, "cancer", bundle)
    for other in ("CANCER", "Cancer"):
        with pytest.raises(ConflictError, match="'cancer'"):
            register_model(workspace, other, bundle)
    assert {m.name for m in workspace.metadata.list_model_versions()} == {"cancer"}
    assert register_model(workspace, "cancer", bundle).version == 2


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_are_refused_on_every_path(workspace: Workspace, name: str) -> None:
    bundle, _ = fit_bundle(cancer_frame(), "target", LogisticRegression(max_iter=1000))
    mv = register_model(workspace, "cancer", bundle)
    with pytest.raises(InvalidInputError):
        ingest(workspace, _table(), name)
    with pytest.raises(InvalidInputError):
        register_model(workspace, name, bundle)
    with pytest.raises(InvalidInputError):
        set_alias(workspace, "cancer", name, mv.version)
    with pytest.raises(InvalidInputError):
        resolve_version(workspace, f"cancer@{name}")
    with pytest.raises(InvalidInputError):
        resolve_models(workspace, {name: "cancer@champion"})
    with pytest.raises(InvalidInputError):
        read_prediction_log(workspace.lake, name)
    assert workspace.metadata.list_dataset_versions() == []
    assert {m.name for m in workspace.metadata.list_model_versions()} == {"cancer"}


def test_the_trailing_newline_does_not_make_a_second_cancer(workspace: Workspace) -> None:
    ingest(workspace, _table(), "cancer")
    with pytest.raises(InvalidInputError, match="line break"):
        ingest(workspace, _table(1), "cancer\n")
    assert [d.name for d in workspace.metadata.list_dataset_versions()] == ["cancer"]


@pytest.mark.parametrize("tag", ["²", "３", "٣", "3\n", "champion\n"])
def test_a_version_or_alias_that_only_looks_right_is_refused(
    workspace: Workspace, tag: str
) -> None:
    bundle, _ = fit_bundle(cancer_frame(), "target", LogisticRegression(max_iter=1000))
    register_model(workspace, "cancer", bundle)
    with pytest.raises(InvalidInputError):
        resolve_version(workspace, f"cancer@{tag}")
