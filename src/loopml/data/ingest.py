"""Ingestion: a source becomes an immutable, numbered dataset version in the lake.

The table is normalized (no schema metadata, dictionary columns decoded, all-empty columns as
strings, NaN as null) and hashed; the same content ingested again returns the version that
already holds it and writes nothing. New content becomes version ``latest + 1``: the data is
written first (``datasets/<name>/v=<n>/part-0.parquet``), then recorded, and a failed record
removes the data again, so neither a record without data nor stray data is left behind.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from loopml.data.schema import check_columns, schema_of
from loopml.data.sources import Source, TableSource, source_for
from loopml.data.stats import compute_stats
from loopml.errors import ConflictError, IntegrityError, InvalidInputError, NotFoundError
from loopml.names import check_name, parse_ref
from loopml.stores.records import DatasetVersion
from loopml.utils import new_id, utcnow

if TYPE_CHECKING:
    from loopml.workspace import Workspace

DATASETS = "datasets"
PART = "part-0.parquet"
_CLAIM = "_claim-"
_ATTEMPTS = 50  # tries when concurrent ingests keep taking the next version number
_VERSION_DIR = re.compile(r"v=([0-9]+)")
_DIGITS = re.compile(r"[0-9]+")

SourceLike: TypeAlias = str | os.PathLike[str] | Source | pa.Table | pd.DataFrame


@dataclass(frozen=True)
class IngestResult:
    """The dataset version holding the content, and whether this call created it."""

    dataset: DatasetVersion
    created: bool


def ingest(
    ws: Workspace, source: SourceLike, name: str, *, format: str | None = None
) -> IngestResult:
    """Store ``source`` as the next version of dataset ``name``; unchanged content: no-op.

    ``source`` is a path or URI (format from ``format`` or the extension), a
    :class:`~loopml.data.sources.Source`, a ``pyarrow.Table`` or a ``pandas.DataFrame``.
    """
    check_name(name, "dataset")
    src = as_source(source, format)
    table = normalize(src.read(), {"source": src.describe()})
    sha = content_sha256(table)
    found = ws.metadata.find_dataset_version(name, sha)
    if found is not None:
        return IngestResult(found, created=False)

    stats = compute_stats(table)
    schema = schema_of(table, stats)
    for attempt in range(_ATTEMPTS):
        version = _next_version(ws, name)
        folder = f"{DATASETS}/{name}/v={version}"
        claim = _claim(ws, folder)
        if claim is None:
            continue  # the folder was taken since we looked: try the next number
        if claim == "":
            time.sleep(random.uniform(0.0, 0.01 * min(attempt + 1, 10)))
            continue  # contended by another ingest claiming it right now: back off, look again
        dv = DatasetVersion(
            name=name,
            version=version,
            sha256=sha,
            path=folder,
            num_rows=table.num_rows,
            schema=schema,
            stats=stats,
            source=src.describe(),
            created_at=utcnow(),
            num_bytes=int(table.nbytes),
        )
        try:
            ws.lake.write_table(f"{folder}/{PART}", table)
            recorded = ws.metadata.add_dataset_version(dv)
        except ConflictError:
            # recorded meanwhile: this content (return it) or this number (by a writer that
            # did not claim the folder; then the folder is theirs and is left alone)
            twin = ws.metadata.find_dataset_version(name, sha)
            if _is_recorded(ws, name, version):
                _discard(ws, claim)
            else:
                _discard(ws, folder)
            if twin is not None:
                return IngestResult(twin, created=False)
            continue
        except BaseException:
            _discard(ws, folder)
            raise
        _discard(ws, claim)
        return IngestResult(recorded, created=True)
    raise ConflictError(
        f"could not add a version of dataset {name!r}: concurrent ingests took every version "
        f"number tried ({_ATTEMPTS} attempts)",
        where={"dataset": name},
        hint="Run the ingest again",
    )


def as_source(source: SourceLike, format: str | None = None) -> Source:
    """``source`` as a :class:`Source` (paths by ``format`` or extension)."""
    if isinstance(source, Source | pa.Table | pd.DataFrame):
        if format is not None:
            raise InvalidInputError(
                f"format={format!r} applies to file paths, not to a {type(source).__name__}",
                where={"field": "format"},
                hint="Leave out format, or pass the file's path",
            )
        return source if isinstance(source, Source) else TableSource(source)
    return source_for(source, format)


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


class _HashSink:
    """A write-only file that feeds sha256 instead of storing bytes."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.closed = False

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.hash.update(view)
        return view.nbytes

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def content_sha256(table: pa.Table) -> str:
    """sha256 of the Arrow IPC stream of ``table`` (normalize it first for a canonical hash)."""
    sink = _HashSink()
    with pa.PythonFile(sink, mode="w") as out, pa.ipc.new_stream(out, table.schema) as writer:
        writer.write_table(table)
    return sink.hash.hexdigest()


def _next_version(ws: Workspace, name: str) -> int:
    """One past the highest version recorded or present in the lake: a folder without a record
    belongs to an ingest in progress (or one that crashed), and is never overwritten."""
    highest = ws.metadata.latest_dataset_version(name)
    for rel in ws.lake.list(f"{DATASETS}/{name}"):
        parts = rel.split("/")
        if len(parts) >= 3 and (m := _VERSION_DIR.fullmatch(parts[2])):
            highest = max(highest, int(m.group(1)))
    return highest + 1


def _claim(ws: Workspace, folder: str) -> str | None:
    """Claim an empty version folder for this ingest, so two ingests never write the same one.

    Writes a marker (``_claim-<id>``, ignored by readers) and lists the folder: the claim
    holds only when the marker is alone there. Returns the marker's path when it holds,
    ``None`` when the folder holds data (taken) and ``""`` when another ingest is claiming it
    at the same moment (both back off and look again).
    """
    claim = f"{folder}/{_CLAIM}{new_id()}"
    ws.lake.write_bytes(claim, b"")
    try:
        others = [p for p in ws.lake.list(folder) if p != claim]
    except BaseException:
        _discard(ws, claim)
        raise
    if not others:
        return claim
    _discard(ws, claim)
    claimed = all(p.rsplit("/", 1)[-1].startswith(_CLAIM) for p in others)
    return "" if claimed else None


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
    table = ws.lake.read_table(dv.path)
    if verify:
        actual = content_sha256(normalize(table, {"dataset": f"{dv.name}@{dv.version}"}))
        if actual != dv.sha256:
            raise IntegrityError(
                f"dataset {dv.name}@{dv.version} in the lake does not match what was ingested "
                f"(sha256 {actual[:12]}…, recorded {dv.sha256[:12]}…)",
                where={"dataset": f"{dv.name}@{dv.version}", "url": ws.lake.url(dv.path)},
                hint="The files were changed outside loopml; ingest the source again",
            )
    return table


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
    "list_datasets",
    "load_dataset",
    "load_table",
    "normalize",
]
