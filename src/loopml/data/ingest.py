"""Ingestion: a source becomes an immutable, numbered dataset version in the lake.

The table is normalized (no schema metadata, dictionary columns decoded, all-empty columns as
strings, NaN as null) and hashed; the same content ingested again returns the version that
already holds it and writes nothing. New content becomes version ``latest + 1``: the data is
written first (``datasets/<name>/v=<n>/part-0.parquet``), then recorded, and a failed record
removes the data again, so neither a record without data nor stray data is left behind.
Concurrent ingests of one dataset take turns through a claim marker in the version folder
(the lake has no exclusive create), so no folder is ever written by two of them. A marker names
the process that wrote it (:func:`loopml.utils.process_owner`): the claim of an ingest that was
killed on this machine is taken over at once, so the next ingest gets its version number.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeAlias, Unpack

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from loopml.data.dialect import CsvOptions
from loopml.data.schema import check_columns, schema_of
from loopml.data.sources import Source, TableSource, source_for
from loopml.data.stats import compute_stats
from loopml.errors import ConflictError, IntegrityError, InvalidInputError, NotFoundError
from loopml.names import check_name, parse_ref
from loopml.stores.records import DatasetVersion
from loopml.utils import new_id, owner_alive, process_owner, utcnow

if TYPE_CHECKING:
    from loopml.workspace import Workspace

DATASETS = "datasets"
PART = "part-0.parquet"
_CLAIM = "_claim-"
_OWNED, _BUSY, _ORPHANED = "owned", "busy", "orphaned"
_STALE_AFTER = 60.0  # seconds a claim whose owner may be alive (another host) is waited for
_MAX_ROUNDS = 100_000  # a bound on the claim loop (waits included: hours)
_MAX_CONFLICTS = 20  # records refused as clashing before giving up
_DIGITS = re.compile(r"[0-9]+")

SourceLike: TypeAlias = str | os.PathLike[str] | Source | pa.Table | pd.DataFrame


@dataclass(frozen=True)
class IngestResult:
    """The dataset version holding the content, and whether this call created it."""

    dataset: DatasetVersion
    created: bool


def ingest(
    ws: Workspace,
    source: SourceLike,
    name: str,
    *,
    format: str | None = None,
    **options: Unpack[CsvOptions],
) -> IngestResult:
    """Store ``source`` as the next version of dataset ``name``; unchanged content: no-op.

    ``source`` is a path or URI (format from ``format`` or the extension), a
    :class:`~loopml.data.sources.Source`, a ``pyarrow.Table`` or a ``pandas.DataFrame``.
    ``options`` read CSV files: ``delimiter``, ``encoding``, ``header``, ``decimal``
    (see :class:`~loopml.data.dialect.CsvOptions`).
    """
    check_name(name, "dataset")
    src = as_source(source, format, **options)
    table = normalize(src.read(), {"source": src.describe()})
    sha = content_sha256(table)
    found = ws.metadata.find_dataset_version(name, sha)
    if found is not None:
        return IngestResult(found, created=False)

    stats = compute_stats(table)
    schema = schema_of(table, stats)

    def record(version: int) -> DatasetVersion:
        return DatasetVersion(
            name=name,
            version=version,
            sha256=sha,
            path=_folder(name, version),
            num_rows=table.num_rows,
            schema=schema,
            stats=stats,
            source=src.describe(),
            created_at=utcnow(),
            num_bytes=int(table.nbytes),
        )

    return _store(ws, name, sha, table, record)


def _store(
    ws: Workspace,
    name: str,
    sha: str,
    table: pa.Table,
    record: Callable[[int], DatasetVersion],
) -> IngestResult:
    """Write and record ``table`` as version ``latest + 1``, safe against concurrent ingests.

    The version folder is claimed first (see :func:`_claim`). An ingest that finds the next
    folder claimed by another waits for it to be recorded, then returns that version when it
    holds the same content, or moves on to the number after it: numbers stay consecutive and
    no folder is ever written by two ingests. A folder whose claims all belong to processes of
    this machine that are gone is emptied and claimed again at once (same number); a claim
    whose owner cannot be checked (another host, an older loopml) is skipped after
    ``_STALE_AFTER`` seconds, data left without a claim or record at once.
    """
    skip_below = 0  # numbers below this are held by folders that will never be recorded
    waiting_on, waited_since, pause = 0, 0.0, 0.005
    conflicts = 0
    for _ in range(_MAX_ROUNDS):
        twin = ws.metadata.find_dataset_version(name, sha)
        if twin is not None:
            return IngestResult(twin, created=False)
        version = max(ws.metadata.latest_dataset_version(name) + 1, skip_below)
        folder = _folder(name, version)
        claim, state = _claim(ws, folder, partial(_is_recorded, ws, name, version))
        if state == _ORPHANED:
            skip_below = version + 1
            continue
        if state == _BUSY:
            now = time.monotonic()
            if version != waiting_on:
                waiting_on, waited_since, pause = version, now, 0.005
            elif now - waited_since > _STALE_AFTER:
                skip_below = version + 1
                continue
            _wait(random.uniform(pause / 2, pause))
            pause = min(pause * 2, 0.5)
            continue
        try:
            ws.lake.write_table(f"{folder}/{PART}", table)
            recorded = ws.metadata.add_dataset_version(record(version))
        except ConflictError:
            # recorded meanwhile by a writer that did not claim the folder: this content (the
            # next round returns it) or this number (the folder is theirs and is left alone)
            conflicts += 1
            _discard(ws, claim if _is_recorded(ws, name, version) else folder)
            if conflicts >= _MAX_CONFLICTS:
                raise
            continue
        except BaseException:
            _discard(ws, folder)
            raise
        _discard(ws, claim)
        return IngestResult(recorded, created=True)
    raise ConflictError(
        f"could not add a version of dataset {name!r}: other ingests kept every version "
        f"number busy ({_MAX_ROUNDS} tries)",
        where={"dataset": name},
        hint="Run the ingest again once the other ingests of this dataset have finished",
    )


def _wait(seconds: float) -> None:
    time.sleep(seconds)


def as_source(
    source: SourceLike, format: str | None = None, **options: Unpack[CsvOptions]
) -> Source:
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
