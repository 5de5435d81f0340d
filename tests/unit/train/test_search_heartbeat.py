"""A trial whose process died on another machine does not hold a search up forever."""

from __future__ import annotations

import threading
import time

import optuna
import pytest

from loopml.stores.records import Run
from loopml.train import search as search_mod
from loopml.train import study as study_mod
from loopml.utils import new_id, utcnow
from loopml.workspace import Workspace


@pytest.fixture
def short_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(study_mod, "HEARTBEAT_S", 1)
    monkeypatch.setattr(study_mod, "GRACE_S", 2)


def _study(ws: Workspace) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(storage=study_mod.study_storage(ws), study_name="s")


def test_a_silent_trial_of_another_machine_is_failed_after_the_grace_period(
    workspace: Workspace, short_grace: None
) -> None:
    """Defect: _wait_for_running only saw a dead process on this machine (its run aborted);
    one on another machine kept its trial RUNNING and the search waited forever."""
    study = _study(workspace)
    trial = study.ask()
    run = Run(
        id=new_id(),
        name="s",
        status="running",
        started_at=utcnow(),
        owner="4242@another-machine",  # cannot be checked from here: stays "running"
    )
    workspace.metadata.add_run(run)
    trial.set_user_attr(search_mod.RUN_ATTR, run.id)
    with study_mod.heartbeat(study, trial):
        pass  # one beat, then the process "dies": no more beats

    done = threading.Event()
    waiter = threading.Thread(
        target=lambda: (search_mod._wait_for_running(workspace, study, lambda _m: None), done.set())
    )
    t0 = time.monotonic()
    waiter.start()
    waiter.join(timeout=30)
    assert done.is_set(), "still waiting for a trial whose process is gone"
    assert time.monotonic() - t0 >= 1.0  # it did wait for the grace period
    state = study.get_trials(deepcopy=False)[0].state
    assert state == optuna.trial.TrialState.FAIL


def test_a_beating_trial_is_waited_for(workspace: Workspace, short_grace: None) -> None:
    study = _study(workspace)
    trial = study.ask()
    finished = threading.Event()

    def finish_later() -> None:
        with study_mod.heartbeat(study, trial):
            time.sleep(4)  # longer than the grace period, beating all along
        study.tell(trial, 1.0)
        finished.set()

    worker = threading.Thread(target=finish_later)
    worker.start()
    time.sleep(0.2)
    search_mod._wait_for_running(workspace, study, lambda _m: None)
    worker.join(timeout=10)
    assert finished.is_set()
    assert study.get_trials(deepcopy=False)[0].state == optuna.trial.TrialState.COMPLETE
