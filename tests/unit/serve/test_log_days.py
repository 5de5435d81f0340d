"""Compaction splits a segment's rows by UTC day: the integer split gives the parts that
``pyarrow.compute.strftime`` per row gave (and is kept for what it does not cover)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from loopml.predictions import _by_day


def _reference(table: pa.Table) -> list[tuple[str, list[int]]]:
    days = pc.strftime(table["timestamp"], format="%Y-%m-%d").to_pylist()
    rows = table["row"].to_pylist()
    return [(d, [r for r, x in zip(rows, days, strict=True) if x == d]) for d in sorted(set(days))]


def _table(values: np.ndarray, ts_type: pa.DataType) -> pa.Table:
    return pa.table(
        {"timestamp": pa.array(values, ts_type), "row": pa.array(np.arange(len(values)))}
    )


@pytest.mark.parametrize(
    "ts_type",
    [
        pa.timestamp("us", tz="UTC"),
        pa.timestamp("ms", tz="UTC"),
        pa.timestamp("ns", tz="UTC"),
        pa.timestamp("us"),  # naive: the same wall-clock days
        pa.timestamp("us", tz="Asia/Tokyo"),  # local days: the strftime path
    ],
)
def test_rows_are_split_by_day_as_strftime_splits_them(ts_type: pa.DataType) -> None:
    per_day = {"s": 86_400, "ms": 86_400_000, "us": 86_400_000_000, "ns": 86_400 * 10**9}
    scale = per_day[ts_type.unit] // 86_400  # ticks per second
    midnight = int(datetime(2026, 12, 3, tzinfo=UTC).timestamp()) * scale
    rng = np.random.default_rng(0)
    # around two midnights, shuffled; one tick before and at midnight exactly
    offsets = rng.integers(-2 * 86_400 * scale, 86_400 * scale, 300)
    values = np.concatenate([[midnight - 1, midnight], midnight + offsets]).astype(np.int64)
    table = _table(values, ts_type)
    got = [(day, part["row"].to_pylist()) for day, part in _by_day(table)]
    assert got == _reference(table)
    assert len(got) >= 3
    assert sum(len(rows) for _, rows in got) == len(values)


def test_one_day_is_the_table_itself_and_before_1970_is_a_day_too() -> None:
    one = _table(np.array([5, 6, 7], dtype=np.int64) * 10**6, pa.timestamp("us", tz="UTC"))
    [(day, part)] = _by_day(one)
    assert day == "1970-01-01" and part is one
    before = _table(np.array([-1, 0], dtype=np.int64), pa.timestamp("us", tz="UTC"))
    assert [(d, p["row"].to_pylist()) for d, p in _by_day(before)] == _reference(before)
    assert [d for d, _ in _by_day(before)] == ["1969-12-31", "1970-01-01"]
