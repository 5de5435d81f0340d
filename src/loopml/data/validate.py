"""Validation of ingested batches against a dataset's declared schema and expectations.

Row rules (a declared type, ``nullable: false``, ``range``, ``allowed``, ``regex``, ``unique``)
mark the rows that break them; batch rules (a required column missing, a column not declared
in a strict schema, a value that does not convert to the declared type) fail a whole batch;
version rules (``rows``, ``freshness``) are checked once all batches are in. Whatever fails is
written to ``quarantine/<dataset>/<id>/`` in the lake: the failing rows (``rows.parquet``), a
``report.json`` and a ``report.txt`` naming each column, rule, how many rows and examples.

Nullability is also inferred: a column not declared in the spec that held no null in any
earlier version of the dataset is not nullable (rule ``inferred_not_null``), so a version
bringing nulls into it is refused (or its null rows quarantined with ``skip-rows``) unless the
column is declared (``nullable: true``) or the change allowed (``--allow-schema-change``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loopml.errors import InvalidInputError
from loopml.project.data import DatasetSpec, Expectation, arrow_type
from loopml.utils import new_id, utcnow

if TYPE_CHECKING:
    from loopml.stores.base import Lake

QUARANTINE = "quarantine"
EXAMPLES = 5
#: the rule of a null in a column that no earlier version held a null in
INFERRED_NOT_NULL = "inferred_not_null"


class ValidationError(InvalidInputError):
    """Data that breaks its dataset's schema or expectations (nothing was ingested)."""

    code = "validation_failed"
    exit_code = 1

    def __init__(self, message: str, *, report: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.report = report

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "report": self.report}


@dataclass
class Failure:
    column: str | None
    rule: str
    detail: str
    rows: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "rule": self.rule,
            "detail": self.detail,
            "rows": self.rows,
            "examples": self.examples,
        }

    def line(self) -> str:
        col = f"column {self.column!r}: " if self.column else ""
        return f"{col}{self.rule} — {self.detail} ({self.rows} rows)"


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _examples(batch: pa.RecordBatch, mask: np.ndarray, first_row: int) -> list[dict[str, Any]]:
    rows = np.flatnonzero(mask)[:EXAMPLES]
    out = []
    for i in rows:
        record = {k: _jsonable(v) for k, v in batch.slice(int(i), 1).to_pylist()[0].items()}
        out.append({"row": first_row + int(i) + 1, **record})
    return out


class Validator:
    """Checks batches of one ingest; keeps what ``unique`` keys were seen (as 64-bit hashes)."""

    def __init__(self, spec: DatasetSpec | None) -> None:
        self.spec = spec
        self._seen: dict[tuple[str, ...], np.ndarray] = {}
        self._newest: dict[str, Any] = {}
        #: inferred nullability: column -> the earlier versions that held no null in it
        #: (``"versions 1-3"``), set by the engine before the batches of a version
        self.never_null: dict[str, str] = {}
        #: False: the engine infers no nullability (an internal snapshot that takes rows as
        #: they come, e.g. the closed loop's training sets)
        self.infer_nullability = True
        #: the ingestion engine's cache: (dataset, latest version) -> columns that held a null
        #: in some version up to it
        self.had_nulls: tuple[tuple[str, int], set[str]] | None = None

    @property
    def active(self) -> bool:
        return self.spec is not None or bool(self.never_null)

    def declared(self, name: str) -> bool:
        """Whether the spec declares column ``name`` (its nullability is then declared too:
        a type alone allows nulls)."""
        return self.spec is not None and self.spec.column(name) is not None

    def types(self) -> dict[str, pa.DataType]:
        """Declared column types, for sources that can read columns as given (CSV)."""
        if self.spec is None:
            return {}
        return {c.name: arrow_type(c.type, c.name) for c in self.spec.columns if c.type is not None}

    def declared_schema(self, schema: pa.Schema) -> pa.Schema:
        """``schema`` with the declared types of its columns."""
        types = self.types()
        return pa.schema([pa.field(f.name, types.get(f.name, f.type)) for f in schema])

    def check(
        self, batch: pa.RecordBatch, first_row: int
    ) -> tuple[pa.RecordBatch, np.ndarray | None, list[Failure]]:
        """``(batch with declared types, bad-row mask or None, failures)``. A batch failure
        (mask None, failures) means the whole batch is bad."""
        spec = self.spec
        if spec is None:
            if not self.never_null:
                return batch, np.zeros(batch.num_rows, dtype=bool), []
            spec = DatasetSpec(name="")
        failures: list[Failure] = []
        names = batch.schema.names
        for col in spec.columns:
            if col.required and col.name not in names:
                failures.append(
                    Failure(col.name, "required", "the column is missing", batch.num_rows)
                )
        if spec.strict:
            declared = {c.name for c in spec.columns}
            for name in names:
                if name not in declared:
                    failures.append(
                        Failure(name, "strict", "the column is not declared", batch.num_rows)
                    )
        batch, type_failures = self._cast(batch, first_row)
        failures += type_failures
        if failures:
            return batch, None, failures
        bad = np.zeros(batch.num_rows, dtype=bool)
        for col in spec.columns:
            if not col.nullable and col.name in names:
                mask = batch.column(col.name).is_null().to_numpy(zero_copy_only=False)
                self._mark(failures, bad, batch, mask, col.name, "not_null", "null", first_row)
        for name, versions in self.never_null.items():
            if name in names and not self.declared(name) and batch.column(name).null_count:
                mask = batch.column(name).is_null().to_numpy(zero_copy_only=False)
                detail = f"null, but {versions} held no null in this column"
                self._mark(failures, bad, batch, mask, name, INFERRED_NOT_NULL, detail, first_row)
        for exp in spec.expectations:
            mask = self._row_rule(exp, batch)
            if mask is not None:
                column = ", ".join(exp.columns) or None
                self._mark(failures, bad, batch, mask, column, exp.rule, exp.describe(), first_row)
        for exp in spec.expectations:
            if exp.rule == "freshness" and exp.columns[0] in names:
                self._track_newest(exp.columns[0], batch, bad)
        return batch, bad, failures

    @staticmethod
    def _mark(
        failures: list[Failure],
        bad: np.ndarray,
        batch: pa.RecordBatch,
        mask: np.ndarray,
        column: str | None,
        rule: str,
        detail: str,
        first_row: int,
    ) -> None:
        count = int(mask.sum())
        if count:
            failures.append(Failure(column, rule, detail, count, _examples(batch, mask, first_row)))
            bad |= mask

    def _cast(self, batch: pa.RecordBatch, first_row: int) -> tuple[pa.RecordBatch, list[Failure]]:
        if self.spec is None:
            return batch, []
        failures: list[Failure] = []
        columns = list(batch.columns)
        fields = list(batch.schema)
        for col in self.spec.columns:
            if col.type is None or col.name not in batch.schema.names:
                continue
            i = batch.schema.get_field_index(col.name)
            target = arrow_type(col.type, col.name)
            if columns[i].type == target:
                continue
            try:
                columns[i] = columns[i].cast(target)
                fields[i] = pa.field(col.name, target)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                mask = self._uncastable(columns[i], target)
                failures.append(
                    Failure(
                        col.name,
                        "type",
                        f"declared {target}, read as {columns[i].type}: {str(exc)[:120]}",
                        int(mask.sum()) if mask is not None else batch.num_rows,
                        _examples(batch, mask, first_row) if mask is not None else [],
                    )
                )
        if failures:
            return batch, failures
        return pa.RecordBatch.from_arrays(columns, schema=pa.schema(fields)), failures

    @staticmethod
    def _uncastable(column: pa.Array, target: pa.DataType) -> np.ndarray | None:
        """Which values do not convert (value by value; only for the examples)."""
        if len(column) > 1_000_000:
            return None
        out = np.zeros(len(column), dtype=bool)
        for i, value in enumerate(column):
            if not value.is_valid:
                continue
            try:
                pa.array([value.as_py()], column.type).cast(target)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                out[i] = True
        return out

    def _row_rule(self, exp: Expectation, batch: pa.RecordBatch) -> np.ndarray | None:
        names = batch.schema.names
        if exp.rule in ("rows", "freshness"):
            return None
        if any(c not in names for c in exp.columns):
            return None  # a missing column is the schema's business
        if exp.rule == "unique":
            return self._duplicates(exp.columns, batch)
        column = batch.column(exp.columns[0])
        valid = column.is_valid()
        if exp.rule == "range":
            if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
                ok = pa.array(np.zeros(len(column), dtype=bool))
            else:
                ok = valid
                if exp.low is not None:
                    ok = pc.and_kleene(ok, pc.greater_equal(column, exp.low))
                if exp.high is not None:
                    ok = pc.and_kleene(ok, pc.less_equal(column, exp.high))
        elif exp.rule == "allowed":
            values = pa.array(list(exp.allowed))
            try:
                values = values.cast(column.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                values = pa.array([str(v) for v in exp.allowed]).cast(pa.string())
                column = column.cast(pa.string())
            ok = pc.is_in(column, value_set=values)
        else:  # regex
            text = column if pa.types.is_string(column.type) else column.cast(pa.string())
            assert exp.pattern is not None
            try:
                ok = pc.match_substring_regex(text, pattern=f"^(?:{exp.pattern})$")
            except pa.ArrowInvalid:  # look-arounds, back-references: not RE2, Python's re
                compiled = re.compile(exp.pattern)
                ok = pa.array([bool(compiled.fullmatch(v or "")) for v in text.to_pylist()])
        ok = pc.fill_null(ok, False)
        bad = ~np.asarray(ok.to_numpy(zero_copy_only=False), dtype=bool)
        # nulls are the nullable rule's business, not the value rules'
        return bad & np.asarray(valid.to_numpy(zero_copy_only=False), dtype=bool)

    def _duplicates(self, columns: tuple[str, ...], batch: pa.RecordBatch) -> np.ndarray:
        from pandas.util import hash_pandas_object

        frame = batch.select(list(columns)).to_pandas()
        hashes = hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64)
        seen = self._seen.get(columns, np.zeros(0, dtype=np.uint64))
        earlier = np.isin(hashes, seen)
        _, first = np.unique(hashes, return_index=True)
        within = np.ones(len(hashes), dtype=bool)
        within[first] = False
        self._seen[columns] = np.union1d(seen, hashes)
        return earlier | within

    def _track_newest(self, name: str, batch: pa.RecordBatch, bad: np.ndarray) -> None:
        column = batch.column(name)
        if not pa.types.is_temporal(column.type) or not len(column):
            return
        good = pc.filter(column, pa.array(~bad))
        newest = pc.max(good).as_py()
        if newest is not None:
            old = self._newest.get(name)
            self._newest[name] = newest if old is None or newest > old else old

    def finish(self, rows: int) -> list[Failure]:
        """The version rules, once every batch is in."""
        if self.spec is None:
            return []
        failures = []
        for exp in self.spec.expectations:
            if exp.rule == "rows":
                low = -np.inf if exp.low is None else exp.low
                high = np.inf if exp.high is None else exp.high
                if not low <= rows <= high:
                    failures.append(
                        Failure(None, "rows", f"{rows} rows, expected {exp.describe()}")
                    )
            elif exp.rule == "freshness":
                name = exp.columns[0]
                newest = self._newest.get(name)
                if newest is None:
                    failures.append(
                        Failure(name, "freshness", "no timestamp in the column to judge by")
                    )
                    continue
                if isinstance(newest, datetime):
                    now = utcnow() if newest.tzinfo else datetime.now(UTC).replace(tzinfo=None)
                    age = (now - newest).total_seconds()
                else:  # a date
                    age = (utcnow().date() - newest).days * 86400.0
                assert exp.seconds is not None
                if age > exp.seconds:
                    failures.append(
                        Failure(
                            name,
                            "freshness",
                            f"newest value {newest} is {age:.0f} s old, more than "
                            f"{exp.seconds:g} s",
                        )
                    )
        return failures


class Quarantine:
    """``quarantine/<dataset>/<id>/``: failing rows (Parquet parts) and the report."""

    def __init__(self, lake: Lake, dataset: str, source: str) -> None:
        self.lake = lake
        self.dataset = dataset
        self.source = source
        self.id = f"{utcnow().strftime('%Y%m%dT%H%M%S')}-{new_id()[:8]}"
        self.folder = f"{QUARANTINE}/{dataset}/{self.id}"
        self.failures: list[Failure] = []
        self.rows = 0
        self._parts = 0

    def add(self, batch: pa.RecordBatch, failures: list[Failure]) -> None:
        self.failures += failures
        if batch.num_rows:
            self.lake.write_table(
                f"{self.folder}/rows-{self._parts:05d}.parquet", pa.Table.from_batches([batch])
            )
            self._parts += 1
            self.rows += batch.num_rows

    def report(self, kept_rows: int, outcome: str) -> dict[str, Any]:
        merged: dict[tuple[Any, str, str], Failure] = {}
        for f in self.failures:
            key = (f.column, f.rule, f.detail)
            if key in merged:
                merged[key].rows += f.rows
                merged[key].examples = (merged[key].examples + f.examples)[:EXAMPLES]
            else:
                merged[key] = Failure(f.column, f.rule, f.detail, f.rows, list(f.examples))
        return {
            "dataset": self.dataset,
            "source": self.source,
            "id": self.id,
            "at": utcnow().isoformat(),
            "outcome": outcome,
            "quarantined_rows": self.rows,
            "kept_rows": kept_rows,
            "failures": [f.to_dict() for f in merged.values()],
            "url": self.lake.url(self.folder),
        }

    def write(self, kept_rows: int, outcome: str) -> dict[str, Any]:
        report = self.report(kept_rows, outcome)
        self.lake.write_bytes(
            f"{self.folder}/report.json",
            json.dumps(report, indent=2, default=str, allow_nan=False).encode(),
        )
        self.lake.write_bytes(f"{self.folder}/report.txt", render(report).encode())
        return report


def render(report: dict[str, Any]) -> str:
    """The report as text for people."""
    lines = [
        f"dataset {report['dataset']} — {report['outcome']}",
        f"source {report['source']}",
        f"quarantined rows {report['quarantined_rows']}, kept rows {report['kept_rows']}",
        "",
    ]
    for f in report["failures"]:
        col = f"column {f['column']!r}" if f["column"] else "the version"
        lines.append(f"- {col}: rule {f['rule']}: {f['detail']} ({f['rows']} rows)")
        for ex in f["examples"]:
            lines.append(f"    {json.dumps(ex, default=str)}")
    return "\n".join(lines) + "\n"


def summary(failures: list[Failure]) -> str:
    first = failures[0]
    more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
    example = ""
    if first.examples:
        example = f", e.g. row {first.examples[0]['row']}"
    return f"{first.line()}{example}{more}"


__all__ = [
    "INFERRED_NOT_NULL",
    "Failure",
    "Quarantine",
    "ValidationError",
    "Validator",
    "render",
    "summary",
]
