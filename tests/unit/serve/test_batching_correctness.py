"""Micro-batching correctness where other servers' batchers fail (BentoML's issues): the bound
is never exceeded, a request's own row count is respected (split into chunks, answers in
order), max_batch=1 works, concurrent requests really batch, max_wait_ms is honoured, and
fast predictors run inline while slow ones run in a worker thread."""

from __future__ import annotations

import asyncio
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import orjson
import pytest

from loopml.registry import load_model, register_model, set_alias
from loopml.registry.bundle import Prediction
from loopml.registry.signature import Columns
from loopml.serve import create_app
from loopml.serve.batching import MicroBatcher
from loopml.workspace import Workspace

from .test_serve_app import cancer_bundle, records

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


class Model:
    """label = 3x + row position inside the request is checked by the caller; records calls."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls: list[int] = []
        self.threads: set[str] = set()

    def __call__(self, columns: Columns) -> Prediction:
        x = columns["x"]
        self.calls.append(len(x))
        self.threads.add(threading.current_thread().name)
        if self.delay:
            time.sleep(self.delay)
        proba = np.column_stack([1 / (1 + np.abs(x)), np.abs(x) / (1 + np.abs(x))])
        return Prediction(x * 3.0, proba, [0, 1])


def cols(values: Any) -> Columns:
    return {"x": np.asarray(values, dtype=np.float64)}


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2, thread_name_prefix="test-predict") as pool:
        yield pool


def check_answers(requests: list[np.ndarray], answers: list[Prediction]) -> None:
    for values, pred in zip(requests, answers, strict=True):
        assert pred.labels.tolist() == (values * 3.0).tolist()  # own rows, in order
        assert pred.probabilities is not None
        assert pred.probabilities.shape == (len(values), 2)


@pytest.mark.parametrize("max_batch", [1, 3, 8])
def test_never_over_max_batch_and_every_request_gets_its_rows(
    executor: ThreadPoolExecutor, max_batch: int
) -> None:
    model = Model(delay=0.002)
    rng = np.random.default_rng(max_batch)
    # sizes from 1 row to 5x the bound: big requests must be split, never sent whole
    requests = [rng.normal(size=int(k)) for k in rng.integers(1, 5 * max_batch + 1, 60)]

    async def main() -> list[Prediction]:
        b = MicroBatcher(model, executor, max_batch=max_batch, max_wait_ms=3)
        out = await asyncio.gather(*(b.submit(cols(v)) for v in requests))
        assert b.queued_rows == 0
        await b.aclose()
        return list(out)

    answers = asyncio.run(main())
    check_answers(requests, answers)
    assert max(model.calls) <= max_batch
    assert sum(model.calls) == sum(len(v) for v in requests)


def test_a_big_request_is_split_into_chunks_answered_in_order(
    executor: ThreadPoolExecutor,
) -> None:
    model = Model()
    values = np.arange(103, dtype=np.float64)

    async def main() -> Prediction:
        b = MicroBatcher(model, executor, max_batch=10, max_wait_ms=1)
        pred = await b.submit(cols(values))
        await b.aclose()
        return pred

    pred = asyncio.run(main())
    assert pred.labels.tolist() == (values * 3.0).tolist()
    assert pred.probabilities is not None and pred.probabilities.shape == (103, 2)
    assert sorted(model.calls) == sorted([10] * 10 + [3])


def test_max_batch_one_with_concurrency(executor: ThreadPoolExecutor) -> None:
    model = Model(delay=0.001)
    requests = [np.array([float(i)] * (1 + i % 3)) for i in range(30)]

    async def main() -> list[Prediction]:
        b = MicroBatcher(model, executor, max_batch=1, max_wait_ms=5)
        out = await asyncio.gather(*(b.submit(cols(v)) for v in requests))
        await b.aclose()
        return list(out)

    check_answers(requests, asyncio.run(main()))
    assert set(model.calls) == {1}


def test_concurrent_requests_really_batch(executor: ThreadPoolExecutor) -> None:
    model = Model(delay=0.01)  # a slow model: requests pile up while it predicts
    seen: list[tuple[int, int]] = []

    async def main() -> list[Prediction]:
        b = MicroBatcher(
            model, executor, max_batch=64, max_wait_ms=2, on_batch=lambda r, n: seen.append((r, n))
        )
        out = await asyncio.gather(*(b.submit(cols([i])) for i in range(100)))
        await b.aclose()
        return list(out)

    check_answers([np.array([float(i)]) for i in range(100)], asyncio.run(main()))
    assert sum(model.calls) == 100
    assert len(model.calls) <= 20  # rows per call well above 1
    assert 100 / len(model.calls) > 4
    assert max(n for _, n in seen) > 1


def test_max_wait_is_honoured(executor: ThreadPoolExecutor) -> None:
    """Under concurrent traffic a batch waits for stragglers, but never past max_wait_ms
    counted from its first request; a straggler inside the window joins the batch."""
    model = Model()
    wait_ms = 150.0

    async def main() -> tuple[float, list[int]]:
        b = MicroBatcher(model, executor, max_batch=64, max_wait_ms=wait_ms, inline=False)
        await asyncio.gather(b.submit(cols([1])), b.submit(cols([2])))  # now "concurrent"
        model.calls.clear()
        t0 = time.perf_counter()
        first = asyncio.ensure_future(b.submit(cols([3])))
        await asyncio.sleep(0.03)  # a straggler well inside the window
        second = asyncio.ensure_future(b.submit(cols([4])))
        await asyncio.gather(first, second)
        elapsed = time.perf_counter() - t0
        calls = list(model.calls)
        await b.aclose()
        return elapsed, calls

    elapsed, calls = asyncio.run(main())
    assert calls == [2]  # the straggler joined
    assert elapsed >= wait_ms / 1000 * 0.9  # the window was used ...
    assert elapsed < wait_ms / 1000 + 0.5  # ... and not overrun (loose for a noisy machine)


def test_fast_predictors_run_inline_and_slow_ones_in_a_thread(
    executor: ThreadPoolExecutor,
) -> None:
    fast, slow = Model(), Model(delay=0.005)

    async def main() -> tuple[MicroBatcher, MicroBatcher]:
        bf = MicroBatcher(fast, executor, max_batch=8, max_wait_ms=1)
        bs = MicroBatcher(slow, executor, max_batch=8, max_wait_ms=1)
        for i in range(20):
            await bf.submit(cols([i]))
            await bs.submit(cols([i]))
        await asyncio.gather(*(bf.submit(cols([i])) for i in range(20)))
        await bf.aclose()
        await bs.aclose()
        return bf, bs

    bf, bs = asyncio.run(main())
    # measured first in a thread, then inline (a noisy machine may send a few back)
    assert bf.inline_calls > 4 * bf.thread_calls
    assert threading.main_thread().name in fast.threads
    assert bs.inline_calls == 0
    assert all(t.startswith("test-predict") for t in slow.threads)  # never the event loop


def test_server_splits_a_big_request_and_answers_in_order(workspace: Workspace) -> None:
    bundle, x = cancer_bundle()
    mv = register_model(workspace, "cancer", bundle)
    set_alias(workspace, "cancer", "champion", mv.version)
    app = create_app(workspace, reload_interval=0, log_predictions=False, max_batch=4)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        resp = client.post(
            "/v1/models/cancer:predict",
            content=orjson.dumps({"instances": records(x, 37, start=50)}),
            headers={"content-type": "application/json"},
        )
        assert resp.status_code == 200, resp.text
        assert resp.headers["x-loopml-version"] == "1"
        text = client.get("/metrics").text
    preds = resp.json()["predictions"]
    expected = load_model(workspace, "cancer").predict(x.iloc[50:87])
    assert [p["prediction"] for p in preds] == expected.labels.tolist()
    assert expected.probabilities is not None
    got = np.array([[p["probabilities"]["0"], p["probabilities"]["1"]] for p in preds])
    np.testing.assert_allclose(got, expected.probabilities, rtol=0, atol=1e-6)
    assert 'loopml_batch_size_bucket{model="cancer",le="4"} 10' in text  # 9 x 4 rows + 1
