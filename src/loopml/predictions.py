"""The prediction log: every served prediction, written to the lake as Parquet.

Requests only append to an in-memory buffer (:meth:`PredictionLogger.log` takes a lock for a
few microseconds and never touches the lake); a background thread writes the buffer as Parquet
parts under ``predictions/<model>/date=YYYY-MM-DD/`` every ``flush_seconds`` or as soon as
``flush_rows`` rows wait. A failed write keeps the rows for the next flush; the buffer is
bounded, and rows pushed out of it are counted, never raised into a request.

Batch scoring writes its rows synchronously, at the end of the job, with
:func:`write_predictions`, in the same layout. Every row says where it came from: ``source`` is
``server`` or ``batch``, and ``input_file`` names the scored file of a batch row. Parts written
before these columns existed carry no layout marker in their Parquet metadata; they read as
``server`` rows, and a feature they stored under one of the new reserved names is read back as
``feature_<name>``, as it is written now.

This module owns the log's layout, its writer and its reader: the server writes through it,
the monitor reads windows back with :func:`read_prediction_log`, and lineage finds one
prediction with :func:`find_prediction` (by its id or a unique prefix of 4+ hex digits). It
sits below those stages and imports none of them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from loopml import spool
from loopml.errors import ConflictError, InvalidInputError, NotFoundError
from loopml.names import check_name
from loopml.stores.base import CANDIDATES_SHOWN, WHOLE_ID, Lake, ambiguous_id, id_prefix

log = logging.getLogger("loopml.predictions")

PREFIX = "predictions"
SERVER = "server"
BATCH = "batch"
SOURCES = (SERVER, BATCH)
# Columns every part has; a feature with one of these names is stored as "feature_<name>".
BASE_COLUMNS = (
    "prediction_id",
    "timestamp",
    "model",
    "version",
    "latency_ms",
    "source",
    "input_file",
)
TAIL_COLUMNS = ("prediction", "score")
RESERVED = frozenset(BASE_COLUMNS + TAIL_COLUMNS)
# Parquet metadata of every part: the layout version (parts without it are layout 1, before
# "source" and "input_file" existed)
LAYOUT_KEY = b"loopml.prediction_log.layout"
LAYOUT = b"2"
_ADDED_IN_2 = ("source", "input_file")
_US_PER_DAY = 86_400_000_000
FSYNC_POLICIES = ("always", "interval", "never")
# one 1-D array per feature, all the same length (loopml.registry.signature.Columns)
Columns = Mapping[str, np.ndarray]


class BlockRows(Protocol):
    """Numeric rows as one row-major float64 ``block`` of the features ``names`` (the
    server's :class:`loopml.serve.records.RowBlock`): logged as they are."""

    @property
    def block(self) -> np.ndarray: ...

    @property
    def names(self) -> tuple[str, ...]: ...


class Scored(Protocol):
    """What the logger needs of a prediction: a label and a score per row."""

    @property
    def labels(self) -> np.ndarray: ...

    @property
    def scores(self) -> np.ndarray: ...


class _Count(Protocol):
    def inc(self, labels: tuple[str, ...] = (), amount: float = 1.0) -> None: ...

    def value(self, labels: tuple[str, ...] = ()) -> float: ...


class LogCounters(Protocol):
    """The counters the logger keeps (the server passes its Prometheus metrics)."""

    @property
    def log_written(self) -> _Count: ...

    @property
    def log_dropped(self) -> _Count: ...

    @property
    def log_errors(self) -> _Count: ...


class _Tally:
    def __init__(self) -> None:
        self._n = 0.0

    def inc(self, labels: tuple[str, ...] = (), amount: float = 1.0) -> None:
        self._n += amount

    def value(self, labels: tuple[str, ...] = ()) -> float:
        return self._n


class _Counters:
    def __init__(self) -> None:
        self.log_written = _Tally()
        self.log_dropped = _Tally()
        self.log_errors = _Tally()


def feature_column(name: str) -> str:
    """The log column holding input feature ``name``."""
    return f"feature_{name}" if name in RESERVED else name


@dataclass(slots=True)  # not frozen: one made per model call, on the hot path
class _Entry:
    model: str
    version: int
    ts_us: int
    frame: pd.DataFrame | Columns | BlockRows
    labels: np.ndarray
    scores: np.ndarray
    ids: Sequence[str]
    latency_ms: float
    source: str = SERVER
    input_file: str | None = None
    # the requests of one model call (PredictionLogger.log_call): (rows, latency_ms) each, in
    # order; None: one request (``latency_ms``)
    spans: Sequence[tuple[int, float]] | None = None

    @property
    def rows(self) -> int:
        return len(self.ids)

    def requests(self) -> list[list[Any]]:
        """One ``[ts_us, rows, latency_ms, source, input_file]`` per request (the raw
        record's ``entries``)."""
        if self.spans is None:
            return [[self.ts_us, self.rows, self.latency_ms, self.source, self.input_file]]
        ts, source, file = self.ts_us, self.source, self.input_file
        return [[ts, rows, latency, source, file] for rows, latency in self.spans]


class PredictionLogger:
    """Spools every prediction locally before its response, and compacts it into the lake.

    :meth:`append` (async) and :meth:`log` (blocking) hand the rows to a writer thread that
    writes everything waiting with one ``write`` to the open spool segment (group commit),
    fsyncs per ``fsync`` (``always``: before the append returns; ``interval``: every
    ``fsync_ms`` in the writer thread; ``never``: left to the OS), and seals the segment when
    it reaches ``segment_bytes`` or is ``seal_seconds`` old. A compactor thread writes sealed
    segments as Parquet parts named after the segment (so a rewrite after a crash overwrites
    rather than duplicates) and removes a segment only after its parts are written. Segments
    left by an earlier process are compacted at start. When the lake fails, segments stay
    and are retried; past ``max_spool_bytes`` new rows are dropped and counted, never raised
    and never blocking.
    """

    def __init__(
        self,
        lake: Lake,
        spool_dir: str | Path,
        *,
        fsync: str = "interval",
        fsync_ms: float = 200.0,
        max_spool_bytes: int = 256 * 1024 * 1024,
        segment_bytes: int | None = None,
        seal_seconds: float = 1.0,
        retry_seconds: float = 1.0,
        metrics: LogCounters | None = None,
    ) -> None:
        if fsync not in FSYNC_POLICIES:
            raise InvalidInputError(
                f"log_fsync {fsync!r} is unknown",
                where={"field": "log_fsync"},
                hint=f"Use one of: {', '.join(FSYNC_POLICIES)}",
            )
        if fsync_ms <= 0 or max_spool_bytes <= 0 or seal_seconds <= 0:
            raise InvalidInputError(
                f"prediction log settings fsync_ms={fsync_ms}, max_spool_bytes="
                f"{max_spool_bytes}, seal_seconds={seal_seconds} are invalid",
                where={"field": "prediction_log"},
                hint="Use positive values",
            )
        self.lake = lake
        self.spool_dir = Path(spool_dir)
        self.fsync = fsync
        self.fsync_seconds = fsync_ms / 1000.0
        self.max_spool_bytes = int(max_spool_bytes)
        self.segment_bytes = int(
            segment_bytes or max(64 * 1024, min(16 * 1024 * 1024, self.max_spool_bytes // 8))
        )
        self.seal_seconds = float(seal_seconds)
        self.retry_seconds = float(retry_seconds)
        self.metrics: LogCounters = _Counters() if metrics is None else metrics
        self._lock_file = spool.SpoolLock(self.spool_dir)
        spool.recover(self.spool_dir)
        self._spool_bytes = spool.spool_bytes(self.spool_dir)
        self._writer = spool.SegmentWriter(self.spool_dir, segment_bytes=self.segment_bytes)
        self._io = threading.Lock()  # one writer of the open segment at a time
        # appends of this event-loop tick, written together when the tick ends
        self._tick: tuple[list[_Entry], asyncio.Future[None]] | None = None
        self._queue: list[tuple[_Entry, Future[None]]] = []
        self._queued_rows = 0
        self._cond = threading.Condition()
        self._bytes_lock = threading.Lock()
        self._compact_lock = threading.Lock()
        self._compact_wake = threading.Event()
        self._stop = threading.Event()
        self._closed = False
        self._written = 0  # rows compacted into the lake by this logger
        # ids spooled lately, for feedback that arrives before its rows reach the lake
        self._recent: deque[str] = deque()
        self._recent_set: set[str] = set()
        self._recent_lock = threading.Lock()
        self.recent_limit = 100_000
        # seconds after start before spools beside this one, held by no process, are compacted
        self.adopt_after = 30.0
        add_gauge = getattr(self.metrics, "add_gauge", None)
        if callable(add_gauge):
            add_gauge(
                "loopml_prediction_log_spool_bytes",
                "Bytes of prediction log waiting in the local spool for the lake.",
                (),
                lambda: {(): float(self._spool_bytes)},
            )
        self._write_thread = threading.Thread(
            target=self._write_loop, name="loopml-log-writer", daemon=True
        )
        self._compact_thread = threading.Thread(
            target=self._compact_loop, name="loopml-log-compactor", daemon=True
        )
        self._write_thread.start()
        self._compact_thread.start()
        self._compact_wake.set()  # leftovers of an earlier process

    # -- called by requests -----------------------------------------------------------------

    def _entry(
        self,
        model: str,
        version: int,
        columns: Columns | pd.DataFrame,
        prediction: Scored,
        ids: Sequence[str],
        latency_ms: float,
    ) -> _Entry:
        entry = _Entry(
            model,
            int(version),
            time.time_ns() // 1000,
            columns,
            np.asarray(prediction.labels),
            np.asarray(prediction.scores),
            ids,
            float(latency_ms),
        )
        if len(entry.labels) != entry.rows or _frame_rows(columns, entry.rows) != entry.rows:
            raise InvalidInputError(
                f"{_frame_rows(columns, entry.rows)} input rows and {len(entry.labels)} "
                f"predictions for {entry.rows} ids",
                where={"model": model},
                hint="Pass one id per scored row",
            )
        return entry

    def _submit(self, entry: _Entry) -> Future[None]:
        fut: Future[None] = Future()
        with self._cond:
            if self._closed:
                fut.set_result(None)
                self.metrics.log_dropped.inc(amount=entry.rows)
                return fut
            self._queue.append((entry, fut))
            self._queued_rows += entry.rows
            self._cond.notify()
        return fut

    async def append(
        self,
        model: str,
        version: int,
        columns: Columns | pd.DataFrame,
        prediction: Scored,
        ids: Sequence[str],
        latency_ms: float,
        *,
        key: str | None = None,
    ) -> None:
        """Returns once the rows are in the spool (fsynced too under ``fsync="always"``).

        Never raises for a spool or lake problem (rows that cannot be spooled are counted
        as dropped); ``key`` (the routing key) is accepted for the caller's convenience and
        not stored.
        """
        if len(ids) == 0:
            return
        entry = self._entry(model, version, columns, prediction, ids, latency_ms)
        if self.fsync == "always" or self._closed:
            # an fsync before answering is the writer thread's (it never blocks the loop)
            await asyncio.wrap_future(self._submit(entry))
            return
        # group commit in the event loop: every append of this tick (the requests of one
        # micro-batch resume together) is written with one write() when the tick ends, a
        # few microseconds with no thread hand-off; fsync stays in the writer thread
        tick = self._tick
        if tick is None:
            loop = asyncio.get_running_loop()
            tick = self._tick = ([], loop.create_future())
            loop.call_soon(self._write_tick)
        tick[0].append(entry)
        await tick[1]

    def log_call(
        self,
        model: str,
        version: int,
        columns: Columns | BlockRows,
        prediction: Scored,
        ids: Sequence[str],
        requests: Sequence[tuple[float, int]],
    ) -> Future[None] | None:
        """Spool the rows of one model call (several requests, in order) as one record: the
        server's hot path, called in the event loop before any of the requests is answered.
        ``requests`` holds each request's arrival (``time.perf_counter``) and row count; its
        latency is counted to now. Returns None once the rows are written to the spool, or,
        under ``fsync="always"`` (or once closed), a future done when they are fsynced (the
        writer thread's). Never raises for a spool problem (counted as dropped)."""
        if len(ids) == 0:
            return None
        now = time.perf_counter()
        if len(requests) == 1:
            latency = (now - requests[0][0]) * 1000.0
            spans = None
        else:
            latency = 0.0
            spans = [(rows, (now - t0) * 1000.0) for t0, rows in requests]
        entry = _Entry(
            model,
            int(version),
            time.time_ns() // 1000,
            columns,
            np.asarray(prediction.labels),
            np.asarray(prediction.scores),
            ids,
            latency,
            spans=spans,
        )
        rows = requests[0][1] if len(requests) == 1 else sum(r for _, r in requests)
        if len(entry.labels) != entry.rows or rows != entry.rows:
            raise InvalidInputError(
                f"{sum(r for _, r in requests)} request rows and {len(entry.labels)} "
                f"predictions for {entry.rows} ids",
                where={"model": model},
                hint="Pass one id per scored row",
            )
        if self.fsync == "always" or self._closed:
            return self._submit(entry)
        self._write_entries([entry])
        return None

    def _write_tick(self) -> None:
        tick, self._tick = self._tick, None
        if tick is None:
            return
        entries, done = tick
        try:
            self._write_entries(entries)
        finally:
            if not done.done():
                done.set_result(None)

    def log(
        self,
        model: str,
        version: int,
        columns: Columns | pd.DataFrame,
        prediction: Scored,
        ids: Sequence[str],
        latency_ms: float,
        *,
        key: str | None = None,
    ) -> None:
        """:meth:`append` for callers without an event loop: blocks until spooled."""
        if len(ids) == 0:
            return
        self._submit(self._entry(model, version, columns, prediction, ids, latency_ms)).result()

    def _remember(self, entries: list[_Entry]) -> None:
        with self._recent_lock:
            recent, known = self._recent, self._recent_set
            for entry in entries:
                ids = entry.ids
                if known.isdisjoint(ids):  # the server's case: ids drawn just now
                    before = len(known)
                    known.update(ids)
                    # each once, in order (an id repeated within the entry too)
                    recent.extend(ids if len(known) - before == len(ids) else dict.fromkeys(ids))
                    continue
                for pid in ids:
                    if pid not in known:
                        recent.append(pid)
                        known.add(pid)
            excess = len(recent) - self.recent_limit
            if excess > 0:  # the oldest go, with one set operation (not one call per id)
                popleft = recent.popleft
                known.difference_update([popleft() for _ in range(excess)])

    def seen(self, ids: set[str]) -> set[str]:
        """The ids of ``ids`` among the last ``recent_limit`` this logger spooled."""
        with self._recent_lock:
            return ids & self._recent_set

    @property
    def buffered_rows(self) -> int:
        """Rows handed to the writer and not yet in the spool."""
        return self._queued_rows

    @property
    def spool_bytes(self) -> int:
        return self._spool_bytes

    # -- the writer thread ------------------------------------------------------------------

    def _write_loop(self) -> None:
        next_fsync = time.monotonic() + self.fsync_seconds
        while True:
            with self._cond:
                if not self._queue and not self._stop.is_set():
                    wait = self.seal_seconds
                    if self.fsync == "interval":
                        wait = min(wait, max(0.0, next_fsync - time.monotonic()))
                    self._cond.wait(max(wait, 0.001))
                batch = self._queue
                self._queue = []
                self._queued_rows = 0
                stopping = self._stop.is_set()
            seals = [fut for e, fut in batch if e is _SEAL]
            if batch:
                self._commit(batch)
            try:
                now = time.monotonic()
                if self.fsync == "interval" and now >= next_fsync:
                    with self._io:  # fsync a duplicate: appends go on meanwhile
                        fd = self._writer.fsync_handle()
                        folder_due = self._writer.folder_due()
                    if fd >= 0:
                        try:
                            os.fsync(fd)
                        finally:
                            os.close(fd)
                    if folder_due:  # a segment created since: its name too
                        spool.fsync_folder(self.spool_dir)
                    next_fsync = now + self.fsync_seconds
                with self._io:
                    old = self._writer.age >= self.seal_seconds
                    due = self._writer.size and (stopping or seals or old)
                    detached = self._writer.detach() if due else None
                if detached is not None:  # fsynced and renamed while appends go on
                    spool.finish_seal(*detached)
                    self._compact_wake.set()
            except OSError:
                log.exception("prediction log spool fsync/seal failed")
                self.metrics.log_errors.inc()
            for fut in seals:
                fut.set_result(None)
            if stopping and not batch:
                return

    def _commit(self, batch: list[tuple[_Entry, Future[None]]]) -> None:
        """Write one batch of appends with a single write; resolve their futures."""
        try:
            self._write_entries([e for e, _ in batch if e is not _SEAL])
        finally:
            for e, fut in batch:
                if e is not _SEAL and not fut.done():
                    fut.set_result(None)

    def _write_entries(self, entries: list[_Entry]) -> None:
        """Spool ``entries`` with a single write (and fsync under ``always``); never raises:
        what cannot be spooled is counted as dropped."""
        if not entries:
            return
        try:
            payloads: list[bytes] = []
            dropped = 0
            size = self._spool_bytes
            for group in _groups(entries):
                payload = _encode(group)
                if size + len(payload) + spool.HEADER.size > self.max_spool_bytes:
                    dropped += sum(e.rows for e in group)
                    continue
                size += len(payload) + spool.HEADER.size
                payloads.append(payload)
            if payloads:
                with self._io:
                    written = self._writer.write(payloads)
                    if self.fsync == "always":
                        self._writer.fsync()
                with self._bytes_lock:
                    self._spool_bytes += written
                self._remember(entries)
            if dropped:
                self.metrics.log_dropped.inc(amount=dropped)
                log.warning("prediction log spool is full: dropped %d rows", dropped)
        except Exception:  # a full disk must never reach a request
            log.exception("could not spool %d prediction log appends", len(entries))
            self.metrics.log_errors.inc()
            self.metrics.log_dropped.inc(amount=sum(e.rows for e in entries))

    # -- the compactor ----------------------------------------------------------------------

    def _compact_loop(self) -> None:
        started = time.monotonic()
        adopted = False
        while not self._stop.is_set():
            self._compact_wake.wait(self.seal_seconds)
            self._compact_wake.clear()
            if self._stop.is_set():
                return
            if not adopted and time.monotonic() - started >= self.adopt_after:
                adopted = True  # by now sibling workers hold their own spools
                self._adopt_orphans()
            try:
                self.compact()
            except Exception as exc:  # the lake is down: keep the segments, retry later
                self.metrics.log_errors.inc()
                log.warning("could not compact the prediction log spool: %s", exc)
                self._stop.wait(self.retry_seconds)

    def _adopt_orphans(self) -> None:
        """Compact the spools beside this one that no live process holds (a worker of an
        earlier ``--workers N`` run that this run does not have)."""
        parent = self.spool_dir.parent
        for folder in sorted(p for p in parent.iterdir() if p.is_dir() and p != self.spool_dir):
            if not spool.all_segments(folder):
                continue
            try:
                rows = compact_spool(self.lake, folder)
            except ConflictError:
                continue  # a live process owns it
            except Exception as exc:
                self.metrics.log_errors.inc()
                log.warning("could not compact the prediction log spool %s: %s", folder, exc)
                continue
            if rows:
                self.metrics.log_written.inc(amount=rows)

    def compact(self) -> int:
        """Write every sealed segment to the lake now; rows written. Raises the lake's error
        (the segment that failed, and those after it, stay for the next try)."""
        with self._compact_lock:
            written = 0
            for segment in spool.sealed_segments(self.spool_dir):
                size = segment.stat().st_size
                rows = compact_segment(self.lake, segment)
                with self._bytes_lock:
                    self._spool_bytes = max(0, self._spool_bytes - size)
                if rows:
                    self._written += rows
                    self.metrics.log_written.inc(amount=rows)
                written += rows
            return written

    def flush(self) -> int:
        """Spool what waits, seal the open segment and compact everything now; rows written
        to the lake meanwhile (raises the lake's error)."""
        before = self._written
        done: Future[None] = Future()
        with self._cond:
            self._queue.append((_SEAL, done))
            self._cond.notify()
        done.result()
        self.compact()  # waits for a compaction the background thread runs
        return self._written - before

    def close(self, timeout: float = 30.0) -> None:
        """Spool what waits, seal, try a last compaction; what the lake refuses stays in the
        spool for the next start (nothing is dropped)."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._stop.set()
            self._cond.notify()
        self._compact_wake.set()
        deadline = time.monotonic() + timeout
        self._write_thread.join(timeout)
        self._compact_thread.join(max(0.0, deadline - time.monotonic()))
        # a compaction stuck on an unreachable lake is not waited for past the timeout
        if self._compact_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            self._compact_lock.release()
            try:
                self.compact()
            except Exception as exc:
                self.metrics.log_errors.inc()
                log.warning("prediction log rows stay in the spool %s: %s", self.spool_dir, exc)
        left = spool.spool_bytes(self.spool_dir)
        if left:
            log.warning(
                "%d bytes of prediction log stay in %s; the next start compacts them",
                left,
                self.spool_dir,
            )
        self._lock_file.release()


_SEAL = _Entry("", 0, 0, {}, np.empty(0), np.empty(0), (), 0.0)


def _groups(entries: Sequence[_Entry]) -> list[list[_Entry]]:
    """Entries of one model version and feature set, in arrival order, per group."""
    groups: dict[tuple[Any, ...], list[_Entry]] = {}
    for e in entries:
        if e is _SEAL:
            continue
        names = getattr(e.frame, "names", None)  # block columns: their names, as text
        if not isinstance(names, tuple):
            frame = _columns_of(e.frame)
            cols = frame.columns if isinstance(frame, pd.DataFrame) else frame
            names = tuple(str(c) for c in cols)
        groups.setdefault((e.model, e.version, names), []).append(e)
    return list(groups.values())


def _frame_rows(columns: Any, default: int) -> int:
    if isinstance(columns, pd.DataFrame):
        return len(columns)
    for values in columns.values():
        return len(values)
    return default


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def _from_ipc(payload: bytes) -> pa.Table:
    with pa.ipc.open_stream(pa.BufferReader(payload)) as reader:
        return reader.read_all()


#: a raw spool record: this tag, the header's length (u32), the header (JSON: model,
#: version, columns, text features, ids, labels, one [ts, rows, latency, source, file] per
#: request), then the numeric features and the scores (float64). The features are float64,
#: feature-major; or, when the header has ``rows`` (a NumPy dtype string, ``<f4`` or
#: ``<f8``), the server's block as it was predicted: row-major, in that dtype (a V2 FP32
#: tensor's float32 values). Read back as float64 columns either way.
_RAW = b"LPR1"
_RAW_HEAD = struct.Struct("<I")
_ROW_DTYPES = (np.dtype("<f4"), np.dtype("<f8"))


_NAMES_TEXT: dict[tuple[Any, ...], list[str]] = {}


def _names_text(names: tuple[Any, ...]) -> list[str]:
    """``[str(n) for n in names]``, made once per feature set (a record's ``columns``; the
    list is only read)."""
    text = _NAMES_TEXT.get(names)
    if text is None:
        if len(_NAMES_TEXT) >= 256:  # a bound: feature sets come from models
            _NAMES_TEXT.clear()
        text = _NAMES_TEXT[names] = [str(n) for n in names]
    return text


#: int label -> its text (``str``), for :func:`_label_texts`; ints only (``1``, ``1.0`` and
#: ``True`` are one key of a dict, and their texts differ)
_INT_TEXT: dict[int, str] = {}
_INT_TEXT_MAX = 4096  # a bound: labels come from models (a classifier's few classes)


def _label_texts(labels: np.ndarray) -> list[str]:
    """``[str(v) for v in labels.tolist()]``: for integer labels (a classifier's classes) by
    looking each up in :data:`_INT_TEXT` (several times cheaper than ``str`` per row, on
    the request path), else ``str`` per value."""
    values = labels.tolist()
    if labels.dtype.kind not in "iu":
        return [str(v) for v in values]
    try:
        return list(map(_INT_TEXT.__getitem__, values))
    except KeyError:
        pass
    texts = [str(v) for v in values]
    if len(_INT_TEXT) < _INT_TEXT_MAX:
        _INT_TEXT.update(zip(values, texts, strict=True))
    return texts


def _encode(group: list[_Entry]) -> bytes:
    """One spool record for requests of one model version and feature set. On the request
    path, so cheap: a JSON header and two float blocks (Arrow is built at compaction, once
    per segment). Entries holding DataFrames (batch scoring) are written as Arrow IPC."""
    joined = None if isinstance(group[0].frame, pd.DataFrame) else _joined_block(group)
    text: dict[str, list[str | None]] = {}
    layout: str | None = None  # the block's dtype when stored row-major (see _RAW)
    if joined is not None:  # the server's numeric rows (block columns): no per-feature work
        columns = _names_text(getattr(group[0].frame, "names", ()))
        numeric = columns
        # as it is: row-major, in its own dtype (a V2 FP32 tensor's float32: half the
        # bytes), no transposed copy on the request path
        block = joined if joined.dtype in _ROW_DTYPES else joined.astype(np.float64)
        layout = block.dtype.str
    else:
        arrays = _column_arrays(group)
        if arrays is None:
            return _ipc(build_table(group))
        columns = list(arrays)
        numeric = [n for n, a in arrays.items() if a.dtype.kind in "fiub"]
        text = {
            n: [_text(v) for v in a.astype(object, copy=False).tolist()]
            for n, a in arrays.items()
            if a.dtype.kind not in "fiub"
        }
        block = (
            np.stack([arrays[n].astype(np.float64, copy=False) for n in numeric])
            if numeric
            else np.empty((0, 0))
        )
    labels = np.concatenate([e.labels for e in group]) if len(group) > 1 else group[0].labels
    scores = np.concatenate([e.scores for e in group]) if len(group) > 1 else group[0].scores
    head: dict[str, Any] = {
        "model": group[0].model,
        "version": group[0].version,
        "columns": columns,
        "numeric": numeric,
        "text": text,
        "ids": list(chain.from_iterable(e.ids for e in group)),
        "labels": _label_texts(labels),
        "entries": [r for e in group for r in e.requests()],
    }
    if layout is not None:
        head["rows"] = layout
    header = orjson.dumps(head)
    return b"".join(
        (
            _RAW,
            _RAW_HEAD.pack(len(header)),
            header,
            np.ascontiguousarray(block, dtype=None if layout else np.float64).data,
            np.ascontiguousarray(scores, dtype=np.float64).data,
        )
    )


def _raw_header(payload: bytes) -> tuple[dict[str, Any], int]:
    (size,) = _RAW_HEAD.unpack_from(payload, len(_RAW))
    start = len(_RAW) + _RAW_HEAD.size
    return orjson.loads(payload[start : start + size]), start + size


def _record_ids(payload: bytes) -> list[str]:
    if payload.startswith(_RAW):
        return list(_raw_header(payload)[0]["ids"])
    return _from_ipc(payload)["prediction_id"].to_pylist()  # type: ignore[no-any-return]


def _segment_tables(records: Sequence[bytes]) -> list[pa.Table]:
    """The tables of a segment's records: raw records of one model version and feature
    set become one table (built once), Arrow IPC records their own."""
    tables: list[pa.Table] = []
    raw: dict[tuple[Any, ...], list[tuple[dict[str, Any], np.ndarray, np.ndarray]]] = {}
    for payload in records:
        if payload.startswith(_RAW):
            head, block, scores = _decode_raw(payload)
            # float32 rows (a tensor's, one column in the lake) apart from the others
            key = (head["model"], head["version"], tuple(head["columns"]), head.get("rows"))
            raw.setdefault(key, []).append((head, block, scores))
        else:
            tables.append(_from_ipc(payload))
    tables.extend(_raw_table(parts) for parts in raw.values())
    return tables


def _decode_raw(payload: bytes) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """A raw record's header, its numeric features and its scores. The features are as
    stored: float64 feature-major (``block[j]`` is feature ``numeric[j]``), or, when the
    header has ``rows``, row-major in that dtype (``block[i]`` is row ``i``)."""
    head, at = _raw_header(payload)
    n = len(head["ids"])
    k = len(head["numeric"])
    layout = head.get("rows")
    if layout is None:
        block = np.frombuffer(payload, dtype=np.float64, count=k * n, offset=at).reshape(k, n)
    else:
        block = np.frombuffer(payload, dtype=np.dtype(layout), count=k * n, offset=at)
        block = block.reshape(n, k)
    scores = np.frombuffer(payload, dtype=np.float64, count=n, offset=at + block.nbytes)
    return head, block, scores


def _feature_major(head: dict[str, Any], block: np.ndarray) -> np.ndarray:
    """A decoded record's features as float64, feature-major."""
    if head.get("rows") is None:
        return block
    return block.T.astype(np.float64)


#: the column holding a tensor input's values in a log part (:func:`_raw_table`), and the
#: Parquet metadata key saying so (JSON: the column, its dtype and the feature columns its
#: values are, in order); :func:`normalized` expands it into those columns when read
TENSOR_COLUMN = "__loopml_tensor"
TENSOR_KEY = b"loopml.prediction_log.tensor"


def _raw_table(parts: list[tuple[dict[str, Any], np.ndarray, np.ndarray]]) -> pa.Table:
    """One table (the layout of :func:`build_table`) for raw records of one model version
    and feature set, with one pass per column over all of them.

    Records that all hold float32 rows (a V2 FP32 tensor: a CNN's images) keep them as one
    column of fixed-size binary values, each row's float32 values as they were predicted
    (one buffer, not one float64 column per pixel: the lake part is written several times
    faster and is half the size); the part's metadata (:data:`TENSOR_KEY`) names the feature
    columns, and :func:`normalized` gives them back as float64 columns on reading."""
    first = parts[0][0]
    entries = [row for head, _, _ in parts for row in head["entries"]]
    counts = np.fromiter((r[1] for r in entries), dtype=np.int64, count=len(entries))

    def per_row(i: int, dtype: Any) -> np.ndarray:
        return np.repeat(np.array([r[i] for r in entries], dtype=dtype), counts)

    rows_of_entry: pa.Array | None = None

    def text_per_row(i: int) -> pa.Array:
        # one string per request, taken for its rows (not one Python object per row)
        nonlocal rows_of_entry
        if rows_of_entry is None:
            rows_of_entry = pa.array(np.repeat(np.arange(len(entries), dtype=np.int64), counts))
        return pa.array([r[i] for r in entries], pa.string()).take(rows_of_entry)

    numeric: list[str] = first["numeric"]
    names = [feature_column(c) for c in first["columns"]]
    tensor = (
        not first["text"]
        and bool(numeric)
        and all(h.get("rows") == "<f4" for h, _, _ in parts)
        and TENSOR_COLUMN not in names
    )
    n = int(counts.sum())
    cols: dict[str, pa.Array] = {
        "prediction_id": pa.array(
            list(chain.from_iterable(h["ids"] for h, _, _ in parts)), pa.string()
        ),
        "timestamp": pa.array(per_row(0, np.int64), pa.timestamp("us", tz="UTC")),
        "model": pa.repeat(pa.scalar(first["model"], pa.string()), n),
        "version": pa.array(np.full(n, int(first["version"]), dtype=np.int64), pa.int64()),
        "latency_ms": pa.array(per_row(2, np.float64), pa.float64()),
        "source": text_per_row(3),
        "input_file": text_per_row(4),
    }
    meta = {LAYOUT_KEY: LAYOUT}
    if tensor:
        rows = np.concatenate([b for _, b, _ in parts]) if len(parts) > 1 else parts[0][1]
        rows = np.ascontiguousarray(rows)
        width = rows.shape[1] * rows.itemsize
        cols[TENSOR_COLUMN] = pa.Array.from_buffers(pa.binary(width), n, [None, pa.py_buffer(rows)])
        # rows-layout records are the server's blocks: numeric is columns, in order
        spec = {"column": TENSOR_COLUMN, "dtype": "<f4", "columns": names}
        meta[TENSOR_KEY] = orjson.dumps(spec)
    else:
        blocks = [_feature_major(h, b) for h, b, _ in parts]
        block = np.concatenate(blocks, axis=1) if len(blocks) > 1 else blocks[0]
        for name in first["columns"]:
            if name in first["text"]:
                texts = list(chain.from_iterable(h["text"][name] for h, _, _ in parts))
                cols[feature_column(name)] = pa.array(texts, pa.string())
            else:
                values = np.ascontiguousarray(block[numeric.index(name)])
                cols[feature_column(name)] = pa.array(values, pa.float64(), from_pandas=True)
    labels = list(chain.from_iterable(h["labels"] for h, _, _ in parts))
    cols["prediction"] = pa.array(labels, pa.string())
    scores = np.concatenate([s for _, _, s in parts]) if len(parts) > 1 else parts[0][2]
    cols["score"] = pa.array(scores, pa.float64())
    return pa.table(cols).replace_schema_metadata(meta)


def _expand_tensor(table: pa.Table, spec: dict[str, Any]) -> pa.Table:
    """``table`` with its tensor column (:func:`_raw_table`) replaced, in place, by one
    float64 column per value (the feature columns it holds)."""
    column = spec["column"]
    at = table.column_names.index(column)
    dtype = np.dtype(spec["dtype"])
    names: list[str] = spec["columns"]
    arr = table[column].combine_chunks()
    n = len(arr)
    k = len(names)
    data = arr.buffers()[1]
    if data is None or n == 0:
        values = np.zeros((n, k), dtype=np.float64)
    else:
        width = arr.type.byte_width
        raw = np.frombuffer(data, dtype=np.uint8, count=n * width, offset=arr.offset * width)
        values = raw.view(dtype).reshape(n, k).astype(np.float64)
    table = table.remove_column(at)
    for j, name in enumerate(names):
        table = table.add_column(at + j, name, pa.array(values[:, j], pa.float64()))
    meta = {k2: v for k2, v in (table.schema.metadata or {}).items() if k2 != TENSOR_KEY}
    return table.replace_schema_metadata(meta)


_DAY_UNITS = {"s": 86_400, "ms": 86_400_000, "us": 86_400_000_000, "ns": 86_400_000_000_000}


def _by_day(table: pa.Table) -> list[tuple[str, pa.Table]]:
    """``table`` split by the UTC day (``YYYY-MM-DD``) of its timestamps, in day order. UTC
    (or naive) timestamps without nulls are split by integer division (``pc.strftime`` per
    row was the largest part of compacting a segment); others by ``strftime``."""
    ts = table["timestamp"]
    unit = getattr(ts.type, "unit", None)
    if unit in _DAY_UNITS and ts.type.tz in (None, "UTC", "+00:00") and not ts.null_count:
        numbers = np.floor_divide(pc.cast(ts, pa.int64()).to_numpy(), _DAY_UNITS[unit])
        unique = np.unique(numbers)
        if len(unique) == 1:
            return [(str(np.datetime64(int(unique[0]), "D")), table)]
        return [
            (str(np.datetime64(int(n), "D")), table.filter(pa.array(numbers == n))) for n in unique
        ]
    days = pc.strftime(ts, format="%Y-%m-%d").to_pylist()
    distinct = sorted(set(days))
    if len(distinct) == 1:
        return [(distinct[0], table)]
    return [(day, table.filter(pa.array([d == day for d in days]))) for day in distinct]


#: the text columns of a log part that repeat (one model, a few labels and sources): they get
#: Parquet dictionary pages; ``prediction_id`` (unique) and the features do not
_DICTIONARY_COLUMNS = frozenset(("model", "source", "input_file", "prediction"))


def _write_part(lake: Lake, path: str, table: pa.Table) -> None:
    """Write a log part with :meth:`Lake.write_table` and the options a log part wants:
    dictionary pages only for the repeating text columns (a dictionary of unique ids is
    dropped by the writer once it outgrows its page, after the work of building it: ~0.3 us
    a row), and no min/max statistics for a tensor column (one binary value per row: nothing
    filters on them, ~0.3 us a row to compute). The same values, read back the same way."""
    text = [
        f.name
        for f in table.schema
        if f.name in _DICTIONARY_COLUMNS
        or (
            f.name not in BASE_COLUMNS
            and (pa.types.is_string(f.type) or pa.types.is_large_string(f.type))
        )
    ]
    stats = [name for name in table.column_names if name != TENSOR_COLUMN]
    lake.write_table(path, table, dictionary=text, statistics=stats)


def compact_segment(lake: Lake, segment: Path) -> int:
    """Write one sealed segment to the lake as Parquet parts named after it, then remove it
    (through its marker); rows written. Idempotent: a segment written before a crash is
    written to the same part names again, or only removed when its marker exists."""
    if spool.is_done(segment):
        spool.drop_done(segment)
        return 0
    data = spool.read_segment(segment)
    if data.torn:
        log.warning(
            "prediction log segment %s ends in a torn record after %d bytes (ignored)",
            segment.name,
            data.valid_bytes,
        )
    seg_id = spool.segment_id(segment)
    by_part: dict[tuple[str, str], list[pa.Table]] = {}
    for table in _segment_tables(data.records):
        if not table.num_rows:
            continue
        model = str(table["model"][0].as_py())
        for day, part in _by_day(table):
            by_part.setdefault((model, day), []).append(part)
    rows = 0
    for (model, day), tables in sorted(by_part.items()):
        # a tensor column's part is never joined with a part of feature columns (each is
        # read back by its own metadata)
        layouts: dict[bytes | None, list[pa.Table]] = {}
        for table in tables:
            layouts.setdefault((table.schema.metadata or {}).get(TENSOR_KEY), []).append(table)
        parts = []
        for same in layouts.values():
            try:
                parts.append(pa.concat_tables(same, promote_options="permissive"))
            except (pa.ArrowInvalid, pa.ArrowTypeError):  # a feature changed kind
                parts.extend(same)
        for k, table in enumerate(parts):
            meta = table.schema.metadata or {}
            table = table.replace_schema_metadata({**meta, LAYOUT_KEY: LAYOUT})
            _write_part(lake, f"{PREFIX}/{model}/date={day}/part-{seg_id}-{k:03d}.parquet", table)
            rows += table.num_rows
    spool.mark_done(segment)
    return rows


def compact_spool(lake: Lake, spool_dir: str | Path) -> int:
    """Compact a spool no process is using (after a crash, or to drain it without a
    server); rows written. ConflictError when a live logger holds it."""
    folder = Path(spool_dir)
    if not folder.is_dir():
        return 0
    lock = spool.SpoolLock(folder)
    try:
        spool.recover(folder)
        return sum(compact_segment(lake, s) for s in spool.sealed_segments(folder))
    finally:
        lock.release()


def spooled_ids(spool_root: str | Path, wanted: set[str]) -> set[str]:
    """The ids of ``wanted`` found in any spool under ``spool_root`` (any depth): rows
    answered and not yet compacted into the lake."""
    root = Path(spool_root)
    if not root.is_dir() or not wanted:
        return set()
    found: set[str] = set()
    folders = {p.parent for p in root.rglob("*") if p.suffix in (spool.OPEN, spool.SEALED)}
    for folder in folders:
        for segment in spool.all_segments(folder):
            try:
                data = spool.read_segment(segment)
            except FileNotFoundError:  # compacted while we looked (then it is in the lake)
                continue
            for payload in data.records:
                found.update(wanted.intersection(_record_ids(payload)))
    return found


def _day_text(ts_us: int) -> str:
    return datetime.fromtimestamp((ts_us // _US_PER_DAY) * 86_400, UTC).strftime("%Y-%m-%d")


def _part_path(model: str, day: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{PREFIX}/{model}/date={day}/part-{stamp}-{uuid.uuid4().hex}.parquet"


def write_predictions(
    lake: Lake,
    model: str,
    version: int,
    frame: pd.DataFrame,
    prediction: Scored,
    prediction_ids: Sequence[str],
    *,
    latency_ms: float,
    source: str = BATCH,
    input_file: str | None = None,
) -> list[str]:
    """Write these rows to the log now, in the layout the logger writes; their part paths.

    For batch scoring: the job logs what it scored before it reports done, so every id it
    hands out can be traced. Raises what the lake raises (the caller decides what a failed
    log write means); nothing is written for zero rows.
    """
    check_name(model, "model")
    if source not in SOURCES:
        raise _bad_source(source)
    if len(prediction_ids) == 0:
        return []
    entry = _Entry(
        model,
        int(version),
        time.time_ns() // 1000,
        frame,
        prediction.labels,
        prediction.scores,
        prediction_ids,
        float(latency_ms),
        source,
        input_file,
    )
    if len(frame) != entry.rows or len(entry.labels) != entry.rows:
        raise InvalidInputError(
            f"{len(frame)} input rows and {len(entry.labels)} predictions for {entry.rows} ids",
            where={"model": model},
            hint="Pass one id per scored row",
        )
    path = _part_path(model, _day_text(entry.ts_us))
    lake.write_table(path, build_table([entry]))
    return [path]


def _bad_source(source: object) -> InvalidInputError:
    return InvalidInputError(
        f"prediction log source {source!r} is unknown",
        where={"field": "source"},
        hint=f"Use one of: {', '.join(SOURCES)}",
    )


def _row_latencies(entries: Sequence[_Entry], counts: np.ndarray) -> np.ndarray:
    """Each row's latency (an entry of one model call has one per request)."""
    if all(e.spans is None for e in entries):
        return np.repeat(np.fromiter((e.latency_ms for e in entries), np.float64), counts)
    per = [r for e in entries for r in e.requests()]
    return np.repeat(np.array([r[2] for r in per], dtype=np.float64), np.array([r[1] for r in per]))


def build_table(entries: Sequence[_Entry]) -> pa.Table:
    """One Arrow table for entries of the same model version (same features)."""
    counts = np.fromiter((e.rows for e in entries), dtype=np.int64, count=len(entries))
    n = int(counts.sum())
    arrays = _column_arrays(entries)
    frame = _features(entries) if arrays is None else None
    got = len(frame) if frame is not None else _frame_rows(arrays, n)
    if got != n:
        raise ValueError(f"prediction log entry has {got} input rows for {n} ids")
    cols: dict[str, pa.Array] = {
        "prediction_id": pa.array(list(chain.from_iterable(e.ids for e in entries)), pa.string()),
        "timestamp": pa.array(
            np.repeat(np.fromiter((e.ts_us for e in entries), dtype=np.int64), counts),
            pa.timestamp("us", tz="UTC"),
        ),
        "model": pa.array(np.full(n, entries[0].model, dtype=object), pa.string()),
        "version": pa.array(
            np.repeat(np.fromiter((e.version for e in entries), dtype=np.int64), counts),
            pa.int64(),
        ),
        "latency_ms": pa.array(_row_latencies(entries, counts), pa.float64()),
        "source": pa.array(
            np.repeat(np.array([e.source for e in entries], dtype=object), counts), pa.string()
        ),
        "input_file": pa.array(
            np.repeat(np.array([e.input_file for e in entries], dtype=object), counts),
            pa.string(),
        ),
    }
    if arrays is not None:
        for name, arr in arrays.items():
            if arr.dtype.kind in "fiub":
                values = arr.astype(np.float64, copy=False)
                cols[feature_column(name)] = pa.array(values, pa.float64(), from_pandas=True)
            else:
                cols[feature_column(name)] = pa.array(
                    [_text(v) for v in arr.astype(object, copy=False).tolist()], pa.string()
                )
    else:
        assert frame is not None
        for name in frame.columns:
            series = frame[name]
            if pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series):
                values = series.to_numpy(dtype=np.float64, na_value=np.nan)
                cols[feature_column(str(name))] = pa.array(values, pa.float64(), from_pandas=True)
            else:
                cols[feature_column(str(name))] = pa.array(
                    [_text(v) for v in series.to_numpy(dtype=object)], pa.string()
                )
    labels = np.concatenate([e.labels for e in entries]) if len(entries) > 1 else entries[0].labels
    cols["prediction"] = pa.array([str(v) for v in labels.tolist()], pa.string())
    scores = np.concatenate([e.scores for e in entries]) if len(entries) > 1 else entries[0].scores
    cols["score"] = pa.array(np.asarray(scores, dtype=np.float64), pa.float64())
    return pa.table(cols).replace_schema_metadata({LAYOUT_KEY: LAYOUT})


def _columns_of(frame: pd.DataFrame | Columns | BlockRows) -> pd.DataFrame | Columns:
    """``frame`` as a DataFrame or :data:`Columns` (a block of rows: one view per feature)."""
    if isinstance(frame, pd.DataFrame | Mapping):
        return frame
    return dict(zip(frame.names, frame.block.T, strict=True))


def _column_arrays(entries: Sequence[_Entry]) -> dict[str, np.ndarray] | None:
    """The features of entries that all hold numpy columns under the same names, one
    array per feature (the hot path's Columns, without building DataFrames); else None."""
    first = entries[0].frame
    if isinstance(first, pd.DataFrame):
        return None
    block = _joined_block(entries)
    if block is not None:  # the server's numeric rows: one concatenation, not one per feature
        return dict(zip(getattr(first, "names", ()), block.T, strict=True))
    frames: list[Columns] = []
    for e in entries:
        f = _columns_of(e.frame)
        if isinstance(f, pd.DataFrame):
            return None
        frames.append(f)
    names = list(frames[0])
    if any(list(f) != names for f in frames):
        return None
    out: dict[str, np.ndarray] = {}
    for name in names:
        parts = [np.asarray(f[name]) for f in frames]
        out[str(name)] = parts[0] if len(parts) == 1 else np.concatenate(parts)
    return out


def _joined_block(entries: Sequence[_Entry]) -> np.ndarray | None:
    """The entries' rows as one row-major float64 block when each holds the hot path's
    block columns (``.block`` and ``.names``, the same names), else None."""
    names = getattr(entries[0].frame, "names", None)
    blocks: list[np.ndarray] = []
    for e in entries:
        block = getattr(e.frame, "block", None)
        if block is None or getattr(e.frame, "names", None) != names:
            return None
        blocks.append(block)
    return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)


def _features(entries: Sequence[_Entry]) -> pd.DataFrame:
    columns = [_columns_of(e.frame) for e in entries]
    frames = [
        c
        if isinstance(c, pd.DataFrame)
        else pd.DataFrame({k: pd.Series(v, copy=False) for k, v in c.items()})
        for c in columns
    ]
    if len(frames) == 1:
        return frames[0] if len(frames[0].columns) or not entries[0].rows else _no_features(entries)
    if not any(len(f.columns) for f in frames):
        return _no_features(entries)
    return pd.concat(frames, ignore_index=True)


def _no_features(entries: Sequence[_Entry]) -> pd.DataFrame:
    return pd.DataFrame(index=pd.RangeIndex(sum(e.rows for e in entries)))


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    return str(value)


# -- reading back ---------------------------------------------------------------------------


def _empty_log() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "prediction_id": pd.Series([], dtype=object),
            "timestamp": pd.Series([], dtype="datetime64[us, UTC]"),
            "model": pd.Series([], dtype=object),
            "version": pd.Series([], dtype="int64"),
            "latency_ms": pd.Series([], dtype="float64"),
            "source": pd.Series([], dtype=object),
            "input_file": pd.Series([], dtype=object),
            "prediction": pd.Series([], dtype=object),
            "score": pd.Series([], dtype="float64"),
        }
    )


def _as_utc(value: datetime, what: str) -> pd.Timestamp:
    if not isinstance(value, datetime):
        raise InvalidInputError(
            f"{what} must be a datetime, got {type(value).__name__}",
            where={"field": what},
            hint="Pass a datetime; naive ones are taken as UTC",
        )
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def normalized(table: pa.Table) -> pa.Table:
    """A part read back, in the current layout (older parts are upgraded on the way in; a
    tensor column, :func:`_raw_table`, becomes its float64 feature columns)."""
    meta = table.schema.metadata or {}
    spec = meta.get(TENSOR_KEY)
    if spec is not None:
        table = _expand_tensor(table, orjson.loads(spec))
    if meta.get(LAYOUT_KEY) == LAYOUT:
        return table
    names = [
        f"feature_{n}" if n in _ADDED_IN_2 and f"feature_{n}" not in table.column_names else n
        for n in table.column_names
    ]
    table = table.rename_columns(names)
    at = table.column_names.index("latency_ms") + 1 if "latency_ms" in names else len(names)
    n = table.num_rows
    table = table.add_column(at, "source", pa.array([SERVER] * n, pa.string()))
    return table.add_column(at + 1, "input_file", pa.nulls(n, pa.string()))


def read_prediction_log(
    lake: Lake,
    model: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    version: int | None = None,
    source: str | None = None,
) -> pd.DataFrame:
    """The logged predictions of ``model`` with ``since <= timestamp < until``, oldest first.

    Naive datetimes are taken as UTC. Only the date partitions in range are read; ``version``
    and ``source`` (``server`` or ``batch``) filter further. Returns an empty frame (with the
    base columns) when nothing is logged yet.
    """
    check_name(model, "model")
    if source is not None and source not in SOURCES:
        raise _bad_source(source)
    lo = _as_utc(since, "since") if since is not None else None
    hi = _as_utc(until, "until") if until is not None else None
    if lo is not None and hi is not None and hi < lo:
        raise InvalidInputError(
            f"until ({hi.isoformat()}) is before since ({lo.isoformat()})",
            where={"field": "until"},
            hint="Pass a window with since <= until",
        )
    folder = f"{PREFIX}/{model}/"
    first_day = lo.strftime("%Y-%m-%d") if lo is not None else None
    last_day = hi.strftime("%Y-%m-%d") if hi is not None else None
    files: list[str] = []
    for path in lake.list(folder):
        rel = path if path.startswith(folder) else folder + path.lstrip("/")
        name = rel.rsplit("/", 1)[-1]
        if not name.endswith(".parquet") or name.startswith("."):
            continue
        day = next((p[5:] for p in rel.split("/") if p.startswith("date=")), None)
        if day is None:
            continue
        if (first_day is not None and day < first_day) or (last_day is not None and day > last_day):
            continue
        files.append(rel)
    if not files:
        return _empty_log()
    tables = [normalized(lake.read_table(f)) for f in files]
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
        frame = table.to_pandas()
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        # a feature changed kind between versions: fall back to pandas' object columns
        frame = pd.concat([t.to_pandas() for t in tables], ignore_index=True)
    mask = np.ones(len(frame), dtype=bool)
    if lo is not None:
        mask &= (frame["timestamp"] >= lo).to_numpy()
    if hi is not None:
        mask &= (frame["timestamp"] < hi).to_numpy()
    if version is not None:
        mask &= (frame["version"] == int(version)).to_numpy()
    if source is not None:
        mask &= (frame["source"] == source).to_numpy()
    frame = frame.loc[mask]
    if frame.empty:
        return _empty_log()
    return frame.sort_values("timestamp", kind="stable").reset_index(drop=True)


def logged_days(lake: Lake, model: str) -> dict[str, list[str]]:
    """The date partitions (``YYYY-MM-DD``) of ``model``'s log and their part files, by day."""
    check_name(model, "model")
    folder = f"{PREFIX}/{model}/"
    days: dict[str, list[str]] = {}
    for path in lake.list(folder):
        rel = path if path.startswith(folder) else folder + path.lstrip("/")
        name = rel.rsplit("/", 1)[-1]
        if not name.endswith(".parquet") or name.startswith("."):
            continue
        day = next((p[5:] for p in rel.split("/") if p.startswith("date=")), None)
        if day is not None:
            days.setdefault(day, []).append(rel)
    return dict(sorted(days.items()))


def read_last_predictions(
    lake: Lake,
    model: str,
    count: int,
    *,
    version: int | None = None,
    source: str | None = None,
) -> pd.DataFrame:
    """The ``count`` most recent logged predictions of ``model`` (fewer if the log holds
    fewer), oldest first: reads day partitions newest first and stops once it has enough."""
    if source is not None and source not in SOURCES:
        raise _bad_source(source)
    frames: list[pd.DataFrame] = []
    total = 0
    for _day, files in reversed(logged_days(lake, model).items()):
        tables = [normalized(lake.read_table(f)) for f in files]
        try:
            part = pa.concat_tables(tables, promote_options="permissive").to_pandas()
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            part = pd.concat([t.to_pandas() for t in tables], ignore_index=True)
        if version is not None:
            part = part.loc[(part["version"] == int(version)).to_numpy()]
        if source is not None:
            part = part.loc[(part["source"] == source).to_numpy()]
        if part.empty:
            continue
        frames.append(part)
        total += len(part)
        if total >= count:
            break
    if not frames:
        return _empty_log()
    frame = frames[0] if len(frames) == 1 else pd.concat(frames[::-1], ignore_index=True)
    frame = frame.sort_values("timestamp", kind="stable").tail(count)
    return frame.reset_index(drop=True)


# -- finding one prediction -------------------------------------------------------------------


def _newest_first(path: str) -> tuple[str, str]:
    day = next((p[5:] for p in path.split("/") if p.startswith("date=")), "")
    return day, path.rsplit("/", 1)[-1]


def find_prediction(lake: Lake, prediction_id: str) -> tuple[dict[str, Any], str]:
    """The logged row of ``prediction_id`` and the lake path of its log part.

    ``prediction_id`` is a whole id or a unique prefix of it (4 or more hex digits, any case,
    as git takes abbreviated commits): an ambiguous prefix is an InvalidInputError (code
    ``ambiguous_id``) listing a few candidates, an unknown one a NotFoundError. Scans the log
    newest part first (a whole id stops at its row, a prefix reads every part to be sure it is
    unique); cost grows with the log until it is compacted and indexed.
    """
    prefix = id_prefix(prediction_id, "prediction")
    whole = len(prefix) >= WHOLE_ID
    found: dict[str, tuple[dict[str, Any], str]] = {}
    parts = [p for p in lake.list(f"{PREFIX}/") if p.endswith(".parquet")]
    for path in sorted(parts, key=_newest_first, reverse=True):
        table = lake.read_table(path)
        ids = table["prediction_id"]
        mask = pc.equal(ids, prefix) if whole else pc.starts_with(ids, pattern=prefix)
        hits = table.filter(mask)
        if not hits.num_rows:
            continue
        for row in normalized(hits).to_pylist():
            found.setdefault(str(row["prediction_id"]), (row, path))
        if whole or len(found) > CANDIDATES_SHOWN:
            break
    if len(found) == 1:
        return next(iter(found.values()))
    if not found:
        raise NotFoundError(
            f"prediction {prediction_id} is not in the prediction log"
            if whole
            else f"no prediction id starts with {prediction_id!r} in the prediction log",
            where={"prediction_id": prediction_id},
            hint="The server writes the log in the background about once a second; check the "
            "id, or that the server (or batch job) ran with this workspace",
        )
    described = [
        f"{pid} ({row['model']}@{row['version']}, {row['source']}, "
        f"{row['timestamp']:%Y-%m-%d %H:%M:%S})"
        for pid, (row, _path) in sorted(found.items())
    ]
    raise ambiguous_id("prediction", prediction_id, described, more=len(found) > CANDIDATES_SHOWN)


def logged_inputs(row: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """The input features of a logged row, by feature name."""
    return {n: row.get(feature_column(n)) for n in names}
