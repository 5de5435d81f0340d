"""Ingestion: a source becomes an immutable, numbered dataset version in the lake.

The source is read in batches (:meth:`Source.batches`); each batch is normalized (no schema
metadata, dictionary columns decoded, all-empty columns as strings, NaN as null), conformed to
the first batch's columns and types, validated (:mod:`loopml.data.validate`), hashed, counted
into streaming statistics and buffered into Parquet parts of bounded size
(``datasets/<name>/v=<n>/part-00000.parquet``, ... or ``.../v=<n>/col=value/part-...`` when
partitioned), so that the input's size never decides peak memory. See
:mod:`loopml.data.engine` for the content hash: a function of the content, not of the batches.

Modes: ``replace`` (the default) makes a fresh snapshot; ``append`` makes a version holding
its parent's rows and the new ones, without rewriting the parent's files: its record lists
every part (``parts``, also in ``_manifest.json`` in its folder) and readers follow that list.
The same content ingested again returns the version that holds it and records nothing.

The version folder is claimed first (see :func:`_claim`), then written, then recorded; a
failed record or any error removes what was written, so neither a record without data nor
stray data is left behind. Concurrent ingests of one dataset take turns through the claim
marker (the lake has no exclusive create), so no folder is ever written by two of them. A
marker names the process that wrote it (:func:`loopml.utils.process_owner`): the claim of an
ingest that was killed on this machine is taken over at once, so the next ingest gets its
version number.

Resumable sources (an incremental SQL cursor, a stream) have their position recorded in the
same metadata transaction as the version (:meth:`MetadataStore.add_dataset_version`), and
acknowledged to the source only afterwards: a run that fails moves nothing.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeAlias

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from loopml.data.engine import (
    Behind,
    ContentHash,
    PartWriter,
    SchemaChangeError,
    append_hash,
    check_partition_columns,
    combine_hashes,
    conform,
    describe_changes,
    prefetch,
    rebatch,
    schema_changes,
)
from loopml.data.evolution import Evolution, align, plan_append, recorded_type
from loopml.data.schema import check_columns, schema_from_stats
from loopml.data.sources import ColumnTypeChange, CsvSource, Source, TableSource, source_for
from loopml.data.stats import StreamingStats
from loopml.data.validate import (
    INFERRED_NOT_NULL,
    Failure,
    Quarantine,
    ValidationError,
    Validator,
    summary,
)
from loopml.errors import ConflictError, IntegrityError, InvalidInputError, NotFoundError
from loopml.names import check_name, parse_ref
from loopml.stores.records import DatasetVersion
from loopml.utils import new_id, owner_alive, process_owner, shorten, utcnow

if TYPE_CHECKING:
    from loopml.project.data import DatasetSpec
    from loopml.workspace import Workspace

DATASETS = "datasets"
PART = "part-00000.parquet"  # the first part of a version (the only one of a small one)
MANIFEST = "_manifest.json"
SKETCH = "_stats.npz"
MODES = ("replace", "append")
ON_ERROR = ("fail", "skip-rows")
_CLAIM = "_claim-"
_OWNED, _BUSY, _ORPHANED = "owned", "busy", "orphaned"
_STALE_AFTER = 60.0  # seconds a claim whose owner may be alive (another host) is waited for
_MAX_ROUNDS = 100_000  # a bound on the claim loop (waits included: hours)
_DIGITS = re.compile(r"[0-9]+")
_MAX_WIDENED = 50  # columns re-read as text in one ingest (--allow-schema-change)

SourceLike: TypeAlias = str | os.PathLike[str] | Source | pa.Table | pd.DataFrame
Progress: TypeAlias = Callable[[int], None]
WriterFactory: TypeAlias = Callable[[Any, str, list[str], list[str]], PartWriter]


@dataclass(frozen=True)
class IngestResult:
    """The dataset version holding the content, and whether this call created it.

    ``quarantine``: the report of rows set aside (``on_error="skip-rows"``), else None."""

    dataset: DatasetVersion
    created: bool
    quarantine: dict[str, Any] | None = None


def ingest(
    ws: Workspace,
    source: SourceLike,
    name: str,
    *,
    format: str | None = None,
    mode: str | None = None,
    partition_by: str | list[str] | None = None,
    on_error: str = "fail",
    allow_schema_change: bool = False,
    batch_rows: int | None = None,
    progress: Progress | None = None,
    spec: DatasetSpec | None = None,
    enforce_nullability: bool = True,
    **options: Any,
) -> IngestResult:
    """Store ``source`` as the next version of dataset ``name``; unchanged content: no-op.

    ``source`` is a path or URI (format from ``format`` or the extension; databases, HTTP and
    streams by scheme, see :func:`~loopml.data.sources.source_for`), a
    :class:`~loopml.data.sources.Source`, a ``pyarrow.Table`` or a ``pandas.DataFrame``.
    ``options`` go to the source (CSV: ``delimiter``, ``encoding``, ``header``, ``decimal``).

    ``mode``: ``"replace"`` (a fresh snapshot; the default) or ``"append"`` (the latest
    version's rows and these; the default for a resumable source that has a version already).
    ``partition_by``: columns to write hive folders by. ``spec``: the declared schema and
    expectations (:func:`loopml.project.data.load_dataset_specs`); failing rows go to
    quarantine and the call raises :class:`~loopml.data.validate.ValidationError`, unless
    ``on_error="skip-rows"``, which keeps the good rows. In a replace, a column whose type
    differs from the previous version's is refused unless ``allow_schema_change``; an append
    may add columns, widen types and leave out columns that hold nulls, and refuses the rest
    (see :mod:`loopml.data.evolution`). ``batch_rows`` bounds the
    rows validated and quarantined together; ``progress(rows)`` is called after each batch.
    A column not declared in ``spec`` that held no null in any earlier version gets none now
    (refused, or quarantined with ``skip-rows``) unless ``allow_schema_change``;
    ``enforce_nullability=False`` turns that off (for internal snapshots).
    """
    check_name(name, "dataset")
    _check_choice(mode, (None, *MODES), "mode")
    _check_choice(on_error, ON_ERROR, "on_error")
    if batch_rows is not None and (
        isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1
    ):
        raise InvalidInputError(
            f"batch_rows must be a positive whole number, got {batch_rows!r}",
            where={"field": "batch_rows"},
            hint="e.g. --batch-rows 100000",
        )
    columns = [partition_by] if isinstance(partition_by, str) else list(partition_by or [])
    validator = Validator(spec)
    src = as_source(source, format, **_with_settings(ws, source, options))
    try:
        _prepare(src, validator, batch_rows)
        if src.key is not None:
            src.resume(ws.metadata.get_source_position(name, src.key))
        for attempt in range(_MAX_WIDENED + 1):
            if attempt:
                validator = Validator(spec)  # a fresh one: the keys seen were not ingested
            validator.infer_nullability = enforce_nullability
            try:
                return _ingest(
                    ws,
                    src,
                    name,
                    mode=mode,
                    partition_by=columns,
                    on_error=on_error,
                    allow_schema_change=allow_schema_change,
                    batch_rows=batch_rows,
                    progress=progress,
                    validator=validator,
                )
            except ColumnTypeChange as exc:
                # a CSV column whose later values do not fit the type inferred from the first
                # block: with consent, read the file again with the column as text
                if not allow_schema_change or not isinstance(src, CsvSource):
                    raise
                types = dict(src.column_types or {})
                if exc.column in types:
                    raise
                types[exc.column] = pa.string()
                src.column_types = types
        raise AssertionError("unreachable")  # pragma: no cover
    finally:
        src.close()


def _check_choice(value: object, allowed: tuple[object, ...], what: str) -> None:
    if value not in allowed:
        shown = ", ".join(str(a) for a in allowed if a is not None)
        raise InvalidInputError(
            f"{what} must be one of {shown}, got {value!r}",
            where={"field": what},
            hint=f"Use one of {shown}",
        )


def _prepare(src: Source, validator: Validator, batch_rows: int | None) -> None:
    """Hand the declared column types and the batch size to sources that use them."""
    types = validator.types()
    if types and hasattr(src, "column_types"):
        src.column_types = types
    if batch_rows is not None and hasattr(src, "batch_rows"):
        src.batch_rows = batch_rows


def _latest(ws: Workspace, name: str) -> DatasetVersion | None:
    try:
        return ws.metadata.get_dataset_version(name)
    except NotFoundError:
        return None


def _normalized(src: Source, batch_rows: int | None) -> Generator[pa.RecordBatch, None, None]:
    where = {"source": src.describe()}
    pieces = src.batches()
    if src.prefetch:
        pieces = prefetch(pieces)
    for batch in rebatch(pieces, batch_rows):
        table = normalize(pa.Table.from_batches([batch]), where)
        yield from table.to_batches() or [pa.RecordBatch.from_pylist([], schema=table.schema)]


def _ingest(
    ws: Workspace,
    src: Source,
    name: str,
    *,
    mode: str | None,
    partition_by: list[str],
    on_error: str,
    allow_schema_change: bool,
    batch_rows: int | None,
    progress: Progress | None,
    validator: Validator,
) -> IngestResult:
    batches = _normalized(src, batch_rows)
    try:
        return _ingest_batches(
            ws,
            src,
            name,
            batches,
            mode=mode,
            partition_by=partition_by,
            on_error=on_error,
            allow_schema_change=allow_schema_change,
            progress=progress,
            validator=validator,
        )
    finally:
        batches.close()  # stops a reading thread, before the source is closed


def _ingest_batches(
    ws: Workspace,
    src: Source,
    name: str,
    batches: Iterator[pa.RecordBatch],
    *,
    mode: str | None,
    partition_by: list[str],
    on_error: str,
    allow_schema_change: bool,
    progress: Progress | None,
    validator: Validator,
    writer_for: WriterFactory | None = None,
) -> IngestResult:
    """Claim the next version, write ``batches`` through a :class:`PartWriter` (or what
    ``writer_for(lake, folder, partition_by, written)`` makes: the Spark engine's, which moves
    parts written elsewhere), then record it; see :func:`ingest`."""
    where = {"source": src.describe(), "dataset": name}
    first = next((b for b in batches if b.num_rows), None)
    latest = _latest(ws, name)
    if first is None:
        if latest is not None and src.key is not None:
            return IngestResult(latest, created=False)  # nothing new past the position
        raise InvalidInputError(
            f"{src.describe()} has no rows",
            where=where,
            hint="Give a source with at least one data row",
        )
    mode = mode or ("append" if src.key is not None and latest is not None else "replace")
    parent = latest if mode == "append" else None
    if parent is not None:
        if partition_by and partition_by != parent.partition_by:
            raise InvalidInputError(
                f"cannot append to {name}@{parent.version} partitioned by {partition_by}: it is "
                f"partitioned by {parent.partition_by or 'nothing'}",
                where={**where, "partition_by": partition_by},
                hint="Leave out --partition-by when appending (the parent's is kept), or "
                "ingest with --mode replace",
            )
        partition_by = list(parent.partition_by)
    check_partition_columns(first.schema, partition_by, where)
    schema = validator.declared_schema(first.schema)  # declared types: what batches become
    schema = _keep_types(parent or latest, schema, validator.declared)
    evolution: Evolution | None = None
    if parent is not None:  # columns added, widened or left out: see loopml.data.evolution
        evolution = plan_append(
            name,
            parent,
            schema,
            allowed=allow_schema_change,
            nulls_checked=validator.infer_nullability,
            declared=lambda column: validator.spec.column(column) if validator.spec else None,
            where=where,
        )
    else:
        _check_schema_change(name, latest, parent, schema, allow_schema_change, where)
    validator.never_null = (
        _never_null(ws, name, latest, schema, validator)
        if validator.infer_nullability and not allow_schema_change
        else {}
    )

    def rows() -> Iterator[pa.RecordBatch]:
        yield first
        yield from batches

    folder, claim, version = _claim_next(ws, name)
    written: list[str] = []  # what this ingest wrote into the folder (others may claim it)
    make = writer_for or (lambda lake, f, p, w: PartWriter(lake, f, p, written=w))
    writer = make(ws.lake, folder, partition_by, written)
    try:
        result = _write(
            ws,
            src,
            name,
            version,
            folder,
            rows(),
            writer,
            schema,
            mode=mode,
            latest=latest,
            parent=parent,
            partition_by=partition_by,
            on_error=on_error,
            progress=progress,
            validator=validator,
            evolution=evolution,
        )
    except BaseException as exc:
        writer.abort()
        for path in written:
            _discard(ws, path)
        _discard(ws, claim)
        if isinstance(exc, _Twin):
            return exc.result
        raise
    _discard(ws, claim)
    if result.created and src.key is not None and (position := src.position()) is not None:
        src.committed(position)
    return result


def _never_null(
    ws: Workspace,
    name: str,
    latest: DatasetVersion | None,
    schema: pa.Schema,
    validator: Validator,
) -> dict[str, str]:
    """The columns of ``schema`` that held no null in any earlier version of ``name`` (and
    are not declared in the spec), each with the versions that had it (``"versions 1-3"``)."""
    if latest is None:
        return {}
    candidates = [
        f.name
        for f in schema
        if not validator.declared(f.name)
        and any(c["name"] == f.name and c.get("nullable") is False for c in latest.schema)
    ]
    if not candidates:
        return {}
    key = (name, latest.version)
    cached = validator.had_nulls
    versions: list[DatasetVersion] | None = None
    if cached is not None and cached[0][0] == name and cached[0][1] <= latest.version:
        had = set(cached[1])
        # versions recorded since (this run's micro-batches) are read one by one
        for number in range(cached[0][1] + 1, latest.version + 1):
            try:
                dv = ws.metadata.get_dataset_version(name, number)
            except NotFoundError:
                continue
            had |= {c["name"] for c in dv.schema if c.get("nullable", True)}
    else:
        versions = ws.metadata.list_dataset_versions(name)
        had = {c["name"] for v in versions for c in v.schema if c.get("nullable", True)}
    validator.had_nulls = (key, had)
    out: dict[str, str] = {}
    for column in candidates:
        if column in had:
            continue
        if versions is None:
            out[column] = f"versions up to {latest.version}"
            continue
        held = [v.version for v in versions if any(c["name"] == column for c in v.schema)]
        out[column] = (
            f"version {held[0]}"
            if len(held) == 1
            else f"versions {held[0]}-{held[-1]}"
            if held == list(range(held[0], held[-1] + 1))
            else "versions " + ", ".join(map(str, held))
        )
    return out


def _keep_types(
    before: DatasetVersion | None,
    schema: pa.Schema,
    declared: Callable[[str], bool] | None = None,
) -> pa.Schema:
    """``schema`` with the previous version's type for columns whose values convert to it
    without loss (integers into floats, all-empty columns into anything): a file that happens
    to hold whole numbers in a float column keeps the column a float. A column whose type is
    ``declared`` keeps its declaration (a narrower one is then refused, not hidden)."""
    if before is None:
        return schema
    from loopml.data.engine import widens

    old = {c["name"]: c["type"] for c in before.schema}
    fields = []
    for field in schema:
        typ = field.type
        if (
            field.name in old
            and old[field.name] != str(typ)
            and not (declared and declared(field.name))
        ):
            try:
                target = recorded_type(old[field.name], field.name)
            except InvalidInputError:
                target = None
            if target is not None and widens(typ, target):
                typ = target
        fields.append(pa.field(field.name, typ))
    return pa.schema(fields)


def _check_schema_change(
    name: str,
    latest: DatasetVersion | None,
    parent: DatasetVersion | None,
    schema: pa.Schema,
    allowed: bool,
    where: dict[str, Any],
) -> None:
    """Refuse a type change against the previous version (and any change when appending)."""
    before = parent or latest
    if before is None:
        return
    new = [{"name": f.name, "type": str(f.type)} for f in schema]
    changes = schema_changes(before.schema, new)
    if not changes:
        return
    if parent is not None:
        raise SchemaChangeError(
            f"cannot append to {name}@{parent.version}: the columns differ "
            f"({describe_changes(changes)})",
            where=where,
            hint="Appended rows must have the parent's columns and types; ingest them with "
            "--mode replace (and --allow-schema-change for a type change)",
            changes=changes,
        )
    if allowed or not any(c["change"] == "type" for c in changes):
        return
    raise SchemaChangeError(
        f"the schema of {name} changes against version {before.version}: "
        f"{describe_changes(changes)}",
        where=where,
        hint="Pass --allow-schema-change (allow_schema_change=True) if the change is meant, "
        "or fix the source",
        changes=changes,
    )


def _write(
    ws: Workspace,
    src: Source,
    name: str,
    version: int,
    folder: str,
    batches: Iterator[pa.RecordBatch],
    writer: PartWriter,
    schema: pa.Schema,
    *,
    mode: str,
    latest: DatasetVersion | None,
    parent: DatasetVersion | None,
    partition_by: list[str],
    on_error: str,
    progress: Progress | None,
    validator: Validator,
    evolution: Evolution | None = None,
) -> IngestResult:
    where = {"source": src.describe(), "dataset": name}
    written = writer.written
    quarantine = Quarantine(ws.lake, name, src.describe())
    target = schema if evolution is None else evolution.schema  # what the new parts hold
    if parent is None:
        stats = StreamingStats(schema)
    elif evolution is None:
        stats = _parent_stats(ws, parent, schema)
    else:
        stats = _parent_stats(ws, parent, evolution.parent).evolve(target, parent.num_rows)
    seen = kept = 0
    count = Behind(stats.update)  # the statistics of a batch while the next is hashed
    try:
        for batch in batches:
            first_row = seen
            seen += batch.num_rows
            batch, bad, failures = validator.check(batch, first_row)
            if failures:
                if on_error == "fail":
                    quarantine.add(batch, failures)
                    _refuse(quarantine, kept, where)
                if bad is None:
                    quarantine.add(batch, failures)
                    continue
                quarantine.add(batch.filter(pa.array(bad)), failures)
                batch = batch.filter(pa.array(~bad))
            batch = conform(batch, schema, {**where, "row": first_row + 1})
            if not batch.num_rows:
                continue
            if evolution is not None:
                batch = evolution.apply(batch)
            count(batch)
            writer.add(batch)
            kept += batch.num_rows
            if progress is not None:
                progress(seen)
        count.wait()
    finally:
        count.close()
    final = validator.finish(kept)
    if final:
        quarantine.add(pa.RecordBatch.from_pylist([]), final)
        _refuse(quarantine, kept, where)
    if not kept:
        _refuse(quarantine, kept, where)
    writer.close()
    delta = writer.content_sha256()
    sha = append_hash(parent.sha256, delta) if parent is not None else delta
    report = quarantine.write(kept, "kept the good rows") if quarantine.failures else None
    twin = ws.metadata.find_dataset_version(name, sha)
    if twin is None and parent is not None and src.key is None and _delta(ws, parent) == delta:
        twin = parent  # these rows are what the latest version added: appended already
    if twin is not None:
        raise _Twin(IngestResult(twin, created=False, quarantine=report))
    parts = writer.parts()
    if parent is not None:
        parts = [*version_parts(ws, parent), *parts]
    result = stats.result()
    written.append(f"{folder}/{SKETCH}")
    ws.lake.write_bytes(f"{folder}/{SKETCH}", stats.to_bytes())
    if parent is not None:
        manifest = {
            "dataset": name,
            "version": version,
            "parent": parent.version,
            "delta_sha256": delta,
            "parts": parts,
        }
        written.append(f"{folder}/{MANIFEST}")
        ws.lake.write_bytes(f"{folder}/{MANIFEST}", json.dumps(manifest, indent=1).encode())
    rows_before = parent.num_rows if parent is not None else 0
    bytes_before = parent.num_bytes if parent is not None else 0
    dv = DatasetVersion(
        name=name,
        version=version,
        sha256=sha,
        path=folder,
        num_rows=rows_before + kept,
        schema=_recorded_schema(schema_from_stats(target, result), src, parent, evolution, version),
        stats=result,
        source=src.describe(),
        created_at=utcnow(),
        num_bytes=bytes_before + int(writer.bytes),
        parent=None if latest is None else latest.version,
        mode=mode,
        parts=parts,
        partition_by=partition_by,
    )
    position = src.position() if src.key is not None else None
    try:
        recorded = ws.metadata.add_dataset_version(
            dv, position=None if position is None or src.key is None else (src.key, position)
        )
    except ConflictError:
        # recorded meanwhile by a writer that did not claim the folder: this content (then
        # it is returned) or this number (then the folder is theirs and is left alone)
        twin = ws.metadata.find_dataset_version(name, sha)
        if _is_recorded(ws, name, version):
            written.clear()
        if twin is not None:
            raise _Twin(IngestResult(twin, created=False, quarantine=report)) from None
        raise
    return IngestResult(recorded, created=True, quarantine=report)


def _recorded_schema(
    columns: list[dict[str, Any]],
    src: Source,
    parent: DatasetVersion | None,
    evolution: Evolution | None,
    version: int,
) -> list[dict[str, Any]]:
    """The schema recorded for a version: its columns' origin, and each column's ``history``
    of changes, carried from the parent of an append (see :mod:`loopml.data.evolution`)."""
    columns = _with_origin(columns, src, parent)
    if parent is None:
        return columns
    if evolution is None:
        prior = {c["name"]: c["history"] for c in parent.schema if c.get("history")}
        return [{**c, "history": prior[c["name"]]} if c["name"] in prior else c for c in columns]
    return evolution.history(columns, parent, version)


def _with_origin(
    columns: list[dict[str, Any]], src: Source, parent: DatasetVersion | None
) -> list[dict[str, Any]]:
    """The recorded schema, with ``from_path: true`` on the columns whose values came from the
    source's paths (hive ``key=value`` folders), here or in the parent of an append."""
    marked = set(src.partition_columns)
    if parent is not None:
        marked |= {c["name"] for c in parent.schema if c.get("from_path")}
    return [{**c, "from_path": True} if c["name"] in marked else c for c in columns]


class _Twin(Exception):
    """The content is recorded already (as ``result``): what was written goes."""

    def __init__(self, result: IngestResult) -> None:
        super().__init__(result.dataset.version)
        self.result = result


def _delta(ws: Workspace, dv: DatasetVersion) -> str | None:
    """The hash of the rows ``dv`` added to its parent (all its rows, if it replaced it)."""
    if dv.mode != "append":
        return dv.sha256
    try:
        return str(json.loads(ws.lake.read_bytes(f"{dv.path}/{MANIFEST}"))["delta_sha256"])
    except (NotFoundError, ValueError, KeyError, TypeError):
        return None


def _refuse(quarantine: Quarantine, kept: int, where: dict[str, Any]) -> None:
    report = quarantine.write(kept, "refused: nothing ingested")
    failures = quarantine.failures
    detail = summary(failures) if failures else "no row passed"
    hint = (
        "Fix the source, or pass --on-error skip-rows to keep the good rows; the report "
        "(report.txt, report.json) and the failing rows are in the quarantine folder"
    )
    inferred = next((f for f in failures if f.rule == INFERRED_NOT_NULL), None)
    extra: dict[str, Any] = {}
    if inferred is not None:
        column = inferred.column
        extra = {"column": column}
        if inferred.examples:
            extra["row"] = inferred.examples[0]["row"]
        hint = (
            f"If nulls are meant, declare the column nullable in loopml.yaml (data.datasets."
            f"{where['dataset']}.schema: {{{column}: {{nullable: true}}}}) or pass "
            "--allow-schema-change; else fill the values in the source, or pass --on-error "
            "skip-rows to keep the other rows (the null ones go to the quarantine folder)"
        )
    raise ValidationError(
        f"{where['source']} fails validation of dataset {where['dataset']}: {detail}",
        where={**where, **extra, "quarantine": report["url"]},
        hint=hint,
        report=report,
    )


def _parent_stats(ws: Workspace, parent: DatasetVersion, schema: pa.Schema) -> StreamingStats:
    """The parent's saved statistics state, or one rebuilt from its files."""
    try:
        return StreamingStats.from_bytes(ws.lake.read_bytes(f"{parent.path}/{SKETCH}"), schema)
    except (NotFoundError, ValueError, KeyError, OSError):
        pass
    stats = StreamingStats(schema)
    for part in version_parts(ws, parent):
        table = align(normalize(ws.lake.read_table(part)), parent.schema)
        for batch in table.to_batches():
            stats.update(conform(batch, schema, {"dataset": parent.name}))
    return stats


# -- streams ----------------------------------------------------------------------------------


class _Cut(Source):
    """One micro-batch of a streaming source, as a source of its own."""

    format = "stream"

    def __init__(self, inner: Source, table: pa.Table) -> None:
        self.inner = inner
        self.table = table
        self.key = inner.key
        self._position = inner.position()

    def describe(self) -> str:
        return self.inner.describe()

    def read(self) -> pa.Table:
        return self.table

    def position(self) -> dict[str, Any] | None:
        return self._position

    def committed(self, position: dict[str, Any]) -> None:
        self.inner.committed(position)


def ingest_stream(
    ws: Workspace,
    source: SourceLike,
    name: str,
    *,
    max_records: int | None = None,
    idle_timeout: float | None = None,
    micro_batch_rows: int = 10_000,
    micro_batch_seconds: float = 5.0,
    partition_by: str | list[str] | None = None,
    on_error: str = "fail",
    progress: Progress | None = None,
    spec: DatasetSpec | None = None,
    **options: Any,
) -> list[IngestResult]:
    """Append a streaming source to ``name`` in micro-batches, one version each.

    A micro-batch is cut at ``micro_batch_rows`` records or ``micro_batch_seconds`` after its
    first record, whichever comes first, and recorded with the source's position; the source
    is acknowledged after that. The run stops after ``max_records`` records or when nothing
    arrived for ``idle_timeout`` seconds (None: never). An interrupt (Ctrl-C, SIGTERM) drops
    the micro-batch in progress: it was not acknowledged, so the next run reads it again.
    """
    check_name(name, "dataset")
    for value, what in ((max_records, "max_records"), (micro_batch_rows, "micro_batch_rows")):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise InvalidInputError(
                f"{what} must be a positive whole number, got {value!r}",
                where={"field": what},
                hint="e.g. --max-records 1000",
            )
    src = as_source(source, None, **_with_settings(ws, source, options))
    _check_choice(on_error, ON_ERROR, "on_error")
    if hasattr(src, "on_error") and hasattr(src, "rejected"):
        src.on_error = on_error  # bad messages: stop (fail) or set aside (skip-rows)
    if not src.streaming:
        src.close()
        raise InvalidInputError(
            f"{src.describe()} is not a stream",
            where={"source": src.describe()},
            hint="Ingest it with loopml data ingest (without --max-records/--idle-timeout), "
            "or give a stream: mqtt://, redis://...?stream=, - (standard input), --follow",
        )
    validator = Validator(spec)
    results: list[IngestResult] = []
    total = 0
    with _sigterm_as_interrupt():
        try:
            if src.key is not None:
                src.resume(ws.metadata.get_source_position(name, src.key))
            idle_since = time.monotonic()
            while max_records is None or total < max_records:
                table, idle = _cut(
                    src,
                    micro_batch_rows,
                    micro_batch_seconds,
                    idle_timeout,
                    idle_since,
                    None if max_records is None else max_records - total,
                )
                _quarantine_rejected(ws, name, src)
                if table is None:
                    if idle:
                        break
                    continue
                res = _ingest(
                    ws,
                    _Cut(src, table),
                    name,
                    mode="append",
                    partition_by=[partition_by]
                    if isinstance(partition_by, str)
                    else list(partition_by or []),
                    on_error=on_error,
                    allow_schema_change=False,
                    batch_rows=None,
                    progress=None,
                    validator=validator,
                )
                results.append(res)
                idle_since = time.monotonic()  # idle counts the waiting, not the writing
                total += table.num_rows
                if progress is not None:
                    progress(total)
        finally:
            src.close()
    return results


def _cut(
    src: Source,
    rows: int,
    seconds: float,
    idle_timeout: float | None,
    idle_since: float,
    left: int | None,
) -> tuple[pa.Table | None, bool]:
    """One micro-batch: ``(table, False)``, or ``(None, True)`` once idle for too long."""
    pieces: list[pa.Table] = []
    count = 0
    started: float | None = None
    limit = rows if left is None else min(rows, left)
    while count < limit:
        now = time.monotonic()
        if started is not None:
            wait = seconds - (now - started)
            if wait <= 0:
                break
        elif idle_timeout is not None:
            wait = idle_timeout - (now - idle_since)
            if wait <= 0:
                return None, True
            wait = min(wait, seconds)
        else:
            wait = seconds
        got = src.poll(limit - count, max(wait, 0.0))
        if got is None or not got.num_rows:
            if getattr(src, "exhausted", False):  # a bounded stream (stdin) has ended
                if not pieces:
                    return None, True
                break
            continue
        if started is None:
            started = time.monotonic()
        pieces.append(got)
        count += got.num_rows
    if not pieces:
        return None, False
    return pa.concat_tables(pieces, promote_options="default"), False


def _quarantine_rejected(ws: Workspace, name: str, src: Source) -> None:
    """Messages a stream set aside (``on_error="skip-rows"``) go to the quarantine folder."""
    rejected = getattr(src, "rejected", None)
    if not rejected:
        return
    taken = list(rejected)
    rejected.clear()
    quarantine = Quarantine(ws.lake, name, src.describe())
    rows = pa.RecordBatch.from_pylist(
        [
            {"where": json.dumps(r["where"], default=str), "raw": r["raw"], "reason": r["reason"]}
            for r in taken
        ]
    )
    examples = [{"row": r["where"], "raw": shorten(r["raw"].strip(), 200)} for r in taken[:5]]
    quarantine.add(rows, [Failure(None, "json", taken[0]["reason"], len(taken), examples)])
    quarantine.write(0, "skipped messages that are not JSON objects")


class _sigterm_as_interrupt:
    """SIGTERM raises KeyboardInterrupt in the main thread while a stream is ingested."""

    def __enter__(self) -> None:
        self._old: Any = None
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGTERM, self._raise)

    @staticmethod
    def _raise(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


# -- claims -----------------------------------------------------------------------------------


def _claim_next(ws: Workspace, name: str) -> tuple[str, str, int]:
    """``(folder, claim marker, version)`` of the next version folder, claimed by this ingest.

    An ingest that finds the next folder claimed by another waits for it to be recorded, then
    moves on to the number after it: numbers stay consecutive and no folder is ever written by
    two ingests. A folder whose claims all belong to processes of this machine that are gone
    is emptied and claimed again at once (same number); a claim whose owner cannot be checked
    (another host, an older loopml) is skipped after ``_STALE_AFTER`` seconds, data left
    without a claim or record at once.
    """
    skip_below = 0  # numbers below this are held by folders that will never be recorded
    waiting_on, waited_since, pause = 0, 0.0, 0.005
    for _ in range(_MAX_ROUNDS):
        version = max(ws.metadata.latest_dataset_version(name) + 1, skip_below)
        folder = _folder(name, version)
        claim, state = _claim(ws, folder, partial(_is_recorded, ws, name, version))
        if state == _OWNED:
            return folder, claim, version
        if state == _ORPHANED:
            skip_below = version + 1
            continue
        now = time.monotonic()
        if version != waiting_on:
            waiting_on, waited_since, pause = version, now, 0.005
        elif now - waited_since > _STALE_AFTER:
            skip_below = version + 1
            continue
        _wait(random.uniform(pause / 2, pause))
        pause = min(pause * 2, 0.5)
    raise ConflictError(
        f"could not add a version of dataset {name!r}: other ingests kept every version "
        f"number busy ({_MAX_ROUNDS} tries)",
        where={"dataset": name},
        hint="Run the ingest again once the other ingests of this dataset have finished",
    )


def _wait(seconds: float) -> None:
    time.sleep(seconds)


def _with_settings(ws: Workspace, source: object, options: dict[str, Any]) -> dict[str, Any]:
    """HTTP sources read the workspace's settings (allowed hosts) unless given others; s3://
    files and folders the workspace's S3 endpoint (``LOOPML_S3_ENDPOINT_URL``)."""
    if isinstance(source, str) and source.lower().startswith(("http://", "https://")):
        return {"settings": ws.settings, **options}
    return with_storage_options(source, options, ws.settings)


def with_storage_options(source: object, options: dict[str, Any], settings: Any) -> dict[str, Any]:
    """``options`` plus ``storage_options`` naming ``settings.s3_endpoint_url`` for an
    ``s3://`` source, unless the options give their own."""
    endpoint = getattr(settings, "s3_endpoint_url", None)
    if (
        isinstance(source, str)
        and source.lower().startswith(("s3://", "s3a://"))
        and endpoint
        and "storage_options" not in options
    ):
        return {**options, "storage_options": {"client_kwargs": {"endpoint_url": endpoint}}}
    return options


def as_source(source: SourceLike, format: str | None = None, **options: Any) -> Source:
    """``source`` as a :class:`Source` (paths by ``format`` or extension, CSV ``options``)."""
    if isinstance(source, Source | pa.Table | pd.DataFrame):
        given = {"format": format, **options}
        for key, value in given.items():
            if value is not None and value is not True:  # header=True is the default
                raise InvalidInputError(
                    f"{key}={value!r} applies to file paths, not to a {type(source).__name__}",
                    where={"field": key},
                    hint=f"Leave out {key}, or pass the file's path",
                )
        return source if isinstance(source, Source) else TableSource(source)
    return source_for(source, format, **options)


def normalize(table: pa.Table, where: dict[str, Any] | None = None) -> pa.Table:
    """The canonical form of a table: checked columns in their given order, no metadata,
    dictionaries decoded, all-empty (null-typed) and large strings as strings, NaN as null,
    one chunk per column.
    """
    check_columns(table, where or {})
    fields = []
    columns = []
    for field, column in zip(table.schema, table.columns, strict=True):
        if pa.types.is_dictionary(field.type):
            column = column.cast(field.type.value_type)
        typ = column.type
        if pa.types.is_null(typ):
            column = column.cast(pa.string())
        elif pa.types.is_large_string(typ):
            try:  # one string type, so the same text hashes the same from every format
                column = column.cast(pa.string())
            except (pa.ArrowInvalid, pa.ArrowCapacityError):
                pass  # a chunk of 2 GiB or more of text stays large_string
        elif pa.types.is_floating(typ):
            nan = pc.is_nan(column)
            if pc.any(nan).as_py():
                column = pc.if_else(nan, pa.scalar(None, typ), column)
        fields.append(pa.field(field.name, column.type))  # declared nullability is not content
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=pa.schema(fields)).combine_chunks()


def content_sha256(table: pa.Table) -> str:
    """sha256 of ``table`` as ingestion hashes it: the Arrow IPC stream of its rows in chunks
    of :data:`~loopml.data.engine.CANON_ROWS` (normalize it first for a canonical hash)."""
    digest = ContentHash(table.schema)
    for batch in table.to_batches():
        digest.update(batch)
    return digest.hexdigest()


def _folder(name: str, version: int) -> str:
    return f"{DATASETS}/{name}/v={version}"


def _claim(ws: Workspace, folder: str, is_recorded: Callable[[], bool]) -> tuple[str, str]:
    """Try to claim an empty version folder, so that two ingests never write the same one.

    Writes a marker (``_claim-<id>``, which readers ignore, naming its owner process) and lists
    the folder; the claim holds when the marker is alone there, or when every other marker there
    is of a process of this machine that is gone: then what that ingest left (its markers, its
    unrecorded data) is removed and the folder is this one's. Returns the marker's path and the
    outcome: ``_OWNED``, ``_BUSY`` (another ingest's marker is there: it is writing, or claiming
    at this very moment, or its owner cannot be checked) or ``_ORPHANED`` (data without a live
    marker that is not this ingest's to replace: an ingest that will never record it, or a
    version recorded by one that died before removing its marker).

    Two ingests that claim at once both write before they list, so at least one sees the
    other's marker and backs off; a marker stays while the folder is cleared, so no other
    ingest can take the same folder over meanwhile.
    """
    claim = f"{folder}/{_CLAIM}{new_id()}"
    ws.lake.write_bytes(claim, json.dumps({"owner": process_owner(), "at": str(utcnow())}).encode())
    try:
        others = [p for p in ws.lake.list(folder) if p != claim]
        if not others:
            return claim, _OWNED
        markers = [p for p in others if p.rsplit("/", 1)[-1].startswith(_CLAIM)]
        abandoned = bool(markers) and all(_owner_gone(ws, p) for p in markers)
        if abandoned:
            recorded = is_recorded()  # before its owner died: a real version, keep its data
            for path in markers if recorded else others:
                ws.lake.delete(path)
            if not recorded:
                return claim, _OWNED
    except BaseException:
        _discard(ws, claim)
        raise
    _discard(ws, claim)
    return claim, _BUSY if markers and not abandoned else _ORPHANED


def _owner_gone(ws: Workspace, marker: str) -> bool:
    """True when ``marker`` names a process of this machine that no longer runs."""
    try:
        owner = json.loads(ws.lake.read_bytes(marker)).get("owner")
    except NotFoundError:
        return False  # removed meanwhile by its owner: look again next round
    except (ValueError, AttributeError):
        return False  # an older loopml's empty marker, or not ours: owner unknown
    return owner_alive(owner) is False


def _is_recorded(ws: Workspace, name: str, version: int) -> bool:
    try:
        ws.metadata.get_dataset_version(name, version)
    except NotFoundError:
        return False
    return True


def _discard(ws: Workspace, folder: str) -> None:
    """Remove what this ingest wrote; never mask the error being handled."""
    try:
        ws.lake.delete(folder)
    except Exception:
        pass


# -- reading back -----------------------------------------------------------------------------


def get_dataset(ws: Workspace, ref: str) -> DatasetVersion:
    """The version ``ref`` names: ``NAME`` (its latest version) or ``NAME@VERSION``."""
    if not isinstance(ref, str):
        raise InvalidInputError(
            f"a dataset reference must be a string, got {type(ref).__name__}",
            where={"dataset": repr(ref)},
            hint="Write NAME or NAME@VERSION, e.g. cancer@2",
        )
    name, tag = parse_ref(ref, "dataset")
    return ws.metadata.get_dataset_version(name, None if tag is None else _version(tag, ref))


def list_datasets(ws: Workspace, name: str | None = None) -> list[DatasetVersion]:
    """Every dataset version, or those of ``name``, ordered by name then version."""
    if name is not None:
        check_name(name, "dataset")
    return ws.metadata.list_dataset_versions(name)


def version_parts(ws: Workspace, dv: DatasetVersion) -> list[str]:
    """The lake paths of the Parquet files holding ``dv``'s rows, in order (an append version
    lists its parent's files first)."""
    if dv.parts:
        return list(dv.parts)
    found = [p for p in ws.lake.list(dv.path) if _is_part(p)]
    if not found:
        raise NotFoundError(
            f"no Parquet file for dataset {dv.name}@{dv.version} under {ws.lake.url(dv.path)}",
            where={"dataset": f"{dv.name}@{dv.version}", "url": ws.lake.url(dv.path)},
            hint="The files were removed outside loopml; ingest the source again",
        )
    return found


def _is_part(path: str) -> bool:
    base = path.rsplit("/", 1)[-1]
    return base.endswith(".parquet") and not base.startswith((".", "_"))


def version_urls(ws: Workspace, dv: DatasetVersion) -> list[str]:
    """The URLs of :func:`version_parts`, for DuckDB, Spark or pandas reading without loopml."""
    return [ws.lake.url(p) for p in version_parts(ws, dv)]


def read_version(ws: Workspace, dv: DatasetVersion, *, verify: bool = False) -> pa.Table:
    """The rows of the recorded version ``dv`` (following its parts list)."""
    parts = version_parts(ws, dv) if dv.parts else None
    if parts is None:
        table = ws.lake.read_table(dv.path)
    else:
        tables = [align(ws.lake.read_table(p), dv.schema) for p in parts]
        table = (
            tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="default")
        )
    if verify:
        actual = version_sha256(ws, dv)
        if actual != dv.sha256:
            raise IntegrityError(
                f"dataset {dv.name}@{dv.version} in the lake does not match what was ingested "
                f"(sha256 {actual[:12]}…, recorded {dv.sha256[:12]}…)",
                where={"dataset": f"{dv.name}@{dv.version}", "url": ws.lake.url(dv.path)},
                hint="The files were changed outside loopml; ingest the source again",
            )
    return table


def iter_version(ws: Workspace, dv: DatasetVersion) -> Iterator[pa.RecordBatch]:
    """The rows of ``dv`` batch by batch, one part in memory at a time."""
    for part in version_parts(ws, dv):
        yield from align(ws.lake.read_table(part), dv.schema).to_batches()


def version_sha256(ws: Workspace, dv: DatasetVersion) -> str:
    """The content hash of what the lake holds for ``dv``, computed as ingestion does."""
    where = {"dataset": f"{dv.name}@{dv.version}"}
    if not dv.parts:  # before parts lists: one table
        return content_sha256(_as_recorded(normalize(ws.lake.read_table(dv.path), where), dv))
    own = [p for p in dv.parts if p.startswith(f"{dv.path}/")]
    if dv.mode == "append" and dv.parent is not None and len(own) != len(dv.parts):
        parent = ws.metadata.get_dataset_version(dv.name, dv.parent)
        return append_hash(parent.sha256, _parts_sha(ws, dv, own, where))
    return _parts_sha(ws, dv, own, where)


def _as_recorded(table: pa.Table, dv: DatasetVersion) -> pa.Table:
    """``table`` with the time units ingestion recorded: Parquet has no seconds, so a
    ``timestamp[s]`` column reads back as milliseconds (the values are the same)."""
    recorded = {c["name"]: c.get("type") for c in dv.schema or [] if isinstance(c, dict)}
    fields = []
    for field in table.schema:
        typ = field.type
        want = recorded.get(field.name)
        if want and str(typ) != want and pa.types.is_timestamp(typ):
            for unit in ("s", "ms", "us", "ns"):
                candidate = pa.timestamp(unit, typ.tz)
                if str(candidate) == want:
                    typ = candidate
                    break
        fields.append(pa.field(field.name, typ, field.nullable, field.metadata))
    schema = pa.schema(fields, table.schema.metadata)
    return table if schema == table.schema else table.cast(schema)


def _parts_sha(ws: Workspace, dv: DatasetVersion, parts: list[str], where: dict[str, Any]) -> str:
    groups: dict[str, ContentHash] = {}
    for part in parts:
        folder = (
            part[len(dv.path) + 1 :].rsplit("/", 1)[0] if "/" in part[len(dv.path) + 1 :] else ""
        )
        table = _as_recorded(normalize(ws.lake.read_table(part), where), dv)
        digest = groups.setdefault(folder, ContentHash(table.schema))
        for batch in table.to_batches():
            digest.update(batch)
    if not dv.partition_by:
        return groups[""].hexdigest() if "" in groups else content_sha256(pa.table({}))
    return combine_hashes({f: h.hexdigest() for f, h in groups.items()})


def load_table(
    ws: Workspace, name: str, version: int | str | None = None, *, verify: bool = False
) -> pa.Table:
    """The content of ``name`` at ``version`` (default: the latest) as a pyarrow Table.

    ``verify=True`` re-hashes the content and raises IntegrityError if it is not what was
    ingested.
    """
    check_name(name, "dataset")
    number = None if version is None else _version(version, f"{name}@{version}")
    dv = ws.metadata.get_dataset_version(name, number)
    return read_version(ws, dv, verify=verify)


def load_dataset(
    ws: Workspace, name: str, version: int | str | None = None, *, verify: bool = False
) -> pd.DataFrame:
    """The content of ``name`` at ``version`` (default: the latest) as a pandas DataFrame."""
    return load_table(ws, name, version, verify=verify).to_pandas()


def _version(value: object, ref: str) -> int:
    text = str(value).strip()
    if isinstance(value, bool) or not _DIGITS.fullmatch(text) or int(text) < 1:
        raise InvalidInputError(
            f"dataset version {value!r} in {ref!r} is not a positive whole number",
            where={"dataset": ref},
            hint="Versions are numbered from 1: write NAME@1, NAME@2, ... or just NAME for the "
            "latest",
        )
    return int(text)


__all__ = [
    "IngestResult",
    "as_source",
    "content_sha256",
    "get_dataset",
    "ingest",
    "ingest_stream",
    "iter_version",
    "list_datasets",
    "load_dataset",
    "load_table",
    "normalize",
    "read_version",
    "version_parts",
    "version_sha256",
    "version_urls",
]
