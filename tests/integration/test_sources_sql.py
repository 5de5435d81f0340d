"""SqlSource against the real PostgreSQL and MariaDB servers on 127.0.0.1.

Each test creates its own table under a unique name (PostgreSQL: in a fresh schema) and drops
it afterwards; nothing else in the servers is touched.
"""

from __future__ import annotations

import datetime as dt
import decimal
import importlib.util
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from loopml.data.sql_source import SqlSource
from loopml.errors import InvalidInputError, NotFoundError, StoreError
from tests.conftest import service_unavailable

MY_HOST, MY_PORT, MY_DB = "127.0.0.1", 3306, "test"


@dataclass
class Db:
    url: str
    table: str
    execute: Callable[[str, list[tuple[Any, ...]] | None], None]


def _mariadb_connect() -> Any:
    if importlib.util.find_spec("pymysql") is None:
        service_unavailable("pymysql is not installed: pip install 'loopml[mysql]'")
    import pymysql

    try:
        return pymysql.connect(
            host=MY_HOST, port=MY_PORT, user="root", database=MY_DB, connect_timeout=3
        )
    except pymysql.Error as exc:
        service_unavailable(f"MariaDB is not reachable at {MY_HOST}:{MY_PORT}: {exc}")


CREATE = {
    "postgresql": "CREATE TABLE {t} (id BIGINT PRIMARY KEY, amount NUMERIC(12, 2), "
    "name TEXT, ts TIMESTAMPTZ, naive TIMESTAMP, ok BOOLEAN, day DATE, score DOUBLE PRECISION)",
    "mariadb": "CREATE TABLE {t} (id BIGINT PRIMARY KEY, amount DECIMAL(12, 2), "
    "name VARCHAR(50), ts DATETIME(6), naive DATETIME, ok BOOLEAN, day DATE, score DOUBLE)",
}


@pytest.fixture(params=["postgresql", "mariadb"])
def db(request: pytest.FixtureRequest) -> Iterator[Db]:
    table = f"tx_{uuid.uuid4().hex[:12]}"
    if request.param == "postgresql":
        import psycopg

        url = request.getfixturevalue("postgres_uri")
        conn: Any = psycopg.connect(url, autocommit=True)

        def execute(sql: str, rows: list[tuple[Any, ...]] | None = None) -> None:
            with conn.cursor() as cur:
                if rows:
                    cur.executemany(sql.replace("?", "%s"), rows)
                else:
                    cur.execute(sql)

        execute(CREATE["postgresql"].format(t=table))
        yield Db(url, table, execute)
        conn.close()  # the schema is dropped by the fixture
        return
    conn = _mariadb_connect()
    conn.autocommit(True)

    def my_execute(sql: str, rows: list[tuple[Any, ...]] | None = None) -> None:
        with conn.cursor() as cur:
            if rows:
                cur.executemany(sql.replace("?", "%s"), rows)
            else:
                cur.execute(sql)

    my_execute(CREATE["mariadb"].format(t=table))
    try:
        yield Db(f"mariadb://root@{MY_HOST}:{MY_PORT}/{MY_DB}", table, my_execute)
    finally:
        my_execute(f"DROP TABLE IF EXISTS {table}")
        conn.close()


def _rows(first: int, n: int, ts: dt.datetime) -> list[tuple[Any, ...]]:
    return [
        (
            i,
            decimal.Decimal(f"{i}.25"),
            f"n{i}",
            ts + dt.timedelta(minutes=i // 3),
            dt.datetime(2024, 5, 1, 12, 0, 0),
            i % 2 == 0,
            dt.date(2024, 5, 1),
            i / 4,
        )
        for i in range(first, first + n)
    ]


T0 = dt.datetime(2024, 5, 1, 8, 0, 0, tzinfo=dt.UTC)


def test_table_in_chunks_with_types(db: Db) -> None:
    db.execute(f"INSERT INTO {db.table} VALUES (?, ?, ?, ?, ?, ?, ?, ?)", _rows(0, 25, T0))
    source = SqlSource(db.url, table=db.table, chunk_rows=10)
    batches = list(source.batches())
    assert [b.num_rows for b in batches] == [10, 10, 5]
    table = pa.Table.from_batches(batches)
    types = dict(zip(table.column_names, table.schema.types, strict=True))
    assert types["id"] == pa.int64()
    assert types["amount"] == pa.decimal128(12, 2)
    assert types["name"] == pa.string()
    assert types["ts"] == pa.timestamp("us", tz="UTC")
    assert types["naive"] == pa.timestamp("us", tz="UTC")
    assert types["day"] == pa.date32()
    assert types["score"] == pa.float64()
    # MariaDB's BOOLEAN is TINYINT(1): an integer there
    assert types["ok"] in (pa.bool_(), pa.int64())
    row = sorted(table.to_pylist(), key=lambda r: r["id"])[4]
    assert row["amount"] == decimal.Decimal("4.25")
    assert row["ts"] == T0 + dt.timedelta(minutes=1)
    assert row["naive"] == dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC)


def test_query_types_from_the_cursor(db: Db) -> None:
    db.execute(f"INSERT INTO {db.table} VALUES (?, ?, ?, ?, ?, ?, ?, ?)", _rows(0, 5, T0))
    query = f"SELECT id, amount, name, ts, day, score FROM {db.table} WHERE id > 1"
    table = SqlSource(db.url, query=query).read()
    assert table.num_rows == 3
    amount = table.schema.field("amount").type
    # MySQL's cursor gives the display length (sign and point included): a wider precision
    assert pa.types.is_decimal(amount) and amount.scale == 2 and amount.precision >= 12
    assert table.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("day").type == pa.date32()


def test_incremental_by_a_timestamp_with_ties(db: Db) -> None:
    db.execute(f"INSERT INTO {db.table} VALUES (?, ?, ?, ?, ?, ?, ?, ?)", _rows(0, 9, T0))
    first = SqlSource(db.url, table=db.table, since_column="ts", chunk_rows=4)
    assert first.read().num_rows == 9
    pos = first.position()
    assert pos is not None and len(pos["ties"]) == 3  # ids 6, 7, 8 share the last minute

    none = SqlSource(db.url, table=db.table, since_column="ts")
    none.resume(pos)
    assert none.read().num_rows == 0

    # id 9 has the same ts as 6..8 (i // 3 == 3), 10 and 11 too; 12 is newer
    db.execute(f"INSERT INTO {db.table} VALUES (?, ?, ?, ?, ?, ?, ?, ?)", _rows(9, 4, T0))
    nxt = SqlSource(db.url, table=db.table, since_column="ts", chunk_rows=2)
    nxt.resume(pos)
    assert sorted(nxt.read().column("id").to_pylist()) == [9, 10, 11, 12]

    by_query = SqlSource(
        db.url, query=f"SELECT id, ts FROM {db.table}", since_column="id", chunk_rows=5
    )
    assert by_query.read().num_rows == 13
    assert by_query.position()["value"] == 12


def test_unknown_table(db: Db) -> None:
    with pytest.raises(NotFoundError, match="no table 'missing_tbl'"):
        SqlSource(db.url, table="missing_tbl").read()
    with pytest.raises(NotFoundError, match="unknown table"):
        SqlSource(db.url, query="SELECT * FROM missing_tbl").read()


def test_query_error(db: Db) -> None:
    with pytest.raises(InvalidInputError, match="the query failed") as info:
        SqlSource(db.url, query=f"SELECT nope FROM {db.table}").read()
    assert "\n" not in str(info.value)


def test_unreachable_server() -> None:
    for url in ("postgresql://postgres@127.0.0.1:1/test", "mariadb://root@127.0.0.1:1/test"):
        with pytest.raises(StoreError, match="cannot reach the database") as info:
            SqlSource(url, table="tx", connect_timeout=2).read()
        assert info.value.code == "source_unreachable"


def test_bad_credentials_are_named_and_redacted() -> None:
    _mariadb_connect().close()
    url = f"mariadb://root:wrong-secret@{MY_HOST}:{MY_PORT}/{MY_DB}"
    with pytest.raises(InvalidInputError, match="refused the credentials") as info:
        SqlSource(url, table="tx").read()
    assert "wrong-secret" not in str(info.value)
    assert info.value.code == "source_auth"


def test_postgres_unknown_role(postgres_server: str) -> None:
    url = "postgresql://no_such_role_loopml:pw-secret@127.0.0.1:5432/test"
    with pytest.raises(InvalidInputError, match="refused the credentials") as info:
        SqlSource(url, table="tx").read()
    assert "pw-secret" not in str(info.value)


@pytest.mark.slow
def test_cli_ingest_incremental(db: Db, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from loopml.cli.main import main

    def cli(*args: str) -> tuple[int, str]:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out if "--json" in args else captured.out + captured.err

    ws = tmp_path / "ws"
    assert cli("init", "-w", ws)[0] == 0
    db.execute(f"INSERT INTO {db.table} VALUES (?, ?, ?, ?, ?, ?, ?, ?)", _rows(0, 9, T0))
    run = ("data", "ingest", db.url, "--table", db.table, "--since-column", "ts", "--name", "tx")
    code, text = cli(*run, "-w", ws, "--json")
    assert code == 0, text
    assert json.loads(text)["num_rows"] == 9
    code, text = cli(*run, "-w", ws)
    assert code == 0, text
    db.execute(f"INSERT INTO {db.table} VALUES (?, ?, ?, ?, ?, ?, ?, ?)", _rows(9, 4, T0))
    code, text = cli(*run, "-w", ws)
    assert code == 0, text
    from loopml.data import list_datasets, load_table
    from loopml.workspace import open_workspace

    with open_workspace(ws) as opened:
        assert len(list_datasets(opened, "tx")) == 2  # the run without new rows added none
        assert sorted(load_table(opened, "tx").column("id").to_pylist()) == list(range(13))
    code, text = cli("data", "ingest", db.url, "--table", "missing_tbl", "--name", "m", "-w", ws)
    assert code == 2 and "no table 'missing_tbl'" in text and "Traceback" not in text


def test_postgres_copy_path_reads_what_the_cursor_reads(db: Db) -> None:
    if not db.url.startswith("postgresql"):
        pytest.skip("COPY ... TO STDOUT is PostgreSQL's")
    rows = _rows(0, 30, T0)
    rows.append((99, None, None, None, None, None, None, None))
    rows.append(
        (
            98,
            decimal.Decimal("-1.5"),
            'quo"te,\nnew line',
            T0,
            T0.replace(tzinfo=None),
            False,
            dt.date(1999, 12, 31),
            float("nan"),
        )
    )
    db.execute(f"INSERT INTO {db.table} VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    db.execute(f"INSERT INTO {db.table} (id, name) VALUES (97, '')")
    query = f"SELECT * FROM {db.table} ORDER BY id"
    fast = SqlSource(db.url, query=query, chunk_rows=7).read()
    slow = SqlSource(db.url, query=query, chunk_rows=7, copy=False).read()
    assert fast.schema == slow.schema
    assert fast.to_pylist()[:-3] == slow.to_pylist()[:-3]
    tail_fast, tail_slow = fast.to_pylist()[-3:], slow.to_pylist()[-3:]
    for a, b in zip(tail_fast, tail_slow, strict=True):
        assert {k: v for k, v in a.items() if k != "score"} == {
            k: v for k, v in b.items() if k != "score"
        }
    assert tail_fast[0]["name"] == "" and tail_fast[2]["name"] is None  # '' is not NULL
    by_table = SqlSource(db.url, table=db.table).read().sort_by("id")
    assert by_table.schema == fast.schema and by_table.num_rows == fast.num_rows
