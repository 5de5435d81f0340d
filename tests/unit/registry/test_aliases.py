"""Aliases as compare-and-set with a transition log; archive, restore and delete of versions."""

from __future__ import annotations

import getpass
import socket

import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression

from loopml.errors import ConflictError, InvalidInputError, NotFoundError
from loopml.registry import (
    ANY_VERSION,
    ModelBundle,
    alias_history,
    archive_version,
    delete_alias,
    delete_version,
    list_models,
    load_model,
    register_model,
    resolve_version,
    restore_version,
    set_alias,
)
from loopml.train import fit_bundle
from loopml.workspace import Workspace, open_workspace


@pytest.fixture(scope="module")
def bundle() -> ModelBundle:
    frame = load_breast_cancer(as_frame=True).frame.iloc[:, [0, 1, 2, -1]].head(150)
    return fit_bundle(frame, "target", LogisticRegression(max_iter=1000))[0]


@pytest.fixture
def three(workspace: Workspace, bundle: ModelBundle) -> Workspace:
    for _ in range(3):
        register_model(workspace, "cancer", bundle)
    return workspace


def test_a_move_from_the_expected_version_wins(three: Workspace) -> None:
    set_alias(three, "cancer", "champion", 1, expected=None)
    event = set_alias(three, "cancer", "champion", 2, expected=1, reason="better on holdout")
    assert event is not None and (event.from_version, event.to_version) == (1, 2)
    assert three.metadata.get_aliases("cancer") == {"champion": 2}


def test_a_stale_expectation_is_a_conflict_naming_the_current_version(three: Workspace) -> None:
    set_alias(three, "cancer", "champion", 1)
    set_alias(three, "cancer", "champion", 3, expected=1, reason="hotfix")
    with pytest.raises(ConflictError, match="points at version 3, not at version 1") as info:
        set_alias(three, "cancer", "champion", 2, expected=1)
    assert info.value.code == "alias_moved"
    assert info.value.where["current"] == 3
    assert "hotfix" in str(info.value) and "--expect 3" in str(info.value)
    with pytest.raises(ConflictError, match="not at no version"):
        set_alias(three, "cancer", "champion", 2, expected=None)
    assert three.metadata.get_aliases("cancer") == {"champion": 3}


def test_the_default_moves_it_wherever_it_points(three: Workspace) -> None:
    set_alias(three, "cancer", "champion", 1)
    set_alias(three, "cancer", "champion", 2, expected=ANY_VERSION)
    assert three.metadata.get_aliases("cancer") == {"champion": 2}


@pytest.mark.parametrize("bad", [0, -1, True, "2"])
def test_expected_must_be_a_version(three: Workspace, bad: object) -> None:
    with pytest.raises(InvalidInputError, match="expected must be a version"):
        set_alias(three, "cancer", "champion", 1, expected=bad)  # type: ignore[arg-type]


def test_every_move_is_logged_with_who_and_why(
    three: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_alias(three, "cancer", "champion", 1, reason="first")
    monkeypatch.setenv("LOOPML_ACTOR", "ci-bot")
    with open_workspace(three.root) as ws:  # settings are read when the workspace opens
        set_alias(ws, "cancer", "champion", 2, expected=1, reason="gate passed")
        delete_alias(ws, "cancer", "champion", expected=2, reason="retired")
    events = alias_history(three, "cancer")
    got = [(e.alias, e.from_version, e.to_version, e.actor, e.reason) for e in events]
    me = f"{getpass.getuser()}@{socket.gethostname()}"
    assert got == [
        ("champion", 2, None, "ci-bot", "retired"),
        ("champion", 1, 2, "ci-bot", "gate passed"),
        ("champion", None, 1, me, "first"),
    ]
    assert alias_history(three, "cancer", "challenger") == []
    with pytest.raises(NotFoundError, match="no model named 'nope'"):
        alias_history(three, "nope")


def test_archive_refuses_an_aliased_version_and_names_the_command(three: Workspace) -> None:
    set_alias(three, "cancer", "champion", 2)
    with pytest.raises(ConflictError, match="alias champion points at it") as info:
        archive_version(three, "cancer@2")
    assert "loopml models alias cancer champion OTHER_VERSION --expect 2" in str(info.value)
    with pytest.raises(ConflictError, match="cannot delete"):
        delete_version(three, "cancer@2")


def test_archived_versions_are_hidden_and_never_aliased(three: Workspace) -> None:
    archived = archive_version(three, "cancer@3")
    assert archived.status == "archived"
    assert [r["version"] for r in list_models(three, "cancer")] == [1, 2]
    assert [r["version"] for r in list_models(three, "cancer", all=True)] == [1, 2, 3]
    assert resolve_version(three, "cancer").version == 2  # a bare name: the latest active one
    assert load_model(three, "cancer@3", default_alias=None).version == 3  # by number: loads
    with pytest.raises(ConflictError, match="is archived"):
        set_alias(three, "cancer", "champion", 3)
    assert restore_version(three, "cancer@3").status == "active"
    set_alias(three, "cancer", "champion", 3)


def test_delete_removes_the_record_and_never_reuses_its_number(
    three: Workspace, bundle: ModelBundle
) -> None:
    gone = delete_version(three, "cancer@3")
    assert three.artifacts.exists(gone.artifact_sha256)  # content-addressed: shared by 1 and 2
    with pytest.raises(NotFoundError, match="version 3 was deleted"):
        resolve_version(three, "cancer@3")
    assert [r["version"] for r in list_models(three, "cancer", all=True)] == [1, 2]
    assert register_model(three, "cancer", bundle).version == 4


@pytest.mark.parametrize("ref", ["cancer", "cancer@champion"])
def test_archive_and_delete_need_a_version_number(three: Workspace, ref: str) -> None:
    with pytest.raises(InvalidInputError, match="needs NAME@VERSION"):
        delete_version(three, ref)


def test_list_models_of_an_unknown_name(workspace: Workspace) -> None:
    with pytest.raises(NotFoundError):
        list_models(workspace, "nope")


def test_an_all_archived_model_is_listed_empty_not_unknown(three: Workspace) -> None:
    for v in (1, 2, 3):
        archive_version(three, f"cancer@{v}")
    assert list_models(three, "cancer") == []
    assert isinstance(pd.DataFrame(list_models(three, "cancer", all=True)), pd.DataFrame)
