"""Dynamic micro-batching: concurrent requests for one model share one predict call.

Each request is validated on its own and hands its :data:`~loopml.registry.signature.Columns`
to :meth:`MicroBatcher.submit`. One worker task per batcher takes what is waiting (up to
``max_batch`` rows, never more), concatenates the columns and predicts them in one call, and
gives every request its own rows. A request of more than ``max_batch`` rows is split into
chunks of at most ``max_batch`` rows, queued in order, and its answer reassembled in order.

Batches form by themselves under load. For a fast predictor (see below) every request that
reaches :meth:`MicroBatcher.submit` in one event-loop iteration is predicted together when
that iteration ends (``loop.call_soon``): under load the loop resumes many request tasks per
iteration (everything one poll read from the sockets), so they share calls at no added
latency, and a lone request on an idle server costs one loop iteration, not ``max_wait_ms``.
(Predicting a lone request at once, as this module did before, left 1.4 requests per call at
32 connections.) A slow predictor runs in a worker thread fed by one worker task per batcher:
while one batch is being predicted, new requests queue up and go together in the next call,
and when there is concurrent traffic (several requests waiting, or several in the last
batch) the worker waits up to ``max_wait_ms``, counted from the first request's arrival, for
more rows to fill the batch.

Where a call runs: handing a batch to a worker thread costs 60-90 us of round trip on a
2-core machine (measured with uvloop and asyncio), more than an ONNX Runtime call on a handful
of rows (~20 us), and on a server pinned to one core the thread buys no parallelism. The
batcher times every call and predicts inline in the event loop while the median of the last
:data:`TIMING_WINDOW` calls is under ``inline_below_s`` (1 ms: measured in-process on a
100-tree forest compiled to ONNX, inline took 164 us of CPU per request against 202 us through
the thread, p50 152 vs 174 us; the median, because on a busy machine a few calls preempted by
other processes look slow); a slow predictor (scikit-learn on a large batch) runs in a worker
thread, so the event loop never stalls for long on a model.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Executor
from concurrent.futures import Future as ThreadFuture
from time import perf_counter

import numpy as np

from loopml.registry.bundle import Prediction
from loopml.registry.signature import BlockColumns, Columns
from loopml.serve.records import RowBlock, as_columns

log = logging.getLogger("loopml.serve.batching")

PredictFn = Callable[[Columns], Prediction]  # with ``blocks``: a RowBlock too
#: ``n`` -> n new prediction ids
IdsFn = Callable[[int], list[str]]
#: called in the event loop after each successful model call, before any of its requests is
#: answered: (the call's columns, its prediction, its ids, per request (arrival, rows)).
#: It returns None when it is done (the prediction log spooled the rows), or a future the
#: answers wait for (the log's fsync in its writer thread).
AnsweredFn = Callable[
    [Columns | RowBlock, Prediction, list[str], Sequence[tuple[float, int]]],
    "ThreadFuture[None] | None",
]
INLINE_BELOW_S = 1e-3  # predict in the event loop while a call takes less than this
TIMING_WINDOW = 9  # calls whose median decides inline or thread
Answer = tuple[Prediction, list[str]]  # a request's rows predicted, and their ids


class _Item:
    __slots__ = ("arrived", "columns", "future", "rows", "settled", "t0")

    def __init__(self, columns: Rows, rows: int, future: asyncio.Future[Answer], t0: float) -> None:
        self.columns = columns
        self.rows = rows
        self.future = future
        self.arrived = 0.0  # loop time it reached the worker queue (the max_wait deadline)
        self.t0 = t0  # perf_counter when the request arrived (the logged latency)
        self.settled = False  # answered or failed (its rows left queued_rows)


def slice_prediction(pred: Prediction, start: int, stop: int) -> Prediction:
    """Rows ``start:stop`` of a batch prediction."""
    proba = pred.probabilities[start:stop] if pred.probabilities is not None else None
    if _FAST_PREDICTION:
        # a request's share of its call, made once per request on the hot path: without
        # the frozen dataclass's __init__ (one object.__setattr__ per field, most of the
        # cost); the same fields and values (checked at import: _FAST_PREDICTION)
        part = _new(Prediction)
        _set(
            part,
            "__dict__",
            {
                "labels": pred.labels[start:stop],
                "probabilities": proba,
                "classes": pred.classes,
                "unknown_fields": None,
                "positive_index": pred.positive_index,
            },
        )
        return part
    return Prediction(
        pred.labels[start:stop], proba, pred.classes, positive_index=pred.positive_index
    )


_new = object.__new__
_set = object.__setattr__
#: Prediction is the plain (frozen, no __slots__, no __post_init__) dataclass of these fields,
#: so slice_prediction may fill its __dict__ directly
_FAST_PREDICTION = (
    tuple(f.name for f in dataclasses.fields(Prediction))
    == ("labels", "probabilities", "classes", "unknown_fields", "positive_index")
    and not hasattr(Prediction, "__slots__")
    and not hasattr(Prediction, "__post_init__")
)


def join_predictions(parts: list[Prediction]) -> Prediction:
    """One prediction from consecutive parts (a request that was split into chunks)."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    labels = np.concatenate([p.labels for p in parts])
    proba = (
        np.concatenate([p.probabilities for p in parts if p.probabilities is not None])
        if first.probabilities is not None
        else None
    )
    return Prediction(labels, proba, first.classes, positive_index=first.positive_index)


Rows = Columns | RowBlock  # what a request submits (RowBlock: the records reader's block)


def slice_columns(columns: Mapping[str, np.ndarray] | RowBlock, start: int, stop: int) -> Rows:
    if isinstance(columns, RowBlock):
        return RowBlock(columns.block[start:stop], columns.names)
    if isinstance(columns, BlockColumns):
        return columns.rows(start, stop)
    return {name: values[start:stop] for name, values in columns.items()}


def concat_columns(parts: Sequence[Rows], blocks: bool = False) -> Rows:
    """One call's :data:`Columns` from its requests' rows, in order: numeric blocks of the
    same features with one concatenation (not one per feature). With ``blocks`` (the
    predictor takes a :class:`RowBlock`), requests that are all blocks of the same features
    stay one :class:`RowBlock`: no per-feature views are made (a :class:`BlockColumns` makes
    one per feature, every call)."""
    first = parts[0]
    if blocks and isinstance(first, RowBlock | BlockColumns):
        names = first.names
        if all(isinstance(p, RowBlock | BlockColumns) and p.names == names for p in parts):
            if len(parts) == 1:
                return first if isinstance(first, RowBlock) else RowBlock(first.block, names)
            return RowBlock(np.concatenate([p.block for p in parts]), names)  # type: ignore[union-attr]
    if len(parts) == 1:
        return as_columns(first)
    if isinstance(first, RowBlock | BlockColumns):
        names = first.names
        if all(isinstance(p, RowBlock | BlockColumns) and p.names == names for p in parts):
            return BlockColumns(np.concatenate([p.block for p in parts]), names)  # type: ignore[union-attr]
    cols = [as_columns(p) for p in parts]
    return {name: np.concatenate([p[name] for p in cols]) for name in cols[0]}


def columns_rows(columns: Mapping[str, np.ndarray] | RowBlock) -> int:
    if isinstance(columns, RowBlock):
        return len(columns)
    for values in columns.values():
        return len(values)
    return 0


class MicroBatcher:
    """Collects concurrent requests' columns for one loaded model and predicts them together.

    ``max_batch`` bounds the rows of every predict call. ``inline`` lets fast predictors run
    in the event loop (see the module docstring); ``on_batch(rows, requests)`` is called
    after each call. ``queued_rows`` counts rows submitted and not yet answered (admission
    control reads it).

    ``ids`` gives each call's rows their prediction ids (one call per model call, not per
    request), and ``answered`` (see :data:`AnsweredFn`) sees every call's rows before any of
    its requests is answered: the server spools the prediction log there, one record per
    call, so a request waits for one thing (its call) and never for a separate log write.
    """

    def __init__(
        self,
        predict: PredictFn,
        executor: Executor,
        *,
        max_batch: int = 64,
        max_wait_ms: float = 2.0,
        on_batch: Callable[[int, int], None] | None = None,
        inline: bool = True,
        inline_below_s: float = INLINE_BELOW_S,
        ids: IdsFn | None = None,
        answered: AnsweredFn | None = None,
        blocks: bool = False,
    ) -> None:
        self._predict: Callable[[Rows], Prediction] = predict  # type: ignore[assignment]
        # ``predict`` takes a RowBlock (block and names) for numeric rows: calls keep them so
        self._blocks = bool(blocks)
        self._ids = ids
        self._answered = answered
        self._executor = executor
        self.max_batch = max(1, int(max_batch))
        self.max_wait = max(0.0, float(max_wait_ms)) / 1000.0
        self._on_batch = on_batch
        self._inline = inline
        self._inline_below = float(inline_below_s)
        self.call_seconds = float("inf")  # median of recent calls; unknown until the first
        self._recent: deque[float] = deque(maxlen=TIMING_WINDOW)
        self.inline_calls = 0
        self.thread_calls = 0
        self._pending: deque[_Item] = deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._last_requests = 0
        self._busy = False  # a batch is being predicted
        self.queued_rows = 0
        # requests of this event-loop tick for the inline path, predicted when it ends
        self._tick: list[_Item] = []
        self._tick_scheduled = False

    # -- calling the model ------------------------------------------------------------------

    def _timed(self, columns: Rows) -> tuple[Prediction, float]:
        t0 = perf_counter()
        pred = self._predict(columns)
        return pred, perf_counter() - t0

    def _observe(self, seconds: float) -> None:
        # the median of the last calls: on a busy machine a few calls preempted by other
        # processes look slow, and must not send a fast model to the worker thread
        window = self._recent
        window.append(seconds)
        self.call_seconds = sorted(window)[len(window) // 2]

    async def _call(self, loop: asyncio.AbstractEventLoop, columns: Rows) -> Prediction:
        """One predict call: inline while calls are fast, else in a worker thread."""
        if self._inline and self.call_seconds < self._inline_below:
            self.inline_calls += 1
            pred, seconds = self._timed(columns)
        else:
            self.thread_calls += 1
            pred, seconds = await loop.run_in_executor(self._executor, self._timed, columns)
        self._observe(seconds)
        return pred

    # -- submitting -------------------------------------------------------------------------

    async def submit(self, columns: Rows, rows: int | None = None) -> Prediction:
        """Predict ``columns`` (already validated), batched with whatever else is waiting;
        more than ``max_batch`` rows go as several chunks, answered in order."""
        pred, _ = await self.submit_ids(columns, rows)
        return pred

    def submit_ids(
        self, columns: Rows, rows: int | None = None, t0: float | None = None
    ) -> Awaitable[Answer]:
        """:meth:`submit`, answering the prediction and its rows' ids (empty without an
        ``ids`` source); ``t0`` is when the request arrived (``perf_counter``; the latency
        ``answered`` sees). A request of at most ``max_batch`` rows gets the future of its
        call itself (no coroutine in between: the hot path awaits one thing)."""
        n = columns_rows(columns) if rows is None else rows
        start = perf_counter() if t0 is None else t0
        if n <= self.max_batch and not self._closing:
            return self._enqueue(columns, n, start)
        return self._submit_chunks(columns, n, start)

    async def _submit_chunks(self, columns: Rows, n: int, t0: float) -> Answer:
        if n <= self.max_batch:  # closing: a request that picked this model before a swap
            return await self._alone(columns, n, t0)
        parts = [
            self._alone(slice_columns(columns, i, min(i + self.max_batch, n)), None, t0)
            if self._closing
            else self._enqueue(slice_columns(columns, i, min(i + self.max_batch, n)), None, t0)
            for i in range(0, n, self.max_batch)
        ]
        answers = list(await asyncio.gather(*parts))
        ids = [i for _, chunk_ids in answers for i in chunk_ids]
        return join_predictions([p for p, _ in answers]), ids

    async def _alone(self, columns: Rows, rows: int | None, t0: float) -> Answer:
        """Predict on its own, now (the batcher is closing after a hot swap)."""
        loop = asyncio.get_running_loop()
        n = columns_rows(columns) if rows is None else rows
        item = _Item(columns, n, loop.create_future(), t0)
        self.queued_rows += n
        try:
            await self._run_batch(loop, [item], n)
        finally:  # cancelled meanwhile: its rows leave the queue all the same
            self._fail(item, asyncio.CancelledError())
        return await item.future

    def _enqueue(self, columns: Rows, rows: int | None, t0: float) -> asyncio.Future[Answer]:
        loop = asyncio.get_running_loop()
        n = columns_rows(columns) if rows is None else rows
        future: asyncio.Future[Answer] = loop.create_future()
        item = _Item(columns, n, future, t0)
        self.queued_rows += n
        if not self._busy and self._inline and self.call_seconds < self._inline_below:
            # fast: predict at the end of this event-loop tick, in the loop, together with
            # every request that reaches this point in the same tick (see _flush_tick)
            self._tick.append(item)
            if not self._tick_scheduled:
                self._tick_scheduled = True
                loop.call_soon(self._flush_tick)
            return future
        self._hand_to_worker([item])
        return future

    def _flush_tick(self) -> None:
        """Predict the requests that arrived in the last tick, inline, in one call of at
        most ``max_batch`` rows (in arrival order). Under load the event loop resumes many
        request tasks per tick (everything one poll read from the sockets), so they share
        the call without waiting for stragglers; a lone request costs one loop iteration,
        not ``max_wait_ms``. What does not fit waits for the next iteration (so a request of
        thousands of rows never holds the loop for more than one call), ahead of newer
        requests; if calls have become slow meanwhile, it goes to the worker thread."""
        self._tick_scheduled = False
        items = self._tick
        if not items:  # pragma: no cover - scheduled only with requests waiting
            return
        batch = [items[0]]
        rows = items[0].rows
        at = 1
        while at < len(items) and rows + items[at].rows <= self.max_batch:
            batch.append(items[at])
            rows += items[at].rows
            at += 1
        rest = items[at:]
        self._tick = []
        if rest:
            if self.call_seconds < self._inline_below or self._closing:
                self._tick = rest
                self._tick_scheduled = True
                asyncio.get_running_loop().call_soon(self._flush_tick)
            else:  # slow now: the worker thread takes the rest, in order
                self._hand_to_worker(rest)
        self._last_requests = len(batch)
        try:
            self._predict_inline(batch, rows)
        except Exception as exc:  # a bug here must not leave requests waiting forever
            log.exception("micro-batch failed")
            for item in batch:
                self._fail(item, exc)

    def _hand_to_worker(self, items: list[_Item]) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for item in items:
            item.arrived = now
        self._pending.extend(items)
        if self._task is None or self._task.done():
            self._wakeup = asyncio.Event()
            self._task = loop.create_task(self._run(), name="loopml-batcher")
        if self._wakeup is not None:
            self._wakeup.set()

    def _inline_call(self, columns: Rows) -> Prediction:
        self.inline_calls += 1
        pred, seconds = self._timed(columns)
        self._observe(seconds)
        return pred

    def _live(self, batch: list[_Item]) -> tuple[list[_Item], int]:
        """The items whose request still waits (one whose client went away is cancelled:
        neither predicted nor logged), and their rows."""
        live: list[_Item] = []
        rows = 0
        for item in batch:
            if item.future.done():
                self._fail(item, asyncio.CancelledError())
            else:
                live.append(item)
                rows += item.rows
        return live, rows

    def _predict_inline(self, batch: list[_Item], rows: int) -> None:
        if any(item.future.done() for item in batch):
            batch, rows = self._live(batch)
            if not batch:
                return
        try:
            columns = concat_columns([item.columns for item in batch], self._blocks)
            pred = self._inline_call(columns)
        except Exception as exc:
            if len(batch) == 1:
                self._fail(batch[0], exc)
                return
            log.warning(
                "batch of %d requests failed (%s); predicting them one by one", len(batch), exc
            )
            for item in batch:
                alone = as_columns(item.columns)
                try:
                    one = self._inline_call(alone)
                except Exception as item_exc:
                    self._fail(item, item_exc)
                else:
                    self._deliver([item], alone, item.rows, one)
            return
        self._answer(batch, columns, rows, pred)

    def _answer(self, batch: list[_Item], columns: Rows, rows: int, pred: Prediction) -> None:
        if self._on_batch is not None:
            self._on_batch(rows, len(batch))
        self._deliver(batch, columns, rows, pred)

    def _deliver(self, batch: list[_Item], columns: Rows, rows: int, pred: Prediction) -> None:
        """Give the call's rows their ids, show them to ``answered`` (the prediction log),
        then answer each request its own rows (once ``answered``'s future is done, if it
        returned one). A failing ``answered`` fails the call's requests: nothing is answered
        that was not logged."""
        try:
            ids = self._ids(rows) if self._ids is not None else []
            wait = None
            if self._answered is not None:
                wait = self._answered(columns, pred, ids, [(i.t0, i.rows) for i in batch])
        except Exception as exc:
            log.exception("prediction log hand-over failed")
            for item in batch:
                self._fail(item, exc)
            return
        if wait is None:
            self._resolve(batch, pred, ids)
            return
        loop = asyncio.get_running_loop()

        def done(_: ThreadFuture[None]) -> None:
            loop.call_soon_threadsafe(self._resolve, batch, pred, ids)

        wait.add_done_callback(done)

    def _resolve(self, batch: list[_Item], pred: Prediction, ids: list[str]) -> None:
        if len(batch) == 1:
            item = batch[0]
            if not item.settled:
                item.settled = True
                self.queued_rows -= item.rows
                if not item.future.done():  # not cancelled (a client that went away)
                    item.future.set_result((pred, ids))
            return
        start = 0
        for item in batch:
            stop = start + item.rows
            if not item.settled:
                item.settled = True
                self.queued_rows -= item.rows
                if not item.future.done():
                    item.future.set_result((slice_prediction(pred, start, stop), ids[start:stop]))
            start = stop

    def _fail(self, item: _Item, exc: BaseException) -> None:
        if item.settled:
            return
        item.settled = True
        self.queued_rows -= item.rows
        if not item.future.done():
            item.future.set_exception(exc)

    def _take(self, batch: list[_Item], rows: int) -> int:
        """Move waiting items into ``batch`` while they fit in ``max_batch`` rows."""
        pending = self._pending
        while pending:
            n = pending[0].rows
            if rows + n > self.max_batch:
                break
            batch.append(pending.popleft())
            rows += n
        return rows

    def _pending_too_big(self, rows: int) -> bool:
        return bool(self._pending) and rows + self._pending[0].rows > self.max_batch

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
            self._busy = True
            try:
                await self._run_batch(loop, batch, rows)
            except Exception as exc:  # a bug here must not leave requests waiting forever
                log.exception("micro-batch failed")
                for item in batch:
                    self._fail(item, exc)
            finally:
                self._busy = False
            if self._inline and self.call_seconds < self._inline_below:
                await asyncio.sleep(0)  # an inline call: let the answered requests go out

    async def _run_batch(
        self, loop: asyncio.AbstractEventLoop, batch: list[_Item], rows: int
    ) -> None:
        if any(item.future.done() for item in batch):
            batch, rows = self._live(batch)
            if not batch:
                return
        try:
            columns = concat_columns([item.columns for item in batch], self._blocks)
            pred = await self._call(loop, columns)
        except Exception as exc:
            if len(batch) == 1:
                self._fail(batch[0], exc)
                return
            # One request's rows may be what breaks the model: predict each on its own so
            # that only that request fails.
            log.warning(
                "batch of %d requests failed (%s); predicting them one by one", len(batch), exc
            )
            for item in batch:
                alone = as_columns(item.columns)
                try:
                    one = await self._call(loop, alone)
                except Exception as item_exc:
                    self._fail(item, item_exc)
                else:
                    self._deliver([item], alone, item.rows, one)
            return
        self._answer(batch, columns, rows, pred)

    async def aclose(self) -> None:
        """Finish what is queued, then stop the worker; later submits predict directly."""
        self._closing = True
        while self._tick_scheduled:  # the requests of the last ticks are answered first
            await asyncio.sleep(0)
        if self._wakeup is not None:
            self._wakeup.set()
        if self._task is not None:
            try:
                await self._task
            except asyncio.CancelledError:
                pass
