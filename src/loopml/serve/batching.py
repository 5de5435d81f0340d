"""Dynamic micro-batching: concurrent requests for one model share one predict call.

Each request is validated on its own and hands its typed frame to :meth:`MicroBatcher.submit`.
One worker task per batcher takes what is waiting (up to ``max_batch`` rows), predicts it in a
worker thread (the event loop never blocks on a model) and gives every request its own rows.

Batches form by themselves under load: while one batch is being predicted, new requests
queue up and go together in the next call. On an idle server a lone request is predicted at
once; only when there is concurrent traffic (several requests waiting, or several in the last
batch) does the worker wait up to ``max_wait_ms``, counted from the first request's arrival,
for more rows to fill the batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

import pandas as pd

from loopml.registry.bundle import Prediction

log = logging.getLogger("loopml.serve.batching")

PredictFn = Callable[[pd.DataFrame], Prediction]


@dataclass
class _Item:
    frame: pd.DataFrame
    future: asyncio.Future[Prediction]
    arrived: float


def slice_prediction(pred: Prediction, start: int, stop: int) -> Prediction:
    """Rows ``start:stop`` of a batch prediction."""
    proba = pred.probabilities[start:stop] if pred.probabilities is not None else None
    return Prediction(
        pred.labels[start:stop], proba, pred.classes, positive_index=pred.positive_index
    )


def _predict_many(predict: PredictFn, frames: list[pd.DataFrame]) -> Prediction:
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    return predict(frame)


class MicroBatcher:
    """Collects concurrent frames for one loaded model and predicts them together."""

    def __init__(
        self,
        predict: PredictFn,
        executor: Executor,
        *,
        max_batch: int = 64,
        max_wait_ms: float = 2.0,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> None:
        self._predict = predict
        self._executor = executor
        self.max_batch = max(1, int(max_batch))
        self.max_wait = max(0.0, float(max_wait_ms)) / 1000.0
        self._on_batch = on_batch
        self._pending: deque[_Item] = deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._last_requests = 0

    async def submit(self, frame: pd.DataFrame) -> Prediction:
        """Predict ``frame`` (already validated), batched with whatever else is waiting."""
        loop = asyncio.get_running_loop()
        if self._closing:
            # a request that picked this model just before a hot swap: predict on its own
            return await loop.run_in_executor(self._executor, self._predict, frame)
        if self._task is None or self._task.done():
            self._wakeup = asyncio.Event()
            self._task = loop.create_task(self._run(), name="loopml-batcher")
        future: asyncio.Future[Prediction] = loop.create_future()
        self._pending.append(_Item(frame, future, loop.time()))
        if self._wakeup is not None:
            self._wakeup.set()
        return await future

    def _take(self, batch: list[_Item], rows: int) -> int:
        """Move waiting items into ``batch`` while they fit in ``max_batch`` rows."""
        pending = self._pending
        while pending:
            n = len(pending[0].frame)
            if batch and rows + n > self.max_batch:
                break
            batch.append(pending.popleft())
            rows += n
        return rows

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        wakeup = self._wakeup
        if wakeup is None:  # pragma: no cover - set together with the task
            return
        while True:
            while not self._pending:
                if self._closing:
                    return
                wakeup.clear()
                await wakeup.wait()
            batch: list[_Item] = []
            rows = self._take(batch, 0)
            # Concurrent traffic (several requests waiting now, or in the last batch): give
            # stragglers until the first request's deadline to join. On an idle server a lone
            # request goes at once.
            concurrent = len(batch) > 1 or self._last_requests > 1
            if concurrent and rows < self.max_batch and self.max_wait > 0:
                deadline = batch[0].arrived + self.max_wait
                while rows < self.max_batch and not self._pending_too_big(rows):
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    wakeup.clear()
                    try:
                        await asyncio.wait_for(wakeup.wait(), remaining)
                    except TimeoutError:
                        rows = self._take(batch, rows)
                        break
                    rows = self._take(batch, rows)
            self._last_requests = len(batch)
            try:
                await self._run_batch(loop, batch, rows)
            except Exception as exc:  # a bug here must not leave requests waiting forever
                log.exception("micro-batch failed")
                for item in batch:
                    _fail(item, exc)

    def _pending_too_big(self, rows: int) -> bool:
        return bool(self._pending) and rows + len(self._pending[0].frame) > self.max_batch

    async def _run_batch(
        self, loop: asyncio.AbstractEventLoop, batch: list[_Item], rows: int
    ) -> None:
        frames = [item.frame for item in batch]
        try:
            pred = await loop.run_in_executor(self._executor, _predict_many, self._predict, frames)
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch[0], exc)
                return
            # One request's rows may be what breaks the model: predict each on its own so
            # that only that request fails.
            log.warning(
                "batch of %d requests failed (%s); predicting them one by one", len(batch), exc
            )
            for item in batch:
                try:
                    one = await loop.run_in_executor(self._executor, self._predict, item.frame)
                except Exception as item_exc:
                    _fail(item, item_exc)
                else:
                    if not item.future.done():
                        item.future.set_result(one)
            return
        if self._on_batch is not None:
            self._on_batch(rows, len(batch))
        if len(batch) == 1:
            if not batch[0].future.done():
                batch[0].future.set_result(pred)
            return
        start = 0
        for item in batch:
            stop = start + len(item.frame)
            if not item.future.done():
                item.future.set_result(slice_prediction(pred, start, stop))
            start = stop

    async def aclose(self) -> None:
        """Finish what is queued, then stop the worker; later submits predict directly."""
        self._closing = True
        if self._wakeup is not None:
            self._wakeup.set()
        if self._task is not None:
            try:
                await self._task
            except asyncio.CancelledError:
                pass


def _fail(item: _Item, exc: BaseException) -> None:
    if not item.future.done():
        item.future.set_exception(exc)
