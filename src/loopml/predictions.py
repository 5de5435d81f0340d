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

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from loopml.errors import InvalidInputError, NotFoundError
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


@dataclass(frozen=True)
class _Entry:
    model: str
    version: int
    ts_us: int
    frame: pd.DataFrame
    labels: np.ndarray
    scores: np.ndarray
    ids: Sequence[str]
    latency_ms: float
    source: str = SERVER
    input_file: str | None = None

    @property
    def rows(self) -> int:
        return len(self.ids)


class PredictionLogger:
    """Buffers predictions in memory and writes them to the lake from a background thread."""

    def __init__(
        self,
        lake: Lake,
        *,
        flush_rows: int = 1000,
        flush_seconds: float = 1.0,
        max_buffer_rows: int = 50_000,
        metrics: LogCounters | None = None,
    ) -> None:
        if flush_rows < 1 or flush_seconds <= 0 or max_buffer_rows < flush_rows:
            raise InvalidInputError(
                f"prediction log settings flush_rows={flush_rows}, "
                f"flush_seconds={flush_seconds}, max_buffer_rows={max_buffer_rows} are invalid",
                where={"field": "prediction_log"},
                hint="Use flush_rows >= 1, flush_seconds > 0 and max_buffer_rows >= flush_rows",
            )
        self.lake = lake
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.max_buffer_rows = max_buffer_rows
        self.metrics: LogCounters = _Counters() if metrics is None else metrics
        self._buffer: deque[_Entry] = deque()
        self._rows = 0
        self._lock = threading.Lock()  # guards _buffer and _rows
        self._flush_lock = threading.Lock()  # one flush at a time
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._closed = False
        self._days: dict[int, str] = {}
        self._thread = threading.Thread(target=self._run, name="loopml-prediction-log", daemon=True)
        self._thread.start()

    # -- called by requests -----------------------------------------------------------------

    def log(
        self,
        model: str,
        version: int,
        frame: pd.DataFrame,
        prediction: Scored,
        prediction_ids: Sequence[str],
        latency_ms: float,
    ) -> None:
        """Queue one request's rows; returns at once and never raises for a lake problem."""
        rows = len(prediction_ids)
        if rows == 0:
            return
        if self._closed:
            self.metrics.log_dropped.inc(amount=rows)
            return
        entry = _Entry(
            model,
            int(version),
            time.time_ns() // 1000,
            frame,
            prediction.labels,
            prediction.scores,
            prediction_ids,
            float(latency_ms),
        )
        with self._lock:
            self._buffer.append(entry)
            self._rows += rows
            dropped = self._trim()
            full = self._rows >= self.flush_rows
        if dropped:
            self.metrics.log_dropped.inc(amount=dropped)
        if full:
            self._wake.set()

    def _trim(self) -> int:
        """Drop the oldest entries over the bound (caller holds the lock); rows dropped."""
        dropped = 0
        while self._rows > self.max_buffer_rows and len(self._buffer) > 1:
            old = self._buffer.popleft()
            self._rows -= old.rows
            dropped += old.rows
        return dropped

    @property
    def buffered_rows(self) -> int:
        return self._rows

    # -- writing ----------------------------------------------------------------------------

    def flush(self) -> int:
        """Write everything buffered now; returns rows written. Failures are kept for later."""
        with self._flush_lock:
            with self._lock:
                entries = list(self._buffer)
                self._buffer.clear()
                self._rows = 0
            if not entries:
                return 0
            groups: dict[tuple[str, int, str], list[_Entry]] = {}
            for e in entries:
                groups.setdefault((e.model, e.version, self._day(e.ts_us)), []).append(e)
            written = 0
            failed: list[_Entry] = []
            for (model, _version, day), group in groups.items():
                try:
                    table = build_table(group)
                    self.lake.write_table(_part_path(model, day), table)
                except Exception as exc:  # a lake outage must never reach a request
                    self.metrics.log_errors.inc()
                    log.warning(
                        "could not write %d prediction log rows of %s: %s",
                        sum(e.rows for e in group),
                        model,
                        exc,
                    )
                    failed.extend(group)
                    continue
                written += table.num_rows
            if written:
                self.metrics.log_written.inc(amount=written)
            if failed:
                failed.sort(key=lambda e: e.ts_us)
                with self._lock:
                    self._buffer.extendleft(reversed(failed))
                    self._rows += sum(e.rows for e in failed)
                    dropped = self._trim()
                if dropped:
                    self.metrics.log_dropped.inc(amount=dropped)
            return written

    def _day(self, ts_us: int) -> str:
        day = ts_us // _US_PER_DAY
        text = self._days.get(day)
        if text is None:
            text = _day_text(ts_us)
            self._days[day] = text
        return text

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            if self._stop.is_set():
                break
            before_errors = self.metrics.log_errors.value()
            try:
                self.flush()
            except Exception:  # never let the writer thread die
                log.exception("prediction log flush failed")
            if self.metrics.log_errors.value() > before_errors:
                self._stop.wait(self.flush_seconds)  # back off instead of spinning on errors

    def close(self, timeout: float = 30.0) -> None:
        """Stop the writer thread and write what is left (rows that still fail are counted)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        try:
            self.flush()
        except Exception:
            log.exception("final prediction log flush failed")
        with self._lock:
            left = self._rows
            self._buffer.clear()
            self._rows = 0
        if left:
            self.metrics.log_dropped.inc(amount=left)
            log.warning("dropped %d prediction log rows that could not be written", left)


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


def build_table(entries: Sequence[_Entry]) -> pa.Table:
    """One Arrow table for entries of the same model version (same features)."""
    counts = np.fromiter((e.rows for e in entries), dtype=np.int64, count=len(entries))
    n = int(counts.sum())
    if len(entries) == 1:
        frame = entries[0].frame
    else:
        frame = pd.concat([e.frame for e in entries], ignore_index=True)
    if len(frame) != n:
        raise ValueError(f"prediction log entry has {len(frame)} input rows for {n} ids")
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
        "latency_ms": pa.array(
            np.repeat(np.fromiter((e.latency_ms for e in entries), dtype=np.float64), counts),
            pa.float64(),
        ),
        "source": pa.array(
            np.repeat(np.array([e.source for e in entries], dtype=object), counts), pa.string()
        ),
        "input_file": pa.array(
            np.repeat(np.array([e.input_file for e in entries], dtype=object), counts),
            pa.string(),
        ),
    }
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
    """A part read back, in the current layout (older parts are upgraded on the way in)."""
    if (table.schema.metadata or {}).get(LAYOUT_KEY) == LAYOUT:
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
