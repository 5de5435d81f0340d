"""``loopml.registry.deployments``: deploy, step a canary, validation naming the flag."""

from __future__ import annotations

import pytest

from loopml.errors import ConflictError, InvalidInputError, NotFoundError
from loopml.registry.deployments import (
    deploy,
    deployment_history,
    describe,
    effective_deployment,
    get_deployment,
    step_canary,
)
from loopml.testing import _model
from loopml.workspace import Workspace


@pytest.fixture
def ws(workspace: Workspace) -> Workspace:
    for _ in range(5):
        workspace.metadata.add_model_version(_model("m"))
    return workspace


def test_single_then_canary_on_it_then_steps(ws: Workspace) -> None:
    one = deploy(ws, "m", single=3, reason="launch")
    assert (one.mode, one.routes, one.revision) == ("single", ((3, 100.0),), 1)
    assert one.updated_by and "@" in one.updated_by
    two = deploy(ws, "m", canary={4: 5}, shadow=5, expected=1)
    assert (two.mode, two.routes, two.shadow, two.revision) == (
        "canary",
        ((3, 95.0), (4, 5.0)),
        5,
        2,
    )
    three = step_canary(ws, "m", to=20, reason="healthy")
    assert (three.routes, three.shadow, three.revision) == (((3, 80.0), (4, 20.0)), 5, 3)
    assert get_deployment(ws, "m") == three
    assert describe(three) == "canary: 3=80% 4=20%, shadow 5"
    history = deployment_history(ws, "m")
    assert [(e.revision, e.reason) for e in history] == [(3, "healthy"), (2, None), (1, "launch")]
    assert history[0].old == two and history[0].new == three


def test_canary_without_a_deployment_is_against_the_champion(ws: Workspace) -> None:
    with pytest.raises(InvalidInputError, match="no champion alias"):
        deploy(ws, "m", canary=(4, 10))
    assert effective_deployment(ws, "m") is None
    ws.metadata.set_alias("m", "champion", 2)
    implied = effective_deployment(ws, "m")
    assert implied is not None and (implied.routes, implied.revision) == (((2, 100.0),), 0)
    dep = deploy(ws, "m", canary=(4, 10))
    assert dep.routes == ((2, 90.0), (4, 10.0))
    assert effective_deployment(ws, "m") == dep


def test_ab_weights_must_be_positive_and_sum_to_100(ws: Workspace) -> None:
    dep = deploy(ws, "m", ab={3: 90, 4: 10})
    assert (dep.mode, dep.routes) == ("ab", ((3, 90.0), (4, 10.0)))
    assert deploy(ws, "m", ab=[(1, 50), (2, 25), (3, 25)]).revision == 2
    with pytest.raises(InvalidInputError, match="sum to 110, not 100") as exc:
        deploy(ws, "m", ab={3: 90, 4: 20})
    assert exc.value.where["flag"] == "--ab"
    with pytest.raises(InvalidInputError, match="--ab"):
        deploy(ws, "m", ab={3: 100, 4: 0})
    with pytest.raises(InvalidInputError, match="two or more"):
        deploy(ws, "m", ab={3: 100})
    with pytest.raises(InvalidInputError, match="--ab"):
        deploy(ws, "m", ab={3: -10, 4: 110})


def test_versions_must_exist_and_be_active(ws: Workspace) -> None:
    with pytest.raises(NotFoundError, match="--single: model 'm' has no version 9"):
        deploy(ws, "m", single=9)
    with pytest.raises(NotFoundError, match="no model named 'nope'"):
        deploy(ws, "nope", single=1)
    ws.metadata.set_model_version_status("m", 5, "archived")
    with pytest.raises(ConflictError, match="--shadow: model 'm' version 5 is archived"):
        deploy(ws, "m", single=1, shadow=5)
    with pytest.raises(ConflictError, match="archived"):
        deploy(ws, "m", ab={1: 50, 5: 50})
    assert get_deployment(ws, "m") is None


def test_a_deployed_version_cannot_be_archived(ws: Workspace) -> None:
    deploy(ws, "m", single=1, shadow=2)
    for version in (1, 2):
        with pytest.raises(ConflictError) as exc:
            ws.metadata.set_model_version_status("m", version, "archived")
        assert exc.value.code == "version_deployed"


def test_the_shadow_must_not_answer(ws: Workspace) -> None:
    with pytest.raises(InvalidInputError, match="--shadow 3: version 3 already answers"):
        deploy(ws, "m", ab={3: 50, 4: 50}, shadow=3)
    deploy(ws, "m", single=3)
    with pytest.raises(InvalidInputError, match="already the primary"):
        deploy(ws, "m", canary={3: 10})
    with pytest.raises(InvalidInputError, match="--shadow"):
        deploy(ws, "m", canary={4: 10}, shadow=3)  # 3 is the primary


def test_exactly_one_mode_and_sane_numbers(ws: Workspace) -> None:
    with pytest.raises(
        InvalidInputError, match="exactly one of --single, --ab, --canary; got none"
    ):
        deploy(ws, "m")
    with pytest.raises(InvalidInputError, match="got --single, --ab"):
        deploy(ws, "m", single=1, ab={1: 50, 2: 50})
    with pytest.raises(InvalidInputError, match="--single 0 is not a version"):
        deploy(ws, "m", single=0)
    with pytest.raises(InvalidInputError, match=r"--canary.*from 0 to 100"):
        deploy(ws, "m", canary={4: 120})
    with pytest.raises(InvalidInputError, match="--canary takes one"):
        deploy(ws, "m", canary={3: 5, 4: 5})
    with pytest.raises(InvalidInputError, match="--expect"):
        deploy(ws, "m", single=1, expected=-1)


def test_expect_is_a_compare_and_set(ws: Workspace) -> None:
    with pytest.raises(ConflictError, match="does not exist"):
        deploy(ws, "m", single=1, expected=1)
    deploy(ws, "m", single=1, expected=0)  # 0: none yet
    with pytest.raises(ConflictError) as exc:
        deploy(ws, "m", single=2, expected=0)
    assert exc.value.code == "deployment_moved"
    assert "revision 1" in str(exc.value) and "--expect 1" in str(exc.value)
    assert deploy(ws, "m", single=2, expected=1).revision == 2
    assert deploy(ws, "m", canary={3: 5}, expected=2).revision == 3
    with pytest.raises(ConflictError, match="revision 3"):
        step_canary(ws, "m", to=10, expected=2)
    assert step_canary(ws, "m", to=10, expected=3).revision == 4


def test_step_needs_a_canary(ws: Workspace) -> None:
    with pytest.raises(InvalidInputError, match="no deployment, not a canary"):
        step_canary(ws, "m", to=10)
    deploy(ws, "m", ab={1: 50, 2: 50})
    with pytest.raises(InvalidInputError, match="a deployment in mode ab, not a canary"):
        step_canary(ws, "m", to=10)
    with pytest.raises(InvalidInputError, match="--to"):
        step_canary(ws, "m", to=101)
    with pytest.raises(InvalidInputError, match="A/B split"):
        deploy(ws, "m", canary={3: 10})


def test_the_actor_setting_is_recorded(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ws.settings, "actor", "ci-bot", raising=False)
    dep = deploy(ws, "m", single=1, reason="release 7")
    assert (dep.updated_by, dep.reason) == ("ci-bot", "release 7")
    assert deployment_history(ws, "m")[0].actor == "ci-bot"
