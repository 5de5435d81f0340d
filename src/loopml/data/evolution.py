"""Schema evolution on append: which column changes an appended version may bring, and how
rows written under older schemas read back under the newer one.

An append version keeps its parent's files as they are, so a change of columns must leave
every earlier row readable, without loss, in the new schema. The rules, as Delta Lake and
Iceberg have them:

``added``     a column the parent lacks: allowed; the parent's rows read as null in it.
``widened``   a type every earlier value converts to exactly (int32 -> int64, float32 -> float64,
              int16 -> float32, int32 -> float64, decimal(p, s) to a wider one; any type for
              a column that held no value yet): allowed.
              int64 -> float64 loses digits past 2**53, so it is allowed only with
              ``allow_schema_change`` and only when the recorded min/max of the earlier rows
              are within that range.
``dropped``   a column the source lacks: its new rows are null. Allowed when the column
              already held nulls (or is declared nullable); a column that never held a null is
              refused unless ``allow_schema_change``.
``restored``  a dropped column that comes back.

Anything else (a narrower type, int -> string, timestamp -> string, ...) is refused, with the
column, both types and the fix: declare the type in loopml.yaml so that the source is read
with it, or ingest with ``--mode replace --allow-schema-change`` to start a new snapshot.

Each change is recorded in the version's schema, on its column, under ``history``
(``[{"version": 4, "change": "added"}, ...]``), carried forward by later versions. Reading a
version gives its own schema: older versions keep theirs, and an append version's older
parts are aligned to it (:func:`align`) when they are read.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from loopml.data.engine import SchemaChangeError
from loopml.errors import InvalidInputError

if TYPE_CHECKING:
    from loopml.stores.records import DatasetVersion

ADDED, WIDENED, DROPPED, RESTORED = "added", "widened", "dropped", "restored"
EXACT_FLOAT = 2**53  # integers up to this magnitude are exact in a float64
_DECIMAL = re.compile(r"decimal(?:128|256)?\(\s*([0-9]+)\s*,\s*(-?[0-9]+)\s*\)")


def recorded_type(text: str, column: str) -> pa.DataType:
    """The Arrow type a recorded schema names (``str(type)`` as ingestion wrote it)."""
    from loopml.project.data import arrow_type

    match = _DECIMAL.fullmatch(text.strip())
    if match:
        precision, scale = int(match.group(1)), int(match.group(2))
        return (
            pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)
        )
    try:  # Arrow's own names first: str(pa.float32()) is "float", which loopml reads as double
        return pa.type_for_alias(text.strip())
    except (ValueError, KeyError):
        pass
    try:
        return arrow_type(text, column)
    except InvalidInputError:
        raise InvalidInputError(
            f"the recorded type {text!r} of column {column!r} is not one loopml can read",
            where={"column": column},
            hint="Ingest the dataset again with --mode replace",
        ) from None


def promotes(old: pa.DataType, new: pa.DataType) -> bool:
    """Whether every value of ``old`` converts to ``new`` exactly, whatever the values."""
    if old == new:
        return True
    if pa.types.is_integer(old) and pa.types.is_integer(new):
        old_signed, new_signed = pa.types.is_signed_integer(old), pa.types.is_signed_integer(new)
        if old_signed == new_signed:
            return new.bit_width > old.bit_width
        return not old_signed and new.bit_width > old.bit_width  # uint32 -> int64
    if pa.types.is_floating(old) and pa.types.is_floating(new):
        return new.bit_width > old.bit_width
    if pa.types.is_integer(old) and pa.types.is_floating(new):
        # the mantissa must hold every value: 11 bits (float16), 24 (float32), 53 (float64)
        return old.bit_width <= {16: 8, 32: 16, 64: 32}[new.bit_width]
    if pa.types.is_decimal(old) and pa.types.is_decimal(new):
        return new.scale >= old.scale and new.precision - new.scale >= old.precision - old.scale
    return False


@dataclass
class Evolution:
    """How an append's rows become the new version's: its schema and what changed."""

    parent: pa.Schema  # the parent's columns with their recorded types
    schema: pa.Schema  # the new version's: the parent's columns (widened), then added ones
    changes: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # columns the source lacks: null here

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """``batch`` (conformed to the source's schema) in the new version's schema."""
        names = batch.schema.names
        columns = []
        for target in self.schema:
            if target.name not in names:
                columns.append(pa.nulls(batch.num_rows, target.type))
                continue
            column = batch.column(target.name)
            if column.type != target.type:
                column = _cast(column, target.type)
            columns.append(column)
        return pa.RecordBatch.from_arrays(columns, schema=self.schema)

    def history(
        self, columns: list[dict[str, Any]], parent: DatasetVersion, version: int
    ) -> list[dict[str, Any]]:
        """The recorded ``columns`` with each one's ``history``: the parent's, then this
        version's changes."""
        prior = {c["name"]: list(c.get("history") or []) for c in parent.schema}
        now: dict[str, list[dict[str, Any]]] = {}
        for change in self.changes:
            entry = {"version": version, **{k: v for k, v in change.items() if k != "column"}}
            now.setdefault(change["column"], []).append(entry)
        out = []
        for column in columns:
            history = prior.get(column["name"], []) + now.get(column["name"], [])
            out.append({**column, "history": history} if history else column)
        return out


def _cast(column: pa.Array, target: pa.DataType) -> pa.Array:
    if column.null_count == len(column):
        return pa.nulls(len(column), target)
    return column.cast(target)  # a safe cast: a value that would change raises


def plan_append(
    name: str,
    parent: DatasetVersion,
    source: pa.Schema,
    *,
    allowed: bool,
    nulls_checked: bool,
    declared: Callable[[str], Any],
    where: dict[str, Any],
) -> Evolution | None:
    """What appending rows of ``source``'s schema to ``parent`` does to the columns, or None
    when nothing changes; a refused change raises :class:`SchemaChangeError`.

    ``allowed``: ``allow_schema_change`` (int64 -> float64, and a never-null column left out).
    ``nulls_checked``: whether inferred nullability is enforced. ``declared(name)``: the
    column's declaration in the project (a :class:`~loopml.project.data.ColumnSpec`) or None.
    """
    label = f"{name}@{parent.version}"
    old_fields = [pa.field(c["name"], recorded_type(c["type"], c["name"])) for c in parent.schema]
    recorded = {c["name"]: c for c in parent.schema}
    incoming = {f.name: f.type for f in source}
    fields: list[pa.Field] = []
    changes: list[dict[str, Any]] = []
    missing: list[str] = []
    for old in old_fields:
        entry = recorded[old.name]
        last = (entry.get("history") or [{}])[-1].get("change")
        if old.name not in incoming:
            _check_drop(label, old, entry, parent, allowed, nulls_checked, declared, where)
            missing.append(old.name)
            if last != DROPPED:
                changes.append({"column": old.name, "change": DROPPED})
            fields.append(old)
            continue
        if last == DROPPED:
            changes.append({"column": old.name, "change": RESTORED})
        new = incoming[old.name]
        if new == old.type:
            fields.append(old)
            continue
        _check_widening(label, old, new, entry, parent, allowed, declared, where)
        changes.append(
            {"column": old.name, "change": WIDENED, "old": str(old.type), "new": str(new)}
        )
        fields.append(pa.field(old.name, new))
    for f in source:
        if f.name not in recorded:
            fields.append(pa.field(f.name, f.type))
            changes.append({"column": f.name, "change": ADDED, "new": str(f.type)})
    schema = pa.schema(fields)
    if not changes and not missing:
        return None  # the same columns (in any order: rows are kept as the source has them)
    return Evolution(parent=pa.schema(old_fields), schema=schema, changes=changes, missing=missing)


def _check_drop(
    label: str,
    old: pa.Field,
    entry: dict[str, Any],
    parent: DatasetVersion,
    allowed: bool,
    nulls_checked: bool,
    declared: Callable[[str], Any],
    where: dict[str, Any],
) -> None:
    spec = declared(old.name)
    if spec is not None:
        if spec.nullable:
            return
        raise SchemaChangeError(
            f"cannot append to {label}: the source has no column {old.name!r}, which "
            "loopml.yaml declares not nullable (its new rows would be null)",
            where={**where, "column": old.name},
            hint=f"Add {old.name!r} to the source, or declare it nullable in loopml.yaml "
            f"(data.datasets.{parent.name}.schema: {{{old.name}: {{nullable: true, "
            "required: false}})",
            changes=[{"column": old.name, "change": DROPPED, "old": str(old.type)}],
        )
    if entry.get("nullable", True) or allowed or not nulls_checked:
        return
    raise SchemaChangeError(
        f"cannot append to {label}: the source has no column {old.name!r} ({old.type}), "
        f"and none of the {parent.num_rows:,} rows of {label} is null in it (its new rows "
        "would be)",
        where={**where, "column": old.name},
        hint=f"Add {old.name!r} to the source; or, if the new rows really have no value, pass "
        f"--allow-schema-change (allow_schema_change=True) or declare it in loopml.yaml "
        f"(data.datasets.{parent.name}.schema: {{{old.name}: {{nullable: true, "
        "required: false}})",
        changes=[{"column": old.name, "change": DROPPED, "old": str(old.type)}],
    )


def _check_widening(
    label: str,
    old: pa.Field,
    new: pa.DataType,
    entry: dict[str, Any],
    parent: DatasetVersion,
    allowed: bool,
    declared: Callable[[str], Any],
    where: dict[str, Any],
) -> None:
    stats = parent.stats.get(old.name) or {}
    if promotes(old.type, new) or (stats.get("count") == 0 and "count" in stats):
        return  # every earlier value converts (or there is none)
    column = old.name
    change = [{"column": column, "change": "type", "old": str(old.type), "new": str(new)}]
    place = {**where, "column": column, "old": str(old.type), "new": str(new)}
    replace = "--mode replace --allow-schema-change (a new snapshot, with the new type)"
    if pa.types.is_integer(old.type) and pa.types.is_float64(new):
        low, high = stats.get("min"), stats.get("max")
        exact = (
            isinstance(low, int | float)
            and isinstance(high, int | float)
            and max(abs(low), abs(high)) <= EXACT_FLOAT
        )
        if allowed and exact:
            return
        if exact:
            detail = (
                f"float64 holds integers exactly only up to 2**53; the rows of {label} are "
                f"within that (min {low}, max {high})"
            )
            hint = "Pass --allow-schema-change (allow_schema_change=True) to widen it"
        else:
            detail = (
                f"float64 holds integers exactly only up to 2**53, and the rows of {label} "
                f"reach {low if low is not None and abs(low) > EXACT_FLOAT else high}"
            )
            hint = f"Keep the column {old.type} in the source, or ingest with {replace}"
        raise SchemaChangeError(
            f"cannot append to {label}: column {column!r} changes from {old.type} to {new}: "
            f"{detail}",
            where=place,
            hint=hint,
            changes=change,
        )
    narrower = promotes(new, old.type)
    what = "is declared" if declared(column) is not None else "arrives as"
    reason = (
        f"{new} is narrower than the {old.type} that {label} holds"
        if narrower
        else f"the rows of {label} cannot be read as {new} without loss"
    )
    raise SchemaChangeError(
        f"cannot append to {label}: column {column!r} {what} {new}, but it is {old.type} "
        f"in {label}: {reason}",
        where=place,
        hint=f"Declare the column as {old.type} in loopml.yaml (data.datasets.{parent.name}."
        f"schema: {{{column}: {{type: {old.type}}}}}) so the source is read with that type "
        f"(values that do not fit go to quarantine), or ingest with {replace}",
        changes=change,
    )


def align(table: pa.Table, columns: list[dict[str, Any]]) -> pa.Table:
    """``table`` (one part of a version) in the schema recorded for the version: columns
    added after the part was written are null, widened ones cast. A version whose columns
    never changed comes back as it is."""
    if not any(c.get("history") for c in columns):
        return table
    names = table.column_names
    arrays = []
    fields = []
    for column in columns:
        name = column["name"]
        target = recorded_type(column["type"], name)
        if name not in names:
            arrays.append(pa.nulls(table.num_rows, target))
            fields.append(pa.field(name, target))
            continue
        values = table.column(name)
        if values.type != target and (
            promotes(values.type, target)
            or (pa.types.is_integer(values.type) and pa.types.is_floating(target))
            or values.null_count == len(values)
        ):
            values = (
                pa.chunked_array([pa.nulls(len(values), target)])
                if values.null_count == len(values)
                else values.cast(target)
            )
        arrays.append(values)
        fields.append(pa.field(name, values.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


__all__ = ["Evolution", "align", "plan_append", "promotes", "recorded_type"]
