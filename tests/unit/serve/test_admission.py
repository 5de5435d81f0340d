"""Admission control: a bounded queue per model; past it 503 with Retry-After and a JSON body,
counted; memory (the queue) stays bounded under a flood, and latency is back to normal as
soon as the flood stops."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import orjson
import pytest

from loopml.registry import register_model, set_alias
from loopml.serve import start_background_server
from loopml.serve.metrics import parse_exposition
from loopml.workspace import Workspace

from .test_serve_app import cancer_bundle, records


@pytest.mark.slow
def test_flood_gets_503s_with_retry_after_and_recovers(workspace: Workspace) -> None:
    bundle, x = cancer_bundle()
    mv = register_model(workspace, "cancer", bundle)
    set_alias(workspace, "cancer", "champion", mv.version)
    queue_rows = 4
    server = start_background_server(
        workspace,
        reload_interval=0,
        log_predictions=False,
        queue_rows=queue_rows,
        retry_after=3,
        max_batch=2,
    )
    runtime = server.model_server.models.runtime("cancer")  # type: ignore[union-attr]
    batcher = runtime.batcher
    predict = runtime.predict_columns

    def slow(columns: Any) -> Any:  # a model at capacity: every call takes 20 ms
        time.sleep(0.02)
        return predict(columns)

    batcher._predict = slow
    body = orjson.dumps({"instances": records(x, 1)})
    headers = {"content-type": "application/json"}
    url = f"{server.url}/v1/models/cancer:predict"
    peak = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, batcher.queued_rows)
            time.sleep(0.001)

    async def flood() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        async with httpx.AsyncClient(timeout=30.0, limits=limits) as client:
            return list(
                await asyncio.gather(
                    *(client.post(url, content=body, headers=headers) for _ in range(300))
                )
            )

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        t0 = time.monotonic()
        responses = asyncio.run(flood())
        flood_seconds = time.monotonic() - t0
    finally:
        stop.set()
        watcher.join(5)
    try:
        statuses = [r.status_code for r in responses]
        assert set(statuses) <= {200, 503}, statuses
        rejected = [r for r in responses if r.status_code == 503]
        assert rejected, "a flood past the queue must get 503s"
        assert statuses.count(200) >= queue_rows
        for r in rejected[:5]:
            assert r.headers["retry-after"] == "3"
            assert r.headers["content-type"] == "application/json"
            err = r.json()
            assert err["code"] == "overloaded"
            assert err["where"] == {"model": "cancer", "version": "1"}
            assert err["retry_after"] == 3
            assert "serve_queue_rows" in err["hint"]
        for r in responses:
            if r.status_code == 200:
                assert r.headers["x-loopml-version"] == "1"
        assert peak <= queue_rows  # the queue never grew past its bound
        # 300 requests through a 20 ms model (2 rows per call) would take ~3 s if all queued
        assert flood_seconds < 30
        assert batcher.queued_rows == 0
        # the flood is over: a normal request is answered at once
        batcher._predict = predict
        with httpx.Client(timeout=10.0) as client:
            t1 = time.monotonic()
            ok = client.post(url, content=body, headers=headers)
            assert ok.status_code == 200
            assert time.monotonic() - t1 < 2.0
            samples = parse_exposition(client.get(f"{server.url}/metrics").text)
        key = 'loopml_requests_rejected_total{model="cancer",version="1"}'
        assert samples[key] == len(rejected)
        assert samples['loopml_queue_rows{model="cancer",version="1"}'] == 0
        err_key = (
            'loopml_requests_total{model="cancer",version="1",endpoint="v1_predict",status="503"}'
        )
        assert samples[err_key] == len(rejected)
    finally:
        server.stop()
