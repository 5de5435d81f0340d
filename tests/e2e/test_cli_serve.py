"""`loopml serve` as a user runs it: the token file, "serving on" once ready, no token in argv,
several versions of one model."""

from __future__ import annotations

import os
import queue
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression

import loopml
from loopml.cli.workflow import serve_models

from .conftest import Result


@pytest.fixture
def ws_path(tmp_path: Path) -> Path:
    """A workspace with two versions of ``cancer`` (champion: 2)."""
    frame = load_breast_cancer(as_frame=True).frame.iloc[:, [0, 1, 2, -1]]
    path = tmp_path / "ws"
    with loopml.init(path) as ws:
        for c in (1.0, 0.5):
            est = LogisticRegression(C=c, max_iter=1000)
            mv = loopml.register_model(ws, "cancer", loopml.fit_bundle(frame, "target", est)[0])
            loopml.set_alias(ws, "cancer", "champion", mv.version)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_token_on_argv_is_refused(cli: Callable[..., Result], ws_path: Path) -> None:
    res = cli("serve", "--token", "s3cret", "-w", ws_path)
    assert res.code == 2, res.err
    text = " ".join(res.err.split())
    assert "LOOPML_SERVE_TOKEN" in text and "--token-file" in text and "ps" in text
    assert "s3cret" not in res.err
    assert "bug" not in res.err.lower()


def test_every_interface_needs_allowed_hosts(cli: Callable[..., Result], ws_path: Path) -> None:
    res = cli("serve", "--host", "0.0.0.0", "--port", "0", "-w", ws_path)
    assert res.code == 2, res.err
    assert "--allowed-host" in " ".join(res.err.split())


def test_two_versions_of_one_model_on_the_command_line(
    cli: Callable[..., Result], ws_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import loopml.serve

    seen: dict[str, Any] = {}
    monkeypatch.setattr(loopml.serve, "run_server", lambda ws, **kw: seen.update(kw))
    args = ("-m", "cancer@1", "-m", "cancer@2", "--allowed-host", "model.example")
    res = cli("serve", *args, "--max-rows", "5", "--max-body-bytes", "9999", "-w", ws_path)
    assert res.code == 0, res.err
    assert seen["models"] == {"cancer": ["cancer@1", "cancer@2"]}  # both, nothing dropped
    assert seen["allowed_hosts"] == ["model.example"]
    assert (seen["max_rows"], seen["max_body_bytes"]) == (5, 9999)
    assert serve_models(["a", "a@champion", "b@3"]) == {"a": ["a@champion"], "b": ["b@3"]}
    assert serve_models(None) is None
    for bad in ("--max-rows", "--max-body-bytes"):
        assert cli("serve", bad, "0", "-w", ws_path).code == 2


def test_help_documents_the_limits_and_the_token(cli: Callable[..., Result]) -> None:
    text = " ".join(cli("serve", "--help").out.split())
    for option in ("--token-file", "--allowed-host", "--max-rows", "--max-body-bytes"):
        assert option in text
    assert "--token " not in text  # hidden: it only explains why it is refused


def _lines(stream: Any, out: queue.Queue[str]) -> None:
    for line in stream:
        out.put(line)


def test_loopml_serve_says_serving_only_when_ready(ws_path: Path) -> None:
    """A real `loopml serve` process: the token file, the ready line, both versions served."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    args = ["serve", "--port", str(port), "-w", str(ws_path), "-m", "cancer@1", "-m", "cancer@2"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "loopml", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stderr, lines), daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while not any("serving on" in line for line in seen):
            assert proc.poll() is None, "".join(seen)
            assert time.monotonic() < deadline, "".join(seen)
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                continue
        # printed only once the port is bound and the models are loaded: ready at once
        assert httpx.get(f"{url}/v2/health/ready", timeout=5).status_code == 200
        text = "".join(seen)
        assert text.index("event=model_loaded") < text.index("serving on")
        assert f"serving on {url}" in text
        token_file = ws_path / "serve-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        assert str(token_file) in " ".join(text.split()) and token not in text
        listed = httpx.get(f"{url}/v1/models", timeout=5).json()["models"]
        assert [(m["reference"], m["version"]) for m in listed] == [
            ("cancer@1", 1),
            ("cancer@2", 2),
        ]
        reload = f"{url}/v1/models/cancer:reload"
        assert httpx.post(reload, timeout=5).status_code == 401
        auth = {"Authorization": f"Bearer {token}"}
        assert httpx.post(reload, headers=auth, timeout=30).status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
