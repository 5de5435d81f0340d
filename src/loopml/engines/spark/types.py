"""Spark column types and the Arrow types loopml stores, both ways.

The lake holds what the local engine writes: ``int64``, ``float64``, ``string``, ``bool``,
``date32`` and timestamps (with ``tz=UTC`` for Spark's ``TimestampType``, naive for
``TimestampNTZType``). Narrower Spark numbers (byte, short, int, float, decimal) widen to
int64 and float64 when Spark decides the type (JDBC, files the driver cannot open); a file the
driver can read keeps the types a local ingest gives it (see :mod:`.ingest`).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from loopml.errors import InvalidInputError


def arrow_type(spark_type: Any, column: str) -> pa.DataType:
    """The Arrow type loopml stores for a column Spark reads as ``spark_type``."""
    from pyspark.sql import types as T

    simple: list[tuple[type[Any], pa.DataType]] = [
        (T.BooleanType, pa.bool_()),
        (T.ByteType, pa.int64()),
        (T.ShortType, pa.int64()),
        (T.IntegerType, pa.int64()),
        (T.LongType, pa.int64()),
        (T.FloatType, pa.float64()),
        (T.DoubleType, pa.float64()),
        (T.DecimalType, pa.float64()),
        (T.StringType, pa.string()),
        (T.DateType, pa.date32()),
        (T.TimestampNTZType, pa.timestamp("us")),
        (T.TimestampType, pa.timestamp("us", tz="UTC")),
    ]
    for cls, typ in simple:
        if isinstance(spark_type, cls):
            return typ
    raise InvalidInputError(
        f"column {column!r} has Spark type {spark_type.simpleString()}, which loopml does not "
        "store",
        where={"column": column},
        hint="Select it cast to a plain type in --query (e.g. CAST(col AS VARCHAR)), or leave "
        "it out",
    )


def spark_type(arrow: pa.DataType, column: str) -> Any:
    """The Spark type that reads into ``arrow`` without loss."""
    from pyspark.sql import types as T

    if pa.types.is_boolean(arrow):
        return T.BooleanType()
    if pa.types.is_integer(arrow):
        return T.IntegerType() if arrow.bit_width <= 32 and arrow != pa.uint32() else T.LongType()
    if pa.types.is_floating(arrow):
        return T.FloatType() if arrow.bit_width <= 32 else T.DoubleType()
    if pa.types.is_string(arrow) or pa.types.is_large_string(arrow):
        return T.StringType()
    if pa.types.is_date(arrow):
        return T.DateType()
    if pa.types.is_timestamp(arrow):
        return T.TimestampType() if arrow.tz is not None else T.TimestampNTZType()
    raise InvalidInputError(
        f"column {column!r} holds {arrow}, which the Spark engine does not ingest",
        where={"column": column},
        hint="Ingest this source with --engine local, or flatten the column first",
    )


def is_flat(arrow: pa.DataType) -> bool:
    """Whether the Spark engine converts ``arrow`` itself (nested types it does not)."""
    return not (pa.types.is_nested(arrow) or pa.types.is_binary(arrow))


__all__ = ["arrow_type", "is_flat", "spark_type"]
