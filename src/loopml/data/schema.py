"""Schemas of dataset tables: Arrow types, loopml's logical kinds, and which types are allowed.

A logical kind says how a column is meant to be used:

``numeric``      integers, floats and decimals
``boolean``      true/false
``datetime``     timestamps, dates, times and durations
``categorical``  strings with few distinct values (or dictionary-encoded strings)
``text``         strings that are long or nearly all different (free text, identifiers)

Nested values (lists, structs, maps) and raw binary are not dataset columns:
:func:`check_columns` rejects them with the column's name so the user can flatten or decode
them first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from loopml.errors import InvalidInputError
from loopml.kinds import BOOLEAN, CATEGORICAL, DATA_KINDS, DATETIME, NUMERIC, TEXT

KINDS = DATA_KINDS

# a string column is text (not categorical) when its values are long on average, or when it
# has many distinct values that make up most of its rows
TEXT_MEAN_LENGTH = 40.0
TEXT_MIN_DISTINCT = 1000
TEXT_DISTINCT_SHARE = 0.5


def schema_of(
    table: pa.Table, stats: Mapping[str, Mapping[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """One entry per column: ``name``, ``type`` (Arrow type string), ``kind``, ``nullable``
    (whether the column holds any null) and ``nulls`` (how many).

    ``stats`` from :func:`loopml.data.stats.compute_stats`, when given, saves recounting the
    distinct values and string lengths used to tell categorical from text.
    """
    out = []
    for field, column in zip(table.schema, table.columns, strict=True):
        nulls = int(column.null_count)
        out.append(
            {
                "name": field.name,
                "type": str(field.type),
                "kind": kind_of(column, (stats or {}).get(field.name)),
                "nullable": nulls > 0,
                "nulls": nulls,
            }
        )
    return out


def kind_of(column: pa.ChunkedArray | pa.Array, stats: Mapping[str, Any] | None = None) -> str:
    """The logical kind of one column (see the module docstring)."""
    typ = column.type
    if pa.types.is_dictionary(typ):
        return CATEGORICAL
    if pa.types.is_boolean(typ):
        return BOOLEAN
    if pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_decimal(typ):
        return NUMERIC
    if pa.types.is_temporal(typ):
        return DATETIME
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return _string_kind(column, stats)
    return CATEGORICAL  # null-typed (all empty) and anything else allowed by check_columns


def _string_kind(column: pa.ChunkedArray | pa.Array, stats: Mapping[str, Any] | None) -> str:
    count = len(column) - column.null_count
    if count == 0:
        return CATEGORICAL
    if stats is not None and "distinct" in stats and "mean_length" in stats:
        distinct = int(stats["distinct"])
        mean_length = float(stats["mean_length"] or 0.0)
    else:
        distinct = int(pc.count_distinct(column, mode="only_valid").as_py())
        mean_length = float(pc.mean(pc.utf8_length(column)).as_py() or 0.0)
    if mean_length >= TEXT_MEAN_LENGTH:
        return TEXT
    if distinct >= TEXT_MIN_DISTINCT and distinct > TEXT_DISTINCT_SHARE * count:
        return TEXT
    return CATEGORICAL


def is_supported_type(typ: pa.DataType) -> bool:
    """Whether a column of this Arrow type can be stored as a dataset column."""
    if pa.types.is_dictionary(typ):
        return is_supported_type(typ.value_type)
    return (
        pa.types.is_null(typ)
        or pa.types.is_boolean(typ)
        or pa.types.is_integer(typ)
        or pa.types.is_floating(typ)
        or pa.types.is_decimal(typ)
        or pa.types.is_temporal(typ)
        or pa.types.is_string(typ)
        or pa.types.is_large_string(typ)
    )


def check_columns(table: pa.Table, where: Mapping[str, Any]) -> None:
    """Reject tables whose columns cannot become a dataset: no columns, an empty or repeated
    column name, or a nested/binary column. ``where`` (e.g. ``{"file": ...}``) goes into the
    error along with the column.
    """
    names = table.column_names
    if not names:
        raise InvalidInputError(
            "the data has no columns",
            where=dict(where),
            hint="Give a file with a header row (CSV) or with named fields",
        )
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if not name.strip():
            raise InvalidInputError(
                f"column {i + 1} has an empty name",
                where={**where, "column": i + 1},
                hint="Give every column a name in the header",
            )
        if name in seen:
            raise InvalidInputError(
                f"column name {name!r} appears twice (columns {seen[name] + 1} and {i + 1})",
                where={**where, "column": name},
                hint="Rename one of the columns so that every name is unique",
            )
        seen[name] = i
    for field in table.schema:
        if not is_supported_type(field.type):
            raise InvalidInputError(
                f"column {field.name!r} has type {field.type}, which a dataset cannot hold",
                where={**where, "column": field.name},
                hint="Dataset columns hold numbers, booleans, dates/times or UTF-8 text; "
                "flatten nested values into their own columns, or decode binary data to text",
            )


def schema_from_stats(
    schema: pa.Schema, stats: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """What :func:`schema_of` gives, from an Arrow schema and the (streaming) statistics of
    the rows, without the rows."""
    out = []
    for field in schema:
        st = stats.get(field.name, {})
        nulls = int(st.get("nulls", 0))
        typ = field.type
        if pa.types.is_string(typ) or pa.types.is_large_string(typ):
            kind = _kind_from_counts(
                int(st.get("count", 0)),
                int(st.get("distinct", 0)),
                float(st.get("mean_length") or 0.0),
            )
        else:
            kind = kind_of(pa.array([], typ))
        out.append(
            {
                "name": field.name,
                "type": str(typ),
                "kind": kind,
                "nullable": nulls > 0,
                "nulls": nulls,
            }
        )
    return out


def _kind_from_counts(count: int, distinct: int, mean_length: float) -> str:
    if count == 0:
        return CATEGORICAL
    if mean_length >= TEXT_MEAN_LENGTH:
        return TEXT
    if distinct >= TEXT_MIN_DISTINCT and distinct > TEXT_DISTINCT_SHARE * count:
        return TEXT
    return CATEGORICAL
