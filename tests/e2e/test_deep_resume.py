"""A distributed torch run whose worker is killed fails cleanly and resumes from its last
complete epoch checkpoint to the model the uninterrupted run reaches.

Tolerance: the resumed run's holdout accuracy must be within 0.01 of the uninterrupted
run's; as every random state is restored, their probabilities are in fact equal (checked
to 1e-6). The project does not refit (``refit: false``): the version each run registers is
the very fit that was interrupted and resumed, so the 1e-6 check is on the resumed weights
themselves (a refit would be a fresh fit on all rows in both runs, and would cost two more
distributed fits)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("safetensors")

from sklearn.datasets import load_digits

from loopml.errors import ConfigError
from loopml.registry import load_model
from loopml.workspace import open_workspace

from .conftest import Result

PROJECT = """
name: digits
data: {{dataset: digits, target: target}}
features: {{numeric: {{scale: standard}}}}
model:
  class: loopml.train.deep.MLPClassifier
  params: {{hidden: {hidden}, epochs: 12, batch_size: 32, patience: 0, lr: 0.003}}
evaluation:
  {{metric: accuracy, folds: 0, holdout: 0.2, seed: 0, refit: false, gate: "accuracy >= 0.8"}}
"""
TWO = ("--workers", "2")
WAIT = 120.0  # seconds: every wait below is bounded


@pytest.fixture
def digits_ws(tmp_path: Path, cli: Callable[..., Result]) -> Path:
    csv = tmp_path / "digits.csv"
    frame = load_digits(as_frame=True).frame
    frame.columns = [str(c) for c in frame.columns]
    frame.to_csv(csv, index=False)
    folder = tmp_path / "ws"
    assert cli("init", "--workspace", folder).code == 0
    assert cli("data", "ingest", csv, "--name", "digits", "-w", folder).code == 0
    return folder


def _project(folder: Path, hidden: str = "[32]") -> Path:
    path = folder / "loopml.yaml"
    path.write_text(PROJECT.format(hidden=hidden))
    return path


def _workers_of(pid: int) -> list[int]:
    """The spawned worker processes among ``pid``'s children (not the resource tracker)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        children.extend(int(c) for c in text)
    found = []
    for child in children:
        try:
            cmd = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmd:
            found.append(child)
    return sorted(found)


def _wait_for(check: Callable[[], object], what: str) -> object:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError(f"timed out after {WAIT} s waiting for {what}")


@pytest.mark.slow
def test_a_killed_worker_fails_the_run_and_resume_reaches_the_same_model(
    tmp_path: Path, cli: Callable[..., Result], digits_ws: Path
) -> None:
    ws = digits_ws
    project = _project(tmp_path)
    # the uninterrupted run: the quality to reach
    full = cli("train", "-f", project, "--workers", "2", "-w", ws, "--json")
    assert full.code == 0, full.err
    full_metrics = json.loads(full.out)["run"]["metrics"]
    assert full_metrics["refit"] is False  # the registered model is the fit on the training rows
    full_accuracy = full_metrics["holdout"]["accuracy"]
    assert not list((ws / "checkpoints").glob("*/fit-*")), "a passed run keeps no checkpoint"

    # the same run, one worker killed with SIGKILL after its first checkpoint
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "loopml", "train", "-f", str(project), "-w", str(ws), *TWO],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        state = _wait_for(
            lambda: next(iter((ws / "checkpoints").glob("*/fit-*/state.safetensors")), None),
            "the first epoch checkpoint",
        )
        workers = _wait_for(lambda: len(_workers_of(proc.pid)) == 2 and _workers_of(proc.pid),
                            "two workers")  # fmt: skip
        assert isinstance(workers, list)
        os.kill(workers[-1], signal.SIGKILL)  # spawned second: rank 1
        _, err = proc.communicate(timeout=WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0
    assert "worker rank 1 of 2" in err and "SIGKILL" in err, err
    assert "--resume" in err and "Traceback" not in err, err
    assert isinstance(state, Path)
    failed_id = state.parent.parent.name
    with open_workspace(ws) as w:
        assert [v.version for v in w.metadata.list_model_versions("digits")] == [1]
        failed = w.metadata.get_run(failed_id)
        assert failed.status == "failed" and "rank 1" in (failed.error or "")
    from safetensors import safe_open

    with safe_open(str(state), framework="pt") as fh:
        done = json.loads((fh.metadata() or {})["loopml"])["epoch"]
    assert done < 11, "the kill came after the last epoch: the test proves nothing"

    # a project that differs is refused before any run is recorded
    (tmp_path / "wider").mkdir()
    wider = _project(tmp_path / "wider", hidden="[64]")
    refused = cli("train", "-f", wider, "--workers", "2", "-w", ws, "--resume", failed_id)
    assert refused.code != 0 and "model.params.hidden" in refused.err, refused.err

    # resumed: the failed run's child, the model of the uninterrupted run
    res = cli("train", "-f", project, "--workers", "2", "-w", ws, "--resume", failed_id, "--json")
    assert res.code == 0, res.err
    body = json.loads(res.out)
    assert abs(body["run"]["metrics"]["holdout"]["accuracy"] - full_accuracy) <= 0.01
    with open_workspace(ws) as w:
        run = w.metadata.get_run(body["run"]["id"])
        assert run.parent_id == failed_id and run.params["resumed_from"] == failed_id
        steps = w.metadata.list_steps(run.id, "epoch.val_loss")
        assert [s.step for s in steps] == list(range(12))  # the history carried over
        rows = load_digits(as_frame=True).frame.drop(columns="target").head(200)
        rows.columns = [str(c) for c in rows.columns]
        np.testing.assert_allclose(
            load_model(w, "digits@2").predict(rows).probabilities,
            load_model(w, "digits@1").predict(rows).probabilities,
            atol=1e-6,
        )
    again = cli("train", "-f", project, "-w", ws, "--resume", run.id)
    assert again.code != 0 and "succeeded" in again.err and "--resume" in again.err


def _digits() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_digits(return_X_y=True)
    return (x[:600] / 16.0).astype(np.float32), y[:600]


def test_a_fit_resumed_from_its_checkpoint_equals_the_uninterrupted_fit(tmp_path: Path) -> None:
    from loopml.train.deep import MLPClassifier

    x, y = _digits()
    params = {"hidden": [16], "batch_size": 32, "patience": 0, "random_state": 0}
    whole = MLPClassifier(epochs=4, dropout=0.2, **params).fit(x, y)
    MLPClassifier(epochs=2, dropout=0.2, checkpoint_dir=str(tmp_path), **params).fit(x, y)
    (state,) = tmp_path.glob("fit-*/state.safetensors")
    resumed = MLPClassifier(epochs=4, dropout=0.2, checkpoint_dir=str(tmp_path), **params)
    resumed.fit(x, y)
    assert len(resumed.history_) == 4
    assert resumed.history_ == whole.history_
    np.testing.assert_array_equal(resumed.predict_proba(x), whole.predict_proba(x))
    # another architecture or learning rate cannot continue it: the error names what differs
    with pytest.raises(ConfigError, match=r"tensor 'net\.0\.\w+' has shape") as info:
        MLPClassifier(epochs=4, checkpoint_dir=str(tmp_path), **{**params, "hidden": [8]}).fit(x, y)
    assert info.value.where["tensor"].startswith("net.0.")
    with pytest.raises(ConfigError, match=r"lr=0\.001; this fit has lr=0\.01"):
        MLPClassifier(epochs=4, lr=0.01, checkpoint_dir=str(tmp_path), **params).fit(x, y)
    # other rows are another fit: a fresh start, beside the first file
    MLPClassifier(epochs=1, checkpoint_dir=str(tmp_path), **params).fit(x[:500], y[:500])
    assert len(list(tmp_path.glob("fit-*/state.safetensors"))) == 2
    assert state.is_file()


def test_a_worker_failure_names_the_rank_and_the_checkpoint(tmp_path: Path) -> None:
    from loopml.train.deep.ddp import worker_failure

    killed = worker_failure(1, 4242, -9, None, 2, None)
    assert "worker rank 1 of 2 (pid 4242) was killed by signal SIGKILL" in str(killed)
    assert "no checkpoint" in str(killed) and killed.where == {"rank": 1}
    raised = worker_failure(0, 7, 1, "Traceback ...\nRuntimeError: out of memory\n", 2, None)
    assert "rank 0 of 2 (pid 7) failed: RuntimeError: out of memory" in str(raised)
