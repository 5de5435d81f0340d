"""Where data comes from: a tiny :class:`Source` interface and the file formats behind it.

A source says what it is (:meth:`Source.describe`) and reads itself as one Arrow table
(:meth:`Source.read`). File sources read CSV (and TSV), Parquet and JSON Lines from a local
path, a ``file://`` URI or any fsspec URI (``s3://…``), optionally compressed (``.gz``,
``.bz2``, ``.xz``). SQL databases and HTTP JSON APIs are further subclasses of
:class:`Source`; nothing else changes for them.

A CSV file's delimiter and decimal mark are sniffed from its first lines unless given (see
:mod:`loopml.data.dialect`); ``header=False`` names the columns ``column_1`` .. ``column_n``.

Every problem with the input becomes a :class:`~loopml.errors.LoopmlError` that names the file
and, where there is one, the line or column: a missing file, an empty file, a CSV row with the
wrong number of fields, text not valid in its encoding (with the byte and the line), a JSON
line that does not parse, an unreadable Parquet file, and empty or repeated column names.
"""

from __future__ import annotations

import codecs
import importlib
import io
import json
import lzma
import os
import re
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, ClassVar, cast
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from loopml.data.dialect import (
    check_options,
    first_bad_row,
    first_decode_error,
    read_sample,
    sniff_decimal,
    sniff_delimiter,
)
from loopml.data.schema import check_columns
from loopml.errors import InvalidInputError, NotFoundError

COMPRESSIONS = (".gz", ".bz2", ".xz")
# what reading a broken or truncated compressed file raises, besides OSError
_STREAM_ERRORS = (OSError, EOFError, lzma.LZMAError, zlib.error)


class Source(ABC):
    """Something that reads as a table: whole (:meth:`read`) or in bounded pieces
    (:meth:`batches`), optionally resumable from a stored position, optionally unbounded.

    Resumable sources (an SQL cursor column, a stream consumer) set :attr:`key`, a stable
    identity of the position; the ingestion engine calls :meth:`resume` with the position last
    recorded for that key, reads, records the new version together with :meth:`position` in
    one metadata transaction, then calls :meth:`committed`. Streaming sources
    (:attr:`streaming` True) implement :meth:`poll`; the engine cuts micro-batches.
    """

    format: ClassVar[str]
    #: identity of the position, e.g. "sql:<redacted url>#tx"; None: not resumable
    key: str | None = None
    #: True: unbounded (the engine polls and cuts micro-batches)
    streaming: bool = False
    #: True: :meth:`batches` may run in a background thread, reading ahead of the engine
    prefetch: bool = False
    #: columns whose values come from the source's paths (hive ``key=value`` folders), known
    #: once :meth:`batches` has started
    partition_columns: tuple[str, ...] = ()

    @abstractmethod
    def describe(self) -> str:
        """Where the data comes from, for lineage and for people (a path or a URI)."""

    @abstractmethod
    def read(self) -> pa.Table:
        """The whole content as one table, with at least one row and named, unique columns."""

    def batches(self) -> Iterator[pa.RecordBatch | pa.Table]:
        """The content in bounded pieces, in order, all with the same columns. Default: one
        piece, :meth:`read`."""
        yield self.read()

    def resume(self, position: dict[str, Any] | None) -> None:  # noqa: B027 (optional hook)
        """Start after ``position`` (what :meth:`position` returned when it was recorded)."""

    def position(self) -> dict[str, Any] | None:
        """The JSON-able position just after the last piece yielded so far (None: none)."""
        return None

    def committed(self, position: dict[str, Any]) -> None:  # noqa: B027 (optional hook)
        """Called once the version holding the data up to ``position`` is recorded (a broker
        acknowledges the messages here). Default: nothing."""

    def poll(self, max_records: int, timeout: float) -> pa.Table | None:
        """Streaming sources: up to ``max_records`` new records, waiting at most ``timeout``
        seconds for the first; None when nothing arrived. :meth:`position` moves past them."""
        raise NotImplementedError(f"{type(self).__name__} is not a streaming source")

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release connections. Default: nothing."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()!r})"


class FileSource(Source):
    """A file in one of the supported formats, local or behind an fsspec URI."""

    extensions: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.uri = _normalize(path)
        self.storage_options = dict(storage_options or {})

    @property
    def is_local(self) -> bool:
        return "://" not in self.uri

    def describe(self) -> str:
        return self.uri

    prefetch = True
    #: rows per batch where the format decides it (Parquet, JSON Lines); None: the default
    batch_rows: int | None = None
    #: bytes of input parsed per batch (CSV, JSON Lines)
    block_bytes: int = 16 << 20
    #: bytes of input the streaming parser reads per block after the first (CSV, JSON Lines):
    #: pyarrow's reader queues up to 32 blocks read ahead, so this, not :attr:`block_bytes`,
    #: bounds its memory
    read_bytes: int = 4 << 20
    #: the longest row (bytes of input) a CSV or JSON Lines file may hold: the parser needs a
    #: row within two blocks, so a file with a longer row is read again in blocks twice as
    #: large, up to this
    max_row_bytes: int = 64 << 20

    def read(self) -> pa.Table:
        self._check_file()
        table = self._read()
        if table.num_rows == 0:
            raise self._no_rows()
        check_columns(table, {"file": self.uri})
        return table

    def batches(self) -> Iterator[pa.RecordBatch | pa.Table]:
        """The file in batches of about :attr:`block_bytes` of input, read as they are used."""
        self._check_file()
        rows = 0
        for batch in self._batches():
            if not rows:
                check_columns(pa.Table.from_batches([batch]), {"file": self.uri})
            rows += batch.num_rows
            if batch.num_rows:
                yield batch
        if not rows:
            raise self._no_rows()

    def _batches(self) -> Iterator[pa.RecordBatch]:
        """Parse the file batch by batch; translate the parser's errors. This is a format's
        one reading loop: :meth:`_read` collects it unless the format has a whole-file parser
        of its own (then, by default, this is that parser's table in batches)."""
        if type(self)._read is FileSource._read:
            raise NotImplementedError(f"{type(self).__name__} defines neither _batches nor _read")
        yield from self._read().to_batches()

    def _read(self) -> pa.Table:
        """Parse the whole file; default: the batches of :meth:`_batches` as one table."""
        batches = list(self._batches())
        return pa.Table.from_batches(batches) if batches else pa.table({})

    # -- helpers for subclasses ---------------------------------------------------------------

    def _rereading(
        self,
        batches_of: Callable[[int, int, list[int]], Iterator[pa.RecordBatch]],
        row: str,
    ) -> Iterator[pa.RecordBatch]:
        """The batches of ``batches_of(read, skip, parsed)``: the rows after the first ``skip``,
        parsed in blocks of ``read`` bytes after the first block, counting the rows the parser
        gave in ``parsed[0]``; first in blocks of :attr:`read_bytes` (at most
        :attr:`block_bytes`). A row longer than a block (pyarrow: "straddling object") makes
        the file be read again from its start in blocks twice as large, the rows already
        handed on skipped: the batches that follow are those of one read (nothing the
        consumer staged is undone). A row over :attr:`max_row_bytes` is an error naming the
        ``row`` (e.g. "data row") it comes about at."""
        done = 0  # rows handed on
        read = min(self.read_bytes, self.block_bytes)
        while True:
            parsed = [0]
            try:
                for batch in batches_of(read, done, parsed):
                    done += batch.num_rows
                    yield batch
                return
            except _Straddled as straddled:
                if straddled.block >= self.max_row_bytes:
                    raise self._row_too_long(max(done, parsed[0]), row) from straddled.__cause__
                read = min(straddled.block * 2, self.max_row_bytes)
                pa.default_memory_pool().release_unused()  # the first read's, before the next

    def _row_too_long(self, before: int, row: str) -> InvalidInputError:
        most = self.max_row_bytes
        limit = f"{most >> 20} MiB" if most >= 1 << 20 else f"{most >> 10} KiB"
        return InvalidInputError(
            f"{self.uri}: a row near {row} {before + 1} is longer than {limit}, the "
            f"longest row a {self.format.upper()} file may hold",
            where=self._where(**{row.split()[-1]: before + 1}),
            hint=f"Keep each row under {limit}: store long values in files of their own "
            "and give their paths instead, or write the data as Parquet",
        )

    def _where(self, **more: Any) -> dict[str, Any]:
        return {"file": self.uri, **more}

    def _no_rows(self, why: str = "") -> InvalidInputError:
        return InvalidInputError(
            f"{self.uri} has no rows{why}",
            where=self._where(),
            hint="Give a file with at least one data row",
        )

    def _unreadable(self, exc: BaseException) -> InvalidInputError:
        return InvalidInputError(
            f"cannot read {self.uri}: {type(exc).__name__}: {exc}",
            where=self._where(),
            hint="Check that the file is complete (a compressed file must match its "
            "extension) and that you may read it",
        )

    def _check_file(self) -> None:
        if self.is_local:
            path = Path(self.uri)
            if not path.exists():
                raise NotFoundError(
                    f"file not found: {self.uri}",
                    where=self._where(),
                    hint="Check the path (relative paths start at the current folder)",
                )
            if path.is_dir():
                raise InvalidInputError(
                    f"{self.uri} is a folder, not a file",
                    where=self._where(),
                    hint="Give the path of one data file",
                )
            if path.stat().st_size == 0:
                raise self._no_rows(" (the file is empty)")

    @contextmanager
    def _open(self) -> Iterator[IO[bytes]]:
        """The file's bytes, decompressed by extension."""
        try:
            opened = fsspec.open(self.uri, "rb", compression="infer", **self.storage_options)
            fh = opened.open()
        except FileNotFoundError as exc:
            raise NotFoundError(
                f"file not found: {self.uri}",
                where=self._where(),
                hint="Check the path or URI and your access to it",
            ) from exc
        except ImportError as exc:
            raise InvalidInputError(
                f"cannot open {self.uri}: {exc}",
                where=self._where(),
                hint="Install the filesystem package for this URI scheme, e.g. "
                "pip install 'loopml[s3]' for s3://",
            ) from exc
        except (OSError, ValueError) as exc:
            raise InvalidInputError(
                f"cannot open {self.uri}: {exc}",
                where=self._where(),
                hint="Check that the file is readable (permissions, credentials, URI scheme)",
            ) from exc
        try:
            yield fh
        finally:
            fh.close()

    def _lines(self) -> Iterator[tuple[int, bytes]]:
        """``(1-based line number, raw line)``; only used to locate an error."""
        with self._open() as fh:
            yield from enumerate(fh, start=1)


class ColumnTypeChange(InvalidInputError):
    """A CSV column's later values do not fit the type inferred from the first block."""

    code = "schema_change"

    def __init__(self, message: str, *, column: str, value: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.column = column
        self.value = value


class CsvSource(FileSource):
    """Delimiter-separated values (quoted values may span lines), with a header row unless
    ``header=False``; the delimiter and the decimal mark are sniffed unless given."""

    format = "csv"
    extensions = (".csv",)

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        delimiter: str | None = None,
        encoding: str = "utf-8",
        header: bool = True,
        decimal: str | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(path, storage_options=storage_options)
        check_options(delimiter, encoding, decimal)
        self.delimiter = delimiter
        self.encoding = encoding
        self.header = header
        self.decimal = decimal

    def dialect(self) -> tuple[str, str]:
        """``(delimiter, decimal mark)``: as given, else sniffed from the file's first lines."""
        if self.delimiter is not None and (self.decimal is not None or self.delimiter == ","):
            return self.delimiter, self.decimal or "."
        try:
            with self._open() as fh:
                sample, complete = read_sample(fh, self.encoding)
        except UnicodeError:  # an encoding that cannot even start (utf-16 without a BOM)
            sample, complete = "", True
        delimiter = self.delimiter or sniff_delimiter(sample, complete=complete)
        if self.decimal is None:
            return delimiter, sniff_decimal(
                sample, delimiter, header=self.header, complete=complete
            )
        check_options(delimiter, self.encoding, self.decimal, {"file": self.uri})
        return delimiter, self.decimal

    #: declared column types (loopml.yaml), used instead of inferring them
    column_types: Mapping[str, pa.DataType] | None = None

    def _options(
        self, invalid: list[pacsv.InvalidRow], block: int | None = None
    ) -> tuple[pacsv.ReadOptions, pacsv.ParseOptions, pacsv.ConvertOptions, str]:
        def on_invalid(row: pacsv.InvalidRow) -> str:
            invalid.append(row)
            return "error"

        delimiter, decimal = self.dialect()
        read_options = pacsv.ReadOptions(
            encoding=self.encoding,
            autogenerate_column_names=not self.header,
            **({"block_size": block} if block else {}),
        )
        # an empty field is missing, as pandas reads it, also in text columns
        convert_options = pacsv.ConvertOptions(
            strings_can_be_null=True,
            decimal_point=decimal,
            column_types=dict(self.column_types or {}),
        )
        parse_options = pacsv.ParseOptions(
            delimiter=delimiter, newlines_in_values=True, invalid_row_handler=on_invalid
        )
        return read_options, parse_options, convert_options, delimiter

    def _read(self) -> pa.Table:
        invalid: list[pacsv.InvalidRow] = []
        delimiter = "," if self.delimiter is None else self.delimiter
        try:
            read_options, parse_options, convert_options, delimiter = self._options(invalid)
            with self._open() as fh:
                table = pacsv.read_csv(
                    fh,
                    read_options=read_options,
                    parse_options=parse_options,
                    convert_options=convert_options,
                )
            return self._checked(table)
        except (pa.ArrowException, UnicodeError, *_STREAM_ERRORS) as exc:
            raise self._translate(exc, invalid, delimiter, []) from exc

    def _batches(self) -> Iterator[pa.RecordBatch]:
        types: dict[str, pa.DataType] = {}  # those of the first read, kept by the next

        def batches_of(read: int, skip: int, parsed: list[int]) -> Iterator[pa.RecordBatch]:
            return self._batches_of(read, skip, parsed, types)

        return self._rereading(batches_of, "data row")

    def _batches_of(
        self, read: int, skip: int, parsed: list[int], types: dict[str, pa.DataType]
    ) -> Iterator[pa.RecordBatch]:
        """The rows after the first ``skip``, parsed in blocks of ``read`` bytes after the
        first block, with the column ``types`` if any (else they are set to those read);
        ``parsed[0]`` counts the rows the parser gave."""
        invalid: list[pacsv.InvalidRow] = []
        delimiter = "," if self.delimiter is None else self.delimiter
        names: list[str] = []
        used = max(read, self.block_bytes)  # until the first block is parsed
        with self._open() as fh:
            try:
                read_options, parse_options, convert_options, delimiter = self._options(
                    invalid, self.block_bytes
                )
                if types:
                    convert_options.column_types = types
                reader, grouped, used = self._stream(
                    fh, read_options, parse_options, convert_options, read
                )
                names = reader.schema.names
                if not types and len(set(names)) == len(names):
                    types.update((f.name, f.type) for f in reader.schema)
                batches: Iterator[pa.RecordBatch] = _skipped(reader, skip, parsed)
                if grouped:
                    batches = _grouped(batches, self.block_bytes)
                for batch in batches:
                    yield self._checked(pa.Table.from_batches([batch])).to_batches()[0]
            except (pa.ArrowException, UnicodeError, *_STREAM_ERRORS) as exc:
                if isinstance(exc, pa.ArrowInvalid) and "straddling object" in str(exc):
                    raise _Straddled(used) from exc
                raise self._translate(exc, invalid, delimiter, names) from exc

    def _stream(
        self,
        fh: IO[bytes],
        read_options: pacsv.ReadOptions,
        parse_options: pacsv.ParseOptions,
        convert_options: pacsv.ConvertOptions,
        read: int,
    ) -> tuple[pacsv.CSVStreamingReader, bool, int]:
        """The streaming reader of ``fh``, whether its batches are smaller than a block, and
        the size of the blocks it reads after the first.

        The column types are inferred from the first :attr:`block_bytes`, as one block of
        that size would be; the rest is then parsed in blocks of ``read`` bytes with those
        types (the same conversions, a quarter of the read-ahead memory). A file that fits in
        the first block, a text encoding other than UTF-8 (a block may not end on a whole
        character) or repeated column names (types are given by name) are read in blocks of
        :attr:`block_bytes` (or ``read``, if larger)."""
        block = read_options.block_size

        def stream(source: Any, size: int) -> pacsv.CSVStreamingReader:
            options = pacsv.ReadOptions(
                encoding=read_options.encoding,
                autogenerate_column_names=read_options.autogenerate_column_names,
                block_size=size,
                use_threads=read_options.use_threads,
            )
            return pacsv.open_csv(
                source,
                read_options=options,
                parse_options=parse_options,
                convert_options=convert_options,
            )

        if read >= block or codecs.lookup(self.encoding).name != "utf-8":
            return stream(fh, max(read, block)), False, max(read, block)
        head = _read_up_to(fh, block + 1)
        if len(head) <= block:  # the whole file: one block, as before
            return stream(pa.BufferReader(head), block), False, block
        # the first block (up to its last whole row) is parsed on opening, the rest never
        schema = stream(pa.BufferReader(head), block).schema
        rest = _Chained(head, fh)
        if len(set(schema.names)) != len(schema.names):
            return stream(rest, block), False, block
        convert_options.column_types = {f.name: f.type for f in schema}
        return stream(rest, read), True, read

    def _checked(self, table: pa.Table) -> pa.Table:
        names = table.column_names  # pyarrow decodes the header only here
        if not self.header:
            names = [f"column_{i + 1}" for i in range(table.num_columns)]
            table = table.rename_columns(names)
        for name, field in zip(names, table.schema, strict=True):
            if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type):
                raise self._not_text(column=name)
        return table

    def _translate(
        self,
        exc: BaseException,
        invalid: list[pacsv.InvalidRow],
        delimiter: str,
        names: list[str],
    ) -> InvalidInputError:
        """The parser's error as one line naming the file, the line or column, and the fix."""
        message = str(exc)
        if isinstance(exc, UnicodeError):
            return self._not_text(message)
        if not isinstance(exc, pa.ArrowException):
            return self._unreadable(exc)
        if "Empty CSV file" in message:
            return self._no_rows(" (the file holds no header and no data)")
        if invalid or "Expected" in message:
            row = invalid[0] if invalid else None
            return self._broken_row(row, message, delimiter)
        changed = _CSV_CONVERSION.search(message)
        if changed:
            index = int(changed.group("index"))
            column = names[index] if index < len(names) else f"column_{index + 1}"
            if not self.header:
                column = f"column_{index + 1}"
            return ColumnTypeChange(
                f"{self.uri}: column {column!r} was read as {changed.group('type')} from the "
                f"first {self.block_bytes >> 20} MiB, but a later row holds "
                f"{changed.group('value')!r}",
                where=self._where(column=column),
                hint=f"Pass --allow-schema-change to read the column as text, declare its type "
                f"in loopml.yaml (data.datasets.NAME.schema: {{{column}: string}}), or fix the "
                "value",
                column=column,
                value=changed.group("value"),
            )
        return InvalidInputError(
            f"cannot read {self.uri} as CSV: {message}",
            where=self._where(),
            hint="Check the delimiter and the encoding, or pass --format",
        )

    def _not_text(self, detail: str = "", column: str | None = None) -> InvalidInputError:
        """The file is not text in ``self.encoding``: say at which byte and line."""
        try:
            with self._open() as fh:
                found = first_decode_error(iter(lambda: fh.read(1 << 20), b""), self.encoding)
        except UnicodeError:
            found = None
        where: dict[str, Any] = {} if column is None else {"column": column}
        at = f" (column {column!r})" if column is not None else ""
        if found is not None:
            where.update(line=found.line, byte=found.byte)
            at = f" at byte {found.byte}, line {found.line}{at}: {found.bad!r} ({found.reason})"
        elif detail:
            at = f"{at}: {detail}"
        other = "utf-8" if codecs.lookup(self.encoding).name != "utf-8" else "latin-1"
        return InvalidInputError(
            f"{self.uri} is not valid {self.encoding} text{at}",
            where=self._where(**where),
            hint=f"Give the file's encoding: --encoding {other} on the command line, "
            f"encoding='{other}' from Python (cp1252 for many files saved on Windows)",
        )

    def _broken_row(
        self, row: pacsv.InvalidRow | None, message: str, delimiter: str
    ) -> InvalidInputError:
        expected = row.expected_columns if row is not None else None
        actual = row.actual_columns if row is not None else None
        text = row.text if row is not None else None
        with self._open() as raw:  # the csv module finds the row pyarrow stumbled on
            lines = io.TextIOWrapper(raw, encoding=self.encoding, errors="replace", newline="")
            found = first_bad_row(lines, delimiter, expected)
        line = found[0] if found else None
        if found and actual is None:
            expected, actual, text = found[1], found[2], found[3]
        where = self._where(**({"line": line} if line else {}))
        if expected is None:
            return InvalidInputError(
                f"cannot read {self.uri} as CSV: {message}",
                where=where,
                hint="Every row must have as many fields as the header",
            )
        at = f" line {line}" if line else ""
        shown = f": {text[:200]!r}" if text else ""
        first = "the header" if self.header else "the first row"
        return InvalidInputError(
            f"{self.uri}{at} has {actual} fields, but {first} has {expected}{shown}",
            where=where,
            hint=f"Fix or remove that row; quote values that contain the delimiter {delimiter!r} "
            f'("a{delimiter}b") and write quotes inside quoted values twice, or give the '
            "delimiter (--delimiter)",
        )


class TsvSource(CsvSource):
    """Tab-separated values (with a header row unless ``header=False``)."""

    format = "tsv"
    extensions = (".tsv",)

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        encoding: str = "utf-8",
        header: bool = True,
        decimal: str | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            path,
            delimiter="\t",
            encoding=encoding,
            header=header,
            decimal=decimal,
            storage_options=storage_options,
        )


class ParquetSource(FileSource):
    """An Apache Parquet file."""

    format = "parquet"
    extensions = (".parquet", ".pq")

    def _batches(self) -> Iterator[pa.RecordBatch]:
        try:
            with self._open() as fh:
                yield from pq.ParquetFile(fh).iter_batches(batch_size=self.batch_rows or 65_536)
        except (pa.ArrowException, OSError) as exc:
            raise InvalidInputError(
                f"{self.uri} is not a readable Parquet file: {exc}",
                where=self._where(),
                hint="Check that the file is complete and really Parquet, or pass --format",
            ) from exc


_HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
_INT = re.compile(r"[+-]?[0-9]{1,18}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_NATURAL = re.compile(r"([0-9]+)")


def _natural(path: str) -> list[Any]:
    """Sort key: ``month=2`` before ``month=10``, the same order on every run and filesystem."""
    return [int(p) if p.isdigit() else p for p in _NATURAL.split(path)]


def _partition_type(values: list[str | None]) -> pa.DataType:
    """The type of a hive partition column from its folder values: int64 when every value is
    a whole number, a date when every value is ``YYYY-MM-DD``, else text."""
    given = [v for v in values if v is not None]
    if given and all(_INT.fullmatch(v) for v in given):
        return pa.int64()
    if given and all(_DATE.fullmatch(v) for v in given):
        try:
            pa.array(given).cast(pa.date32())
            return pa.date32()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    return pa.string()


class ParquetFolderSource(FileSource):
    """A folder of Parquet files, read file after file in record batches, optionally a hive
    tree (``year=2013/month=1/part-0.parquet``): the ``key=value`` folders become columns
    (after the files' own), typed from the values in the paths (:func:`_partition_type`;
    ``__HIVE_DEFAULT_PARTITION__`` is null) and listed in :attr:`partition_columns`.

    Files are taken in natural path order (``month=2`` before ``month=10``); names starting
    with ``.`` or ``_`` (``_SUCCESS``, ``_common_metadata``, ``.crc`` files) are skipped, as are
    files that end in neither ``.parquet`` nor ``.pq`` but have an extension. Every file must
    have the first one's columns, and every file the same partition keys."""

    format = "parquet"
    extensions = ()

    def describe(self) -> str:
        return self.uri.rstrip("/") + "/"

    def _check_file(self) -> None:
        if self.is_local:
            path = Path(self.uri)
            if not path.exists():
                raise NotFoundError(
                    f"folder not found: {self.uri}",
                    where=self._where(),
                    hint="Check the path (relative paths start at the current folder)",
                )
            if not path.is_dir():
                raise InvalidInputError(
                    f"{self.uri} is not a folder",
                    where=self._where(),
                    hint="Give a folder of Parquet files, or the path of one file",
                )

    _fs_root: tuple[Any, str] | None = None

    def _filesystem(self) -> tuple[Any, str]:
        if self._fs_root is None:
            self._fs_root = self._connect()
        return self._fs_root

    def _connect(self) -> tuple[Any, str]:
        try:
            fs, root = fsspec.core.url_to_fs(self.uri, **self.storage_options)
        except ImportError as exc:
            raise InvalidInputError(
                f"cannot open {self.uri}: {exc}",
                where=self._where(),
                hint="Install the filesystem package for this URI scheme, e.g. "
                "pip install 'loopml[s3]' for s3://",
            ) from exc
        except (OSError, ValueError) as exc:
            raise self._unreadable(exc) from exc
        return fs, str(root).rstrip("/")

    def files(self) -> list[tuple[str, list[tuple[str, str | None]]]]:
        """``(path on its filesystem, [(partition key, value or None), ...])`` per data file,
        in reading order."""
        fs, root = self._filesystem()
        try:
            found = [str(f) for f in fs.find(root)]
        except FileNotFoundError as exc:
            raise NotFoundError(
                f"folder not found: {self.uri}",
                where=self._where(),
                hint="Check the path or URI and your access to it",
            ) from exc
        except (OSError, ValueError) as exc:
            raise self._unreadable(exc) from exc
        out: list[tuple[str, list[tuple[str, str | None]]]] = []
        for full in sorted(found, key=_natural):
            rel = full[len(root) :].strip("/") if full.startswith(root) else full
            segments = rel.split("/") if rel else [full.rsplit("/", 1)[-1]]
            if any(s.startswith((".", "_")) for s in segments):
                continue
            suffix = Path(segments[-1]).suffix.lower()
            if suffix and suffix not in ParquetSource.extensions:
                continue
            keys: list[tuple[str, str | None]] = []
            for segment in segments[:-1]:
                key, eq, value = segment.partition("=")
                if eq and key:
                    text = unquote(value)
                    keys.append((unquote(key), None if text in ("", _HIVE_NULL) else text))
            out.append((full, keys))
        if not out:
            raise InvalidInputError(
                f"{self.uri} holds no Parquet file",
                where=self._where(),
                hint="Give a folder holding .parquet files (in key=value/ folders for a hive "
                "tree), or the path of one file",
            )
        first = [k for k, _ in out[0][1]]
        for full, keys in out[1:]:
            if [k for k, _ in keys] != first:
                raise InvalidInputError(
                    f"{self._shown(full)} is under partition folders "
                    f"{[k for k, _ in keys] or 'none'}, but {self._shown(out[0][0])} under "
                    f"{first or 'none'}",
                    where=self._where(part=self._shown(full)),
                    hint="Every file of a hive tree must sit at the same depth under the same "
                    "key=value folders; move the others out",
                )
        return out

    def _shown(self, full: str) -> str:
        """A file of the folder as the user would write it."""
        root = self._filesystem()[1]
        rel = full[len(root) :].strip("/") if full.startswith(root) else full
        return f"{self.describe()}{rel}"

    def _batches(self) -> Iterator[pa.RecordBatch]:
        fs, _ = self._filesystem()
        files = self.files()
        keys = [k for k, _ in files[0][1]]
        types = {key: _partition_type([dict(parts)[key] for _, parts in files]) for key in keys}
        self.partition_columns = tuple(keys)
        schema: pa.Schema | None = None
        for full, parts in files:
            shown = self._shown(full)
            where = self._where(part=shown)
            try:
                with fs.open(full, "rb") as fh:
                    reader = pq.ParquetFile(fh)
                    file_schema = reader.schema_arrow
                    if schema is None:
                        schema = file_schema
                        clash = [k for k in keys if k in file_schema.names]
                        if clash:
                            raise InvalidInputError(
                                f"{shown} has a column {clash[0]!r}, which is also a partition "
                                "folder name",
                                where={**where, "column": clash[0]},
                                hint="Rename the column in the files or the key=value folders",
                            )
                    else:
                        self._check_like(shown, file_schema, schema, where)
                    for batch in reader.iter_batches(batch_size=self.batch_rows or 65_536):
                        if not batch.num_rows:
                            continue
                        batch = self._like(batch, schema)
                        columns = list(batch.columns)
                        fields = list(batch.schema)
                        for key, value in parts:
                            typ = types[key]
                            columns.append(
                                pa.nulls(batch.num_rows, typ)
                                if value is None
                                else pa.array([value] * batch.num_rows).cast(typ)
                            )
                            fields.append(pa.field(key, typ))
                        yield pa.RecordBatch.from_arrays(columns, schema=pa.schema(fields))
            except (pa.ArrowException, OSError) as exc:
                raise InvalidInputError(
                    f"{shown} is not a readable Parquet file: {exc}",
                    where=where,
                    hint="Check that the file is complete and really Parquet, or move it out "
                    "of the folder",
                ) from exc

    @staticmethod
    def _check_like(shown: str, schema: pa.Schema, first: pa.Schema, where: dict[str, Any]) -> None:
        from loopml.data.engine import widens

        if schema.names != first.names:
            added = [n for n in schema.names if n not in first.names]
            missing = [n for n in first.names if n not in schema.names]
            detail = "; ".join(
                d
                for d in (
                    f"new columns {added}" if added else "",
                    f"missing columns {missing}" if missing else "",
                    "the same columns in another order" if not added and not missing else "",
                )
                if d
            )
            raise InvalidInputError(
                f"{shown} has other columns than the folder's first file: {detail}",
                where=where,
                hint="Every file of the folder must have the same columns; ingest the others "
                "as another dataset",
            )
        for field, want in zip(schema, first, strict=True):
            if field.type != want.type and not widens(field.type, want.type):
                raise InvalidInputError(
                    f"{shown}: column {field.name!r} is {field.type}, but {want.type} in the "
                    "folder's first file",
                    where={**where, "column": field.name},
                    hint="Write the column with one type in every file",
                )

    @staticmethod
    def _like(batch: pa.RecordBatch, schema: pa.Schema | None) -> pa.RecordBatch:
        if schema is None or batch.schema.equals(schema):
            return batch
        return pa.RecordBatch.from_arrays(
            [c.cast(f.type) for c, f in zip(batch.columns, schema, strict=True)], schema=schema
        )


def _read_up_to(fh: IO[bytes], size: int) -> bytes:
    """``size`` bytes of ``fh``, fewer only at its end (a decompressing stream may return
    less than asked for before then)."""
    chunks: list[bytes] = []
    got = 0
    while got < size:
        chunk = fh.read(size - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


class _Chained(io.RawIOBase):
    """``head`` then the rest of ``fh``, as one read-only stream whose reads are short only
    at its end (pyarrow's parser takes a short block for a whole one, and a row may straddle
    only two blocks)."""

    def __init__(self, head: bytes, fh: IO[bytes]) -> None:
        self._head = memoryview(head)
        self._fh = fh

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            out = bytes(self._head) + self._fh.read()
            self._head = memoryview(b"")
            return out
        if not self._head:
            return _read_up_to(self._fh, size)
        taken = bytes(self._head[:size])
        self._head = self._head[len(taken) :]
        return taken + _read_up_to(self._fh, size - len(taken)) if len(taken) < size else taken

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _Straddled(Exception):
    """A row (CSV, JSON Lines) longer than the parser's blocks of ``block`` bytes: pyarrow's
    "straddling object" (a row may straddle only two blocks)."""

    def __init__(self, block: int) -> None:
        super().__init__(block)
        self.block = block


def _skipped(
    batches: Iterator[pa.RecordBatch], skip: int, parsed: list[int]
) -> Iterator[pa.RecordBatch]:
    """``batches`` without their first ``skip`` rows; ``parsed[0]`` counts the rows seen."""
    for batch in batches:
        parsed[0] += batch.num_rows
        if skip >= batch.num_rows:
            skip -= batch.num_rows
            continue
        yield batch.slice(skip) if skip else batch
        skip = 0


def _grouped(batches: Iterator[pa.RecordBatch], size: int) -> Iterator[pa.RecordBatch]:
    """``batches`` joined into batches of at least about ``size`` bytes of Arrow data (the
    work on each batch downstream has a fixed cost; the copy happens in the reading thread)."""
    group: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        group.append(batch)
        held += batch.nbytes
        if held >= size * 3 // 4:
            yield group[0] if len(group) == 1 else pa.concat_batches(group)
            group, held = [], 0
    if group:
        yield group[0] if len(group) == 1 else pa.concat_batches(group)


_CSV_CONVERSION = re.compile(
    r"In CSV column #(?P<index>[0-9]+): .*?conversion error to (?P<type>[^:]+): "
    r"invalid value '(?P<value>[^']*)'"
)
_CHANGED = re.compile(r"Column\((?P<path>[^)]*)\) changed from (?P<old>\w+) to (?P<new>\w+)")
_TWICE = re.compile(r"Column\((?P<path>[^)]*)\) was specified twice")


class JsonLinesSource(FileSource):
    """JSON Lines: one JSON object per line (blank lines are skipped)."""

    format = "jsonl"
    extensions = (".jsonl", ".ndjson")

    def _read(self) -> pa.Table:
        try:
            with self._open() as fh:
                return pajson.read_json(fh)
        except (pa.ArrowException, OSError) as exc:
            raise self._failed(exc) from exc

    def _batches(self) -> Iterator[pa.RecordBatch]:
        schema: list[pa.Schema] = []  # that of the first read, kept by the next

        def batches_of(read: int, skip: int, parsed: list[int]) -> Iterator[pa.RecordBatch]:
            return self._batches_of(read, skip, parsed, schema)

        return self._rereading(batches_of, "line")

    def _batches_of(
        self, read: int, skip: int, parsed: list[int], schema: list[pa.Schema]
    ) -> Iterator[pa.RecordBatch]:
        """The rows after the first ``skip``: the column types are inferred from the first
        :attr:`block_bytes` (or ``read``, if larger), as one block of that size would be, or
        are ``schema[0]``, kept from an earlier read; the rest is parsed in blocks of ``read``
        bytes with them (a quarter of the read-ahead memory), joined back to batches of about
        a block; ``parsed[0]`` counts the rows parsed."""
        block = used = max(read, self.block_bytes)  # the first block's size
        with self._open() as fh:
            try:
                head = _read_up_to(fh, block + 1)
                whole = len(head) <= block  # the whole file: one block, as before
                if not schema:
                    # the first block (up to its last whole line) is parsed on opening only
                    first = pajson.open_json(
                        pa.BufferReader(head), read_options=pajson.ReadOptions(block_size=block)
                    )
                    schema.append(first.schema)
                    if whole:
                        yield from _skipped(first, skip, parsed)
                        return
                    del first
                rest: Any = pa.BufferReader(head) if whole else _Chained(head, fh)
                used = block if whole else read
                reader = pajson.open_json(
                    rest,
                    read_options=pajson.ReadOptions(block_size=used),
                    parse_options=pajson.ParseOptions(
                        explicit_schema=schema[0], unexpected_field_behavior="error"
                    ),
                )
                batches = _skipped(reader, skip, parsed)
                yield from _grouped(batches, block) if used < block else batches
            except (pa.ArrowException, OSError) as exc:
                if isinstance(exc, pa.ArrowInvalid) and "straddling object" in str(exc):
                    raise _Straddled(used) from exc
                raise self._failed(exc) from exc

    def _failed(self, exc: BaseException) -> InvalidInputError:
        """What a read that raised ``exc`` tells the user: unreadable, empty, or which line."""
        if isinstance(exc, OSError) and not isinstance(exc, pa.ArrowException):
            return self._unreadable(exc)
        message = str(exc)
        if "Empty JSON file" in message:
            return self._no_rows(" (the file holds no JSON object)")
        return self._explain(message)

    def _explain(self, message: str) -> InvalidInputError:
        """Find the line pyarrow stumbled on (its row numbers count within a block)."""
        changed = _CHANGED.search(message)
        field = changed.group("path").lstrip("/") if changed else None
        first_kind: str | None = None
        for number, raw in self._lines():
            if not raw.strip():
                continue
            try:
                value = json.loads(raw, object_pairs_hook=_no_duplicate_keys)
            except _DuplicateKeyError as exc:
                return InvalidInputError(
                    f"{self.uri} line {number}: key {exc.key!r} appears twice in one object",
                    where=self._where(line=number, column=exc.key),
                    hint="Keep one value per key",
                )
            except ValueError as exc:
                reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
                return InvalidInputError(
                    f"{self.uri} line {number} is not valid JSON: {reason}",
                    where=self._where(line=number),
                    hint="Write one complete JSON object per line",
                )
            if not isinstance(value, dict):
                return InvalidInputError(
                    f"{self.uri} line {number} holds a JSON {_json_kind(value)}, not an object",
                    where=self._where(line=number),
                    hint='Write one JSON object ({"column": value, ...}) per line; '
                    "a file holding one JSON array is not JSON Lines",
                )
            if field is not None and field in value and value[field] is not None:
                kind = _json_kind(value[field])
                if first_kind is None:
                    first_kind = kind
                elif kind != first_kind:
                    return InvalidInputError(
                        f"{self.uri} line {number}: field {field!r} holds a {kind}, "
                        f"but earlier lines hold a {first_kind}",
                        where=self._where(line=number, column=field),
                        hint="Give a field the same JSON type on every line "
                        '(quote numbers that are codes, e.g. "007")',
                    )
        return InvalidInputError(
            f"cannot read {self.uri} as JSON Lines: {message}",
            where=self._where(),
            hint="Write one JSON object per line with the same type for a field on every line",
        )


class _DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKeyError(key)
        out[key] = value
    return out


def _json_kind(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


class TableSource(Source):
    """An in-memory table or DataFrame (the index of a DataFrame is not kept)."""

    format = "table"

    def __init__(self, data: pa.Table | pd.DataFrame, description: str = "<in-memory table>"):
        self.data = data
        self.description = description

    def describe(self) -> str:
        return self.description

    def read(self) -> pa.Table:
        data = self.data
        if isinstance(data, pd.DataFrame):
            if len(set(map(str, data.columns))) != data.shape[1]:
                dupes = sorted({str(c) for c in data.columns if list(data.columns).count(c) > 1})
                raise InvalidInputError(
                    f"column name {dupes[0]!r} appears more than once",
                    where={"source": self.description, "column": dupes[0]},
                    hint="Rename the columns so that every name is unique",
                )
            try:
                data = pa.Table.from_pandas(data, preserve_index=False)
            except (pa.ArrowException, TypeError, ValueError) as exc:
                raise InvalidInputError(
                    f"the DataFrame cannot be stored as a table: {exc}",
                    where={"source": self.description},
                    hint="Give each column values of one type (numbers, booleans, dates or "
                    "strings)",
                ) from exc
        if not isinstance(data, pa.Table):
            raise InvalidInputError(
                f"a TableSource needs a pyarrow.Table or a pandas.DataFrame, got "
                f"{type(data).__name__}",
                where={"source": self.description},
                hint="Pass a file path, a DataFrame or a pyarrow.Table",
            )
        if data.num_rows == 0:
            raise InvalidInputError(
                f"{self.description} has no rows",
                where={"source": self.description},
                hint="Give a table with at least one row",
            )
        check_columns(data, {"source": self.description})
        return data


FORMATS: dict[str, type[FileSource]] = {
    "csv": CsvSource,
    "tsv": TsvSource,
    "parquet": ParquetSource,
    "pq": ParquetSource,
    "jsonl": JsonLinesSource,
    "ndjson": JsonLinesSource,
}


#: URI schemes (``"postgresql"``, ``"mqtt"``, ``"-"`` for standard input, ``"follow"`` for a
#: growing JSON Lines file) -> ``factory(uri, format=None, **options) -> Source``
SCHEMES: dict[str, Callable[..., Source]] = {}
#: schemes whose factory lives in a module imported on first use ("module:function"), so that
#: ``import loopml`` stays light; a module may also call :func:`register_scheme` itself
LAZY_SCHEMES: dict[str, str] = {
    **dict.fromkeys(
        ("postgresql", "postgres", "mysql", "mariadb", "sqlite"), "loopml.data.sql_source:make"
    ),
    **dict.fromkeys(("http", "https"), "loopml.data.http_source:make"),
    **dict.fromkeys(("mqtt", "mqtts", "redis", "-", "follow"), "loopml.data.streams:make"),
}


def register_scheme(prefix: str, factory: Callable[..., Source]) -> None:
    """Read URIs starting with ``prefix`` (``"mqtt"`` or ``"mqtt://"``) with ``factory``."""
    SCHEMES[_scheme_key(prefix)] = factory


def _scheme_key(prefix: str) -> str:
    return prefix.strip().lower().removesuffix("://").removesuffix(":")


def scheme_factory(uri: str, follow: bool = False) -> Callable[..., Source] | None:
    """The factory registered for ``uri``'s scheme (``postgresql+psycopg`` falls back to
    ``postgresql``), None for files (paths, ``file://``, ``s3://``, ``hdfs://``...)."""
    if follow:
        keys = ["follow"]
    elif uri.strip() == "-":
        keys = ["-"]
    elif "://" in uri or uri.lower().startswith("sqlite:"):
        scheme = uri.split(":", 1)[0].lower()
        keys = [scheme, scheme.split("+", 1)[0]]
    else:
        return None
    for key in keys:
        if key in SCHEMES:
            return SCHEMES[key]
        if key in LAZY_SCHEMES:
            module_name, _, attr = LAZY_SCHEMES[key].partition(":")
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:
                raise InvalidInputError(
                    f"cannot read {redact(uri)}: {exc}",
                    where={"source": redact(uri)},
                    hint="Install the extra for this source, e.g. pip install 'loopml[sources]'",
                ) from exc
            factory = SCHEMES.get(key) or getattr(module, attr)
            return cast("Callable[..., Source]", factory)
    return None


def redact(uri: str) -> str:
    """``uri`` without its password, for messages and lineage."""
    from loopml.stores.registry import redact_uri

    return redact_uri(uri)


def source_for(
    path_or_uri: str | os.PathLike[str],
    format: str | None = None,
    **options: Any,
) -> Source:
    """The source reading ``path_or_uri``: a registered scheme (:data:`SCHEMES`: databases,
    HTTP, streams; ``follow=True`` for a growing JSON Lines file), else a file by ``format``
    when given, else by extension (``.csv``, ``.tsv``, ``.parquet``/``.pq``,
    ``.jsonl``/``.ndjson``, each optionally followed by ``.gz``, ``.bz2``, ``.xz`` or ``.zst``).
    ``options`` (:class:`CsvOptions`) apply to CSV and TSV files; a delimiter given for a
    ``.tsv`` file wins over the tab."""
    if isinstance(path_or_uri, str):
        follow = bool(options.pop("follow", False))
        factory = scheme_factory(path_or_uri, follow)
        if factory is not None:
            return factory(path_or_uri, format=format, **options)
    uri = _normalize(path_or_uri)
    supported = "csv, tsv, parquet (.pq), jsonl (.ndjson)"
    cls: type[FileSource] | None
    if format is not None:
        cls = FORMATS.get(str(format).strip().lower().lstrip("."))
        if cls is None:
            raise InvalidInputError(
                f"unknown format {format!r}",
                where={"file": uri, "field": "format"},
                hint=f"Supported formats: {supported}",
            )
    else:
        cls = None
    if _is_folder(uri) and (cls or ParquetSource) is ParquetSource:
        return _make(ParquetFolderSource, uri, options)
    if cls is not None:
        return _make(cls, uri, options)
    name = Path(urlparse(uri).path if "://" in uri else uri).name.lower()
    for suffix in COMPRESSIONS:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    ext = Path(name).suffix
    for cls in dict.fromkeys(FORMATS.values()):
        if ext in cls.extensions:
            return _make(cls, uri, options)
    raise InvalidInputError(
        f"cannot tell the format of {uri} from its extension {ext or '(none)'!r}",
        where={"file": uri},
        hint=f"Use a file ending in .csv, .tsv, .parquet, .pq, .jsonl or .ndjson, or pass a "
        f"format ({supported})",
    )


def _make(cls: type[FileSource], uri: str, options: Mapping[str, Any]) -> FileSource:
    """``cls(uri, **options)``, where options left out, None or default count as not given."""
    given: dict[str, Any] = {
        k: v for k, v in options.items() if v is not None and not (k == "header" and v is True)
    }
    storage = given.pop("storage_options", None)
    if storage is not None and not isinstance(storage, Mapping):
        raise InvalidInputError(
            f"storage_options must be a mapping, got {type(storage).__name__}",
            where={"file": uri, "field": "storage_options"},
            hint="Pass fsspec's options as a dict, e.g. {'anon': True}",
        )
    if storage:
        given["storage_options"] = storage
    if not given or set(given) == {"storage_options"}:
        return cls(uri, **given)
    if not issubclass(cls, CsvSource):
        given.pop("storage_options", None)
        names = ", ".join(sorted(given))
        raise InvalidInputError(
            f"{names}: only for CSV and TSV files, but {uri} is read as {cls.format}",
            where={"file": uri, "field": sorted(given)[0]},
            hint="Leave it out for Parquet and JSON Lines files; if the file is CSV, say so "
            "(--format csv, format='csv')",
        )
    if cls is TsvSource and "delimiter" in given:
        cls = CsvSource
    return cls(uri, **given)


def _is_folder(uri: str) -> bool:
    """A folder of Parquet files: a local folder named without an extension or as Parquet
    (``flights/``, ``flights.parquet/`` as Spark writes them), or a remote URI ending in ``/``
    or without an extension (``s3://bucket/flights``)."""
    path = urlparse(uri).path if "://" in uri else uri
    suffix = Path(path).suffix.lower()
    if suffix and suffix not in ParquetSource.extensions:
        return False
    if "://" not in uri:
        return Path(uri).is_dir()
    return path.endswith("/") or not suffix


def _normalize(path: str | os.PathLike[str]) -> str:
    """An absolute local path, or the URI as given for remote schemes."""
    if not isinstance(path, str | os.PathLike):
        raise InvalidInputError(
            f"a source path must be a string or a path, got {type(path).__name__}",
            where={"file": repr(path)},
            hint="Pass the path of a CSV, Parquet or JSON Lines file",
        )
    text = os.fspath(path)
    if not isinstance(text, str) or not text.strip():
        raise InvalidInputError(
            "empty source path",
            where={"file": repr(text)},
            hint="Pass the path of a CSV, Parquet or JSON Lines file",
        )
    if text.startswith("file://"):
        text = url2pathname(urlparse(text).path)
    elif "://" in text:
        return text
    return str(Path(text).expanduser().absolute())
