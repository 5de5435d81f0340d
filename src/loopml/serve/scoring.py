"""Batch scoring: a CSV or Parquet file in, the same rows with predictions out, streamed.

The input is read in record batches (``batch_size`` rows; Parquet by row group, CSV by
blocks), so memory is bounded by the batch, not the file. Each batch is validated against
the signature as a table (the errors name the file, the column and the row, counted from
the file's first data row), predicted through the version's predictor (the compiled ONNX
path where the version has one, the same one the server uses, else the native bundle), logged,
then appended to the output. Every scored batch is written to the prediction log (``source``
``batch``, with the input file) before it is appended to the output, and the output appears
(atomically, by rename) only once every batch is in, so each id in it can be traced with
``loopml trace``.

Prediction ids: 32 hex digits, as the server's, but not one ``uuid4`` per row (that cost a
third of a job). A job draws 8 random bytes once; row ``i`` of the job gets
``mix(i + offset)`` (16 hex digits, a bijective 64-bit mixer, so unique within the job and
with random-looking leading digits: a 12-digit prefix still finds one id) followed by the
job's 16 random hex digits (so two jobs' ids differ).
"""

from __future__ import annotations

import itertools
import os
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from loopml.errors import InvalidInputError, LoopmlError
from loopml.kinds import CATEGORICAL, DATETIME, NUMERIC, TEXT
from loopml.predictions import write_predictions
from loopml.registry.bundle import Prediction
from loopml.registry.limits import check_float32
from loopml.registry.models import LoadedModel, load_model
from loopml.registry.signature import Signature
from loopml.workspace import Workspace

OUTPUT_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
DEFAULT_BATCH_ROWS = 65_536
CSV_BLOCK_BYTES = 4 << 20  # pyarrow reads CSV in blocks of about this size
IN_FLIGHT = 2  # batches being logged and written while the next one is predicted
LOG_THREADS = 2  # log parts written at once (each is its own file, fsynced)

#: ``progress(rows_done, rows_total)``; the total is None where the input does not say (CSV)
Progress = Callable[[int, int | None], None]


@dataclass(frozen=True)
class ScoringResult:
    model: str
    version: int
    rows: int
    output: str
    log_files: tuple[str, ...] = ()  # lake paths of the prediction log parts written
    flagged: int = 0  # rows scored with a value training never had (see unknown_fields)
    batches: int = 0
    seconds: float = 0.0
    predictor: str = "native"  # "onnx" or "native": the path the rows were predicted on

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "rows": self.rows,
            "output": self.output,
            "log_files": list(self.log_files),
            "flagged": self.flagged,
            "batches": self.batches,
            "seconds": self.seconds,
            "predictor": self.predictor,
        }


# -- prediction ids ---------------------------------------------------------------------------

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijection on uint64 (xor-shifts and odd multipliers)."""
    z = x.copy()
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return z


class IdSequence:
    """Prediction ids for one job: unique, 32 lowercase hex digits each, made in bulk."""

    def __init__(self, seed: bytes | None = None) -> None:
        seed = secrets.token_bytes(16) if seed is None else seed
        if len(seed) != 16:
            raise ValueError("an id seed is 16 bytes")
        self._offset = np.uint64(int.from_bytes(seed[:8], "big"))
        self._tag = np.frombuffer(seed[8:], dtype=np.uint8)
        self._next = 0

    def take(self, n: int) -> np.ndarray:
        """The next ``n`` ids, as a numpy array of 32-character strings."""
        with np.errstate(over="ignore"):
            counter = np.arange(self._next, self._next + n, dtype=np.uint64) + self._offset
            head = _mix64(counter).astype(">u8").view(np.uint8).reshape(n, 8)
        self._next += n
        raw = np.empty((n, 16), dtype=np.uint8)
        raw[:, :8] = head
        raw[:, 8:] = self._tag
        chars = np.empty((n, 32), dtype=np.uint8)
        chars[:, 0::2] = _HEX[raw >> 4]
        chars[:, 1::2] = _HEX[raw & 15]
        return chars.view("S32").ravel().astype("U32")


# -- reading in batches -----------------------------------------------------------------------


def _csv_types(signature: Signature, inferred: pa.Schema) -> dict[str, pa.DataType]:
    """Column types for a CSV's columns, fixed for the whole file (pyarrow would otherwise
    infer them per block, and a later block could disagree with the first): measurements as
    float64 (what validation makes of them anyway), categories and dates as text (read by
    the signature's reader, as JSON values are); 0/1-or-boolean measurements and the columns
    the model does not take as pyarrow infers them from the first block (text where that
    block has only empty values)."""
    fields = {f.name: f for f in signature.inputs}
    types: dict[str, pa.DataType] = {}
    for field in inferred:
        f = fields.get(field.name)
        if f is not None and f.kind in (CATEGORICAL, DATETIME, TEXT):
            types[field.name] = pa.string()
        elif f is not None and f.kind == NUMERIC and not f.binary:
            types[field.name] = pa.float64()
        else:
            types[field.name] = pa.string() if pa.types.is_null(field.type) else field.type
    return types


class _Reader:
    """The input file as record batches of at most ``batch_size`` rows."""

    def __init__(self, source: Any, signature: Signature, batch_size: int) -> None:
        self.source = source
        self.signature = signature
        self.batch_size = batch_size
        self.total_rows: int | None = None
        self.fmt: str = source.format
        self._names: list[str] = []

    def batches(self, stack: ExitStack) -> Iterator[pa.RecordBatch]:
        src = self.source
        src._check_file()  # a missing, empty or folder input: the reader's own errors
        if self.fmt == "parquet":
            yield from self._parquet(stack.enter_context(src._open()))
        elif self.fmt in ("csv", "tsv"):
            yield from self._csv(stack)
        else:  # JSON Lines: pyarrow infers its types from the whole file, so read it whole
            table = src.read()
            self.total_rows = table.num_rows
            yield from _rebatch(iter(table.to_batches(self.batch_size)), self.batch_size)

    def _parquet(self, fh: IO[bytes]) -> Iterator[pa.RecordBatch]:
        try:
            pf = pq.ParquetFile(fh)
            self.total_rows = pf.metadata.num_rows
            # at most batch_size rows each, never across a row group: no copy to re-cut them
            yield from pf.iter_batches(batch_size=self.batch_size)
        except (pa.ArrowException, OSError) as exc:
            raise InvalidInputError(
                f"{self.source.uri} is not a readable Parquet file: {exc}",
                where={"file": self.source.uri},
                hint="Check that the file is complete and really Parquet, or pass --format",
            ) from exc

    def _csv(self, stack: ExitStack) -> Iterator[pa.RecordBatch]:
        src = self.source
        names: list[str] = []
        try:
            delimiter, decimal = src.dialect()
            read_options = pacsv.ReadOptions(
                encoding=src.encoding,
                autogenerate_column_names=not src.header,
                block_size=CSV_BLOCK_BYTES,
            )
            parse_options = pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True)
            # the header alone, to fix each column's type before the data is read
            with src._open() as fh:
                head = pacsv.open_csv(
                    fh,
                    read_options=read_options,
                    parse_options=parse_options,
                    convert_options=pacsv.ConvertOptions(
                        strings_can_be_null=True, decimal_point=decimal
                    ),
                )
                inferred = head.schema
            names = inferred.names
            if not src.header:
                names = [f"column_{i + 1}" for i in range(len(names))]
                inferred = pa.schema(
                    [pa.field(n, f.type) for n, f in zip(names, inferred, strict=True)]
                )
                read_options.column_names = names
                read_options.autogenerate_column_names = False
            convert = pacsv.ConvertOptions(
                strings_can_be_null=True,
                decimal_point=decimal,
                column_types=_csv_types(self.signature, inferred),
            )
            fh = stack.enter_context(src._open())
            reader = pacsv.open_csv(
                fh,
                read_options=read_options,
                parse_options=parse_options,
                convert_options=convert,
            )
            yield from _rebatch(reader, self.batch_size)
        except (pa.ArrowException, UnicodeError) as exc:
            raise self._explain(exc, names) from exc

    def _explain(self, exc: BaseException, names: list[str]) -> LoopmlError:
        """A CSV the streaming reader stumbled on: a text value in a measurement column is
        named here (column, row, value); anything else is what the whole-file reader says
        (it finds the line and the byte)."""
        message = str(exc)
        fields = {f.name: f for f in self.signature.inputs}
        if "conversion error to double" in message and "column #" in message:
            try:
                index = int(message.split("column #", 1)[1].split(":", 1)[0])
            except ValueError:
                index = -1
            if 0 <= index < len(names) and names[index] in fields:
                self._names = names
                found = self._first_text(names[index])
                if found is not None:
                    row, value = found
                    return InvalidInputError(
                        f"column {names[index]!r} holds {value!r}, not a number",
                        where={"file": self.source.uri, "row": row, "column": names[index]},
                        hint="Give this column numbers only (an empty field is a missing value)",
                    )
        if "conversion error" in message and "column #" in message:
            try:
                index = int(message.split("column #", 1)[1].split(":", 1)[0])
            except ValueError:
                index = -1
            if 0 <= index < len(names):
                name = names[index]
                return InvalidInputError(
                    f"column {name!r} of {self.source.uri} changes type part-way through: "
                    f"{message.split(': ', 1)[-1]}",
                    where={"file": self.source.uri, "column": name},
                    hint="Give the column values of one type throughout the file (the type "
                    "is read from its first rows), or convert the file to Parquet",
                )
        try:
            self.source.read()  # raises the precise error (line, byte, field count)
        except LoopmlError as err:
            return err
        return InvalidInputError(
            f"cannot read {self.source.uri} as CSV: {message}",
            where={"file": self.source.uri},
            hint="Check the delimiter and the encoding, or pass --format",
        )

    def _first_text(self, column: str) -> tuple[int, str] | None:
        """The first (row, value) of ``column`` that is not a number, read as text."""
        src = self.source
        delimiter, decimal = src.dialect()
        read_options = pacsv.ReadOptions(encoding=src.encoding, block_size=CSV_BLOCK_BYTES)
        if not src.header:
            read_options.column_names = self._names
        convert = pacsv.ConvertOptions(
            strings_can_be_null=True,
            decimal_point=decimal,
            include_columns=[column],
            column_types={column: pa.string()},
        )
        offset = 0
        with src._open() as fh:
            reader = pacsv.open_csv(
                fh,
                read_options=read_options,
                parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
                convert_options=convert,
            )
            for batch in reader:
                for i, value in enumerate(batch.column(0).to_pylist()):
                    if value is None:
                        continue
                    try:
                        float(value.replace(decimal, ".") if decimal != "." else value)
                    except ValueError:
                        return offset + i, value
                offset += batch.num_rows
        return None


def _rebatch(batches: Iterator[pa.RecordBatch], size: int) -> Iterator[pa.RecordBatch]:
    """The same rows in batches of exactly ``size`` rows (the last one: what is left)."""
    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        if not pending and batch.num_rows == size:
            yield batch
            continue
        pending.append(batch)
        rows += batch.num_rows
        if rows >= size:
            table = pa.Table.from_batches(pending).combine_chunks()
            start = 0
            while rows - start >= size:
                yield table.slice(start, size).to_batches()[0]
                start += size
            rest = table.slice(start)
            pending = rest.to_batches() if rest.num_rows else []
            rows -= start
    if pending:
        yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0]


# -- scoring ----------------------------------------------------------------------------------


class _Predict:
    """The version's predictor (compiled where the version is, as on the server) over a
    batch. A compiled predictor runs one thread per call (the server's choice: it batches
    across requests instead), so a batch is split in one slice per core, predicted in
    parallel (ONNX Runtime releases the GIL) and put back together; a native predictor
    gets the whole batch (LightGBM and XGBoost use every core already)."""

    MIN_SLICE = 4096  # rows: below this, one call is cheaper than handing out slices

    def __init__(self, model: LoadedModel, pool: ThreadPoolExecutor | None, ways: int) -> None:
        self.model = model
        self.predictor = model.predictor
        self.kind = self.predictor.kind
        self.pool = pool if self.kind == "onnx" and ways > 1 else None
        self.ways = ways

    def __call__(self, frame: pd.DataFrame) -> Prediction:
        columns = {name: frame[name].to_numpy() for name in self.model.signature.names}
        n = len(frame)
        ways = min(self.ways, n // self.MIN_SLICE)
        if self.pool is None or ways < 2:
            return self.predictor.predict_columns(columns)
        bounds = np.linspace(0, n, ways + 1).round().astype(int)
        parts = [
            self.pool.submit(
                self.predictor.predict_columns, {k: v[a:b] for k, v in columns.items()}
            )
            for a, b in itertools.pairwise(bounds.tolist())
        ]
        done = [f.result() for f in parts]
        first = done[0]
        return replace(
            first,
            labels=np.concatenate([p.labels for p in done]),
            probabilities=None
            if first.probabilities is None
            else np.concatenate([p.probabilities for p in done]),  # type: ignore[misc]
        )


def _output_columns(
    model: LoadedModel, batch: pa.RecordBatch, p: Prediction, ids: np.ndarray, flags: Any
) -> pa.Table:
    """The input batch plus prediction, proba_<class>..., model_version, prediction_id and
    unknown_fields (the fields of the row holding a value training never had,
    comma-separated; empty for a row without)."""
    # without the input's schema metadata: pandas' (an index of the input's rows) would not
    # describe the output
    table = pa.Table.from_batches([batch]).replace_schema_metadata(None)
    n = batch.num_rows
    names = set(table.column_names)

    def add(name: str, values: pa.Array) -> None:
        nonlocal table
        if name in names:  # the input has a column of that name: the prediction wins
            table = table.drop_columns([name])
        table = table.append_column(name, values)

    add("prediction", pa.array(p.labels))
    if p.probabilities is not None and p.classes is not None:
        for j, cls in enumerate(p.classes):
            add(f"proba_{cls}", pa.array(np.ascontiguousarray(p.probabilities[:, j])))
    add("model_version", pa.array(np.full(n, model.version, dtype=np.int64)))
    add("prediction_id", pa.array(ids, pa.string()))
    if flags is None:
        add("unknown_fields", pa.nulls(n, pa.string()))
    else:
        add("unknown_fields", pa.array([",".join(f) or None for f in flags], pa.string()))
    return table


class _Writer:
    """The output, appended batch by batch to a temporary file renamed into place at the end."""

    def __init__(self, path: Path, kind: str) -> None:
        self.path = path
        self.kind = kind
        self.tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        self._writer: Any = None
        self._schema: pa.Schema | None = None

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._schema = table.schema
            if self.kind == "csv":
                self._writer = pacsv.CSVWriter(str(self.tmp), table.schema)
            else:
                # dictionary pages only where values repeat (text: categories, labels):
                # trying them on float columns and unique ids costs most of a write
                repeats = [
                    f.name
                    for f in table.schema
                    if f.name != "prediction_id"
                    and (pa.types.is_string(f.type) or pa.types.is_large_string(f.type))
                ]
                self._writer = pq.ParquetWriter(
                    str(self.tmp), table.schema, use_dictionary=repeats or False
                )
        elif table.schema != self._schema:
            assert self._schema is not None
            try:  # a later batch typed differently (e.g. all-null): the first batch's types
                table = table.cast(self._schema)
            except (pa.ArrowException, ValueError) as exc:
                raise InvalidInputError(
                    f"the rows of {self.path.name} change type part-way through: {exc}",
                    where={"file": str(self.path)},
                    hint="Give each column values of one type throughout the file",
                ) from exc
        self._writer.write_table(table)

    def commit(self) -> None:
        self._writer.close()
        self._writer = None
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            except (pa.ArrowException, OSError):
                pass
        self.tmp.unlink(missing_ok=True)


def predict_file(
    ws: Workspace,
    model_ref: str,
    input_path: str | Path,
    output_path: str | Path,
    *,
    log: bool = True,
    unknown: str | None = None,
    batch_size: int = DEFAULT_BATCH_ROWS,
    progress: Progress | None = None,
) -> ScoringResult:
    """Score every row of ``input_path`` with ``model_ref`` (bare name: its champion).

    The file is read, validated, predicted, logged and written ``batch_size`` rows at a time.
    With ``log`` (the default) each batch is written to the prediction log as ``batch`` rows
    naming the input file, synchronously, before it is written to the output; the output
    file appears only when every row is scored (a refused row leaves no output). ``unknown``
    (``flag`` or ``error``; default: the model's policy, else ``flag``) says whether a row
    with a category never seen or a new missing value is scored and flagged or refuses the
    file. ``progress(rows_done, rows_total)`` is called after each batch.
    """
    from loopml.data import source_for

    if batch_size < 1:
        raise InvalidInputError(
            f"the batch size is {batch_size}",
            where={"field": "batch_size"},
            hint="Give a batch size of at least 1 row",
        )
    out_path = Path(output_path)
    kind = OUTPUT_FORMATS.get(out_path.suffix.lower())
    if kind is None:
        raise InvalidInputError(
            f"cannot write predictions to {str(out_path)!r}",
            where={"file": str(out_path)},
            hint="Name an output ending in .csv or .parquet",
        )
    model = load_model(ws, model_ref)
    source = source_for(str(input_path))
    where = _where(input_path)
    signature = model.signature
    reader = _Reader(source, signature, batch_size)
    ids = IdSequence()
    writer = _Writer(out_path, kind)
    started = time.perf_counter()
    done = flagged = batches = written = 0
    log_files: list[str] = []

    def log_batch(frame: pd.DataFrame, p: Prediction, ids: np.ndarray, ms: float) -> list[str]:
        return write_predictions(
            ws.lake,
            model.name,
            model.version,
            frame,
            p,
            ids,  # type: ignore[arg-type]  # an array of str
            latency_ms=ms,
            input_file=where,
        )

    def write_batch(table: pa.Table) -> int:
        writer.write(table)
        return table.num_rows

    # Logging (a Parquet part per batch, fsynced) and appending to the output run in worker
    # threads while the next batch is read and predicted; both release the GIL. The output
    # is renamed into place only after every batch is logged, so each id in it is traceable.
    logs: deque[Future[list[str]]] = deque()
    outs: deque[Future[int]] = deque()
    with ExitStack() as stack:
        log_pool = stack.enter_context(ThreadPoolExecutor(LOG_THREADS, "loopml-scoring-log"))
        out_pool = stack.enter_context(ThreadPoolExecutor(1, "loopml-scoring-out"))
        ways = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        slices = stack.enter_context(ThreadPoolExecutor(max(1, ways), "loopml-predict"))
        predict = _Predict(model, slices, max(1, ways))

        def drain(keep: int) -> None:
            """Wait for all but ``keep`` batches in flight (memory: a few batches)."""
            nonlocal written
            while len(logs) > keep:
                log_files.extend(logs.popleft().result())
            while len(outs) > keep:
                written += outs.popleft().result()
                if progress is not None:
                    progress(written, reader.total_rows)

        try:
            for batch in reader.batches(stack):
                t0 = time.perf_counter()
                if batches == 0:
                    _check_names(batch, source.describe())
                frame = batch.to_pandas(split_blocks=True, self_destruct=False)
                try:
                    checked = signature.check_frame(frame, source=str(input_path), unknown=unknown)
                    check_float32(checked.frame, source=str(input_path))
                except InvalidInputError as exc:
                    if isinstance(exc.where.get("row"), int):
                        exc.where["row"] += done  # rows counted from the file's first
                    raise
                p = predict(checked.frame)
                flags = checked.unknown_fields() if checked.any_flagged else None
                if checked.any_flagged:
                    flagged += int(checked.flagged.sum())
                batch_ids = ids.take(batch.num_rows)
                ms = (time.perf_counter() - t0) * 1000.0
                done += batch.num_rows
                batches += 1
                drain(IN_FLIGHT - 1)
                if log:
                    logs.append(log_pool.submit(log_batch, checked.frame, p, batch_ids, ms))
                table = _output_columns(model, batch, p, batch_ids, flags)
                outs.append(out_pool.submit(write_batch, table))
            drain(0)
            if done == 0:
                raise InvalidInputError(
                    f"{source.describe()} has no rows",
                    where={"file": source.describe()},
                    hint="Give a file with at least one data row",
                )
            writer.commit()
        except BaseException:
            flying: list[Future[Any]] = [*logs, *outs]
            for future in flying:
                future.cancel()
            for future in flying:
                with suppress(BaseException):  # the first error is the one to report
                    future.result()
            writer.discard()
            raise
    return ScoringResult(
        model.name,
        model.version,
        done,
        str(out_path),
        tuple(log_files),
        flagged,
        batches,
        time.perf_counter() - started,
        predict.kind,
    )


def _check_names(batch: pa.RecordBatch, uri: str) -> None:
    from loopml.data.schema import check_columns

    check_columns(pa.Table.from_batches([batch]), {"file": uri})


def _where(path: str | Path) -> str:
    """The input as the log records it: a URL as given, a local file by its absolute path."""
    text = str(path)
    return text if "://" in text else str(Path(text).resolve())
