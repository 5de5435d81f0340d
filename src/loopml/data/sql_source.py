"""SQL databases as a source: a table or a query behind any SQLAlchemy URL, read in chunks.

``SqlSource("postgresql://user@host/db", table="tx")`` (or ``query="select ..."``) streams the
rows through a server-side cursor (``stream_results``, ``yield_per``) into Arrow record
batches of ``chunk_rows`` rows, so the size of the table never decides memory. Column types
come from the table's reflected types (``table=``) or from the driver's cursor description
(``query=`` on PostgreSQL and MySQL/MariaDB); elsewhere they are inferred from the first
chunk. Integers are int64, floating point float64, ``NUMERIC(p, s)`` with ``p <= 38`` is
``decimal128(p, s)`` (other decimals float64), dates date32, timestamps UTC (a timestamp
without a time zone is read as UTC), text string, booleans bool, JSON its text.

Incremental reads (``since_column="updated_at"``): the position is the largest cursor value
read so far plus the hashes of the rows holding that value. The next run reads
``WHERE col >= :value ORDER BY col`` and drops the rows it already holds (same value, same
hash), so rows that share a cursor value with the last run's last row are neither lost nor
read twice. Rows whose cursor is NULL are not read in incremental mode.

``postgresql://`` uses psycopg 3, ``mysql://`` and ``mariadb://`` PyMySQL (``loopml[mysql]``).
Passwords never appear in :meth:`SqlSource.describe`, in :attr:`SqlSource.key` or in errors.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

import pyarrow as pa

from loopml.data.sources import Source
from loopml.errors import InvalidInputError, LoopmlError, NotFoundError, StoreError
from loopml.stores.registry import redact_uri
from loopml.utils import shorten

DEFAULT_CHUNK_ROWS = 65_536
_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}
_PACKAGES = {"psycopg": "postgres", "pymysql": "mysql", "MySQLdb": "mysql"}
_COPY_BLOCK = 16 << 20  # bytes of COPY text parsed together
_TIE_HASHES = 100_000  # most rows sharing the last cursor value that a position remembers
_UTC = pa.timestamp("us", tz="UTC")

# PostgreSQL type OIDs (pg_type) -> Arrow
_PG_TYPES: dict[int, pa.DataType] = {
    16: pa.bool_(),
    20: pa.int64(),
    21: pa.int64(),
    23: pa.int64(),
    26: pa.int64(),
    700: pa.float64(),
    701: pa.float64(),
    25: pa.string(),
    19: pa.string(),
    1042: pa.string(),
    1043: pa.string(),
    2950: pa.string(),
    114: pa.string(),
    3802: pa.string(),
    1082: pa.date32(),
    1114: _UTC,
    1184: _UTC,
    1083: pa.time64("us"),
    17: pa.binary(),
}
_PG_NUMERIC = 1700
# MySQL / MariaDB field types (pymysql.constants.FIELD_TYPE) -> Arrow
_MY_TYPES: dict[int, pa.DataType] = {
    1: pa.int64(),
    2: pa.int64(),
    3: pa.int64(),
    8: pa.int64(),
    9: pa.int64(),
    13: pa.int64(),
    4: pa.float64(),
    5: pa.float64(),
    7: _UTC,
    12: _UTC,
    10: pa.date32(),
    14: pa.date32(),
    15: pa.string(),
    245: pa.string(),
    247: pa.string(),
    248: pa.string(),
}
_MY_DECIMALS = (0, 246)


def engine_url(url: str) -> str:
    """``url`` with the driver loopml installs for its dialect (psycopg 3, PyMySQL)."""
    scheme, sep, rest = url.partition("://")
    driver = _DRIVERS.get(scheme.lower())
    return f"{driver}{sep}{rest}" if driver and sep else url


class SqlSource(Source):
    """A table or a query of a SQL database, read in chunks of ``chunk_rows`` rows."""

    format: ClassVar[str] = "sql"
    streaming: bool = False

    def __init__(
        self,
        url: str,
        *,
        table: str | None = None,
        query: str | None = None,
        since_column: str | None = None,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        connect_timeout: float = 10.0,
        copy: bool = True,
    ) -> None:
        if not isinstance(url, str) or "://" not in url:
            raise InvalidInputError(
                f"not a database URL: {url!r}",
                where={"source": repr(url)},
                hint="Give a SQLAlchemy URL such as postgresql://user@host:5432/db or "
                "sqlite:///path/to/file.db",
            )
        self.url = url
        self.redacted = redact_uri(url)
        if (table is None) == (query is None):
            raise InvalidInputError(
                f"{self.redacted}: give a table or a query (exactly one)",
                where={"source": self.redacted, "field": "table"},
                hint="Pass --table NAME or --query 'SELECT ...' (table= or query= from Python)",
            )
        if query is not None:
            query = query.strip().rstrip(";").strip()
            if not query:
                raise InvalidInputError(
                    f"{self.redacted}: empty query",
                    where={"source": self.redacted, "field": "query"},
                    hint="Give a SELECT statement",
                )
        if table is not None and not table.strip():
            raise InvalidInputError(
                f"{self.redacted}: empty table name",
                where={"source": self.redacted, "field": "table"},
                hint="Give the table's name, optionally with its schema (schema.table)",
            )
        if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
            raise InvalidInputError(
                f"chunk_rows must be a positive integer, got {chunk_rows!r}",
                where={"source": self.redacted, "field": "chunk_rows"},
                hint="Give the number of rows per batch, e.g. 65536",
            )
        self.table = table.strip() if table is not None else None
        self.query = query
        self.since_column = since_column or None
        self.chunk_rows = chunk_rows
        #: PostgreSQL, whole reads: COPY ... TO STDOUT (csv) instead of a cursor (much faster)
        self.copy = copy
        self.connect_timeout = connect_timeout
        what = f"table={self.table}" if self.table else f"query={_digest(query or '')}"
        self.key: str | None = (
            f"sql:{self.redacted}#{what}#since={self.since_column}" if self.since_column else None
        )
        self._start: dict[str, Any] | None = None  # the resumed position
        self._position: dict[str, Any] | None = None
        self._engine: Any = None

    # -- the Source interface -----------------------------------------------------------------

    def describe(self) -> str:
        what = f"table {self.table}" if self.table else f"query {shorten(self.query, 120)}"
        since = f" since {self.since_column}" if self.since_column else ""
        return f"{self.redacted} {what}{since}"

    def resume(self, position: dict[str, Any] | None) -> None:
        """Read only rows past ``position`` (a :meth:`position` of an earlier run)."""
        if position is not None and not self.since_column:
            raise InvalidInputError(
                f"{self.describe()}: a position needs since_column",
                where={"source": self.redacted, "field": "since_column"},
                hint="Give --since-column COLUMN for incremental reads",
            )
        if position is not None:
            _cursor_value(position, self.redacted)  # checks its shape
        self._start = dict(position) if position is not None else None
        self._position = self._start

    def position(self) -> dict[str, Any] | None:
        return dict(self._position) if self._position is not None else None

    def committed(self, position: dict[str, Any]) -> None:
        """Nothing to acknowledge: the position is all the state."""

    def read(self) -> pa.Table:
        schema: pa.Schema | None = None
        parts = []
        for batch in self.batches():
            schema = batch.schema
            parts.append(batch)
        if schema is None or sum(p.num_rows for p in parts) == 0:
            if self._start is not None and schema is not None:
                return pa.Table.from_batches([], schema=schema)
            raise InvalidInputError(
                f"{self.describe()} returned no rows",
                where={"source": self.redacted},
                hint="Check the table or the query's WHERE clause",
            )
        return pa.Table.from_batches(parts, schema=schema)

    def batches(self) -> Iterator[pa.RecordBatch]:
        """Record batches of at most ``chunk_rows`` rows, in cursor order when incremental.

        The position advances past each batch as it is yielded. A source that returns no row
        at all yields one empty batch (its schema) so callers still see the columns.
        """
        import sqlalchemy as sa

        engine = self._open()
        try:
            with engine.connect() as conn:
                stmt, params, types = self._statement(conn)
                if self.copy and self.since_column is None and conn.dialect.name == "postgresql":
                    fast = self._copy_batches(conn, stmt)
                    if fast is not None:
                        yield from fast
                        return
                result = conn.execution_options(
                    stream_results=True, yield_per=self.chunk_rows
                ).execute(stmt, params)
                names = list(result.keys())
                self._check_names(names)
                if not types:
                    types = _described_types(engine.dialect.name, result.cursor.description)
                yielded = False
                converter = _Converter(names, types, self.describe())
                tracker = _Tracker(names, self.since_column, self._start)
                for rows in result.partitions(self.chunk_rows):
                    kept = tracker.keep(rows)
                    if not kept:
                        continue
                    batch = converter.batch(kept)
                    tracker.advance(kept)
                    self._position = tracker.position() or self._position
                    yielded = True
                    yield batch
                if not yielded:
                    yield converter.batch([])
        except LoopmlError:
            raise
        except sa.exc.SQLAlchemyError as exc:
            raise self._translate(exc) from exc

    def _copy_batches(self, conn: Any, stmt: Any) -> Iterator[pa.RecordBatch] | None:
        """PostgreSQL, a whole read: ``COPY (...) TO STDOUT (FORMAT csv)`` parsed by Arrow's
        CSV reader with the columns' types, many times faster than rows through a cursor.
        None (use the cursor) when a column has a type the CSV text does not carry exactly."""
        import sqlalchemy as sa

        if isinstance(stmt, sa.TextClause):
            sql = stmt.text
        else:
            sql = str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
        probe = conn.execute(sa.text(f"SELECT * FROM ({sql}) AS loopml_q LIMIT 0"))
        names = list(probe.keys())
        self._check_names(names)
        description = probe.cursor.description
        probe.close()
        types = _described_types("postgresql", description)
        codes = [col[1] for col in description or ()]
        column_types: dict[str, pa.DataType] = {}
        cast: dict[str, pa.DataType] = {}
        for name, t, code in zip(names, types, codes, strict=True):
            if t is None or code in (17, 114, 3802, 1083):  # bytea, json, time: cursor path
                return None
            if t == _UTC and code == 1114:  # timestamp without time zone: read as UTC
                column_types[name], cast[name] = pa.timestamp("us"), t
            else:
                column_types[name] = t
        return self._copy_rows(conn, sql, names, column_types, cast)

    def _copy_rows(
        self,
        conn: Any,
        sql: str,
        names: list[str],
        column_types: dict[str, pa.DataType],
        cast: dict[str, pa.DataType],
    ) -> Iterator[pa.RecordBatch]:
        import pyarrow.csv as pacsv

        raw = conn.connection.driver_connection
        schema = pa.schema([pa.field(n, cast.get(n, column_types[n])) for n in names])
        with raw.cursor() as cur:
            copy_sql = f"COPY ({sql}) TO STDOUT (FORMAT csv)"
            read_options = pacsv.ReadOptions(column_names=names)
            parse_options = pacsv.ParseOptions(newlines_in_values=True)
            convert_options = pacsv.ConvertOptions(
                column_types=column_types,
                true_values=["t"],
                false_values=["f"],
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            )

            def parse(block: bytearray) -> Iterator[pa.RecordBatch]:
                try:
                    table = pacsv.read_csv(
                        pa.BufferReader(bytes(block)),
                        read_options=read_options,
                        parse_options=parse_options,
                        convert_options=convert_options,
                    )
                except pa.ArrowInvalid as exc:
                    raise InvalidInputError(
                        f"{self.describe()}: {exc}",
                        where={"source": self.redacted},
                        hint="CAST the column in a query (--query) to a plain type",
                    ) from exc
                if cast:
                    table = table.cast(schema)
                yield from table.to_batches(max_chunksize=self.chunk_rows)

            yielded = False
            # libpq hands COPY data over one row at a time: blocks of whole rows, in this thread
            with cur.copy(copy_sql) as copy:
                block = bytearray()  # one buffer: keeping each row's chunk costs 3x
                for chunk in copy:
                    block += chunk
                    if len(block) >= _COPY_BLOCK:
                        for batch in parse(block):
                            yielded = True
                            yield batch
                        block = bytearray()
                if block:
                    for batch in parse(block):
                        yielded = True
                        yield batch
                if not yielded:
                    yield pa.RecordBatch.from_pylist([], schema=schema)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    # -- helpers ------------------------------------------------------------------------------

    def _open(self) -> Any:
        if self._engine is not None:
            return self._engine
        import sqlalchemy as sa

        url = engine_url(self.url)
        try:
            parsed = sa.engine.make_url(url)
            backend = parsed.get_backend_name()
            _check_sqlite_file(backend, parsed.database, self.redacted)
            args: dict[str, Any] = {}
            if backend in ("postgresql", "mysql", "mariadb"):
                args["connect_timeout"] = max(1, int(self.connect_timeout))
            self._engine = sa.create_engine(url, connect_args=args, pool_pre_ping=True)
        except sa.exc.ArgumentError as exc:
            raise InvalidInputError(
                f"not a database URL: {self.redacted}: {exc}",
                where={"source": self.redacted},
                hint="Give a SQLAlchemy URL such as postgresql://user@host:5432/db",
            ) from exc
        except sa.exc.NoSuchModuleError as exc:
            raise InvalidInputError(
                f"no SQLAlchemy dialect for {self.redacted}: {exc}",
                where={"source": self.redacted},
                hint="Use postgresql://, mysql://, mariadb:// or sqlite:///, or install the "
                "dialect's package",
            ) from exc
        except ModuleNotFoundError as exc:
            extra = _PACKAGES.get((exc.name or "").split(".")[0])
            how = f"pip install 'loopml[{extra}]'" if extra else f"pip install {exc.name}"
            raise InvalidInputError(
                f"{self.redacted}: the database driver {exc.name} is not installed",
                where={"source": self.redacted},
                hint=how,
            ) from exc
        return self._engine

    def _statement(self, conn: Any) -> tuple[Any, dict[str, Any], list[pa.DataType | None]]:
        import sqlalchemy as sa

        params: dict[str, Any] = {}
        value = _cursor_value(self._start, self.redacted) if self._start is not None else None
        if self.table is not None:
            tbl = self._reflect(conn)
            if self.since_column is not None and self.since_column not in tbl.c:
                raise InvalidInputError(
                    f"{self.describe()}: no column {self.since_column!r}",
                    where={"source": self.redacted, "column": self.since_column},
                    hint=f"Columns: {', '.join(shorten(c.name, 40) for c in tbl.c)}",
                )
            stmt: Any = sa.select(tbl)
            if self.since_column is not None:
                col = tbl.c[self.since_column]
                stmt = stmt.where(col.is_not(None)).order_by(col)
                if value is not None:
                    stmt = stmt.where(_at_least(conn.dialect.name, col, value))
            return stmt, params, [_sa_type(c.type) for c in tbl.c]
        query = self.query or ""
        if self.since_column is not None:
            q = conn.dialect.identifier_preparer.quote(self.since_column)
            where = f"{q} IS NOT NULL"
            if value is not None:
                where += f" AND {q} >= :loopml_since"
                params["loopml_since"] = value
            query = f"SELECT * FROM ({query}) AS loopml_q WHERE {where} ORDER BY {q}"
        return sa.text(query), params, []

    def _reflect(self, conn: Any) -> Any:
        import sqlalchemy as sa

        schema, _, name = (self.table or "").rpartition(".")
        try:
            return sa.Table(name, sa.MetaData(), schema=schema or None, autoload_with=conn)
        except sa.exc.NoSuchTableError as exc:
            try:
                known = sa.inspect(conn).get_table_names(schema=schema or None)
            except sa.exc.SQLAlchemyError:
                known = []
            listed = ", ".join(sorted(known)[:20]) or "none"
            raise NotFoundError(
                f"{self.redacted}: no table {self.table!r}",
                where={"source": self.redacted, "table": self.table},
                hint=f"Check the name (schema.table for another schema); tables here: {listed}",
            ) from exc

    def _check_names(self, names: Sequence[str]) -> None:
        seen: set[str] = set()
        for name in names:
            if not name:
                raise InvalidInputError(
                    f"{self.describe()}: a result column has no name",
                    where={"source": self.redacted},
                    hint="Name every expression in the query (SELECT count(*) AS n ...)",
                )
            if name in seen:
                raise InvalidInputError(
                    f"{self.describe()}: column {name!r} appears more than once",
                    where={"source": self.redacted, "column": name},
                    hint="Give the columns unique names with AS in the query",
                )
            seen.add(name)
        if self.since_column is not None and self.since_column not in seen:
            raise InvalidInputError(
                f"{self.describe()}: the query has no column {self.since_column!r}",
                where={"source": self.redacted, "column": self.since_column},
                hint="Select the cursor column in the query, or give another --since-column",
            )

    def _translate(self, exc: Exception) -> LoopmlError:
        """A one-line error naming the source and the fix (no password, no SQL dump)."""
        orig = getattr(exc, "orig", None) or exc
        text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
        text = text.replace(self.url, self.redacted)
        low = text.lower()
        args = getattr(orig, "args", None) or ("",)
        codes = {getattr(orig, "sqlstate", None), args[0] if isinstance(args[0], int) else None}
        where = {"source": self.redacted}
        refused = ("authentication failed", "no password supplied", "access denied")
        if (
            codes & {"28P01", "28000", 1045, 1044, 1698}
            or any(s in low for s in refused)
            or ('role "' in low and "does not exist" in low)
        ):
            return InvalidInputError(
                f"{self.redacted}: the database refused the credentials: {text}",
                where=where,
                hint="Check the user name and password in the URL (or the server's auth rules)",
                code="source_auth",
            )
        if codes & {"3D000", 1049} or ("database" in low and "does not exist" in low):
            return NotFoundError(
                f"{self.redacted}: no such database: {text}",
                where=where,
                hint="Check the database name at the end of the URL",
            )
        if codes & {"42P01", "42S02", 1146} or "no such table" in low:
            return NotFoundError(
                f"{self.describe()}: unknown table: {text}",
                where=where,
                hint="Check the table names in the query (schema.table for another schema)",
            )
        reached = bool(codes & {2002, 2003, 2005, 2006, 2013, "08001", "08006"}) or any(
            s in low
            for s in (
                "connection refused",
                "could not connect",
                "can't connect",
                "timeout",
                "timed out",
                "could not translate host",
                "name or service not known",
                "unable to open database",
                "connection failed",
            )
        )
        if reached:
            sqlite = self.url.lower().startswith("sqlite")
            return StoreError(
                f"cannot reach the database {self.redacted}: {text}",
                where=where,
                hint="Check the path of the database file and that you may read it"
                if sqlite
                else "Check the host, port and that the server is running and accepts "
                "connections from here",
                code="source_unreachable",
            )
        return InvalidInputError(
            f"{self.describe()}: the query failed: {text}",
            where=where,
            hint="Check the SQL (try it in the database's own client) and the column names",
            code="source_query",
        )


def _check_sqlite_file(backend: str, database: str | None, source: str) -> None:
    """A SQLite source must exist: reading never creates an empty database file."""
    from pathlib import Path

    if backend != "sqlite" or not database or database == ":memory:":
        return
    if database.startswith("file:"):
        return
    if not Path(database).expanduser().is_file():
        raise NotFoundError(
            f"{source}: no database file {database}",
            where={"source": source},
            hint="Check the path (sqlite:///relative/path.db or sqlite:////absolute/path.db)",
        )


def _at_least(dialect: str, col: Any, value: Any) -> Any:
    """``col >= value``; SQLite stores dates as text in any format, so compare julianday()."""
    import sqlalchemy as sa

    if dialect == "sqlite" and isinstance(value, dt.date):
        iso = value.isoformat()
        return sa.func.julianday(col) >= sa.func.julianday(sa.literal(iso, sa.String))
    return col >= value


def make(uri: str, format: str | None = None, **options: Any) -> SqlSource:
    """The scheme factory: ``SqlSource(uri, table=..., query=..., since_column=...)``;
    options left as None count as not given."""
    given = {k: v for k, v in options.items() if v is not None and (k, v) != ("header", True)}
    if format is not None:
        raise InvalidInputError(
            f"{redact_uri(uri)}: --format is for files, not databases",
            where={"source": redact_uri(uri), "field": "format"},
            hint="Leave --format out; give --table or --query",
        )
    unknown = sorted(set(given) - _OPTIONS)
    if unknown:
        raise InvalidInputError(
            f"{redact_uri(uri)}: option {unknown[0]!r} is not one for databases",
            where={"source": redact_uri(uri), "field": unknown[0]},
            hint=f"Database options: {', '.join(sorted(_OPTIONS))}",
        )
    return SqlSource(uri, **given)


_OPTIONS = {"table", "query", "since_column", "chunk_rows", "connect_timeout", "copy"}


# -- types ------------------------------------------------------------------------------------


def _sa_type(t: Any) -> pa.DataType | None:
    """The Arrow type for a reflected SQLAlchemy column type; None: infer from the values."""
    import sqlalchemy as sa

    if isinstance(t, sa.Boolean):
        return pa.bool_()
    if isinstance(t, sa.Integer):
        return pa.int64()
    if isinstance(t, sa.Float):
        return pa.float64()
    if isinstance(t, sa.Numeric):
        return _decimal(t.precision, t.scale)
    if isinstance(t, sa.DateTime):
        return _UTC
    if isinstance(t, sa.Date):
        return pa.date32()
    if isinstance(t, sa.Time):
        return pa.time64("us")
    if isinstance(t, sa.Interval):
        return pa.duration("us")
    if isinstance(t, sa.JSON | sa.Uuid | sa.String | sa.Enum):
        return pa.string()
    if isinstance(t, sa.LargeBinary):
        return pa.binary()
    return None


def _decimal(precision: Any, scale: Any) -> pa.DataType:
    known = isinstance(precision, int) and isinstance(scale, int)
    if known and 0 < precision <= 38 and 0 <= scale <= precision:
        return pa.decimal128(precision, scale)
    return pa.float64()


def _described_types(dialect: str, description: Any) -> list[pa.DataType | None]:
    """Arrow types from a DBAPI cursor description (PostgreSQL, MySQL); None: infer."""
    out: list[pa.DataType | None] = []
    for col in description or ():
        code = col[1]
        if dialect == "postgresql" and isinstance(code, int):
            if code == _PG_NUMERIC:
                out.append(_decimal(col[4], col[5]))
            else:
                out.append(_PG_TYPES.get(code))
        elif dialect in ("mysql", "mariadb") and isinstance(code, int):
            if code in _MY_DECIMALS:
                out.append(_decimal(col[4], col[5]))
            else:
                out.append(_MY_TYPES.get(code))
        else:
            out.append(None)
    return out


class _Converter:
    """Rows (tuples) -> record batches with one schema for the whole read."""

    def __init__(self, names: list[str], types: list[pa.DataType | None], what: str) -> None:
        self.names = names
        self.types: list[pa.DataType | None] = list(types) + [None] * (len(names) - len(types))
        self.what = what
        self.schema: pa.Schema | None = None

    def batch(self, rows: Sequence[Sequence[Any]]) -> pa.RecordBatch:
        columns = list(zip(*rows, strict=True)) if rows else [() for _ in self.names]
        arrays = [
            self._array(i, list(values)) for i, values in enumerate(columns[: len(self.names)])
        ]
        if self.schema is None:
            self.schema = pa.schema(
                [pa.field(n, a.type) for n, a in zip(self.names, arrays, strict=True)]
            )
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)

    def _array(self, i: int, values: list[Any]) -> pa.Array:
        want = self.types[i] if self.schema is None else self.schema.field(i).type
        if want is not None and pa.types.is_string(want):
            values = [_text(v) for v in values]
        if want is None:
            values = [_text(v) if isinstance(v, dict | list) else v for v in values]
        try:
            if want is None:
                return pa.array(values, from_pandas=False)
            try:
                return pa.array(values, type=want, from_pandas=False)
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
                return pa.array(values, from_pandas=False).cast(want)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError) as e:
            name = self.names[i]
            sample = next((v for v in values if v is not None), None)
            raise InvalidInputError(
                f"{self.what}: column {name!r} holds {type(sample).__name__} values "
                f"({shorten(sample, 40)}) that do not fit its type {want}: {e}",
                where={"source": self.what, "column": name},
                hint=f"CAST the column in a query (--query 'SELECT CAST({name} AS ...) ...') so "
                "that every row has one type",
            ) from e


def _text(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


# -- the incremental position -----------------------------------------------------------------


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _row_hash(row: Sequence[Any]) -> str:
    return _digest(json.dumps(list(row), default=str, sort_keys=True))


def _json_value(value: Any) -> dict[str, Any]:
    """A cursor value as JSON: ``{"value": ..., "kind": ...}``."""
    if isinstance(value, bool):
        return {"value": value, "kind": "bool"}
    if isinstance(value, int):
        return {"value": value, "kind": "int"}
    if isinstance(value, float):
        return {"value": value, "kind": "float"}
    if isinstance(value, decimal.Decimal):
        return {"value": str(value), "kind": "decimal"}
    if isinstance(value, dt.datetime):
        return {"value": value.isoformat(), "kind": "datetime"}
    if isinstance(value, dt.date):
        return {"value": value.isoformat(), "kind": "date"}
    return {"value": str(value), "kind": "str"}


def _cursor_value(position: dict[str, Any] | None, source: str) -> Any:
    """The Python value a stored position names (to bind in ``WHERE col >= :value``)."""
    try:
        if not isinstance(position, dict):
            raise TypeError(type(position).__name__)
        kind, value = position["kind"], position["value"]
        parse: dict[str, Callable[[Any], Any]] = {
            "bool": bool,
            "int": int,
            "float": float,
            "decimal": decimal.Decimal,
            "datetime": dt.datetime.fromisoformat,
            "date": dt.date.fromisoformat,
            "str": str,
        }
        return parse[kind](value)
    except (KeyError, TypeError, ValueError, decimal.InvalidOperation) as exc:
        raise InvalidInputError(
            f"{source}: the stored cursor position {shorten(position, 80)} is not one loopml "
            f"wrote ({exc})",
            where={"source": source},
            hint="Ingest into a new dataset name, or give a fresh position",
        ) from exc


class _Tracker:
    """The incremental cursor: drops rows already read, remembers where the read stands."""

    def __init__(self, names: list[str], column: str | None, start: dict[str, Any] | None):
        self.index = names.index(column) if column is not None else None
        self.column = column
        self.value: Any = None
        self.ties: set[str] = set()
        self.seen_start: set[str] = set()
        self.start_value: Any = None
        if start is not None:
            self.start_value = _cursor_value(start, "position")
            self.value = self.start_value
            self.seen_start = set(start.get("ties", []))
            self.ties = set(self.seen_start)

    def keep(self, rows: Sequence[Sequence[Any]]) -> list[Sequence[Any]]:
        if self.index is None or not self.seen_start:
            return list(rows)
        i, v = self.index, self.start_value
        return [r for r in rows if not (r[i] == v and _row_hash(r) in self.seen_start)]

    def advance(self, rows: Sequence[Sequence[Any]]) -> None:
        if self.index is None or not rows:
            return
        i = self.index
        last = rows[-1][i]
        if self.value is None or last != self.value:
            self.value, self.ties = last, set()
        for row in reversed(rows):
            if row[i] != last or len(self.ties) >= _TIE_HASHES:
                break
            self.ties.add(_row_hash(row))

    def position(self) -> dict[str, Any] | None:
        if self.index is None or self.value is None:
            return None
        return {
            "column": self.column,
            **_json_value(self.value),
            "ties": sorted(self.ties),
        }
