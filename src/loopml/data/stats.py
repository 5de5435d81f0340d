"""Column statistics of a table, vectorised with pyarrow.compute.

Every column gets ``count`` (non-null values), ``nulls`` and ``distinct`` (distinct non-null
values). Numeric columns add ``min``, ``max``, ``mean``, ``std`` (sample, ddof=1, as pandas)
and the quantiles ``p5``, ``p25``, ``p50``, ``p75``, ``p95`` (linear interpolation, as
pandas). String and boolean columns add ``top``: the 10 most frequent values with their
counts; string columns also ``min_length``, ``mean_length`` and ``max_length``. Temporal
columns add ``min`` and ``max`` as ISO 8601 strings (durations: in seconds).

All values are plain JSON types: ``int``, ``float``, ``str``, ``bool`` or ``None`` (for NaN,
infinities and statistics of an empty column).
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

QUANTILES: tuple[tuple[str, float], ...] = (
    ("p5", 0.05),
    ("p25", 0.25),
    ("p50", 0.50),
    ("p75", 0.75),
    ("p95", 0.95),
)
TOP_K = 10


def compute_stats(table: pa.Table) -> dict[str, dict[str, Any]]:
    """Statistics per column of ``table`` (see the module docstring), keyed by column name."""
    return {name: column_stats(table.column(i)) for i, name in enumerate(table.column_names)}


def column_stats(column: pa.ChunkedArray | pa.Array) -> dict[str, Any]:
    """Statistics of one column."""
    col = column if isinstance(column, pa.ChunkedArray) else pa.chunked_array([column])
    typ = col.type
    if pa.types.is_dictionary(typ):
        col = col.cast(typ.value_type)
        typ = col.type
    if pa.types.is_floating(typ):
        nan = pc.is_nan(col)
        if pc.any(nan).as_py():  # NaN is missing, as in pandas
            col = pc.if_else(nan, pa.scalar(None, typ), col)
    nulls = int(col.null_count)
    out: dict[str, Any] = {"count": len(col) - nulls, "nulls": nulls}
    if _is_numeric(typ):
        out.update(_numeric(col))
    elif _is_string(typ) or pa.types.is_boolean(typ):
        out.update(_categorical(col))
        if _is_string(typ):
            out.update(_lengths(col))
    elif pa.types.is_temporal(typ):
        out["distinct"] = _distinct(col)
        if out["count"]:
            if pa.types.is_duration(typ):  # no min_max kernel: compare the integer ticks
                mm = pc.min_max(col.cast(pa.int64()))
                low, high = (pa.scalar(mm[k].as_py(), typ).as_py() for k in ("min", "max"))
            else:
                mm = pc.min_max(col)
                low, high = mm["min"].as_py(), mm["max"].as_py()
            out["min"] = _plain(low)
            out["max"] = _plain(high)
        else:
            out["min"] = out["max"] = None
    elif pa.types.is_null(typ):
        out["distinct"] = 0
    else:
        out["distinct"] = _distinct(col)
    return out


def _is_numeric(typ: pa.DataType) -> bool:
    return pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_decimal(typ)


def _is_string(typ: pa.DataType) -> bool:
    return pa.types.is_string(typ) or pa.types.is_large_string(typ)


def _distinct(col: pa.ChunkedArray) -> int:
    return int(pc.count_distinct(col, mode="only_valid").as_py())


def _numeric(col: pa.ChunkedArray) -> dict[str, Any]:
    if pa.types.is_decimal(col.type) or pa.types.is_float16(col.type):
        col = col.cast(pa.float64())
    values = pc.drop_null(col).to_numpy()
    # one sort gives min, max, quantiles and the distinct count (faster than hashing floats)
    values = np.sort(values)
    n = len(values)
    out: dict[str, Any] = {}
    if n == 0:
        out.update(distinct=0, min=None, max=None, mean=None, std=None)
        out.update({key: None for key, _ in QUANTILES})
        return out
    out["distinct"] = int(np.count_nonzero(values[1:] != values[:-1])) + 1
    out["min"] = _plain(values[0].item())
    out["max"] = _plain(values[-1].item())
    as_float = values.astype(np.float64, copy=False)
    with np.errstate(all="ignore"):
        out["mean"] = _plain(float(as_float.mean()))
        out["std"] = _plain(float(as_float.std(ddof=1))) if n > 1 else None
        for key, q in QUANTILES:
            out[key] = _plain(_sorted_quantile(as_float, q))
    return out


def _sorted_quantile(values: npt.NDArray[np.float64], q: float) -> float:
    """Quantile ``q`` of sorted ``values`` with linear interpolation (pandas' default)."""
    pos = q * (len(values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(values) - 1)
    low, high = float(values[lo]), float(values[hi])
    if low == high:
        return low
    return low + (high - low) * (pos - lo)


def _categorical(col: pa.ChunkedArray) -> dict[str, Any]:
    counts = pc.value_counts(col)  # one struct per distinct value, null included
    values = counts.field("values")
    freq = counts.field("counts")
    if values.null_count:
        keep = pc.is_valid(values)
        values = pc.filter(values, keep)
        freq = pc.filter(freq, keep)
    out: dict[str, Any] = {"distinct": len(values)}
    pairs = pa.table({"value": values, "count": freq})
    order = pc.sort_indices(pairs, sort_keys=[("count", "descending"), ("value", "ascending")])
    top = pairs.take(order[:TOP_K])
    out["top"] = [
        {"value": _plain(v), "count": int(c)}
        for v, c in zip(
            top.column("value").to_pylist(), top.column("count").to_pylist(), strict=True
        )
    ]
    return out


def _lengths(col: pa.ChunkedArray) -> dict[str, Any]:
    if len(col) == col.null_count:
        return {"min_length": None, "mean_length": None, "max_length": None}
    lengths = pc.utf8_length(col)
    mm = pc.min_max(lengths)
    return {
        "min_length": int(mm["min"].as_py()),
        "mean_length": _plain(pc.mean(lengths).as_py()),
        "max_length": int(mm["max"].as_py()),
    }


def _plain(value: Any) -> Any:
    """A JSON-friendly version of one scalar: NaN and infinities become None."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return _plain(float(value))
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)
