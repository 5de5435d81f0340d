"""``loopml runs``: a run whose process was killed shows as aborted, not running forever."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from loopml.workspace import open_workspace

from .conftest import project_file

# `loopml train` in a child whose training hangs once its run is recorded, so that it can be
# killed mid-run at a known point
_HANGING_TRAIN = """
import importlib, sys, time
from loopml.cli.main import main

trainer = importlib.import_module("loopml.train.trainer")  # loopml.train is also a function

def hang(*args, **kwargs):
    print("training", flush=True)
    time.sleep(600)

trainer.cross_validate = hang  # called once the run is recorded (folds: 5)
sys.exit(main(["-w", sys.argv[1], "train", "-f", sys.argv[2]]))
"""


def _kill_mid_training(ws: Path, project: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _HANGING_TRAIN, str(ws), str(project)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = child.stdout.readline() if child.stdout else ""
        if line.strip() != "training":
            child.kill()
            _, err = child.communicate(timeout=30)
            pytest.fail(f"the child did not start training: {err[-2000:]}")
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL


def test_a_killed_training_run_is_aborted(tmp_path: Path, cli, cancer_csv: Path) -> None:  # type: ignore[no-untyped-def]
    ws = tmp_path / "ws"
    assert cli("init", "-w", ws).code == 0
    assert cli("data", "ingest", cancer_csv, "--name", "cancer", "-w", ws).code == 0
    _kill_mid_training(ws, project_file(tmp_path))

    res = cli("runs", "list", "-w", ws, "--json")
    assert res.code == 0, res.err
    (run,) = json.loads(res.out)
    assert run["status"] == "aborted"
    assert run["owner"]["pid"] != os.getpid()
    assert "died" in run["error"]
    shown = cli("runs", "show", run["id"], "-w", ws, "--json")
    assert shown.code == 0, shown.err
    assert json.loads(shown.out)["status"] == "aborted"
    listed = cli("runs", "list", "-w", ws)
    assert "aborted" in listed.out
    with open_workspace(ws) as opened:  # stored so, not only shown so
        assert opened.metadata.get_run(run["id"]).status == "aborted"


def test_a_finished_run_records_who_ran_it(tmp_path: Path, cli, cancer_csv: Path) -> None:  # type: ignore[no-untyped-def]
    ws = tmp_path / "ws"
    assert cli("init", "-w", ws).code == 0
    assert cli("data", "ingest", cancer_csv, "--name", "cancer", "-w", ws).code == 0
    assert cli("train", "-f", project_file(tmp_path), "-w", ws).code == 0
    (run,) = json.loads(cli("runs", "list", "-w", ws, "--json").out)
    assert run["status"] == "succeeded"
    assert run["owner"]["pid"] == os.getpid()  # this process ran it, in the cli fixture
