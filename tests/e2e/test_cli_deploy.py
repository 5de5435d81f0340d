"""``loopml deploy``: set, step, history and status (split and per-version traffic)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from loopml.serve.metrics import Metrics
from loopml.testing import _model
from loopml.workspace import open_workspace


@pytest.fixture
def ws(tmp_path: Path, cli) -> Path:  # type: ignore[no-untyped-def]
    root = tmp_path / "ws"
    assert cli("init", "-w", root).code == 0
    with open_workspace(root) as opened:
        for name in ("m", "status"):
            for _ in range(5):
                opened.metadata.add_model_version(_model(name))
        opened.metadata.set_alias("m", "champion", 3)
    return root


def test_set_step_history_and_status(ws: Path, cli) -> None:  # type: ignore[no-untyped-def]
    res = cli("deploy", "m", "--canary", "4=5", "--shadow", "5", "--reason", "try 4", "-w", ws)
    assert res.code == 0, res.err
    assert "revision 1: canary: 3=95% 4=5%, shadow 5 (try 4)" in res.out
    res = cli("deploy", "step", "m", "--to", "20", "--expect", "1", "-w", ws, "--json")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert (doc["revision"], doc["routes"], doc["shadow"]) == (2, [[3, 80.0], [4, 20.0]], 5)
    history = json.loads(cli("deploy", "history", "m", "-w", ws, "--json").out)
    assert [(e["revision"], e["reason"]) for e in history] == [(2, None), (1, "try 4")]
    assert history[0]["old"]["routes"] == [[3, 95.0], [4, 5.0]]
    res = cli("deploy", "history", "m", "-w", ws)
    assert res.code == 0 and "canary: 3=80% 4=20%" in res.out
    res = cli("deploy", "status", "m", "-w", ws, "--server", "http://127.0.0.1:9", "--json")
    assert res.code == 0, res.err
    status = json.loads(res.out)
    assert status["deployments"][0]["revision"] == 2
    assert status["servers"][0]["reachable"] is False
    roles = {r["version"]: r["role"] for r in status["traffic"]}
    assert roles == {"3": "primary", "4": "canary", "5": "shadow"}
    res = cli("deploy", "status", "-w", ws, "--server", "http://127.0.0.1:9")
    assert res.code == 0
    assert "m revision 2: canary: 3=80% 4=20%, shadow 5" in res.out
    assert "not reachable" in res.err and "skipped" in res.err


def test_a_model_named_like_a_subcommand(ws: Path, cli) -> None:  # type: ignore[no-untyped-def]
    res = cli("deploy", "set", "status", "--ab", "1=50,2=50", "-w", ws)
    assert res.code == 0, res.err
    assert "ab: 1=50% 2=50%" in res.out


def test_status_without_a_deployment_shows_the_champion(ws: Path, cli) -> None:  # type: ignore[no-untyped-def]
    res = cli("deploy", "status", "m", "-w", ws, "--server", "http://127.0.0.1:9")
    assert res.code == 0, res.err
    assert "no deployment stored; the champion answers: single: 3=100%" in res.out
    assert cli("deploy", "status", "nope", "-w", ws).code == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["m"], "exactly one of --single, --ab, --canary; got none"),
        (["m", "--single", "1", "--canary", "4=5"], "got --single, --canary"),
        (["m", "--ab", "3=90;4=10"], "is not VERSION=PERCENT"),
        (["m", "--ab", "3=90,4=20"], "sum to 110, not 100"),
        (["m", "--single", "9"], "--single: model 'm' has no version 9"),
        (["m", "--single", "3", "--shadow", "3"], "--shadow 3: version 3 already answers"),
        (["m", "--canary", "4=150"], "from 0 to 100"),
        (["m", "--single", "1", "--expect", "4"], "does not exist"),
        (["step", "m", "--to", "10"], "not a canary to step"),
        (["step", "m", "--to", "150"], "less than or equal to 100"),
        (["step", "m"], "--to"),
        (["nope", "--single", "1"], "no model named 'nope'"),
    ],
)
def test_usage_errors_exit_2_with_a_clear_message(ws: Path, cli, args, message) -> None:  # type: ignore[no-untyped-def]
    res = cli("deploy", *args, "-w", ws)
    assert res.code == 2, (res.out, res.err)
    assert message in " ".join(res.err.split()), res.err
    assert "Traceback" not in res.err


def test_a_stale_expect_names_the_current_revision(ws: Path, cli) -> None:  # type: ignore[no-untyped-def]
    assert cli("deploy", "m", "--single", "3", "-w", ws).code == 0
    assert cli("deploy", "m", "--single", "2", "--expect", "1", "-w", ws).code == 0
    res = cli("deploy", "m", "--single", "1", "--expect", "1", "-w", ws)
    assert res.code == 2
    assert "is at revision 2" in res.err and "--expect 2" in res.err


@pytest.mark.parametrize("args", [[], ["set"], ["step"], ["status"], ["history"]])
def test_help_everywhere(cli, args) -> None:  # type: ignore[no-untyped-def]
    res = cli("deploy", *args, "--help")
    assert res.code == 0 and "Usage" in res.out


# -- status against a server's real metrics exposition --------------------------------------


@pytest.fixture
def metrics_server() -> Iterator[tuple[str, Metrics]]:
    """An HTTP server on 127.0.0.1 answering /metrics with loopml's own exposition."""
    metrics = Metrics()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = metrics.render().encode()
            self.send_response(200 if self.path == "/metrics" else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}", metrics
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_status_reads_requests_errors_and_latency_per_version(  # type: ignore[no-untyped-def]
    ws: Path, cli, metrics_server
) -> None:
    url, metrics = metrics_server
    assert cli("deploy", "m", "--canary", "4=10", "-w", ws).code == 0
    for _ in range(90):
        metrics.requests.inc(("m", "3", "v1", "200"))
        metrics.latency.observe(("m", "3", "v1"), 0.0004)
    for i in range(10):
        metrics.requests.inc(("m", "4", "v2", "200" if i < 8 else "500"))
        metrics.latency.observe(("m", "4", "v2"), 0.02 if i < 9 else 0.9)
    metrics.requests.inc(("other", "1", "v1", "200"))
    res = cli("deploy", "status", "m", "-w", ws, "--server", url, "--json")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert doc["servers"] == [{"url": url, "reachable": True, "error": None}]
    rows = {r["version"]: r for r in doc["traffic"]}
    assert set(rows) == {"3", "4"}
    assert (rows["3"]["requests"], rows["3"]["errors"]) == (90, 0)
    assert (rows["4"]["requests"], rows["4"]["errors"], rows["4"]["role"]) == (10, 2, "canary")
    assert rows["3"]["p50_ms"] < 1.0
    assert 5.0 < rows["4"]["p50_ms"] <= 25.0
    assert rows["4"]["p99_ms"] > 100.0
    res = cli("deploy", "status", "m", "-w", ws, "--server", url)
    assert res.code == 0, res.err
    assert "traffic" in res.out and "canary" in res.out and "90.0" in res.out
