"""The pieces of batched ingestion: canonical hashing, conforming batches, writing parts.

A dataset version is written as several Parquet parts (``part-00000.parquet``, ...), cut by
size, optionally in hive folders (``col=value/``) when partitioned. Nothing here holds the
whole input: batches flow through a :class:`ContentHash`, a
:class:`~loopml.data.stats.StreamingStats` and a :class:`PartWriter`, each of bounded size.

The content hash is a function of the content only, not of how the source cut it into
batches: the rows are re-cut into canonical chunks of :data:`CANON_ROWS` rows and hashed as one
Arrow IPC stream (schema, chunks, end). A table of at most :data:`CANON_ROWS` rows is one chunk,
so it hashes exactly as :func:`loopml.data.ingest.content_sha256` always has. A partitioned
version hashes each partition's rows (in input order) and then the sorted list of
``partition folder, hash`` lines, which is the order readers get the rows back in.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loopml.errors import InvalidInputError

if TYPE_CHECKING:
    from loopml.stores.base import Lake

CANON_ROWS = 1 << 17  # rows per canonical chunk of the content hash
PART_BYTES = 96 << 20  # Arrow bytes buffered before a part is written
BUFFER_BYTES = 256 << 20  # all partitions' buffers together
MAX_PARTITIONS = 10_000
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"


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


class ContentHash:
    """sha256 of the Arrow IPC stream of the rows re-cut into chunks of ``CANON_ROWS``."""

    def __init__(self, schema: pa.Schema, chunk_rows: int | None = None) -> None:
        self.schema = schema
        self.chunk_rows = CANON_ROWS if chunk_rows is None else chunk_rows
        self._sink = _HashSink()
        self._file = pa.PythonFile(self._sink, mode="w")
        self._writer = pa.ipc.new_stream(self._file, schema)
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self.rows = 0
        self._digest: str | None = None

    def update(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        self.rows += batch.num_rows
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        while self._pending_rows >= self.chunk_rows:
            self._emit(self.chunk_rows)

    def _emit(self, rows: int) -> None:
        table = pa.Table.from_batches(self._pending, schema=self.schema)
        head, rest = table.slice(0, rows), table.slice(rows)
        self._writer.write_table(_compact(head))
        self._pending = rest.to_batches()
        self._pending_rows = rest.num_rows

    def hexdigest(self) -> str:
        if self._digest is None:
            if self._pending_rows:
                self._emit(self._pending_rows)
            self._writer.close()
            self._file.close()
            self._digest = self._sink.hash.hexdigest()
        return self._digest


def _compact(table: pa.Table) -> pa.Table:
    """One chunk per column in buffers of their own: a slice would serialize the bytes of the
    rows around it too, so that equal rows would hash differently. What lies under null slots
    is zeroed: readers differ there (the CSV reader leaves zeros, the Parquet reader repeats a
    neighbour), and the same values must hash the same from every reader."""
    columns = [
        canonical_nulls(pa.concat_arrays([*c.chunks, pa.array([], c.type)])) for c in table.columns
    ]
    return pa.Table.from_arrays(columns, schema=table.schema)


def canonical_nulls(column: pa.Array) -> pa.Array:
    """``column`` with zero bytes (numbers, times, booleans) or nothing (text) under its null
    slots, as pyarrow's CSV and JSON readers leave them."""
    if not column.null_count:
        return column
    typ = column.type
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return column.take(pa.array(range(len(column)), pa.int64()))
    if column.offset:
        column = pa.concat_arrays([column])
    if pa.types.is_boolean(typ):
        filled = column.fill_null(False)
    elif pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_temporal(typ):
        filled = column.fill_null(pa.scalar(0, pa.int64()).cast(typ))
    else:
        return column
    return pa.Array.from_buffers(
        typ, len(column), [column.buffers()[0], filled.buffers()[1]], column.null_count
    )


def combine_hashes(hashes: dict[str, str]) -> str:
    """One sha256 for a partitioned version: its ``folder<TAB>hash`` lines, sorted."""
    lines = "".join(f"{folder}\t{digest}\n" for folder, digest in sorted(hashes.items()))
    return hashlib.sha256(f"partitioned\n{lines}".encode()).hexdigest()


def append_hash(parent_sha: str, delta_sha: str) -> str:
    """The sha256 of an append version: its parent's content followed by the new rows."""
    return hashlib.sha256(f"append\n{parent_sha}\n{delta_sha}\n".encode()).hexdigest()


# -- conforming batches to the first one's schema ---------------------------------------------


def _safe_cast(column: pa.Array, target: pa.DataType) -> pa.Array | None:
    """``column`` as ``target`` when no value can change (nulls, integers into floats)."""
    typ = column.type
    if typ == target:
        return column
    if pa.types.is_null(typ) or column.null_count == len(column):
        return pa.nulls(len(column), target)
    if pa.types.is_integer(typ) and (pa.types.is_floating(target) or pa.types.is_integer(target)):
        try:
            return column.cast(target)  # safe cast: overflow raises
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
    if pa.types.is_timestamp(typ) and pa.types.is_timestamp(target) and typ.unit == target.unit:
        return column.cast(target)
    if pa.types.is_floating(typ) and pa.types.is_floating(target) and widens(typ, target):
        return column.cast(target)
    return None


def widens(typ: pa.DataType, target: pa.DataType) -> bool:
    """Whether every value of ``typ`` converts to ``target`` without loss."""
    if typ == target or pa.types.is_null(typ):
        return True
    if pa.types.is_floating(typ) and pa.types.is_floating(target):
        return target.bit_width > typ.bit_width
    if pa.types.is_integer(typ) and pa.types.is_floating(target):
        return target.bit_width == 64 or typ.bit_width <= 16
    if pa.types.is_integer(typ) and pa.types.is_integer(target):
        same_sign = pa.types.is_signed_integer(typ) == pa.types.is_signed_integer(target)
        return target.bit_width > typ.bit_width or (same_sign and target.bit_width == typ.bit_width)
    return False


def conform(batch: pa.RecordBatch, schema: pa.Schema, where: dict[str, Any]) -> pa.RecordBatch:
    """``batch`` with ``schema``'s columns and types, or a one-line error naming the change."""
    if batch.schema.names != schema.names:
        added = [n for n in batch.schema.names if n not in schema.names]
        missing = [n for n in schema.names if n not in batch.schema.names]
        detail = "; ".join(
            part
            for part in (
                f"new columns {added}" if added else "",
                f"missing columns {missing}" if missing else "",
                "the same columns in another order" if not added and not missing else "",
            )
            if part
        )
        raise InvalidInputError(
            f"the columns change part-way through the input: {detail}",
            where={**where, "columns": schema.names},
            hint="Every batch (CSV block, page, chunk) must have the header of the first; "
            "ingest inputs with other columns as separate datasets or versions",
        )
    if batch.schema == schema:
        return batch
    columns = []
    for field, column in zip(schema, batch.columns, strict=True):
        cast = _safe_cast(column, field.type)
        if cast is None:
            raise SchemaChangeError(
                f"column {field.name!r} changes type part-way through the input: "
                f"{field.type} in the first batch, {column.type} from row {where.get('row', '?')}",
                where={**where, "column": field.name},
                hint="Declare the column's type in loopml.yaml (data.datasets.NAME.schema) so "
                "every batch is read with it, or give it one type in the source",
                changes=[{"column": field.name, "old": str(field.type), "new": str(column.type)}],
            )
        columns.append(cast)
    return pa.RecordBatch.from_arrays(columns, schema=schema)


class SchemaChangeError(InvalidInputError):
    """Columns changed type (or appeared, or went) against the previous version or batch."""

    code = "schema_change"

    def __init__(self, message: str, *, changes: list[dict[str, Any]], **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.changes = changes

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "changes": self.changes}


def schema_changes(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What differs between two recorded schemas: columns added, removed or retyped."""
    before = {c["name"]: c["type"] for c in old}
    after = {c["name"]: c["type"] for c in new}
    out: list[dict[str, Any]] = []
    for name, typ in after.items():
        if name not in before:
            out.append({"column": name, "change": "added", "new": typ})
        elif before[name] != typ:
            out.append({"column": name, "change": "type", "old": before[name], "new": typ})
    for name, typ in before.items():
        if name not in after:
            out.append({"column": name, "change": "removed", "old": typ})
    return out


def describe_changes(changes: list[dict[str, Any]]) -> str:
    parts = []
    for c in changes:
        if c["change"] == "type":
            parts.append(f"{c['column']}: {c['old']} -> {c['new']}")
        elif c["change"] == "added":
            parts.append(f"+{c['column']} ({c['new']})")
        else:
            parts.append(f"-{c['column']} ({c['old']})")
    return ", ".join(parts)


def rebatch(
    pieces: Iterable[pa.RecordBatch | pa.Table], rows: int | None
) -> Iterator[pa.RecordBatch]:
    """The record batches of ``pieces``, none longer than ``rows`` (None: as they come)."""
    for piece in pieces:
        batches = piece.to_batches() if isinstance(piece, pa.Table) else [piece]
        for batch in batches:
            if rows is None or batch.num_rows <= rows:
                yield batch
                continue
            for start in range(0, batch.num_rows, rows):
                yield batch.slice(start, rows)


def prefetch(items: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """``items`` produced in a background thread, at most ``depth`` ahead of the consumer:
    parsing the next block (pyarrow releases the GIL) overlaps with the work on this one.
    The producer's errors are raised here, in order; closing the generator stops it."""
    import queue
    import threading

    box: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                box.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(("item", item)):
                    return
            put(("done", None))
        except BaseException as exc:  # handed to the consumer
            put(("error", exc))

    thread = threading.Thread(target=produce, name="loopml-read", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = box.get()
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join(timeout=30)


class Behind:
    """Calls of ``fn`` run in order in a thread of their own, at most ``depth`` behind the
    caller: the streaming statistics of one batch (numpy and pyarrow, which release the GIL)
    overlap with hashing and buffering the next. An error of a call is raised by a later call
    or by :meth:`wait`; :meth:`close` waits for the calls in flight and stops the thread."""

    def __init__(self, fn: Callable[..., Any], depth: int = 2, name: str = "loopml-stats") -> None:
        self._fn = fn
        self._depth = depth
        self._name = name
        self._pool: ThreadPoolExecutor | None = None
        self._pending: deque[Future[Any]] = deque()

    def __call__(self, *args: Any) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix=self._name)
        while len(self._pending) >= self._depth:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._fn, *args))

    def wait(self) -> None:
        """Wait until every call has run; the first error is raised."""
        while self._pending:
            self._pending.popleft().result()

    def close(self) -> None:
        for future in self._pending:
            future.cancel()
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


# -- partitions and parts ---------------------------------------------------------------------


def partition_value(value: Any) -> str:
    """The text of one hive folder value (``%``-quoted; null as Hive writes it)."""
    if value is None:
        return NULL_PARTITION
    if hasattr(value, "isoformat"):
        value = value.isoformat()
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return quote(text, safe="") or NULL_PARTITION


def check_partition_columns(schema: pa.Schema, columns: list[str], where: dict[str, Any]) -> None:
    for name in columns:
        if name not in schema.names:
            raise InvalidInputError(
                f"cannot partition by {name!r}: there is no such column",
                where={**where, "column": name},
                hint=f"Choose one of {', '.join(schema.names[:20])}",
            )
        typ = schema.field(name).type
        if pa.types.is_floating(typ):
            raise InvalidInputError(
                f"cannot partition by {name!r}: it holds floats ({typ}), nearly one folder a row",
                where={**where, "column": name},
                hint="Partition by a date, a category or an integer bucket",
            )


def split(batch: pa.RecordBatch, columns: list[str]) -> Iterator[tuple[str, pa.RecordBatch]]:
    """``(folder, rows)`` per distinct value of the partition ``columns``, rows in order."""
    if not columns:
        yield "", batch
        return
    codes = np.zeros(batch.num_rows, dtype=np.int64)
    uniques: list[list[Any]] = []
    for name in columns:
        encoded = pc.dictionary_encode(batch.column(name))
        idx = encoded.indices.fill_null(len(encoded.dictionary)).to_numpy(zero_copy_only=False)
        size = len(encoded.dictionary) + 1
        codes = codes * size + idx
        uniques.append([*encoded.dictionary.to_pylist(), None])
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.concatenate([[True], sorted_codes[1:] != sorted_codes[:-1]]))
    ends = [*starts[1:], len(order)]
    taken = batch.take(pa.array(order))
    sizes = [len(u) for u in uniques]
    for start, end in zip(starts, ends, strict=True):
        code = int(sorted_codes[start])
        values = []
        for size, values_of in zip(reversed(sizes), reversed(uniques), strict=True):
            values.append(values_of[code % size])
            code //= size
        values.reverse()
        folder = "/".join(
            f"{name}={partition_value(v)}" for name, v in zip(columns, values, strict=True)
        )
        yield folder, taken.slice(int(start), int(end - start))


class PartWriter:
    """Buffers batches per partition folder and writes Parquet parts of about ``part_bytes``.

    Parts are written through :meth:`Lake.write_table` (atomic) under ``folder``; their paths,
    in the order readers must take them (by partition folder, then as written), are
    :meth:`parts` once :meth:`close` has flushed the rest.
    """

    def __init__(
        self,
        lake: Lake,
        folder: str,
        partition_by: list[str],
        *,
        part_bytes: int | None = None,
        buffer_bytes: int | None = None,
        written: list[str] | None = None,
    ) -> None:
        #: every path written (before it is written, so that a failed write is cleaned up too)
        self.written = written if written is not None else []
        self.lake = lake
        self.folder = folder
        self.partition_by = partition_by
        self.part_bytes = PART_BYTES if part_bytes is None else part_bytes
        self.buffer_bytes = BUFFER_BYTES if buffer_bytes is None else buffer_bytes
        self._buffers: dict[str, list[pa.RecordBatch]] = {}
        self._sizes: dict[str, int] = {}
        self._written: dict[str, list[str]] = {}
        self._count = 0
        self.hashes: dict[str, ContentHash] = {}
        self.bytes = 0
        # one part is encoded and written in the background while the next is read (pyarrow
        # releases the GIL); at most one write is pending, so memory stays bounded
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future[Any] | None = None

    def add(self, batch: pa.RecordBatch) -> None:
        for folder, rows in split(batch, self.partition_by):
            if folder not in self.hashes:
                if len(self.hashes) >= MAX_PARTITIONS:
                    raise InvalidInputError(
                        f"partitioning by {self.partition_by} makes more than {MAX_PARTITIONS} "
                        "folders",
                        where={"partition_by": self.partition_by},
                        hint="Partition by a coarser column (a day rather than a timestamp)",
                    )
                self.hashes[folder] = ContentHash(batch.schema)
            self.hashes[folder].update(rows)
            self._buffers.setdefault(folder, []).append(rows)
            size = rows.nbytes
            self._sizes[folder] = self._sizes.get(folder, 0) + size
            self.bytes += size
            if self._sizes[folder] >= self.part_bytes:
                self._flush(folder)
        while sum(self._sizes.values()) > self.buffer_bytes:
            self._flush(max(self._sizes, key=lambda f: self._sizes[f]))

    def _flush(self, folder: str) -> None:
        batches = self._buffers.pop(folder, [])
        self._sizes.pop(folder, None)
        if not batches:
            return
        # the batches as they are: combining them would copy the whole part once more
        # (Parquet row groups are cut by rows, not by chunks)
        table = pa.Table.from_batches(batches)
        base = f"{self.folder}/{folder}" if folder else self.folder
        path = f"{base}/part-{self._count:05d}.parquet"
        self._count += 1
        self.written.append(path)
        self._wait()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="loopml-part")
        self._pending = self._pool.submit(self.lake.write_table, path, table)
        self._written.setdefault(folder, []).append(path)

    def _wait(self) -> None:
        """Wait for the write in flight; its error is raised here."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        """Write what is buffered and wait until every part is in the lake."""
        for folder in list(self._buffers):
            self._flush(folder)
        self._wait()
        self.abort()

    def abort(self) -> None:
        """Stop: wait for the write in flight (so nothing lands after cleanup), drop buffers."""
        try:
            self._wait()
        except Exception:
            pass
        finally:
            self._buffers.clear()
            self._sizes.clear()
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def parts(self) -> list[str]:
        return [p for folder in sorted(self._written) for p in self._written[folder]]

    def content_sha256(self) -> str:
        if not self.partition_by:
            only = self.hashes.get("")
            return only.hexdigest() if only is not None else hashlib.sha256(b"").hexdigest()
        return combine_hashes({f: h.hexdigest() for f, h in self.hashes.items()})


__all__ = [
    "CANON_ROWS",
    "Behind",
    "ContentHash",
    "PartWriter",
    "SchemaChangeError",
    "append_hash",
    "check_partition_columns",
    "combine_hashes",
    "conform",
    "describe_changes",
    "rebatch",
    "schema_changes",
    "split",
]
