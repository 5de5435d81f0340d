"""Base-layer helpers: who owns a claim or a run, and whether that process is still alive."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from loopml.utils import owner_alive, process_owner


def _child() -> subprocess.Popen[bytes]:
    """A real process that lives until its stdin closes or it is killed."""
    return subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )


def test_this_process_is_alive() -> None:
    me = process_owner()
    assert me["pid"] == os.getpid()
    assert me["host"]
    assert owner_alive(me) is True
    assert process_owner() == me  # stable: the same process gives the same owner


def test_a_killed_process_is_gone() -> None:
    child = _child()
    try:
        owner = process_owner(child.pid)
        assert owner["pid"] == child.pid
        assert owner_alive(owner) is True
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    assert owner_alive(owner) is False


def test_a_killed_process_that_is_not_yet_reaped_is_gone() -> None:
    child = _child()
    owner = process_owner(child.pid)
    os.kill(child.pid, signal.SIGKILL)
    try:
        # a zombie until its parent waits for it: the pid still exists, the process does not
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
        assert owner_alive(owner) is False
    finally:
        child.wait(30)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_a_reused_pid_is_told_apart_by_its_start_time() -> None:
    me = process_owner()
    assert me.get("started")
    assert owner_alive({**me, "started": "1"}) is False


def test_another_host_or_no_owner_cannot_be_told() -> None:
    me = process_owner()
    assert owner_alive({**me, "host": "some-other-host"}) is None
    if me.get("machine"):
        assert owner_alive({**me, "machine": "another-boot/pid:[1]"}) is None
    for bad in (None, {}, {"host": me["host"]}, {"host": me["host"], "pid": "x"}, "text", []):
        assert owner_alive(bad) is None
    assert owner_alive({**me, "pid": True}) is None
    assert owner_alive({**me, "pid": -5}) is None


def test_the_owner_is_json_friendly() -> None:
    import json

    me = process_owner()
    assert json.loads(json.dumps(me)) == me
