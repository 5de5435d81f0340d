"""Ingestion on Spark: large files and JDBC tables become dataset versions, as locally.

A version ingested on Spark is the version a local ingest of the same data makes: the same
folder (``datasets/<name>/v=<n>/part-*.parquet``, hive folders when partitioned), the same
column types, the same content hash (so re-ingesting identical data, on either engine, records
nothing), the same statistics and the same record. How:

1. The driver opens the source with loopml's own reader (:func:`loopml.data.ingest.as_source`)
   and reads only its first block: the columns, the CSV dialect and the types a local ingest
   infers (declared types from ``loopml.yaml`` win, as locally). Spark never infers a type for
   a file the driver can open, so both engines agree on it.
2. Spark reads the whole source (CSV and JSON Lines as text, Parquet and JDBC typed) and each
   task converts its rows with pyarrow exactly as the local reader does (CSV null markers,
   decimal mark, ISO timestamps), normalizes them with :func:`loopml.data.ingest.normalize`
   and writes Parquet parts of bounded size into a staging folder of the lake
   (``_staging/spark-<id>/``). A value that does not fit its column's type fails the job with
   a one-line error naming the column and the value.
3. The driver reads the staged parts back one at a time (memory stays flat in the row count)
   and hands them to the local engine's own ingestion step, which claims the next version
   folder, validates, hashes, counts statistics, and, through :class:`_StagedWriter`, moves
   the parts into the version folder instead of writing them; the metadata transaction comes
   last. Any failure (a failed Spark job included) removes the staging folder and whatever was
   moved, and records nothing.

Sources: CSV/TSV, Parquet and JSON Lines files (a local path, ``file://``, or any URI the
cluster's Hadoop filesystems read, such as ``s3a://`` or ``hdfs://``: for those Spark infers
the types), JDBC tables and queries (``jdbc:postgresql://…`` with ``table=`` or ``query=``; the
driver jar in ``spark.jars`` or given as ``driver_jar=``), and Spark DataFrames.
"""

from __future__ import annotations

import codecs
import json
import os
import re
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from loopml.data.engine import (
    BUFFER_BYTES,
    MAX_PARTITIONS,
    PART_BYTES,
    ContentHash,
    PartWriter,
    canonical_nulls,
    check_partition_columns,
    split,
)
from loopml.data.ingest import (
    MODES,
    ON_ERROR,
    IngestResult,
    Progress,
    _check_choice,
    _check_schema_change,
    _discard,
    _ingest_batches,
    _keep_types,
    _latest,
    _prepare,
    as_source,
    normalize,
)
from loopml.data.sources import (
    CsvSource,
    JsonLinesSource,
    ParquetSource,
    Source,
    redact,
)
from loopml.data.validate import Validator
from loopml.engines.spark.session import spark_session
from loopml.engines.spark.types import arrow_type, is_flat, spark_type
from loopml.errors import ConfigError, InvalidInputError, LoopmlError, NotFoundError, StoreError
from loopml.names import check_name
from loopml.stores.fs import check_path
from loopml.utils import new_id

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from loopml.project.data import DatasetSpec
    from loopml.stores.base import Lake
    from loopml.workspace import Workspace

STAGING = "_staging"
CSV, JSON, TYPED = "csv", "json", "typed"  # how a task turns Spark's rows into stored ones
#: what a CSV field means as null, as pyarrow's CSV reader (and so the local engine) reads it
CSV_NULLS = tuple(pacsv.ConvertOptions().null_values)
_RESULT = "folder string, path string, rows long, pid long, seq long"
_RESULT_ARROW = pa.schema(
    [
        ("folder", pa.string()),
        ("path", pa.string()),
        ("rows", pa.int64()),
        ("pid", pa.int64()),
        ("seq", pa.int64()),
    ]
)
_TASK_ERROR = "LOOPML-TASK-ERROR"
_EXTENSIONS = {
    ".csv": CSV,
    ".tsv": CSV,
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": JSON,
    ".ndjson": JSON,
}
_SQL_SCHEMES = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mariadb": "mariadb",
    "sqlite": "sqlite",
    "mssql": "sqlserver",
    "oracle": "oracle",
}
_JDBC_DRIVERS = {
    "postgresql": "org.postgresql.Driver",
    "mysql": "com.mysql.cj.jdbc.Driver",
    "mariadb": "org.mariadb.jdbc.Driver",
    "sqlite": "org.sqlite.JDBC",
    "sqlserver": "com.microsoft.sqlserver.jdbc.SQLServerDriver",
    "oracle": "oracle.jdbc.OracleDriver",
}


@dataclass(frozen=True)
class _Plan:
    """What Spark reads, and what the lake stores of it."""

    frame: DataFrame
    target: pa.Schema
    convert: str
    decimal: str
    describe: str


@dataclass(frozen=True)
class _Staged:
    folder: str
    path: str
    rows: int
    pid: int
    seq: int


class _SparkInput(Source):
    """The source as the local engine's records name it; its rows come from the staged parts."""

    format = "spark"

    def __init__(self, description: str) -> None:
        self.description = description

    def describe(self) -> str:
        return self.description

    def read(self) -> pa.Table:  # the engine reads the staged parts, never this
        raise NotImplementedError("a Spark source is read by Spark")


def ingest(
    ws: Workspace,
    source: str | os.PathLike[str] | DataFrame,
    name: str,
    *,
    format: str | None = None,
    mode: str | None = None,
    partition_by: str | list[str] | None = None,
    on_error: str = "fail",
    allow_schema_change: bool = False,
    progress: Progress | None = None,
    spec: DatasetSpec | None = None,
    master: str | None = None,
    **options: Any,
) -> IngestResult:
    """Store ``source`` as the next version of dataset ``name``, read and written by Spark.

    The arguments mean what they mean for :func:`loopml.data.ingest.ingest`; ``master``
    overrides ``settings.spark_master``. ``source``: a file path or URI (CSV, TSV, Parquet,
    JSON Lines), a JDBC URL (``jdbc:postgresql://host/db`` with ``table=`` or ``query=``, and
    ``user=``, ``password=``, ``driver_jar=``, or any option of Spark's JDBC reader such as
    ``partitionColumn``/``numPartitions``), or a Spark DataFrame. File ``options``:
    ``delimiter``, ``encoding``, ``header``, ``decimal`` (as locally) and ``multiline`` (CSV
    values spanning lines: the file is then read by one task). ``on_error="skip-rows"`` with a
    ``spec`` is not available on Spark (the parts are written before they are validated).
    """
    check_name(name, "dataset")
    _check_choice(mode, (None, *MODES), "mode")
    _check_choice(on_error, ON_ERROR, "on_error")
    if on_error != "fail" and spec is not None:
        raise InvalidInputError(
            "on_error='skip-rows' is not available with the Spark engine",
            where={"field": "on_error", "dataset": name},
            hint="Ingest with --on-error fail (failing rows are still quarantined and "
            "reported), or with --engine local to keep the good rows",
        )
    given = [partition_by] if isinstance(partition_by, str) else list(partition_by or [])
    validator = Validator(spec)
    spark = spark_session(ws.settings, master=master)
    plan = _plan(spark, source, format, validator, options)
    where = {"source": plan.describe, "dataset": name}
    latest = _latest(ws, name)
    parent = latest if (mode or "replace") == "append" else None
    columns = list(parent.partition_by) if parent is not None and not given else given
    target = _keep_types(parent or latest, validator.declared_schema(plan.target))
    check_partition_columns(target, columns, where)
    # refused before Spark works, as the local engine would refuse after its first batch
    _check_schema_change(name, latest, parent, target, allow_schema_change, where)
    staging = f"{STAGING}/spark-{new_id()}"
    try:
        staged = _run(ws, plan, target, staging, columns)
        batches = _read_back(ws, staged, target)
        try:
            return _ingest_batches(
                ws,
                _SparkInput(plan.describe),
                name,
                batches,
                mode=mode,
                partition_by=given,
                on_error=on_error,
                allow_schema_change=allow_schema_change,
                progress=progress,
                validator=validator,
                writer_for=lambda lake, folder, by, written: _StagedWriter(
                    lake, folder, by, written, staged
                ),
            )
        finally:
            batches.close()
    finally:
        _discard(ws, staging)


# -- planning: what Spark reads and what the lake stores --------------------------------------


def _plan(
    spark: SparkSession,
    source: Any,
    format: str | None,
    validator: Validator,
    options: dict[str, Any],
) -> _Plan:
    from pyspark.sql import DataFrame

    if isinstance(source, DataFrame):
        if format is not None or options:
            raise InvalidInputError(
                "format and reader options apply to paths, not to a Spark DataFrame",
                where={"field": "format" if format is not None else sorted(options)[0]},
                hint="Leave them out, or pass the file's path",
            )
        return _typed_plan(source, "<spark DataFrame>")
    if not isinstance(source, str | os.PathLike):
        raise InvalidInputError(
            f"the Spark engine ingests a path, a JDBC URL or a Spark DataFrame, got "
            f"{type(source).__name__}",
            where={"source": repr(source)[:100]},
            hint="Give a file path (CSV, Parquet, JSON Lines), jdbc:... with table=, or a "
            "DataFrame; in-memory tables go through --engine local",
        )
    text = os.fspath(source)
    if text.lower().startswith("jdbc:"):
        return _jdbc_plan(spark, text, options)
    if "://" not in text or text.lower().startswith("file://"):
        return _local_file_plan(spark, text, format, validator, options)
    scheme = urlsplit(text).scheme.lower().split("+", 1)[0]
    if scheme in _SQL_SCHEMES:
        raise InvalidInputError(
            f"the Spark engine reads databases through JDBC; {redact(text)} is a SQLAlchemy URL",
            where={"source": redact(text)},
            hint=f"Write it as a JDBC URL, e.g. jdbc:{_SQL_SCHEMES[scheme]}://HOST:PORT/DATABASE "
            "with --table or --query (and -o user=... -o password=...)",
        )
    if scheme in ("http", "https", "mqtt", "redis", "kafka"):
        raise InvalidInputError(
            f"the Spark engine ingests files and JDBC tables, not {scheme}:// sources",
            where={"source": redact(text)},
            hint="Ingest streams and HTTP APIs with --engine local",
        )
    return _remote_file_plan(spark, text, format, options)


def _local_file_plan(
    spark: SparkSession,
    path: str,
    format: str | None,
    validator: Validator,
    options: dict[str, Any],
) -> _Plan:
    """A file the driver can open: its columns, dialect and types as a local ingest reads them."""
    multiline = bool(options.pop("multiline", False))
    src = as_source(path, format, **options)
    if not isinstance(src, CsvSource | ParquetSource | JsonLinesSource):
        src.close()
        raise InvalidInputError(
            f"the Spark engine reads CSV, TSV, Parquet and JSON Lines files, not {src.format} "
            f"({src.describe()})",
            where={"source": src.describe()},
            hint="Ingest this source with --engine local",
        )
    try:
        _prepare(src, validator, None)
        pieces = src.batches()  # the first block only: names, dialect and types
        try:
            first = next(iter(pieces))
        finally:
            pieces.close()  # type: ignore[attr-defined]
        target = normalize(
            pa.Table.from_batches([first]) if isinstance(first, pa.RecordBatch) else first,
            {"source": src.describe()},
        ).schema
        uri = src.uri if "://" in src.uri else Path(src.uri).resolve().as_uri()
        if uri.lower().endswith(".xz"):
            raise InvalidInputError(
                f"Spark cannot read .xz files ({src.describe()})",
                where={"source": src.describe()},
                hint="Recompress it with gzip or bzip2 (bzip2 splits across tasks), or ingest "
                "it with --engine local",
            )
        if isinstance(src, ParquetSource):  # Spark reads the types; tasks cast them back
            return _Plan(_read(spark, "parquet", uri, {}), target, TYPED, ".", src.describe())
        for field in target:
            if not is_flat(field.type):
                raise InvalidInputError(
                    f"column {field.name!r} of {src.describe()} is nested ({field.type}); the "
                    "Spark engine ingests flat columns",
                    where={"source": src.describe(), "column": field.name},
                    hint="Ingest this file with --engine local",
                )
            spark_type(field.type, field.name)  # a type Spark and the lake share
        from pyspark.sql import types as T

        text_schema = T.StructType([T.StructField(f.name, T.StringType()) for f in target])
        if isinstance(src, CsvSource):
            delimiter, decimal = src.dialect()
            reader_options = {
                "header": src.header,
                "enforceSchema": True,
                "sep": delimiter,
                "encoding": codecs.lookup(src.encoding).name,  # a name Java knows too
                "quote": '"',
                "escape": '"',
                "mode": "FAILFAST",
                "multiLine": multiline,
            }
            frame = _read(spark, "csv", uri, reader_options, text_schema)
            return _Plan(frame, target, CSV, decimal, src.describe())
        frame = _read(spark, "json", uri, {"mode": "FAILFAST"}, text_schema)
        return _Plan(frame, target, JSON, ".", src.describe())
    finally:
        src.close()


def _remote_file_plan(
    spark: SparkSession, uri: str, format: str | None, options: dict[str, Any]
) -> _Plan:
    """A URI only the cluster reads (``s3a://``, ``hdfs://``): Spark infers the types."""
    base = uri.lower().split("?", 1)[0]
    for suffix in (".gz", ".bz2"):
        base = base.removesuffix(suffix)
    kind = (format or "").lower() or next(
        (k for ext, k in _EXTENSIONS.items() if base.endswith(ext)), None
    )
    kind = {"tsv": CSV, "jsonl": JSON, "ndjson": JSON}.get(kind or "", kind)
    if kind not in (CSV, JSON, "parquet"):
        raise InvalidInputError(
            f"cannot tell the format of {uri}",
            where={"source": uri},
            hint="Pass --format csv, parquet or jsonl",
        )
    reader: dict[str, Any] = {"mode": "FAILFAST"}
    if kind == CSV:
        delimiter = options.get("delimiter") or ("\t" if base.endswith(".tsv") else ",")
        reader.update(
            header=options.get("header", True),
            inferSchema=True,
            sep=delimiter,
            encoding=options.get("encoding") or "utf-8",
            escape='"',
            multiLine=bool(options.get("multiline", False)),
        )
    return _typed_plan(_read(spark, kind, uri, reader), uri)


def _typed_plan(frame: DataFrame, describe: str) -> _Plan:
    fields = [pa.field(f.name, arrow_type(f.dataType, f.name)) for f in frame.schema.fields]
    return _Plan(frame, pa.schema(fields), TYPED, ".", describe)


def _jdbc_plan(spark: SparkSession, url: str, options: dict[str, Any]) -> _Plan:
    opts = {k: v for k, v in options.items() if v is not None}
    table, query = opts.pop("table", None), opts.pop("query", None)
    shown = redact(url)
    if (table is None) == (query is None):
        raise InvalidInputError(
            f"a JDBC source needs table= or query= (one of them), got "
            f"{'both' if table is not None else 'neither'}",
            where={"source": shown},
            hint="e.g. --table public.events, or --query 'SELECT * FROM events'",
        )
    jar = opts.pop("driver_jar", None)
    if jar is not None:
        if not Path(str(jar)).is_file():
            raise NotFoundError(
                f"JDBC driver jar not found: {jar}",
                where={"option": "driver_jar"},
                hint="Give the path of the driver's .jar file (e.g. postgresql-42.7.4.jar)",
            )
        spark.sql(f"ADD JAR '{Path(str(jar)).resolve()}'")
    kind = url[5:].split(":", 1)[0].lower()
    opts.setdefault("driver", _JDBC_DRIVERS.get(kind))
    opts = {k: str(v) for k, v in opts.items() if v is not None}
    if table is not None:
        opts["dbtable"] = str(table)
        describe = f"{shown}#{table}"
    else:
        opts["query"] = str(query)
        describe = f"{shown}#query"
    reader = spark.read.format("jdbc").option("url", url)
    for key, value in opts.items():
        reader = reader.option(key, value)
    try:
        frame = reader.load()  # connects, to learn the columns
    except Exception as exc:
        raise _spark_error(exc, describe) from exc
    return _typed_plan(frame, describe)


def _read(
    spark: SparkSession,
    kind: str,
    uri: str,
    options: dict[str, Any],
    schema: Any = None,
) -> DataFrame:
    reader = spark.read
    if schema is not None:
        reader = reader.schema(schema)
    for key, value in options.items():
        reader = reader.option(key, value)
    try:
        return reader.format(kind).load(uri)
    except Exception as exc:
        raise _spark_error(exc, uri) from exc


# -- the Spark job: each task converts its rows and writes staged parts -----------------------


def _run(
    ws: Workspace, plan: _Plan, target: pa.Schema, staging: str, columns: list[str]
) -> list[_Staged]:
    write = _part_writer(
        ws.lake_uri,
        ws.settings,
        staging,
        target,
        columns,
        plan.convert,
        plan.decimal,
        plan.describe,
    )
    frame = (
        plan.frame.select(*[f"`{n}`" for n in target.names])
        if plan.convert == TYPED
        else (plan.frame)
    )
    try:
        rows = frame.mapInArrow(write, _RESULT).collect()
    except Exception as exc:
        raise _spark_error(exc, plan.describe) from exc
    staged = [_Staged(r.folder, r.path, r.rows, r.pid, r.seq) for r in rows if r.rows]
    folders = {s.folder for s in staged}
    if len(folders) > MAX_PARTITIONS:
        raise InvalidInputError(
            f"partitioning by {columns} makes more than {MAX_PARTITIONS} folders",
            where={"partition_by": columns},
            hint="Partition by a coarser column (a day rather than a timestamp)",
        )
    # the order readers take the rows in: by folder, then in input order
    return sorted(staged, key=lambda s: (s.folder, s.pid, s.seq))


def _part_writer(
    lake_uri: str,
    settings: Any,
    staging: str,
    target: pa.Schema,
    columns: list[str],
    convert: str,
    decimal: str,
    describe: str,
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The function each task runs (shipped to executors; loopml must be installed there)."""

    def write(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import TaskContext

        from loopml.stores.registry import open_lake

        lake = open_lake(lake_uri, settings)
        context = TaskContext.get()
        pid = context.partitionId() if context is not None else 0
        buffers: dict[str, list[pa.RecordBatch]] = {}
        sizes: dict[str, int] = {}
        done: list[dict[str, Any]] = []

        def flush(folder: str) -> None:
            chunk = buffers.pop(folder, [])
            sizes.pop(folder, None)
            if not chunk:
                return
            table = pa.Table.from_batches(chunk).combine_chunks()
            base = f"{staging}/{folder}" if folder else staging
            path = f"{base}/p{pid:05d}-{len(done):05d}.parquet"
            lake.write_table(path, table)  # atomic: a retried task rewrites the same part
            done.append(
                {
                    "folder": folder,
                    "path": path,
                    "rows": table.num_rows,
                    "pid": pid,
                    "seq": len(done),
                }
            )

        try:
            for batch in batches:
                converted = convert_batch(batch, target, convert, decimal, describe)
                for folder, rows in split(converted, columns):
                    buffers.setdefault(folder, []).append(rows)
                    sizes[folder] = sizes.get(folder, 0) + rows.nbytes
                    if sizes[folder] >= PART_BYTES:
                        flush(folder)
                while sum(sizes.values()) > BUFFER_BYTES:
                    flush(max(sizes, key=lambda f: sizes[f]))
            for folder in list(buffers):
                flush(folder)
        except LoopmlError as exc:  # carried to the driver inside Spark's error text
            raise RuntimeError(f"{_TASK_ERROR} {json.dumps(exc.to_dict(), default=str)}") from exc
        yield pa.RecordBatch.from_pylist(done, schema=_RESULT_ARROW)

    return write


def convert_batch(
    batch: pa.RecordBatch, target: pa.Schema, convert: str, decimal: str, describe: str
) -> pa.RecordBatch:
    """Spark's rows as the local engine stores them: ``target``'s columns and types."""
    arrays = []
    for field in target:
        column = batch.column(field.name)
        if pa.types.is_large_string(column.type):
            column = column.cast(pa.string())
        if convert == CSV:
            nulls = pc.is_in(column, value_set=pa.array(CSV_NULLS, pa.string()))
            if pc.any(nulls).as_py():
                column = pc.if_else(nulls, pa.scalar(None, pa.string()), column)
            if pa.types.is_floating(field.type) and decimal != ".":
                column = pc.replace_substring(column, decimal, ".")
        if column.type != field.type:
            column = _cast(column, field, describe, text=convert != TYPED)
        arrays.append(canonical_nulls(column))
    table = pa.Table.from_arrays(
        arrays, schema=pa.schema([pa.field(f.name, f.type) for f in target])
    )
    table = normalize(table, {"source": describe})
    return (
        table.to_batches()[0]
        if table.num_rows
        else pa.RecordBatch.from_pylist([], schema=table.schema)
    )


def _cast(column: pa.Array, field: pa.Field, describe: str, *, text: bool) -> pa.Array:
    try:
        return column.cast(field.type, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        bad = None
        for value in column:
            if value.is_valid:
                try:
                    pa.array([value.as_py()], column.type).cast(field.type, safe=True)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                    bad = value.as_py()
                    break
        shown = f"holds {bad!r}" if bad is not None else f"does not convert ({exc})"
        how = "read as" if text else "stored as"
        raise InvalidInputError(
            f"{describe}: column {field.name!r} was {how} {field.type} from the first rows, "
            f"but a later row {shown}",
            where={"source": describe, "column": field.name},
            hint=f"Declare its type in loopml.yaml (data.datasets.NAME.schema: "
            f"{{{field.name}: string}}), fix the value, or ingest with --engine local "
            "--allow-schema-change",
        ) from exc


# -- reading back and moving in ----------------------------------------------------------------


def _read_back(
    ws: Workspace, staged: list[_Staged], target: pa.Schema
) -> Generator[pa.RecordBatch, None, None]:
    """The staged parts' rows as the tasks converted them, one part in memory at a time.

    Parquet stores a timestamp[s] column as milliseconds (cast back: no value changes), and
    its reader leaves stray bytes under null slots, which the content hash would see: they are
    zeroed, as the CSV and JSON readers leave them
    (see :func:`loopml.data.engine.canonical_nulls`)."""
    for part in staged:
        table = normalize(ws.lake.read_table(part.path), {"source": part.path})
        if table.schema != target:
            table = table.cast(target)
        columns = [canonical_nulls(c.combine_chunks()) for c in table.columns]
        yield from pa.Table.from_arrays(columns, schema=table.schema).to_batches()


class _StagedWriter(PartWriter):
    """A :class:`PartWriter` whose parts are already written (staged by Spark's tasks): it
    hashes the rows it is given, as PartWriter does, and moves the staged parts into the
    version folder on :meth:`close`, named as PartWriter names them."""

    def __init__(
        self,
        lake: Lake,
        folder: str,
        partition_by: list[str],
        written: list[str],
        staged: list[_Staged],
    ) -> None:
        super().__init__(lake, folder, partition_by, written=written)
        self.staged = staged
        self._moved: list[str] = []

    def add(self, batch: pa.RecordBatch) -> None:
        for folder, rows in split(batch, self.partition_by):
            if folder not in self.hashes:
                self.hashes[folder] = ContentHash(batch.schema)
            self.hashes[folder].update(rows)
            self.bytes += rows.nbytes

    def close(self) -> None:
        for number, part in enumerate(self.staged):
            base = f"{self.folder}/{part.folder}" if part.folder else self.folder
            dest = f"{base}/part-{number:05d}.parquet"
            self.written.append(dest)  # before the move: a failed move is cleaned up too
            move(self.lake, part.path, dest)
            self._moved.append(dest)

    def abort(self) -> None:
        pass  # nothing buffered; the staging folder is removed by ingest()

    def parts(self) -> list[str]:
        return list(self._moved)


def move(lake: Lake, source: str, dest: str) -> None:
    """Move one file within the lake (a rename on a local disk, a copy on object stores)."""
    location = getattr(lake, "location", None)
    fs = getattr(lake, "fs", None)
    if location is None or fs is None:
        lake.write_bytes(dest, lake.read_bytes(source))
        lake.delete(source)
        return
    full_source = location.full(check_path(source))
    full_dest = location.full(check_path(dest))
    with location.guard("move", full_source):
        fs.makedirs(full_dest.rsplit("/", 1)[0], exist_ok=True)
        fs.mv(full_source, full_dest)


# -- Spark's errors, in one line ---------------------------------------------------------------

_TASK = re.compile(re.escape(_TASK_ERROR) + r" (\{.*\})")
_SCHEME = re.compile(r'No FileSystem for scheme "?([A-Za-z0-9+.-]+)"?')
_FS_CLASS = re.compile(
    r"ClassNotFoundException: Class org\.apache\.hadoop\.\S+FileSystem not found"
)
_RAISED = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception): ")


def _spark_error(exc: BaseException, describe: str) -> LoopmlError:
    """What a failed Spark read or job tells the user: one line naming the thing and the fix."""
    text = str(exc)
    found = _TASK.search(text)
    if found:
        try:
            data = json.loads(found.group(1))
        except ValueError:
            data = {}
        if data.get("message"):
            return InvalidInputError(
                str(data["message"]), where=data.get("where") or {}, hint=data.get("hint")
            )
    first = _reason(text) or type(exc).__name__
    where = {"source": describe}
    if "PATH_NOT_FOUND" in text or "Path does not exist" in text:
        return NotFoundError(
            f"Spark cannot read {describe}: the path does not exist",
            where=where,
            hint="Check the path; executors must see it too (a shared disk, HDFS or S3)",
        )
    scheme = _SCHEME.search(text)
    missing_class = _FS_CLASS.search(text)
    if scheme or missing_class:
        name = scheme.group(1) if scheme else urlsplit(describe).scheme or "this scheme"
        return ConfigError(
            f"Spark cannot read {describe}: it has no filesystem for {name}://",
            where=where,
            hint="Add the Hadoop connector to spark_conf, e.g. spark.jars.packages="
            "org.apache.hadoop:hadoop-aws:3.4.1 for s3a://, or copy the file to a local path",
        )
    if "No suitable driver" in text or ("ClassNotFoundException" in text and "Driver" in text):
        return ConfigError(
            f"Spark has no JDBC driver for {describe}",
            where=where,
            hint="Give the driver's jar: --option driver_jar=/path/postgresql-42.7.4.jar, or "
            "spark_conf spark.jars=/path/driver.jar (spark.jars.packages=org.postgresql:"
            "postgresql:42.7.4 where Maven Central can be reached)",
        )
    if "Connection refused" in text or "UnknownHost" in text or "PSQLException" in text:
        return StoreError(
            f"Spark cannot read {describe}: {_jdbc_reason(text) or first[:300]}",
            where=where,
            hint="Check the JDBC URL, the server, the user and the password",
        )
    if "MALFORMED_RECORD" in text or "Malformed" in text:
        return InvalidInputError(
            f"Spark cannot parse {describe}: {first[:300]}",
            where=where,
            hint="Every CSV row needs the header's number of fields (values spanning lines "
            "need --option multiline=true); every JSON line must be one object",
        )
    return StoreError(
        f"the Spark job reading {describe} failed: {first[:300]}",
        where=where,
        hint="Check the source and the cluster (the executors' logs say more); or run with "
        "--engine local",
    )


def _reason(text: str) -> str | None:
    """The line of a Spark or py4j error that says what went wrong (a Python task's error:
    the last line of its traceback)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if "Traceback (most recent call last)" in text:
        raised = [line for line in lines if _RAISED.match(line)]
        if raised:
            return raised[-1]
    for line in lines:
        if line.startswith("An error occurred while calling") or line.startswith("at "):
            continue
        return line.removeprefix(": ")
    return None


def _jdbc_reason(text: str) -> str | None:
    for line in text.splitlines():
        if "PSQLException" in line or "SQLException" in line or "Connection refused" in line:
            return line.strip()[:300]
    return None


__all__ = ["convert_batch", "ingest", "move"]
