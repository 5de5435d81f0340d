"""Graceful shutdown of a real ``loopml serve`` process: SIGTERM mid-load lets in-flight
requests finish with 200, flushes the prediction log, and the process exits 0 within the
grace period; ``--workers 2`` shares one port between two processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from loopml.registry import register_model, set_alias
from loopml.serve import read_prediction_log
from loopml.workspace import Workspace, open_workspace

from .test_serve_app import cancer_bundle, records

GRACE = 20.0


def _start(
    ws: Workspace, *extra: str, env_extra: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str, list[str]]:
    env = {
        **os.environ,
        "LOOPML_SERVE_SHUTDOWN_GRACE": str(GRACE),
        "LOOPML_SERVE_TOKEN": "t" * 32,
        "LOOPML_SERVE_QUEUE_ROWS": "100000",  # four 4000-row requests at once are admitted
        **(env_extra or {}),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "loopml",
            "serve",
            "--workspace",
            str(ws.root),
            "--port",
            "0",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    lines: list[str] = []
    url: list[str] = []
    found = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace")
            lines.append(line)
            m = re.search(r"serving on (http://[0-9.:]+)", line)
            if m and not url:
                url.append(m.group(1))
                found.set()

    threading.Thread(target=read, daemon=True).start()
    if not found.wait(90):
        proc.kill()
        proc.wait(10)
        pytest.fail("the server did not start:\n" + "".join(lines))
    return proc, url[0], lines


@pytest.fixture
def served_ws(workspace: Workspace) -> tuple[Workspace, Any]:
    bundle, x = cancer_bundle()
    mv = register_model(workspace, "cancer", bundle)
    set_alias(workspace, "cancer", "champion", mv.version)
    return workspace, x


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


@pytest.mark.slow
def test_sigterm_finishes_in_flight_requests_and_exits_zero(
    served_ws: tuple[Workspace, Any],
) -> None:
    ws, x = served_ws
    # 4000 rows in calls of 2: 2000 model calls a request, so they are still in flight when
    # the signal comes (the hot path is fast enough that calls of 64 were all done by then)
    proc, url, lines = _start(ws, "-m", "cancer", "--max-batch", "2")
    try:
        big = orjson.dumps({"instances": records(x, 500) * 8})
        headers = {"content-type": "application/json"}
        results: list[Any] = []
        done: list[float] = []
        started = threading.Barrier(5)

        def client() -> None:
            with httpx.Client(timeout=60.0) as c:
                started.wait()
                try:
                    results.append(
                        c.post(f"{url}/v1/models/cancer:predict", content=big, headers=headers)
                    )
                except httpx.HTTPError as exc:
                    results.append(exc)
                done.append(time.monotonic())

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        started.wait()
        time.sleep(0.3)  # the requests are read and being predicted
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(60)
        code = proc.wait(GRACE + 15)
        exited = time.monotonic() - t0
    finally:
        _stop(proc)
    output = "".join(lines)
    assert code == 0, output
    assert exited < GRACE, output
    assert len(results) == 4
    assert max(done) > t0  # they were still in flight when the signal came
    ids: list[str] = []
    for r in results:
        assert isinstance(r, httpx.Response), (r, output)
        assert r.status_code == 200, r.text
        preds = r.json()["predictions"]
        assert len(preds) == 4000
        ids.extend(p["prediction_id"] for p in preds)
    # the log was flushed on the way out: every answered prediction is in the lake
    with open_workspace(ws.root) as fresh:
        logged = read_prediction_log(fresh.lake, "cancer")
    assert set(ids) <= set(logged["prediction_id"])
    with pytest.raises(httpx.TransportError):  # and nothing listens any more
        httpx.get(f"{url}/v2/health/live", timeout=2.0)


@pytest.mark.slow
def test_workers_share_one_port(served_ws: tuple[Workspace, Any]) -> None:
    ws, x = served_ws
    proc, url, lines = _start(ws, "-m", "cancer", "--workers", "2")
    try:
        body = orjson.dumps({"instances": records(x, 2)})
        headers = {"content-type": "application/json", "connection": "close"}
        for _ in range(20):
            r = httpx.post(f"{url}/v1/models/cancer:predict", content=body, headers=headers)
            assert r.status_code == 200, r.text
            assert r.headers["x-loopml-version"] == "1"
        pids = {int(line.split()[0]) for line in _children(proc.pid)}
        assert len(pids) == 2
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(GRACE + 15)
    finally:
        _stop(proc)
    assert code == 0, "".join(lines)


@pytest.mark.slow
def test_ready_is_503_as_soon_as_sigterm_arrives_while_requests_are_served(
    served_ws: tuple[Workspace, Any],
) -> None:
    """A load balancer polling readiness sees 503 at once and stops sending; requests that
    still come are answered during the drain, then the server stops and exits 0."""
    ws, x = served_ws
    drain = 3.0
    proc, url, lines = _start(ws, "-m", "cancer", env_extra={"LOOPML_SERVE_DRAIN_SECONDS": "3"})
    body = orjson.dumps({"instances": records(x, 2)})
    headers = {"content-type": "application/json"}
    try:
        assert httpx.get(f"{url}/v2/health/ready", timeout=5).status_code == 200
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        ready = None
        while time.monotonic() - t0 < 1.0:
            ready = httpx.get(f"{url}/v2/health/ready", timeout=5)
            if ready.status_code == 503:
                break
            time.sleep(0.02)
        assert ready is not None and ready.status_code == 503, "".join(lines)
        assert time.monotonic() - t0 < 1.0
        assert ready.json() == {"ready": False}
        assert httpx.get(f"{url}/v2/health/live", timeout=5).status_code == 200
        r = httpx.post(f"{url}/v1/models/cancer:predict", content=body, headers=headers)
        assert r.status_code == 200, r.text  # still served while draining
        assert proc.poll() is None
        code = proc.wait(drain + GRACE + 15)
        exited = time.monotonic() - t0
    finally:
        _stop(proc)
    output = "".join(lines)
    assert code == 0, output
    assert drain * 0.9 <= exited < drain + GRACE, output
    assert "event=draining" in output


@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_the_server_keeps_answering(
    served_ws: tuple[Workspace, Any],
) -> None:
    ws, x = served_ws
    proc, url, lines = _start(ws, "-m", "cancer", "--workers", "2")
    body = orjson.dumps({"instances": records(x, 2)})
    headers = {"content-type": "application/json", "connection": "close"}
    try:
        before = {int(line.split()[0]) for line in _children(proc.pid)}
        assert len(before) == 2
        victim = min(before)
        loaded = _loaded(lines)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 90
        now: set[int] = set()
        answered = 0
        while time.monotonic() < deadline:
            r = httpx.post(f"{url}/v1/models/cancer:predict", content=body, headers=headers)
            assert r.status_code == 200, r.text  # the other worker answers meanwhile
            answered += 1
            now = {int(line.split()[0]) for line in _children(proc.pid)}
            if len(now) == 2 and victim not in now and _loaded(lines) > loaded:
                break  # the new worker has loaded its models: it accepts connections
            time.sleep(0.1)
        assert len(now) == 2 and victim not in now, "".join(lines)
        assert answered >= 1
        for _ in range(20):  # both workers answer: no failed request after the respawn
            r = httpx.post(f"{url}/v1/models/cancer:predict", content=body, headers=headers)
            assert r.status_code == 200, r.text
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(GRACE + 15)
    finally:
        _stop(proc)
    output = "".join(lines)
    assert code == 0, output
    assert "event=worker_respawned" in output


def _loaded(lines: list[str]) -> int:
    """How many times a worker has logged loading its model."""
    return sum("event=model_loaded" in line for line in list(lines))


def _children(pid: int) -> list[str]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            out.append(f"{entry.name} {stat}")
    return out


def test_uvicorn_runs_on_uvloop_and_httptools() -> None:
    """uvicorn's own default is asyncio and h11 unless told; the server asks for the fast
    ones where installed (they saved 12-27 % CPU per request in issue 6's measurements)."""
    from loopml.serve import _uvicorn_server

    server = _uvicorn_server(object(), "127.0.0.1", 0, "warning", False, shutdown_grace=7.0)
    assert server.config.loop == "uvloop"
    assert server.config.http == "httptools"
    assert server.config.timeout_graceful_shutdown == 7
