"""`kill -9` a serving `loopml serve` mid-load: every answered prediction id reaches the
prediction log exactly once after a restart (the spool is compacted at start)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier

from loopml.predictions import read_prediction_log
from loopml.registry import register_model, set_alias
from loopml.train import fit_bundle
from loopml.workspace import init, open_workspace


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(root: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "loopml", "serve", "--port", str(port), "-w", str(root)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"server not ready: {log.read_text(errors='replace')[-3000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.mark.slow
def test_every_acknowledged_id_is_logged_once_after_kill_9(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    ws = init(root)
    try:
        df = load_breast_cancer(as_frame=True).frame
        bundle, x = fit_bundle(df, "target", RandomForestClassifier(5, random_state=0))
        set_alias(ws, "cancer", "champion", register_model(ws, "cancer", bundle).version)
    finally:
        ws.close()
    rows = [{str(k): float(v) for k, v in r.items()} for r in x.iloc[:4].to_dict("records")]
    body = orjson.dumps({"instances": rows})
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    proc = _start(root, port, log)
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=url, timeout=5) as c:
            for _ in range(10_000):  # bounded; the kill ends it much sooner
                if stop.is_set():
                    return
                try:
                    resp = c.post(
                        "/v1/models/cancer:predict",
                        content=body,
                        headers={"content-type": "application/json"},
                    )
                except httpx.TransportError:
                    return  # the server is gone
                if resp.status_code == 200:
                    ids = [p["prediction_id"] for p in resp.json()["predictions"]]
                    with lock:
                        acked.extend(ids)

    try:
        _wait_ready(url, proc, log)
        threads = [threading.Thread(target=client, daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # well into the load, past a segment seal
            with lock:
                if len(acked) >= 2000:
                    break
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)  # mid-load: requests are in flight
        proc.wait(10)
        stop.set()
        for t in threads:
            t.join(30)
        with lock:
            answered = list(acked)
        assert len(answered) >= 400, log.read_text(errors="replace")[-3000:]
        spool = root / "spool"
        assert any(p.suffix in (".open", ".seg") for p in spool.rglob("*")), "nothing spooled"
        # restart: the new server compacts what the killed one left
        proc = _start(root, port, log)
        _wait_ready(url, proc, log)
        ws = open_workspace(root)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                logged = read_prediction_log(ws.lake, "cancer")
                if set(answered) <= set(logged["prediction_id"]):
                    break
                time.sleep(0.2)
            counts = logged["prediction_id"].value_counts()
            missing = set(answered) - set(counts.index)
            assert not missing, f"{len(missing)} of {len(answered)} answered ids not logged"
            assert counts.max() == 1, "an id was logged twice"
        finally:
            ws.close()
    finally:
        stop.set()
        _stop(proc)


def _moto(port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text(errors="replace")[-2000:]
        try:
            httpx.get(f"http://127.0.0.1:{port}", timeout=1)
            return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("moto did not start")


@pytest.mark.slow
def test_s3_down_serving_goes_on_spool_bounded_then_drains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("moto")
    import numpy as np
    import pandas as pd

    from loopml.predictions import PredictionLogger
    from loopml.registry.bundle import Prediction
    from loopml.serve.metrics import Metrics
    from loopml.settings import Settings
    from loopml.stores.fs import S3Lake

    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    moto = _moto(port, tmp_path / "moto.log")
    metrics = Metrics()
    try:
        lake = S3Lake("s3://loopml-down/prefix", Settings(s3_endpoint_url=endpoint))
        logger = PredictionLogger(
            lake,
            tmp_path / "spool",
            max_spool_bytes=60_000,
            seal_seconds=0.1,
            retry_seconds=0.2,
            metrics=metrics,
        )

        def batch(k: int) -> tuple[pd.DataFrame, Prediction, list[str]]:
            frame = pd.DataFrame({"x": np.arange(5, dtype=np.float64) + k})
            return (
                frame,
                Prediction(np.arange(5, dtype=np.float64), None, None),
                [f"{k:016x}{i:016x}" for i in range(5)],
            )

        try:
            moto.terminate()  # S3 goes down
            moto.wait(10)
            slowest = 0.0
            for k in range(300):
                t = time.monotonic()
                logger.log("down", 1, *batch(k), latency_ms=1.0)
                slowest = max(slowest, time.monotonic() - t)
            assert slowest < 1.0  # appends never wait for the lake
            assert metrics.log_dropped.value() > 0  # the spool is bounded
            assert logger.spool_bytes <= 60_000
            kept = 1500 - metrics.log_dropped.value()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and metrics.log_errors.value() == 0:
                time.sleep(0.1)
            assert metrics.log_errors.value() > 0
            moto = _moto(port, tmp_path / "moto.log")  # S3 is back (empty: moto is in memory)
            lake.fs.mkdir("loopml-down")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and logger.spool_bytes > 0:
                time.sleep(0.1)
            assert logger.spool_bytes == 0
        finally:
            logger.close()
        logged = read_prediction_log(lake, "down")
        assert len(logged) == kept and logged["prediction_id"].is_unique
    finally:
        if moto.poll() is None:
            moto.terminate()
            moto.wait(10)
