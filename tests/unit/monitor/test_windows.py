"""Monitoring windows: parsing the specs, and selecting a window's rows from a logged frame."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from loopml.errors import InvalidInputError
from loopml.monitor.windows import (
    DATASET,
    DURATION,
    LAST,
    RANGE,
    Window,
    parse_window,
    select_window,
)

NOW = datetime(2026, 2, 1, 12, 0, tzinfo=UTC)


def _log(n: int = 100, step: timedelta = timedelta(minutes=30)) -> pd.DataFrame:
    """``n`` logged predictions, one every ``step`` up to NOW, shaped as read_prediction_log."""
    ts = pd.Series([NOW - step * (n - 1 - i) for i in range(n)], dtype="datetime64[us, UTC]")
    return pd.DataFrame(
        {
            "prediction_id": [f"{i:032x}" for i in range(n)],
            "timestamp": ts,
            "model": "m",
            "version": 1,
            "score": np.linspace(0, 1, n),
        }
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("last 1000", Window(LAST, "last 1000", count=1000)),
        ("  LAST   5 ", Window(LAST, "LAST 5", count=5)),
        ("1h", Window(DURATION, "1h", seconds=3600)),
        ("30m", Window(DURATION, "30m", seconds=1800)),
        ("1d", Window(DURATION, "1d", seconds=86_400)),
        ("last 2w", Window(DURATION, "last 2w", seconds=14 * 86_400)),
        (
            "2026-01-01..2026-02-01",
            Window(
                RANGE,
                "2026-01-01..2026-02-01",
                start=datetime(2026, 1, 1, tzinfo=UTC),
                end=datetime(2026, 2, 1, tzinfo=UTC),
            ),
        ),
        ("2026-01-01..", Window(RANGE, "2026-01-01..", start=datetime(2026, 1, 1, tzinfo=UTC))),
        (
            "..2026-01-01T06:00:00+02:00",
            Window(RANGE, "..2026-01-01T06:00:00+02:00", end=datetime(2026, 1, 1, 4, tzinfo=UTC)),
        ),
        ("flights@3", Window(DATASET, "flights@3", dataset="flights", version=3)),
    ],
)
def test_parse_window(text: str, expected: Window) -> None:
    assert parse_window(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ("last", "does not parse"),
        ("last -5", "does not parse"),
        ("last 0", "0 predictions"),
        ("0h", "length zero"),
        ("3 fortnights", "does not parse"),
        ("1y", "does not parse"),
        ("2026-13-01..2026-14-01", "not a date"),
        ("2026-02-01..2026-01-01", "before"),
        ("..", "neither"),
        ("a..b..c", "more than one"),
        ("flights@latest", "NAME@VERSION"),
    ],
)
def test_bad_windows_say_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(InvalidInputError, match=says) as info:
        parse_window(text)
    assert info.value.where == {"window": text}
    assert info.value.hint


def test_select_last_n_keeps_the_most_recent_oldest_first() -> None:
    log = _log().sample(frac=1.0, random_state=0)  # order must not matter
    picked = select_window(log, "last 10")
    assert list(picked["score"]) == list(np.linspace(0, 1, 100)[-10:])
    assert len(select_window(log, "last 1000")) == 100


def test_select_a_duration_ends_now() -> None:
    log = _log()
    picked = select_window(log, "1h", now=NOW)
    # rows at NOW - 1h, NOW - 30 min and NOW
    assert len(picked) == 3
    assert picked["timestamp"].min() == pd.Timestamp(NOW - timedelta(hours=1))
    assert len(select_window(log, "1d", now=NOW)) == 49
    # an hour later, the newest hour is empty
    with pytest.raises(InvalidInputError, match="holds no predictions"):
        select_window(log, "30m", now=NOW + timedelta(hours=1, minutes=1))


def test_select_a_date_range_is_start_inclusive_end_exclusive() -> None:
    log = _log(n=72, step=timedelta(hours=1))  # 2026-01-29 13:00 .. 2026-02-01 12:00
    picked = select_window(log, "2026-01-30..2026-01-31")
    assert len(picked) == 24
    assert picked["timestamp"].min() == pd.Timestamp("2026-01-30T00:00:00Z")
    assert picked["timestamp"].max() == pd.Timestamp("2026-01-30T23:00:00Z")
    assert len(select_window(log, "2026-02-01..")) == 13
    assert len(select_window(log, "..2026-01-30")) == 11


def test_naive_timestamps_are_utc() -> None:
    log = _log(n=10, step=timedelta(hours=1))
    naive = log.assign(timestamp=log["timestamp"].dt.tz_localize(None))
    window = "2026-02-01T05:00..2026-02-01T08:00"
    assert list(select_window(naive, window)["score"]) == list(select_window(log, window)["score"])


def test_an_empty_window_is_a_clear_error_or_an_empty_frame() -> None:
    log = _log()
    with pytest.raises(InvalidInputError, match="the log spans 2026-01-30") as info:
        select_window(log, "2025-01-01..2025-02-01")
    assert "widen" in (info.value.hint or "")
    assert select_window(log, "2025-01-01..2025-02-01", allow_empty=True).empty
    empty = log.iloc[:0]
    with pytest.raises(InvalidInputError, match="the prediction log is empty"):
        select_window(empty, "last 5")


def test_bounds_for_the_log_reader() -> None:
    assert parse_window("last 5").bounds() == (None, None)
    since, until = parse_window("1h").bounds(NOW)
    assert since == NOW - timedelta(hours=1)
    assert until is not None and until > NOW
    assert parse_window("2026-01-01..").bounds() == (datetime(2026, 1, 1, tzinfo=UTC), None)
    dataset = parse_window("flights@3")
    assert not dataset.on_log
    with pytest.raises(InvalidInputError, match="dataset version"):
        dataset.bounds()
    with pytest.raises(InvalidInputError, match="dataset version"):
        select_window(_log(), dataset)


def test_a_frame_without_timestamps_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="timestamp"):
        select_window(pd.DataFrame({"x": [1]}), "last 1")
    with pytest.raises(InvalidInputError, match="timestamp"):
        select_window(pd.DataFrame({"timestamp": ["soon"]}), "last 1")


def test_selecting_from_ten_million_rows_is_vectorised() -> None:
    n = 10_000_000
    base = np.datetime64("2026-01-01T00:00:00", "us")
    ts = base + np.arange(n, dtype=np.int64) * np.int64(1_000_000)  # one a second
    log = pd.DataFrame({"timestamp": pd.to_datetime(ts, utc=True)})
    picked = select_window(log, "2026-01-02..2026-01-03")
    assert len(picked) == 86_400
