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


def _start(ws: Workspace, *extra: str) -> tuple[subprocess.Popen[bytes], str, list[str]]:
    env = {
        **os.environ,
        "LOOPML_SERVE_SHUTDOWN_GRACE": str(GRACE),
        "LOOPML_SERVE_TOKEN": "t" * 32,
        "LOOPML_SERVE_QUEUE_ROWS": "100000",  # four 4000-row requests at once are admitted
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
    proc, url, lines = _start(ws, "-m", "cancer")
    try:
        big = orjson.dumps({"instances": records(x, 500) * 8})  # 4000 rows: ~63 model calls
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
