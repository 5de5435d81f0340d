"""Dynamic micro-batching: own rows back, real batching, no needless wait, failure isolation."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from loopml.registry.bundle import Prediction
from loopml.registry.signature import Columns
from loopml.serve.batching import MicroBatcher


class Doubler:
    """A stand-in estimator: label = 2x, records each call's size, optionally slow."""

    def __init__(self, delay: float = 0.0, poison: float | None = None) -> None:
        self.delay = delay
        self.poison = poison
        self.calls: list[int] = []
        self.threads: set[str] = set()

    def __call__(self, frame: Columns) -> Prediction:
        self.calls.append(len(frame["x"]))
        self.threads.add(threading.current_thread().name)
        if self.delay:
            time.sleep(self.delay)
        x = frame["x"]
        if self.poison is not None and (x == self.poison).any():
            raise RuntimeError("poisoned row")
        proba = np.column_stack([1 / (1 + x), x / (1 + x)])
        return Prediction(x * 2.0, proba, [0, 1])


def frame(*values: float) -> Columns:
    return {"x": np.array(values, dtype=np.float64)}


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2, thread_name_prefix="test-predict") as pool:
        yield pool


def test_concurrent_requests_share_a_call_and_get_their_rows(executor: ThreadPoolExecutor) -> None:
    model = Doubler(delay=0.02)
    batches: list[tuple[int, int]] = []

    async def main() -> list[Prediction]:
        b = MicroBatcher(
            model,
            executor,
            max_batch=64,
            max_wait_ms=5,
            on_batch=lambda r, n: batches.append((r, n)),
        )
        reqs = [frame(i, i + 0.5) if i % 3 == 0 else frame(i) for i in range(30)]
        out = await asyncio.gather(*(b.submit(f) for f in reqs))
        await b.aclose()
        return list(out)

    results = run(main())
    assert isinstance(results, list)
    for i, pred in enumerate(results):
        expected = [i, i + 0.5] if i % 3 == 0 else [i]
        assert pred.labels.tolist() == [2 * v for v in expected]
        assert pred.probabilities is not None
        np.testing.assert_allclose(pred.probabilities[:, 1], [v / (1 + v) for v in expected])
    assert sum(model.calls) == 40
    assert len(model.calls) < 30  # predicted together
    assert max(n for _, n in batches) > 1
    assert all(t.startswith("test-predict") for t in model.threads)  # never the event loop


def test_max_batch_is_respected(executor: ThreadPoolExecutor) -> None:
    model = Doubler(delay=0.01)

    async def main() -> None:
        b = MicroBatcher(model, executor, max_batch=4, max_wait_ms=5)
        results = await asyncio.gather(
            *(b.submit(frame(i)) for i in range(20)), b.submit(frame(*range(10)))
        )
        assert results[-1].labels.tolist() == [2.0 * v for v in range(10)]
        await b.aclose()

    run(main())
    assert sum(model.calls) == 30
    assert max(model.calls) <= 4  # a big request is split into chunks, never over the bound


def test_lone_request_does_not_wait_for_the_window(executor: ThreadPoolExecutor) -> None:
    model = Doubler()

    async def main() -> float:
        b = MicroBatcher(model, executor, max_batch=64, max_wait_ms=10_000)
        await b.submit(frame(1))  # start the worker
        t0 = time.perf_counter()
        for _ in range(5):
            await b.submit(frame(1))
        elapsed = time.perf_counter() - t0
        await b.aclose()
        return elapsed

    elapsed = run(main())
    assert isinstance(elapsed, float)
    # waiting for the window would take 5 x 10 s; the bound is loose for a noisy machine
    assert elapsed < 5.0


def test_a_failing_request_does_not_fail_its_batch(executor: ThreadPoolExecutor) -> None:
    model = Doubler(delay=0.01, poison=13.0)

    async def main() -> list[object]:
        b = MicroBatcher(model, executor, max_batch=64, max_wait_ms=5)
        out = await asyncio.gather(*(b.submit(frame(i)) for i in range(20)), return_exceptions=True)
        await b.aclose()
        return list(out)

    results = run(main())
    assert isinstance(results, list)
    assert isinstance(results[13], RuntimeError)
    for i, r in enumerate(results):
        if i != 13:
            assert isinstance(r, Prediction)
            assert r.labels.tolist() == [2.0 * i]


def test_close_drains_queue_and_later_submits_still_work(executor: ThreadPoolExecutor) -> None:
    model = Doubler(delay=0.01)

    async def main() -> None:
        b = MicroBatcher(model, executor, max_batch=2, max_wait_ms=1)
        pending = [asyncio.ensure_future(b.submit(frame(i))) for i in range(6)]
        await asyncio.sleep(0)  # let them queue
        await b.aclose()
        assert all(p.done() for p in pending)
        assert [p.result().labels.tolist() for p in pending] == [[2.0 * i] for i in range(6)]
        late = await b.submit(frame(7))
        assert late.labels.tolist() == [14.0]

    run(main())
