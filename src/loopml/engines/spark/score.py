"""Batch scoring on Spark: a registered version applied to a dataset with ``mapInArrow``.

What runs where:

- The driver resolves the version and works out its predictor exactly as the server does
  (:func:`loopml.registry.load_model`, then ``.predictor``: the compiled ONNX graph where the
  version compiles and matches its native model, else the native bundle). It sends the
  executors a :class:`ModelTicket`: the artifact store's URI and the sha256 of the bundle
  (and of the compiled graph), never the model itself.
- Each Spark task opens the artifact store, fetches the bundle (checked against its sha256
  by the store), loads it with the version's recorded opt-ins only, and builds the same
  predictor (a cached ONNX graph is checked with :func:`~loopml.registry.compiled.check_onnx`
  and against the native model again, as a server does) — once per task, not per batch.
  Every Arrow batch is then validated against the signature and predicted as ``loopml
  predict`` does (:mod:`loopml.serve.scoring`: the same checks, the same output columns).
- Each task writes its own Parquet parts (through loopml's lake: atomic files) into a
  staging folder next to the output and reports one summary row per part (rows, bytes,
  sha256). The driver checks the summaries, writes loopml's commit marker
  (:data:`MARKER`: the counts and a hash of the parts) into the staging folder last, and
  swaps the staging folder in for the output. A failed job leaves the output as it was.

Prediction ids are derived from the input row's position, not drawn at random: a Parquet
row is ``(file, row index in the file)`` (Spark's ``_metadata.row_index``), so ids and part
files do not depend on how Spark splits the input; the job's key (model version, bundle,
input) seeds them, so another model or input gives other ids. A re-run of a failed job
therefore writes the same parts, byte for byte, with the same ids and the same marker hash.
Part ``part-FFFFF-RRRRRRRRRRRR.parquet`` holds rows of input file ``FFFFF`` (in the sorted
file order) from row ``RRRRRRRRRRRR`` on: the output read in name order is the input order.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import numpy as np
import orjson
import pyarrow as pa

from loopml import errors as loopml_errors
from loopml.errors import ConfigError, InvalidInputError, LoopmlError, StoreError
from loopml.settings import Settings
from loopml.workspace import Workspace

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from loopml.stores.base import Lake

#: flavors whose bundles executors load (their libraries are plain pip packages, their
#: predictions single-threaded per task); others are scored with ``loopml predict``
SHIPPABLE_FLAVORS = ("sklearn", "lightgbm", "xgboost")
MARKER = "_loopml_commit.json"
MARKER_FORMAT = 1
DEFAULT_BATCH_ROWS = 65_536
DEFAULT_ROWS_PER_FILE = 1_000_000
_FILE = "__loopml_file"
_ROW = "__loopml_row"
_FILE_STRIDE = 1 << 40  # positions: file index * stride + row (a file holds fewer rows)
_SUMMARY = (
    "kind string, task long, part string, rows long, bytes long, sha256 string, "
    "flagged long, loads long, batches long, predictor string, error string"
)

_SUMMARY_SCHEMA = pa.schema(
    [
        pa.field(name, pa.string() if kind == "string" else pa.int64())
        for name, kind in (piece.split() for piece in _SUMMARY.split(", "))
    ]
)


@dataclass(frozen=True)
class ScoreResult:
    """What a Spark scoring job wrote: the output folder, its parts and its marker."""

    model: str
    version: int
    rows: int
    output: str  # URL of the output folder
    parts: int
    sha256: str  # of the parts (names and contents), as the marker records it
    flagged: int = 0  # rows with a value training never had (see unknown_fields)
    seconds: float = 0.0
    predictor: str = "native"  # "onnx" or "native", as on the server
    tasks: int = 0
    loads: int = 0  # bundle loads on the executors: one per task
    marker: str = ""  # URL of the commit marker

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "rows": self.rows,
            "output": self.output,
            "parts": self.parts,
            "sha256": self.sha256,
            "flagged": self.flagged,
            "seconds": self.seconds,
            "predictor": self.predictor,
            "tasks": self.tasks,
            "loads": self.loads,
            "marker": self.marker,
            "engine": "spark",
        }


@dataclass(frozen=True)
class ModelTicket:
    """What an executor needs to load a version by itself: where and which bytes, no model."""

    name: str
    version: int
    bundle_sha256: str
    trusted: tuple[str, ...]
    artifacts_uri: str
    onnx_sha256: str | None  # the compiled graph the driver checked (None: native)
    s3_endpoint_url: str = ""

    def settings(self) -> Settings:
        return Settings.model_construct(s3_endpoint_url=self.s3_endpoint_url)


@dataclass(frozen=True)
class _Job:
    """What every task of one job shares (shipped to executors with the task)."""

    ticket: ModelTicket
    lake_uri: str
    staging: str  # lake-relative folder the parts go to
    files: dict[tuple[str, str], int]  # input file (host, path) -> index in sorted order
    seed: bytes  # 16 bytes: the job's id seed
    where: str  # the input, as messages name it
    unknown: str | None
    rows_per_file: int
    columns: tuple[str, ...]  # the input's own columns, in order
    s3_endpoint_url: str = ""


# -- the entry point --------------------------------------------------------------------------


def score_version(
    ws: Workspace,
    model_ref: str,
    dataset_ref: str,
    *,
    output: str | Path | None = None,
    settings: Settings | None = None,
    master: str | None = None,
    unknown: str | None = None,
    batch_size: int = DEFAULT_BATCH_ROWS,
    rows_per_file: int = DEFAULT_ROWS_PER_FILE,
    spark: SparkSession | None = None,
) -> ScoreResult:
    """Score ``dataset_ref`` with ``model_ref`` (bare name: its champion) on Spark.

    ``dataset_ref`` is a dataset version of the workspace (``NAME`` for its newest version,
    ``NAME@VERSION``) or a Parquet file or folder (a path or a URL Spark reads). ``output``:
    a folder (path or URL; default ``scores/<model>/v=<version>/input=<dataset>@<n>`` in
    the lake), replaced as a whole when the job commits. ``unknown``: ``flag`` or ``error`` for
    values training never had, as ``loopml predict --unknown``. ``batch_size``: rows per
    Arrow batch on the executors; ``rows_per_file``: most rows in one output part.
    """
    from loopml.engines.spark.session import spark_session
    from loopml.project.features import UNKNOWN_POLICIES
    from loopml.registry.models import FORMAT_OPT_INS, load_model

    settings = settings or ws.settings
    if batch_size < 1 or rows_per_file < 1:
        raise InvalidInputError(
            f"batch_size {batch_size} and rows_per_file {rows_per_file} must be at least 1",
            where={"field": "batch_size" if batch_size < 1 else "rows_per_file"},
            hint="Give a batch size and a part size of at least 1 row",
        )
    if unknown is not None and unknown not in UNKNOWN_POLICIES:
        raise InvalidInputError(
            f"unknown must be one of {', '.join(UNKNOWN_POLICIES)}, got {unknown!r}",
            where={"option": "--unknown"},
            hint="flag: score such rows and name their fields; error: refuse the input",
        )
    started = time.perf_counter()
    model = load_model(ws, model_ref)
    record = model.record
    if record.flavor not in SHIPPABLE_FLAVORS:
        raise ConfigError(
            f"model {record.name}@{record.version} is a {record.flavor} model, which loopml "
            "does not ship to Spark executors",
            where={"model": f"{record.name}@{record.version}", "setting": "engine"},
            hint=f"Spark scores {', '.join(SHIPPABLE_FLAVORS)} models; score this one with "
            "'loopml predict --engine local' or serve it",
        )
    predictor = model.predictor  # the server's choice, worked out (and cached) here
    onnx_sha = None
    if predictor.kind == "onnx":
        onnx_sha = ws.artifacts.put(predictor.onnx_bytes)  # type: ignore[union-attr]
    ticket = ModelTicket(
        name=record.name,
        version=record.version,
        bundle_sha256=record.artifact_sha256,
        trusted=tuple(t for t in record.trusted if t not in FORMAT_OPT_INS),
        artifacts_uri=ws.artifacts_uri,
        onnx_sha256=onnx_sha,
        s3_endpoint_url=settings.s3_endpoint_url,
    )
    session = spark or spark_session(settings, master=master)
    source = _resolve_input(ws, dataset_ref)
    lake, final = _output_location(ws, settings, output, record.name, record.version, source)
    frame = _read(session, source)
    files = _file_index(frame, source)
    staging = _sibling(final, f".{_basename(final)}.staging")
    job = _Job(
        ticket=ticket,
        lake_uri=lake.uri,
        staging=staging,
        files=files,
        seed=_seed(record.name, record.version, record.artifact_sha256, source, files),
        where=source.where,
        unknown=unknown,
        rows_per_file=rows_per_file,
        columns=tuple(c for c in frame.columns if c not in (_FILE, _ROW)),
        s3_endpoint_url=settings.s3_endpoint_url,
    )
    lake.delete(staging)  # what a failed earlier job left
    try:
        summaries = _run(session, frame, job, batch_size)
        result = _commit(lake, final, staging, job, summaries, predictor.kind, started)
    except BaseException:
        _quietly(lambda: lake.delete(staging))
        raise
    return result


# -- input ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Input:
    urls: tuple[str, ...]  # what Spark reads
    format: str  # parquet
    where: str  # how messages name it
    identity: str  # what the job's ids are keyed on
    base_path: str | None = None  # hive partition folders of a dataset version
    default_output: str = ""  # lake-relative folder when no output is given


def _is_path(ref: str) -> bool:
    return "://" in ref or "/" in ref or ref.endswith((".parquet", ".pq", ".csv"))


def _spark_url(url: str) -> str:
    """A URL as Spark's Hadoop file systems name it (``s3://`` is ``s3a://`` there)."""
    return "s3a://" + url.removeprefix("s3://") if url.startswith("s3://") else url


def _resolve_input(ws: Workspace, ref: str) -> _Input:
    from loopml.data.ingest import get_dataset, version_urls

    if not isinstance(ref, str) or not ref.strip():
        raise InvalidInputError(
            f"no input to score: {ref!r}",
            where={"field": "input"},
            hint="Name a dataset (NAME or NAME@VERSION) or a Parquet file or folder",
        )
    if _is_path(ref):
        url = ref if "://" in ref else Path(ref).expanduser().resolve().as_uri()
        if url.lower().endswith((".csv", ".tsv", ".json", ".jsonl")):
            raise InvalidInputError(
                f"Spark scoring reads Parquet, and {ref} is not",
                where={"input": ref},
                hint="Ingest the file first (loopml data ingest) and score the dataset, or "
                "convert it to Parquet",
            )
        fmt = "parquet"
        digest = hashlib.sha256(url.encode()).hexdigest()[:12]
        return _Input((_spark_url(url),), fmt, url, f"path {url}", None, f"input=path-{digest}")
    dv = get_dataset(ws, ref)
    urls = tuple(_spark_url(u) for u in version_urls(ws, dv))
    base = _spark_url(ws.lake.url(dv.path)) if dv.partition_by else None
    return _Input(
        urls,
        "parquet",
        f"dataset {dv.name}@{dv.version}",
        f"dataset {dv.name}@{dv.version} {dv.sha256}",
        base,
        f"input={dv.name}@{dv.version}",
    )


def _read(spark: SparkSession, source: _Input) -> DataFrame:
    """The input with each row's file and position as extra columns."""
    from pyspark.sql import functions as F

    try:
        reader = spark.read
        if source.base_path is not None:
            reader = reader.option("basePath", source.base_path)
        frame = reader.parquet(*source.urls)
        return frame.select(
            "*",
            F.col("_metadata.file_path").alias(_FILE),
            F.col("_metadata.row_index").alias(_ROW),
        )
    except Exception as exc:  # AnalysisException: a path Spark cannot read
        raise InvalidInputError(
            f"Spark cannot read {source.where}: {_first_line(exc)}",
            where={"input": source.where},
            hint="Check that the path exists and is readable from the driver and the "
            "executors (s3a:// needs the hadoop-aws package, see docs/spark.md)",
        ) from exc


def _file_key(url: str) -> tuple[str, str]:
    """A file as Spark names it in two ways (``file:/x`` and ``file:///x``; s3a and s3)."""
    parts = urlsplit(url)
    return parts.netloc, unquote(parts.path)


def _file_index(frame: DataFrame, source: _Input) -> dict[tuple[str, str], int]:
    files = sorted({_file_key(u) for u in frame.inputFiles()}, key=lambda k: (k[0], k[1]))
    if not files:
        raise InvalidInputError(
            f"{source.where} holds no file to score",
            where={"input": source.where},
            hint="Give a Parquet file or a folder of Parquet files",
        )
    return {key: i for i, key in enumerate(files)}


def _seed(
    name: str, version: int, bundle: str, source: _Input, files: dict[tuple[str, str], int]
) -> bytes:
    """The job's id seed: the same model version, bundle and input give the same ids."""
    text = "\n".join(
        [f"{name}@{version}", bundle, source.identity, *("\t".join(k) for k in sorted(files))]
    )
    return hashlib.sha256(text.encode()).digest()[:16]


def prediction_ids(seed: bytes, positions: np.ndarray) -> np.ndarray:
    """The ids of rows at ``positions`` (uint64) for a job seeded with ``seed`` (16 bytes):
    32 hex digits as the server's, unique per position (a bijective mix of the position,
    then the job's tag), the same for the same job and position."""
    from loopml.serve.scoring import _HEX, _mix64

    offset = np.uint64(int.from_bytes(seed[:8], "big"))
    tag = np.frombuffer(seed[8:16], dtype=np.uint8)
    n = len(positions)
    with np.errstate(over="ignore"):
        head = _mix64(positions.astype(np.uint64) + offset).astype(">u8").view(np.uint8)
    raw = np.empty((n, 16), dtype=np.uint8)
    raw[:, :8] = head.reshape(n, 8)
    raw[:, 8:] = tag
    chars = np.empty((n, 32), dtype=np.uint8)
    chars[:, 0::2] = _HEX[raw >> 4]
    chars[:, 1::2] = _HEX[raw & 15]
    return chars.view("S32").ravel().astype("U32")


# -- output -----------------------------------------------------------------------------------


def _basename(rel: str) -> str:
    return rel.rsplit("/", 1)[-1]


def _sibling(rel: str, name: str) -> str:
    parent = rel.rsplit("/", 1)[0] if "/" in rel else ""
    return f"{parent}/{name}" if parent else name


def _output_location(
    ws: Workspace,
    settings: Settings,
    output: str | Path | None,
    model: str,
    version: int,
    source: _Input,
) -> tuple[Lake, str]:
    """The lake the output lies in and its folder there."""
    from loopml.stores.fs import check_path
    from loopml.stores.registry import open_lake

    if output is None:
        return ws.lake, f"scores/{model}/v={version}/{source.default_output}"
    text = str(output)
    if "://" not in text:
        text = Path(text).expanduser().resolve().as_uri()
    text = text.rstrip("/")
    parent, _, name = text.rpartition("/")
    if not name or name in (".", "..") or parent.endswith(":/"):
        raise InvalidInputError(
            f"cannot write scores to {str(output)!r}",
            where={"file": str(output)},
            hint="Name an output folder, e.g. /data/scores or s3://bucket/scores",
        )
    check_path(name, what="output")
    return open_lake(parent, settings), name


def _commit(
    lake: Lake,
    final: str,
    staging: str,
    job: _Job,
    summaries: list[dict[str, Any]],
    driver_kind: str,
    started: float,
) -> ScoreResult:
    """Check what the tasks wrote, write the marker last, swap the staging folder in."""
    parts = sorted((s for s in summaries if s["kind"] == "part"), key=lambda s: s["part"])
    tasks = [s for s in summaries if s["kind"] == "task"]
    names = [p["part"] for p in parts]
    if len(set(names)) != len(names):
        raise StoreError(
            f"two Spark tasks wrote the same part of {job.where}",
            where={"input": job.where},
            hint="The input files changed while the job ran; run it again",
        )
    written = {_basename(p) for p in lake.list(staging)} if parts else set()
    missing = sorted(set(names) - written)
    if missing:
        raise StoreError(
            f"part {missing[0]} reported by a Spark task is not in {lake.url(staging)}",
            where={"url": lake.url(staging)},
            hint="The executors write to a different place than the driver reads: give an "
            "output every machine reaches (s3a://, a shared file system)",
        )
    for stray in sorted(written - set(names)):  # a retried task's or another attempt's
        lake.delete(f"{staging}/{stray}")
    rows = sum(int(p["rows"]) for p in parts)
    if rows == 0:
        raise InvalidInputError(
            f"{job.where} has no rows",
            where={"input": job.where},
            hint="Give an input with at least one row",
        )
    digest = hashlib.sha256(
        "".join(f"{p['part']}\t{p['rows']}\t{p['sha256']}\n" for p in parts).encode()
    ).hexdigest()
    kinds = {str(t["predictor"]) for t in tasks} or {driver_kind}
    predictor = kinds.pop() if len(kinds) == 1 else "mixed"
    doc = {
        "format": MARKER_FORMAT,
        "kind": "loopml.batch_scores",
        "engine": "spark",
        "model": job.ticket.name,
        "version": job.ticket.version,
        "bundle_sha256": job.ticket.bundle_sha256,
        "predictor": predictor,
        "input": job.where,
        "rows": rows,
        "flagged": sum(int(p["flagged"]) for p in parts),
        "parts": [
            {"name": p["part"], "rows": p["rows"], "bytes": p["bytes"], "sha256": p["sha256"]}
            for p in parts
        ],
        "sha256": digest,
        "committed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    lake.write_bytes(f"{staging}/{MARKER}", orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    _swap(lake, staging, final)
    return ScoreResult(
        model=job.ticket.name,
        version=job.ticket.version,
        rows=rows,
        output=lake.url(final),
        parts=len(parts),
        sha256=digest,
        flagged=int(doc["flagged"]),  # type: ignore[call-overload]
        seconds=time.perf_counter() - started,
        predictor=predictor,
        tasks=len(tasks),
        loads=sum(int(t["loads"]) for t in tasks),
        marker=lake.url(f"{final}/{MARKER}"),
    )


def _swap(lake: Lake, staging: str, final: str) -> None:
    """Put the staging folder in place of ``final``. On a local disk by two renames (the old
    output moves aside whole, then the new one takes its name); elsewhere (S3: no renames)
    the old marker goes first, the parts are copied, the new marker last."""
    from loopml.stores.fs import FsspecLake, LocalLocation

    if isinstance(lake, FsspecLake) and isinstance(lake.location, LocalLocation):
        src, dst = lake.location.full(staging), lake.location.full(final)
        old = f"{dst}.old-{os.getpid()}-{time.monotonic_ns()}"
        try:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            if os.path.lexists(dst):
                os.rename(dst, old)
            os.rename(src, dst)
        except OSError as exc:
            raise StoreError(
                f"cannot move the scores into {lake.url(final)}: {exc}",
                where={"url": lake.url(final)},
                hint="Check that the folder is writable and on one file system",
            ) from exc
        shutil.rmtree(old, ignore_errors=True)
        return
    lake.delete(f"{final}/{MARKER}")
    new = [p for p in lake.list(staging) if _basename(p) != MARKER]
    keep = {_basename(p) for p in new}
    for rel in new:
        lake.write_bytes(f"{final}/{_basename(rel)}", lake.read_bytes(rel))
    for rel in lake.list(final):
        if _basename(rel) not in keep:
            lake.delete(rel)
    lake.write_bytes(f"{final}/{MARKER}", lake.read_bytes(f"{staging}/{MARKER}"))
    lake.delete(staging)


def read_marker(lake: Lake, folder: str) -> dict[str, Any] | None:
    """The commit marker of an output folder (lake-relative), None when it has none."""
    if not lake.exists(f"{folder}/{MARKER}"):
        return None
    return orjson.loads(lake.read_bytes(f"{folder}/{MARKER}"))  # type: ignore[no-any-return]


# -- the job ----------------------------------------------------------------------------------


def _run(spark: SparkSession, frame: DataFrame, job: _Job, batch_size: int) -> list[dict[str, Any]]:
    key = "spark.sql.execution.arrow.maxRecordsPerBatch"
    before = spark.conf.get(key, None)
    spark.conf.set(key, str(batch_size))
    try:
        rows = frame.mapInArrow(_task_function(job), _SUMMARY).collect()
    except Exception as exc:  # a task that failed outside loopml's checks (Py4J, OOM, ...)
        raise StoreError(
            f"the Spark job scoring {job.where} failed: {_first_line(exc)}",
            where={"input": job.where, "model": f"{job.ticket.name}@{job.ticket.version}"},
            hint="Nothing was committed; see the executor logs, fix the cause and run the "
            "job again (it writes the same parts)",
        ) from exc
    finally:
        if before is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, before)
    summaries = [r.asDict() for r in rows]
    errors = [s for s in summaries if s["kind"] == "error"]
    if errors:
        raise _error_from(errors[0]["error"])
    return summaries


def _task_function(job: _Job) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    def score_task(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import TaskContext

        context = TaskContext.get()
        task = context.partitionId() if context is not None else 0
        try:
            scorer = _TaskScorer(job, task)  # the bundle: fetched, checked, loaded once here
        except LoopmlError as exc:
            yield _error_batch(task, exc)
            return
        try:
            for batch in batches:
                if batch.num_rows:
                    scorer.add(batch)
                    yield from scorer.flushed()
            scorer.finish()
            yield from scorer.flushed()
        except LoopmlError as exc:
            yield _error_batch(task, exc)
            return
        yield _summary_batch(
            [
                {
                    "kind": "task",
                    "task": task,
                    "loads": scorer.loads,
                    "batches": scorer.batches,
                    "predictor": scorer.kind,
                }
            ]
        )

    return score_task


def _summary_batch(rows: list[dict[str, Any]]) -> pa.RecordBatch:
    columns = {f.name: [r.get(f.name) for r in rows] for f in _SUMMARY_SCHEMA}
    return pa.RecordBatch.from_pydict(columns, schema=_SUMMARY_SCHEMA)


def _error_batch(task: int, exc: LoopmlError) -> pa.RecordBatch:
    doc = {**exc.to_dict(), "type": type(exc).__name__}
    return _summary_batch([{"kind": "error", "task": task, "error": orjson.dumps(doc).decode()}])


def _error_from(text: str) -> LoopmlError:
    """The executor's LoopmlError, raised again on the driver (same class, code, where)."""
    doc = orjson.loads(text)
    cls = getattr(loopml_errors, str(doc.get("type")), None)
    if not (isinstance(cls, type) and issubclass(cls, LoopmlError)):
        cls = LoopmlError
    try:
        err = cls(str(doc["message"]), where=doc.get("where"), hint=doc.get("hint"))
    except TypeError:  # a subclass with its own constructor (UnsafeFormatError's types)
        err = LoopmlError(str(doc["message"]), where=doc.get("where"), hint=doc.get("hint"))
    err.code = str(doc.get("code") or err.code)
    return err


class _Version:
    """What :func:`loopml.serve.scoring._output_columns` reads of a model: its version."""

    def __init__(self, version: int) -> None:
        self.version = version


class _TaskScorer:
    """One task's scoring: the loaded predictor, the rows of the part being filled."""

    def __init__(self, job: _Job, task: int) -> None:
        from loopml.stores.registry import open_lake

        self.job = job
        self.task = task
        self.bundle, self.predictor = load_ticket(job.ticket)
        self.kind = str(self.predictor.kind)
        self.loads = 1
        self.batches = 0
        self.lake = open_lake(
            job.lake_uri, Settings.model_construct(s3_endpoint_url=job.s3_endpoint_url)
        )
        self.model = _Version(job.ticket.version)
        self._tables: list[pa.Table] = []
        self._rows = 0
        self._flagged = 0
        self._part: tuple[int, int] | None = None  # (file index, first position) being filled
        self._next: int | None = None  # the position the part's next row must have
        self._done: list[dict[str, Any]] = []

    def add(self, batch: pa.RecordBatch) -> None:
        from loopml.registry.limits import check_float32
        from loopml.serve.scoring import _output_columns

        self.batches += 1
        files, positions = self._positions(batch)
        data = batch.select(list(self.job.columns))
        signature = self.bundle.signature
        # runs of rows from one file, in order: each goes to the part of that file
        cuts = np.flatnonzero((np.diff(files) != 0) | (np.diff(positions.astype(np.int64)) != 1))
        bounds = [0, *(cuts + 1).tolist(), batch.num_rows]
        for a, b in itertools.pairwise(bounds):
            piece = data.slice(a, b - a)
            frame = piece.to_pandas(split_blocks=True, self_destruct=False)
            try:
                checked = signature.check_frame(
                    frame, source=self.job.where, unknown=self.job.unknown
                )
                check_float32(checked.frame, source=self.job.where)
            except InvalidInputError as exc:
                row = exc.where.get("row")
                if isinstance(row, int):  # the row in its input file
                    exc.where["row"] = int(positions[a + row] % _FILE_STRIDE)
                    exc.where["file"] = self._file_name(int(files[a]))
                raise
            columns = {name: checked.frame[name].to_numpy() for name in signature.names}
            p = self.predictor.predict_columns(columns)
            flags = checked.unknown_fields() if checked.any_flagged else None
            ids = prediction_ids(self.job.seed, positions[a:b])
            table = _output_columns(self.model, piece, p, ids, flags)  # type: ignore[arg-type]
            mask = checked.flagged if checked.any_flagged else np.zeros(b - a, dtype=bool)
            self._append(int(files[a]), int(positions[a]), table, np.asarray(mask, dtype=bool))

    def _positions(self, batch: pa.RecordBatch) -> tuple[np.ndarray, np.ndarray]:
        """Each row's input file (its index) and position (file index * stride + row)."""
        names = batch.column(_FILE)
        encoded = names.dictionary_encode()
        lookup = []
        for url in encoded.dictionary.to_pylist():
            index = self.job.files.get(_file_key(url))
            if index is None:
                raise StoreError(
                    f"Spark read {url}, which was not among the input's files when the job started",
                    where={"input": self.job.where, "url": url},
                    hint="The input changed while the job ran; run it again",
                )
            lookup.append(index)
        files = np.asarray(lookup, dtype=np.int64)[encoded.indices.to_numpy(zero_copy_only=False)]
        rows = batch.column(_ROW).to_numpy(zero_copy_only=False).astype(np.int64)
        return files, (files * _FILE_STRIDE + rows).astype(np.uint64)

    def _file_name(self, index: int) -> str:
        for (host, path), i in self.job.files.items():
            if i == index:
                return f"{host}{path}" if host else path
        return str(index)

    def _append(self, file: int, position: int, table: pa.Table, flagged: np.ndarray) -> None:
        """Add rows (consecutive in one file) to the part being filled; a part ends at
        ``rows_per_file`` rows or where the rows stop following on, whatever the batches."""
        if self._part is None or self._part[0] != file or self._next != position:
            self._flush()
            self._part = (file, position % _FILE_STRIDE)
        start = 0
        while start < table.num_rows:
            take = min(table.num_rows - start, self.job.rows_per_file - self._rows)
            self._tables.append(table.slice(start, take))
            self._rows += take
            self._flagged += int(flagged[start : start + take].sum())
            start += take
            if self._rows >= self.job.rows_per_file:
                self._flush()
        self._next = position + table.num_rows

    def _flush(self) -> None:
        if not self._tables or self._part is None:
            self._tables, self._part = [], None
            return
        file, first = self._part
        table = pa.concat_tables(self._tables, promote_options="permissive").combine_chunks()
        name = f"part-{file:05d}-{first:012d}.parquet"
        sink = pa.BufferOutputStream()
        _write_parquet(table, sink)
        data = sink.getvalue().to_pybytes()
        self.lake.write_bytes(f"{self.job.staging}/{name}", data)
        self._done.append(
            {
                "kind": "part",
                "task": self.task,
                "part": name,
                "rows": table.num_rows,
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "flagged": self._flagged,
            }
        )
        next_first = first + table.num_rows
        self._tables, self._rows, self._flagged = [], 0, 0
        self._part = (file, next_first)

    def finish(self) -> None:
        self._flush()

    def flushed(self) -> Iterator[pa.RecordBatch]:
        if self._done:
            rows, self._done = self._done, []
            yield _summary_batch(rows)


def _write_parquet(table: pa.Table, sink: Any) -> None:
    """As ``loopml predict`` writes Parquet: dictionary pages for text columns only."""
    import pyarrow.parquet as pq

    repeats = [
        f.name
        for f in table.schema
        if f.name != "prediction_id"
        and (pa.types.is_string(f.type) or pa.types.is_large_string(f.type))
    ]
    pq.write_table(table, sink, use_dictionary=repeats or False)


def load_ticket(ticket: ModelTicket) -> tuple[Any, Any]:
    """The bundle and predictor a ticket names, loaded as a server loads them: the bytes
    fetched from the artifact store and checked against their sha256, only the version's
    recorded opt-ins trusted, the compiled graph checked and compared with the native
    model again (native when it no longer matches, as a server would serve it)."""
    from loopml.registry.bundle import ModelBundle
    from loopml.registry.compiled import CompiledModel, NativeFallback, _Fallback, verify
    from loopml.stores.registry import open_artifacts

    what = f"{ticket.name}@{ticket.version}"
    try:
        store = open_artifacts(ticket.artifacts_uri, ticket.settings())
        data = store.get(ticket.bundle_sha256)
    except LoopmlError as exc:
        raise StoreError(
            f"a Spark executor cannot read {what} from the artifact store "
            f"{ticket.artifacts_uri}: {exc.message}",
            where={"model": what, "artifact": ticket.bundle_sha256},
            hint="Executors load the model from the artifact store themselves: give the "
            "workspace an artifacts URI every machine reaches (s3://..., or a shared file "
            "system mounted at the same path)",
        ) from exc
    bundle = ModelBundle.from_bytes(data, what=what, trusted=list(ticket.trusted))
    if ticket.onnx_sha256 is None:
        return bundle, NativeFallback(bundle, None)
    try:
        compiled = CompiledModel(store.get(ticket.onnx_sha256), bundle.signature, what=what)
        verify(compiled, bundle)
    except (LoopmlError, _Fallback) as exc:
        return bundle, NativeFallback(bundle, f"the compiled graph is refused here: {exc}")
    return bundle, compiled


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("Traceback", "File ", "JVM stacktrace")):
            return line[:300]
    return type(exc).__name__


def _quietly(fn: Callable[[], object]) -> None:
    try:
        fn()
    except Exception:  # cleaning up after an error: the first error is the one to report
        pass


__all__ = [
    "MARKER",
    "SHIPPABLE_FLAVORS",
    "ModelTicket",
    "ScoreResult",
    "load_ticket",
    "prediction_ids",
    "read_marker",
    "score_version",
]
