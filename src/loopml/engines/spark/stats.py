"""Statistics of a dataset version computed on Spark, as :mod:`loopml.data.stats` defines them.

Every column: ``count`` (non-null values; NaN counts as missing), ``nulls``, ``distinct``
(exact: ``count(DISTINCT)``). Numeric columns: ``min``, ``max``, ``mean``, ``std`` (sample,
ddof=1), the quantiles ``p5`` .. ``p95`` with linear interpolation (exact, Spark's
``percentile``, up to :data:`~loopml.data.stats.SAMPLE_SIZE` values; above that
``percentile_approx`` with a rank error of about 1/``APPROX_ACCURACY``, listed under
``approximate``, as the local reservoir's are) and a ``histogram`` of
:data:`~loopml.data.stats.HISTOGRAM_BINS` equal-width bins from min to max (exact, binned as
``numpy.histogram`` bins). String and boolean columns: ``top`` (the 10 most frequent values,
ties by value); strings also ``min_length``, ``mean_length``, ``max_length`` (characters).
Temporal columns: ``min`` and ``max`` as ISO 8601 strings of the column's own type.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from loopml.data.ingest import get_dataset, version_urls
from loopml.data.stats import HISTOGRAM_BINS, QUANTILES, SAMPLE_SIZE, TOP_K, _plain
from loopml.engines.spark.session import spark_session
from loopml.project.data import arrow_type

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    from loopml.stores.records import DatasetVersion
    from loopml.workspace import Workspace

APPROX_ACCURACY = 100_000  # percentile_approx's accuracy above SAMPLE_SIZE values


def read_version(spark: SparkSession, ws: Workspace, dv: DatasetVersion) -> DataFrame:
    """The rows of ``dv`` as a Spark DataFrame, read from the lake's parts (its columns as
    stored: hive folder names are not read as columns, the parts hold them)."""
    from loopml.engines.spark.ingest import _spark_error

    urls = version_urls(ws, dv)
    try:
        return spark.read.option("recursiveFileLookup", "true").parquet(*urls)
    except Exception as exc:
        raise _spark_error(exc, f"{dv.name}@{dv.version}") from exc


def version_stats(
    ws: Workspace, ref: str | DatasetVersion, *, master: str | None = None
) -> dict[str, dict[str, Any]]:
    """Statistics per column of the version ``ref`` (``NAME`` or ``NAME@V``), on Spark."""
    dv = get_dataset(ws, ref) if isinstance(ref, str) else ref
    spark = spark_session(ws.settings, master=master)
    frame = read_version(spark, ws, dv)
    types = {c["name"]: arrow_type(c["type"], c["name"]) for c in dv.schema}
    return frame_stats(frame, types)


def frame_stats(frame: DataFrame, types: dict[str, pa.DataType]) -> dict[str, dict[str, Any]]:
    """Statistics per column of ``frame`` whose columns hold ``types`` (as the lake stores)."""
    from pyspark.sql import functions as F

    kinds = {name: _kind(typ) for name, typ in types.items()}
    cols = {name: _value(frame, name, types[name]) for name in types}
    exprs: list[Column] = [F.count(F.lit(1)).alias("__rows")]
    for i, name in enumerate(types):
        c = cols[name]
        exprs += [F.count(c).alias(f"n{i}"), F.countDistinct(c).alias(f"d{i}")]
        if kinds[name] == "numeric":
            exprs += [
                F.min(c).alias(f"lo{i}"),
                F.max(c).alias(f"hi{i}"),
                F.avg(c.cast("double")).alias(f"mean{i}"),
                F.stddev_samp(c.cast("double")).alias(f"std{i}"),
            ]
        elif kinds[name] == "string":
            length = F.char_length(c)
            exprs += [
                F.min(length).alias(f"lmin{i}"),
                F.avg(length).alias(f"lmean{i}"),
                F.max(length).alias(f"lmax{i}"),
            ]
        elif kinds[name] == "temporal":
            ticks = _ticks(c, types[name])
            exprs += [F.min(ticks).alias(f"lo{i}"), F.max(ticks).alias(f"hi{i}")]
    row = frame.agg(*exprs).collect()[0].asDict()
    rows = int(row["__rows"])
    out: dict[str, dict[str, Any]] = {}
    quantiles = _quantiles(frame, cols, kinds, row, types)
    for i, name in enumerate(types):
        count = int(row[f"n{i}"])
        st: dict[str, Any] = {"count": count, "nulls": rows - count}
        kind = kinds[name]
        distinct = int(row[f"d{i}"])
        if kind == "numeric":
            st.update(_numeric(frame, cols[name], i, row, count, distinct, quantiles.get(name)))
        elif kind in ("string", "boolean"):
            st["distinct"] = distinct
            st["top"] = _top(frame, cols[name])
            if kind == "string":
                st["min_length"] = None if not count else int(row[f"lmin{i}"])
                st["mean_length"] = None if not count else _plain(float(row[f"lmean{i}"]))
                st["max_length"] = None if not count else int(row[f"lmax{i}"])
        elif kind == "temporal":
            st["distinct"] = distinct
            st["min"] = _temporal(row[f"lo{i}"], types[name])
            st["max"] = _temporal(row[f"hi{i}"], types[name])
        else:
            st["distinct"] = distinct
        out[name] = st
    return out


def _kind(typ: pa.DataType) -> str:
    if pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_decimal(typ):
        return "numeric"
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return "string"
    if pa.types.is_boolean(typ):
        return "boolean"
    if pa.types.is_date(typ) or pa.types.is_timestamp(typ):
        return "temporal"
    return "other"


def _value(frame: DataFrame, name: str, typ: pa.DataType) -> Column:
    """The column, NaN as missing (as the local statistics count it)."""
    from pyspark.sql import functions as F

    c = frame[f"`{name}`"]
    if pa.types.is_floating(typ):
        return F.when(F.isnan(c), F.lit(None)).otherwise(c)
    return c


def _ticks(c: Column, typ: pa.DataType) -> Column:
    """Days (dates) or microseconds since the epoch, read as UTC wall time."""
    from pyspark.sql import functions as F

    if pa.types.is_date(typ):
        return F.datediff(c, F.lit("1970-01-01").cast("date"))
    return F.unix_micros(c.cast("timestamp"))


def _temporal(ticks: Any, typ: pa.DataType) -> Any:
    if ticks is None:
        return None
    if pa.types.is_date(typ):
        return _plain(pa.scalar(int(ticks), pa.int32()).cast(typ).as_py())
    micros = pa.scalar(int(ticks), pa.int64()).cast(pa.timestamp("us", tz=typ.tz))
    return _plain(micros.cast(typ, safe=False).as_py())


def _quantiles(
    frame: DataFrame,
    cols: dict[str, Column],
    kinds: dict[str, str],
    row: dict[str, Any],
    types: dict[str, pa.DataType],
) -> dict[str, tuple[list[float], bool]]:
    """``{column: (p5..p95, approximate)}`` for numeric columns with values, in one pass."""
    from pyspark.sql import functions as F

    qs = [q for _, q in QUANTILES]
    exprs = []
    approx: dict[str, bool] = {}
    for i, name in enumerate(types):
        if kinds[name] != "numeric" or not row[f"n{i}"]:
            continue
        value = cols[name].cast("double")
        if int(row[f"n{i}"]) <= SAMPLE_SIZE:
            exprs.append(F.percentile(value, F.array(*[F.lit(q) for q in qs])).alias(f"q{i}"))
            approx[name] = False
        else:
            exprs.append(F.percentile_approx(value, qs, APPROX_ACCURACY).alias(f"q{i}"))
            approx[name] = True
    if not exprs:
        return {}
    found = frame.agg(*exprs).collect()[0].asDict()
    return {
        name: ([float(v) for v in found[f"q{list(types).index(name)}"]], approx[name])
        for name in approx
    }


def _numeric(
    frame: DataFrame,
    c: Column,
    i: int,
    row: dict[str, Any],
    count: int,
    distinct: int,
    quantiles: tuple[list[float], bool] | None,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if count == 0:
        out.update(distinct=0, min=None, max=None, mean=None, std=None)
        out.update({key: None for key, _ in QUANTILES})
        return out
    lo, hi = row[f"lo{i}"], row[f"hi{i}"]
    out["distinct"] = distinct
    out["min"] = _plain(lo)
    out["max"] = _plain(hi)
    out["mean"] = _plain(float(row[f"mean{i}"]))
    std = row[f"std{i}"]
    out["std"] = _plain(float(std)) if count > 1 and std is not None else None
    values, approximate = quantiles if quantiles is not None else ([math.nan] * 5, False)
    for (key, _), value in zip(QUANTILES, values, strict=True):
        out[key] = _plain(value)
    out["histogram"] = _histogram(frame, c, lo, hi, count)
    if approximate:
        out["approximate"] = [key for key, _ in QUANTILES]
    return out


def _histogram(frame: DataFrame, c: Column, low: Any, high: Any, total: int) -> dict[str, Any]:
    """:data:`HISTOGRAM_BINS` equal-width bins from min to max, as ``numpy.histogram`` bins
    (right edge of the last bin included)."""
    import numpy as np
    from pyspark.sql import functions as F

    lo, hi = float(low), float(high)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return {"edges": [], "counts": []}
    if lo == hi:
        return {"edges": [lo, hi], "counts": [total]}
    edges = np.linspace(lo, hi, HISTOGRAM_BINS + 1)
    norm = HISTOGRAM_BINS / (hi - lo)
    x = c.cast("double")
    index = F.floor((x - F.lit(lo)) * F.lit(norm)).cast("int")
    index = F.when(index >= HISTOGRAM_BINS, HISTOGRAM_BINS - 1).otherwise(index)
    # numpy's corrections for values that rounding put one bin off
    lower = F.element_at(F.array(*[F.lit(float(e)) for e in edges]), index + 1)
    upper = F.element_at(F.array(*[F.lit(float(e)) for e in edges]), index + 2)
    index = (
        F.when(x < lower, index - 1)
        .when((x >= upper) & (index != HISTOGRAM_BINS - 1), index + 1)
        .otherwise(index)
    )
    found = frame.where(x.isNotNull() & ~F.isnan(x)).groupBy(index.alias("bin")).count().collect()
    counts = [0] * HISTOGRAM_BINS
    for r in found:
        counts[int(r["bin"])] += int(r["count"])
    return {"edges": [float(e) for e in edges], "counts": counts}


def _top(frame: DataFrame, c: Column) -> list[dict[str, Any]]:
    from pyspark.sql import functions as F

    found = (
        frame.where(c.isNotNull())
        .groupBy(c.alias("value"))
        .count()
        .orderBy(F.desc("count"), F.asc("value"))
        .limit(TOP_K)
        .collect()
    )
    return [{"value": _plain(r["value"]), "count": int(r["count"])} for r in found]


__all__ = ["frame_stats", "read_version", "version_stats"]
