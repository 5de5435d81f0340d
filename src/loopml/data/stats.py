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
import json
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


# -- streaming statistics ---------------------------------------------------------------------
#
# StreamingStats sees a table batch by batch in bounded memory and gives what compute_stats
# gives, plus a histogram. What is exact and what is estimated:
#   count, nulls, min, max, mean, std, string lengths: exact (mean and std merged with Chan's
#       parallel form of Welford's update);
#   distinct: exact up to DISTINCT_EXACT distinct values (a set of 64-bit hashes), above that a
#       HyperLogLog estimate (2**HLL_P registers, about 1.6 % standard error);
#   quantiles and histogram: exact up to SAMPLE_SIZE values, above that from a uniform
#       reservoir sample of SAMPLE_SIZE values (rank error about 1/sqrt(SAMPLE_SIZE));
#   top: exact while a column has at most TOP_TRACK distinct values, above that the most
#       frequent values per batch are merged (the heavy hitters come out right; their counts
#       are lower bounds).
# Each column's entry lists the estimated statistics under "approximate" when there are any.
# The state can be saved (to_arrays) and merged with later batches (from_arrays), so an append
# version's statistics cover its parent's rows without reading them again.

SAMPLE_SIZE = 100_000
DISTINCT_EXACT = 100_000
HLL_P = 12
TOP_TRACK = 2_000
HISTOGRAM_BINS = 20
_SEED = 20240501


def _hll_update(registers: npt.NDArray[np.uint8], hashes: npt.NDArray[np.uint64]) -> None:
    if not len(hashes):
        return
    index = (hashes >> np.uint64(64 - HLL_P)).astype(np.intp)
    rest = hashes & np.uint64((1 << (64 - HLL_P)) - 1)
    # rank = position of the first 1-bit in the remaining 64-p bits (1-based); the bit length
    # is frexp's exponent (exact: the rest has fewer bits than a float64's mantissa; 0 for 0)
    bits = np.frexp(rest.astype(np.float64))[1]
    rank = ((64 - HLL_P + 1) - bits).astype(np.uint8)
    np.maximum.at(registers, index, rank)


def _hll_estimate(registers: npt.NDArray[np.uint8]) -> float:
    m = float(len(registers))
    alpha = 0.7213 / (1 + 1.079 / m)
    raw = alpha * m * m / float(np.sum(np.power(2.0, -registers.astype(np.float64))))
    zeros = int(np.count_nonzero(registers == 0))
    if raw <= 2.5 * m and zeros:
        return m * math.log(m / zeros)  # linear counting for small cardinalities
    return raw


def _hashes(values: pa.Array) -> npt.NDArray[np.uint64]:
    """64-bit hashes of the non-null ``values`` (numbers by value: 1 and 1.0 differ by type)."""
    from pandas.util import hash_array

    values = pc.drop_null(values)
    typ = values.type
    if pa.types.is_temporal(typ):
        values = values.cast(pa.int64()) if not pa.types.is_date32(typ) else values.cast(pa.int32())
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        arr = np.asarray(values.to_numpy(zero_copy_only=False), dtype=object)
    else:
        arr = values.to_numpy(zero_copy_only=False)
    return np.asarray(hash_array(arr), dtype=np.uint64)


class _Column:
    """The running statistics of one column."""

    def __init__(self, typ: pa.DataType) -> None:
        self.type = typ
        self.rows = 0
        self.nulls = 0
        self.registers = np.zeros(1 << HLL_P, dtype=np.uint8)
        self.exact: npt.NDArray[np.uint64] | None = np.zeros(0, dtype=np.uint64)
        # numeric
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.low: Any = None
        self.high: Any = None
        self.sample = np.zeros(0, dtype=np.float64)
        self.seen = 0  # values offered to the reservoir
        # categorical
        self.top: dict[Any, int] = {}
        self.top_exact = True
        self.len_min: int | None = None
        self.len_max: int | None = None
        self.len_sum = 0
        self.retyped = False  # widened by an append: distinct values may be counted twice

    @property
    def numeric(self) -> bool:
        return _is_numeric(self.type)

    def update(self, col: pa.Array, rng: np.random.Generator) -> None:
        typ = self.type
        n = len(col)
        self.rows += n
        nulls = col.null_count
        self.nulls += nulls
        if nulls == n:
            return
        if pa.types.is_null(typ):
            return
        if self.numeric:
            self._numeric(col, rng)
        elif _is_string(typ) or pa.types.is_boolean(typ):
            self._categorical(col)
            return
        elif pa.types.is_temporal(typ):
            as_int = col.cast(pa.int64()) if not pa.types.is_date32(typ) else col.cast(pa.int32())
            mm = pc.min_max(as_int)
            low, high = mm["min"].as_py(), mm["max"].as_py()
            self.low = low if self.low is None else min(self.low, low)
            self.high = high if self.high is None else max(self.high, high)
        self._distinct(_hashes(col))

    def _distinct(self, hashes: npt.NDArray[np.uint64]) -> None:
        # while the exact set lasts it holds every hash seen, and a HyperLogLog sketch does not
        # depend on repeats or order: the registers are filled from the set once it overflows
        # (the same registers as updating them batch by batch, without hashing low-cardinality
        # columns into them at all)
        if self.exact is None:
            _hll_update(self.registers, hashes)
            return
        merged = np.sort(np.concatenate([self.exact, hashes]))
        if len(merged) > 1:  # np.unique hashes, and is slower on 64-bit keys than a sort
            merged = merged[np.concatenate([[True], merged[1:] != merged[:-1]])]
        if len(merged) <= DISTINCT_EXACT:
            self.exact = merged
        else:
            _hll_update(self.registers, merged)
            self.exact = None

    def _numeric(self, col: pa.Array, rng: np.random.Generator) -> None:
        values = col
        if pa.types.is_decimal(values.type) or pa.types.is_float16(values.type):
            values = values.cast(pa.float64())
        values = pc.drop_null(values)
        mm = pc.min_max(values)
        low, high = mm["min"].as_py(), mm["max"].as_py()
        self.low = low if self.low is None else min(self.low, low)
        self.high = high if self.high is None else max(self.high, high)
        arr = values.to_numpy(zero_copy_only=False)
        as_float = arr.astype(np.float64, copy=False)
        k = len(as_float)
        with np.errstate(all="ignore"):
            mean_b = float(as_float.mean())
            m2_b = float(np.square(as_float - mean_b).sum())
        n_a = self.count
        total = n_a + k
        delta = mean_b - self.mean
        self.mean += delta * k / total
        self.m2 += m2_b + delta * delta * n_a * k / total
        self.count = total
        self._offer(as_float, rng)
        self._distinct(_hashes(values))

    def _offer(self, values: npt.NDArray[np.float64], rng: np.random.Generator) -> None:
        """Algorithm R over a batch: the reservoir stays a uniform sample of all values."""
        room = SAMPLE_SIZE - len(self.sample)
        if room > 0:
            self.sample = np.concatenate([self.sample, values[:room]])
            self.seen += min(room, len(values))
            values = values[room:]
        if not len(values):
            return
        # value i replaces slot floor(u * t) (t: its 1-based position) when that is a slot;
        # floor(y) < k exactly when y < k, so only the kept ones are floored
        scaled = rng.random(len(values))
        scaled *= np.arange(self.seen + 1, self.seen + len(values) + 1, dtype=np.float64)
        keep = scaled < SAMPLE_SIZE
        self.sample[scaled[keep].astype(np.int64)] = values[keep]
        self.seen += len(values)

    def _categorical(self, col: pa.Array) -> None:
        counts = pc.value_counts(col)
        values = counts.field("values")
        freq = counts.field("counts")
        if values.null_count:  # the nulls' entry
            keep = pc.is_valid(values)
            values, freq = values.filter(keep), freq.filter(keep)
        self._distinct(_hashes(values))
        if _is_string(self.type):
            # lengths of the distinct values, weighted by their counts: the same sums as over
            # every row, for a fraction of the work on categories
            lengths = pc.utf8_length(values)
            mm = pc.min_max(lengths)
            lo, hi = int(mm["min"].as_py()), int(mm["max"].as_py())
            self.len_min = lo if self.len_min is None else min(self.len_min, lo)
            self.len_max = hi if self.len_max is None else max(self.len_max, hi)
            weighted = pc.multiply(lengths.cast(pa.int64()), freq)
            self.len_sum += int(pc.sum(weighted).as_py() or 0)
        if len(values) > TOP_TRACK:
            self.top_exact = False
            order = pc.array_sort_indices(freq, order="descending")[:TOP_TRACK]
            values, freq = values.take(order), freq.take(order)
        for v, c in zip(values.to_pylist(), freq.to_pylist(), strict=True):
            self.top[v] = self.top.get(v, 0) + int(c)
        if len(self.top) > 2 * TOP_TRACK:
            self.top_exact = False
            kept = sorted(self.top.items(), key=lambda kv: -kv[1])[:TOP_TRACK]
            self.top = dict(kept)

    # -- results ------------------------------------------------------------------------------

    def distinct(self) -> tuple[int, bool]:
        if self.exact is not None:
            return len(self.exact), self.retyped
        return round(_hll_estimate(self.registers)), True

    def result(self) -> dict[str, Any]:
        typ = self.type
        out: dict[str, Any] = {"count": self.rows - self.nulls, "nulls": self.nulls}
        approx: list[str] = []
        distinct, estimated = self.distinct()
        if pa.types.is_null(typ):
            out["distinct"] = 0
        elif self.numeric:
            out.update(self._numeric_result(distinct, estimated, approx))
        elif _is_string(typ) or pa.types.is_boolean(typ):
            out["distinct"] = distinct
            if estimated:
                approx.append("distinct")
            ranked = sorted(self.top.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_K]
            out["top"] = [{"value": _plain(v), "count": c} for v, c in ranked]
            if not self.top_exact:
                approx.append("top")
            if _is_string(typ):
                count = out["count"]
                out["min_length"] = self.len_min
                out["mean_length"] = _plain(self.len_sum / count) if count else None
                out["max_length"] = self.len_max
        elif pa.types.is_temporal(typ):
            out["distinct"] = distinct
            if estimated:
                approx.append("distinct")
            out["min"] = None if self.low is None else _plain(_temporal(self.low, typ))
            out["max"] = None if self.high is None else _plain(_temporal(self.high, typ))
        else:
            out["distinct"] = distinct
        if approx:
            out["approximate"] = approx
        return out

    def _numeric_result(self, distinct: int, estimated: bool, approx: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        n = self.count
        if n == 0:
            out.update(distinct=0, min=None, max=None, mean=None, std=None)
            out.update({key: None for key, _ in QUANTILES})
            return out
        out["distinct"] = distinct
        if estimated:
            approx.append("distinct")
        out["min"] = _plain(self.low)
        out["max"] = _plain(self.high)
        out["mean"] = _plain(self.mean)
        out["std"] = _plain(math.sqrt(self.m2 / (n - 1))) if n > 1 else None
        values = np.sort(self.sample)
        for key, q in QUANTILES:
            out[key] = _plain(_sorted_quantile(values, q))
        sampled = self.seen > len(self.sample)
        if sampled:
            approx.extend([key for key, _ in QUANTILES] + ["histogram"])
        out["histogram"] = _histogram(values, self.low, self.high, n)
        return out

    # -- saving and merging -------------------------------------------------------------------

    def to_arrays(self, prefix: str) -> dict[str, npt.NDArray[Any]]:
        scalars = np.array(
            [
                self.rows,
                self.nulls,
                self.count,
                self.seen,
                self.len_sum,
                int(self.top_exact),
                int(self.retyped),
            ],
            dtype=np.int64,
        )
        floats = np.array([self.mean, self.m2], dtype=np.float64)
        extremes = json.dumps(
            {"low": self.low, "high": self.high, "len": [self.len_min, self.len_max]},
            default=str,
        )
        top = json.dumps([[v, c] for v, c in self.top.items()], default=str)
        out: dict[str, npt.NDArray[Any]] = {
            f"{prefix}.scalars": scalars,
            f"{prefix}.floats": floats,
            f"{prefix}.registers": self.registers,
            f"{prefix}.sample": self.sample,
            f"{prefix}.json": np.array([extremes, top, str(self.type)]),
        }
        if self.exact is not None:
            out[f"{prefix}.exact"] = self.exact
        return out

    @classmethod
    def from_arrays(cls, typ: pa.DataType, prefix: str, arrays: Any) -> _Column:
        col = cls(typ)
        scalars = [int(x) for x in arrays[f"{prefix}.scalars"]]
        rows, nulls, count, seen, len_sum, top_exact = scalars[:6]
        col.rows, col.nulls, col.count, col.seen, col.len_sum = rows, nulls, count, seen, len_sum
        col.top_exact = bool(top_exact)
        col.retyped = len(scalars) > 6 and bool(scalars[6])  # states saved before: 6 numbers
        col.mean, col.m2 = (float(x) for x in arrays[f"{prefix}.floats"])
        col.registers = np.array(arrays[f"{prefix}.registers"], dtype=np.uint8)
        col.sample = np.array(arrays[f"{prefix}.sample"], dtype=np.float64)
        key = f"{prefix}.exact"
        col.exact = np.array(arrays[key], dtype=np.uint64) if key in arrays else None
        extremes, top, _ = (str(x) for x in arrays[f"{prefix}.json"])
        ext = json.loads(extremes)
        col.low, col.high = ext["low"], ext["high"]
        col.len_min, col.len_max = ext["len"]
        pairs = json.loads(top)
        if pa.types.is_boolean(typ):
            col.top = {bool(v) if not isinstance(v, str) else v == "True": int(c) for v, c in pairs}
        else:
            col.top = {v: int(c) for v, c in pairs}
        return col


def _temporal(ticks: int, typ: pa.DataType) -> Any:
    storage = pa.int32() if pa.types.is_date32(typ) else pa.int64()
    return pa.scalar(ticks, storage).cast(typ).as_py()


def _histogram(values: npt.NDArray[np.float64], low: Any, high: Any, total: int) -> dict[str, Any]:
    """``HISTOGRAM_BINS`` equal-width bins from min to max; counts scaled to ``total`` rows
    when ``values`` is a sample."""
    lo, hi = float(low), float(high)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return {"edges": [], "counts": []}
    if lo == hi:
        return {"edges": [lo, hi], "counts": [total]}
    counts, edges = np.histogram(values[np.isfinite(values)], bins=HISTOGRAM_BINS, range=(lo, hi))
    if len(values) and len(values) != total:
        scaled = counts * (total / len(values))
        counts = np.floor(scaled).astype(np.int64)
        short = total - int(counts.sum())  # largest remainders first, so the sum is the total
        order = np.argsort(-(scaled - counts))[:short]
        counts[order] += 1
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


class StreamingStats:
    """Statistics of a table seen batch by batch (see the notes above)."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self.columns = [_Column(f.type) for f in schema]
        self._rng = np.random.default_rng(_SEED)

    def update(self, batch: pa.RecordBatch | pa.Table) -> None:
        if isinstance(batch, pa.Table):
            batch = batch.combine_chunks()
            arrays = [c.chunk(0) if c.num_chunks else pa.array([], c.type) for c in batch.columns]
        else:
            arrays = list(batch.columns)
        for col, values in zip(self.columns, arrays, strict=True):
            if pa.types.is_dictionary(values.type):
                values = values.cast(values.type.value_type)
            col.update(values, self._rng)

    def result(self) -> dict[str, dict[str, Any]]:
        return {f.name: c.result() for f, c in zip(self.schema, self.columns, strict=True)}

    def evolve(self, schema: pa.Schema, rows: int) -> StreamingStats:
        """This state under ``schema`` (an append's evolved columns, see
        :mod:`loopml.data.evolution`): a column it lacks counts the ``rows`` seen so far as
        nulls; a widened column keeps its statistics (integer extremes become floats for a
        float type)."""
        by_name = dict(zip(self.schema.names, self.columns, strict=True))
        columns = []
        for f in schema:
            col = by_name.get(f.name)
            if col is None:
                col = _Column(f.type)
                col.rows = col.nulls = rows
            elif col.type != f.type:
                if pa.types.is_floating(f.type):
                    col.low = None if col.low is None else float(col.low)
                    col.high = None if col.high is None else float(col.high)
                col.type = f.type
                # the same value may hash apart under the two types (-1 as int32 and int64)
                col.retyped = col.rows > col.nulls
            columns.append(col)
        out = StreamingStats(schema)
        out.columns = columns
        out._rng = self._rng
        return out

    def to_bytes(self) -> bytes:
        """The state, as an ``.npz`` archive (no pickled objects)."""
        import io

        arrays: dict[str, Any] = {}
        for i, col in enumerate(self.columns):
            arrays.update(col.to_arrays(f"c{i}"))
        arrays["names"] = np.array([f.name for f in self.schema])
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)  # compressing costs more time than the bytes are worth
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, schema: pa.Schema) -> StreamingStats:
        """A saved state; ``schema`` must be the one it was saved with (names in order)."""
        import io

        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            names = [str(n) for n in arrays["names"]]
            if names != schema.names:
                raise ValueError(f"the saved statistics are of columns {names}")
            out = cls(schema)
            out.columns = [
                _Column.from_arrays(f.type, f"c{i}", arrays) for i, f in enumerate(schema)
            ]
        return out
