"""Monitoring windows: which logged predictions (or which dataset) a check looks at.

A window is written as text, on the command line or in ``loopml.yaml``:

=============================  ===========================================================
``last 1000``                  the 1000 most recent predictions
``1h``, ``30m``, ``1d``, ``2w`` the predictions of the last hour, 30 minutes, day, 2 weeks
                               (units ``s``, ``m``, ``h``, ``d``, ``w``; also ``last 1h``)
``2026-01-01..2026-02-01``     from the first date (inclusive) to the second (exclusive);
                               ISO 8601 dates or times, naive ones in UTC; either end may be
                               left open (``2026-01-01..``)
``NAME@V``                     version ``V`` of dataset ``NAME`` (not the prediction log)
=============================  ===========================================================

:func:`parse_window` turns the text into a :class:`Window`; :func:`select_window` picks the
window's rows out of a frame of logged predictions, as
:func:`loopml.predictions.read_prediction_log` returns it (a ``timestamp`` column, UTC, oldest
first); :meth:`Window.bounds` gives the ``since``/``until`` to pass that reader so that it
reads only the partitions in range. Pure functions over frames; nothing here reads a store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from loopml.errors import InvalidInputError

LAST = "last"
DURATION = "duration"
RANGE = "range"
DATASET = "dataset"
TIMESTAMP = "timestamp"

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_LAST = re.compile(r"last\s+(\d+)")
_DURATION = re.compile(r"(?:last\s+)?(\d+)\s*([smhdw])")
_DATASET = re.compile(r"([A-Za-z0-9][A-Za-z0-9_.-]*)@(\d+)")
_HINT = (
    "write 'last 1000' (predictions), '1h' / '1d' (recent time), "
    "'2026-01-01..2026-02-01' (dates) or 'NAME@V' (a dataset version)"
)


@dataclass(frozen=True)
class Window:
    """A parsed window; only the fields of its ``kind`` are set."""

    kind: str  # "last", "duration", "range" or "dataset"
    text: str
    count: int | None = None  # last N predictions
    seconds: int | None = None  # duration
    start: datetime | None = None  # range, inclusive (UTC); None: open
    end: datetime | None = None  # range, exclusive (UTC); None: open
    dataset: str | None = None
    version: int | None = None

    @property
    def on_log(self) -> bool:
        """Whether the window is read from the prediction log (every kind but ``dataset``)."""
        return self.kind != DATASET

    def bounds(self, now: datetime | None = None) -> tuple[datetime | None, datetime | None]:
        """``(since, until)`` to read the log with: ``since <= timestamp < until``.

        ``last N`` has no time bounds (the reader reads everything, :func:`select_window` keeps
        the last N); a duration ends at ``now`` (default: the current time, UTC). A dataset
        window is not on the log: :class:`InvalidInputError`.
        """
        if self.kind == LAST:
            return None, None
        if self.kind == DURATION:
            assert self.seconds is not None
            end = _utc(now) if now is not None else datetime.now(UTC)
            return end - timedelta(seconds=self.seconds), end + timedelta(microseconds=1)
        if self.kind == RANGE:
            return self.start, self.end
        raise InvalidInputError(
            f"window {self.text!r} is a dataset version, not a part of the prediction log",
            where={"window": self.text},
            hint="load the dataset itself for this window",
        )


def parse_window(text: str) -> Window:
    """Parse a window spec (see the module docstring); :class:`InvalidInputError` if it is none."""
    if not isinstance(text, str):
        raise InvalidInputError(
            f"a window must be text, got {type(text).__name__}",
            where={"window": repr(text)},
            hint=_HINT,
        )
    spec = " ".join(text.strip().split())
    if not spec:
        raise InvalidInputError("the window is empty", where={"window": text}, hint=_HINT)
    lowered = spec.lower()
    if m := _LAST.fullmatch(lowered):
        count = int(m.group(1))
        if count < 1:
            raise InvalidInputError(
                f"window {text!r} asks for {count} predictions",
                where={"window": text},
                hint="ask for at least 1, e.g. 'last 1000'",
            )
        return Window(LAST, spec, count=count)
    if m := _DURATION.fullmatch(lowered):
        amount = int(m.group(1))
        if amount < 1:
            raise InvalidInputError(
                f"window {text!r} has length zero",
                where={"window": text},
                hint="give a positive length, e.g. '1h' or '7d'",
            )
        return Window(DURATION, spec, seconds=amount * _UNITS[m.group(2)])
    if ".." in spec:
        return _range(spec, text)
    if m := _DATASET.fullmatch(spec):
        return Window(DATASET, spec, dataset=m.group(1), version=int(m.group(2)))
    if lowered.startswith("last"):
        hint = "write 'last N' with a whole number of predictions, or 'last 1h' for a duration"
        raise InvalidInputError(
            f"window {text!r} does not parse", where={"window": text}, hint=hint
        )
    if "@" in spec:
        raise InvalidInputError(
            f"window {text!r} is not NAME@VERSION",
            where={"window": text},
            hint="a dataset window is its name and a version number, e.g. 'flights@3'",
        )
    raise InvalidInputError(f"window {text!r} does not parse", where={"window": text}, hint=_HINT)


def select_window(
    log: pd.DataFrame,
    window: Window | str,
    *,
    now: datetime | None = None,
    allow_empty: bool = False,
) -> pd.DataFrame:
    """The rows of ``log`` (logged predictions) inside ``window``, oldest first.

    ``log`` needs a ``timestamp`` column (timezone-aware, or naive UTC). A duration ends at
    ``now`` (default: the current time). With no rows in the window this raises
    :class:`InvalidInputError` (what the log spans, and how to widen), unless ``allow_empty``.
    """
    win = parse_window(window) if isinstance(window, str) else window
    if not isinstance(log, pd.DataFrame):
        raise InvalidInputError(
            f"the prediction log must be a pandas DataFrame, got {type(log).__name__}",
            where={"data": "log"},
        )
    if TIMESTAMP not in log.columns:
        raise InvalidInputError(
            "the prediction log has no 'timestamp' column",
            where={"column": TIMESTAMP},
            hint="pass the frame that loopml.predictions.read_prediction_log returns",
        )
    ts = _timestamps(log[TIMESTAMP])
    if win.kind == LAST:
        assert win.count is not None
        order = np.argsort(ts, kind="stable")
        picked = log.iloc[order[-win.count :]] if len(log) else log
    else:
        since, until = win.bounds(now)
        keep = np.ones(len(log), dtype=bool)
        if since is not None:
            keep &= ts >= np.datetime64(_naive(since), "us")
        if until is not None:
            keep &= ts < np.datetime64(_naive(until), "us")
        sub = log.loc[keep]
        picked = sub.iloc[np.argsort(ts[keep], kind="stable")]
    if len(picked) == 0 and not allow_empty:
        raise _empty(win, ts)
    return picked


def _range(spec: str, text: str) -> Window:
    left, _, right = (part.strip() for part in spec.partition(".."))
    if ".." in right:
        raise InvalidInputError(
            f"window {text!r} has more than one '..'", where={"window": text}, hint=_HINT
        )
    start = _when(left, text, "start") if left else None
    end = _when(right, text, "end") if right else None
    if start is None and end is None:
        raise InvalidInputError(
            f"window {text!r} has neither a start nor an end",
            where={"window": text},
            hint="give at least one date, e.g. '2026-01-01..'",
        )
    if start is not None and end is not None and end <= start:
        raise InvalidInputError(
            f"window {text!r} ends ({end.isoformat()}) before or when it starts "
            f"({start.isoformat()})",
            where={"window": text},
            hint="write the earlier date first: START..END, END exclusive",
        )
    return Window(RANGE, spec, start=start, end=end)


def _when(part: str, text: str, side: str) -> datetime:
    try:
        value = datetime.fromisoformat(part)
    except ValueError as exc:
        raise InvalidInputError(
            f"the {side} of window {text!r}, {part!r}, is not a date or time",
            where={"window": text},
            hint="use ISO 8601, e.g. 2026-01-01 or 2026-01-01T10:00:00+00:00",
        ) from exc
    return _utc(value)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _naive(value: datetime) -> datetime:
    return _utc(value).replace(tzinfo=None)


def _timestamps(col: pd.Series) -> np.ndarray:
    """The column as naive-UTC ``datetime64[us]`` values."""
    try:
        values = pd.to_datetime(col, utc=True)
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(
            f"the log's timestamp column does not hold times (dtype {col.dtype})",
            where={"column": TIMESTAMP},
            hint="pass the frame that loopml.predictions.read_prediction_log returns",
        ) from exc
    out: np.ndarray = values.dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
    return out


def _empty(win: Window, ts: np.ndarray) -> InvalidInputError:
    if ts.size == 0:
        spans = "the prediction log is empty"
    else:
        lo = pd.Timestamp(ts.min()).tz_localize(UTC).isoformat()
        hi = pd.Timestamp(ts.max()).tz_localize(UTC).isoformat()
        spans = f"the log spans {lo} to {hi}"
    return InvalidInputError(
        f"window {win.text!r} holds no predictions ({spans})",
        where={"window": win.text},
        hint="widen the window, or wait for traffic",
    )


__all__ = ["DATASET", "DURATION", "LAST", "RANGE", "Window", "parse_window", "select_window"]
