"""SqlSource on SQLite files: types, chunks, the incremental cursor (ties), errors."""

from __future__ import annotations

import datetime as dt
import decimal
import sqlite3
from pathlib import Path

import pyarrow as pa
import pytest

from loopml.data import ingest, list_datasets, load_table
from loopml.data.sql_source import SqlSource, engine_url
from loopml.errors import InvalidInputError, LoopmlError, NotFoundError
from loopml.workspace import Workspace

DAY = "2024-02-01"


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE tx (id INTEGER PRIMARY KEY, amount NUMERIC(10, 2), name TEXT, "
            "ts DATETIME, ok BOOLEAN, day DATE, score REAL)"
        )
        conn.executemany(
            "INSERT INTO tx VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    i,
                    f"{i}.25",
                    f"n{i}",
                    f"2024-01-0{1 + i // 4} 10:00:00",
                    i % 2,
                    "2024-02-01",
                    i / 4,
                )
                for i in range(10)
            ],
        )
    return f"sqlite:///{path}"


def _insert(url: str, *rows: tuple[object, ...]) -> None:
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        conn.executemany("INSERT INTO tx VALUES (?, ?, ?, ?, ?, ?, ?)", rows)


def test_table_types_come_from_the_declared_columns(db: str) -> None:
    table = SqlSource(db, table="tx").read()
    assert table.schema.types == [
        pa.int64(),
        pa.decimal128(10, 2),
        pa.string(),
        pa.timestamp("us", tz="UTC"),
        pa.bool_(),
        pa.date32(),
        pa.float64(),
    ]
    first = table.slice(0, 1).to_pylist()[0]
    assert first["amount"] == decimal.Decimal("0.25")
    assert first["ts"] == dt.datetime(2024, 1, 1, 10, tzinfo=dt.UTC)
    assert first["ok"] is False


def test_batches_are_bounded_and_in_order(db: str) -> None:
    source = SqlSource(db, table="tx", chunk_rows=3)
    sizes = [b.num_rows for b in source.batches()]
    assert sizes == [3, 3, 3, 1]
    assert source.position() is None and source.key is None  # not incremental


def test_query_types_are_inferred_and_one_schema_holds(db: str) -> None:
    source = SqlSource(db, query="SELECT id, name, score FROM tx WHERE id >= 2;", chunk_rows=4)
    batches = list(source.batches())
    assert {b.schema for b in batches} == {batches[0].schema}
    assert batches[0].schema.types == [pa.int64(), pa.string(), pa.float64()]
    assert sum(b.num_rows for b in batches) == 8


def test_incremental_reads_only_new_rows_and_keeps_ties(db: str) -> None:
    first = SqlSource(db, table="tx", since_column="ts", chunk_rows=4)
    assert first.read().num_rows == 10
    pos = first.position()
    assert pos is not None and pos["value"] == "2024-01-03T10:00:00"
    assert len(pos["ties"]) == 2  # ids 8 and 9 share the last timestamp

    again = SqlSource(db, table="tx", since_column="ts")
    again.resume(pos)
    assert again.read().num_rows == 0
    assert again.position() == pos

    # a late row with the same timestamp as the last one, and a newer one
    _insert(db, (20, "1", "late", "2024-01-03 10:00:00", 1, "2024-02-01", 0.0))
    _insert(db, (21, "1", "new", "2024-01-04 09:00:00", 1, "2024-02-01", 0.0))
    nxt = SqlSource(db, table="tx", since_column="ts")
    nxt.resume(pos)
    assert sorted(nxt.read().column("id").to_pylist()) == [20, 21]
    assert nxt.position()["value"] == "2024-01-04T09:00:00"


def test_incremental_query_and_key(db: str) -> None:
    url = db.replace("sqlite:///", "sqlite:///")
    source = SqlSource(url, query="SELECT id, name FROM tx", since_column="id", chunk_rows=3)
    assert source.read().num_rows == 10
    assert source.key is not None and source.key.startswith("sql:sqlite:///")
    assert source.position()["value"] == 9
    later = SqlSource(url, query="SELECT id, name FROM tx", since_column="id")
    later.resume(source.position())
    assert later.read().num_rows == 0


def test_a_position_of_another_shape_is_refused(db: str) -> None:
    source = SqlSource(db, table="tx", since_column="id")
    with pytest.raises(InvalidInputError, match="position"):
        source.resume({"oops": 1})


def test_unknown_table_lists_the_tables(db: str) -> None:
    with pytest.raises(NotFoundError, match=r"no table 'nope'.*tables here: tx"):
        SqlSource(db, table="nope").read()


def test_query_error_is_one_line(db: str) -> None:
    with pytest.raises(InvalidInputError, match="the query failed: no such column: nope") as e:
        SqlSource(db, query="SELECT nope FROM tx").read()
    assert "\n" not in str(e.value)


def test_unknown_since_column(db: str) -> None:
    with pytest.raises(InvalidInputError, match="no column 'when'"):
        SqlSource(db, table="tx", since_column="when").read()
    with pytest.raises(InvalidInputError, match="no column 'when'"):
        SqlSource(db, query="SELECT id FROM tx", since_column="when").read()


def test_a_missing_database_file_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "missing.db"
    with pytest.raises(NotFoundError, match="no database file"):
        SqlSource(f"sqlite:///{path}", table="tx").read()
    assert not path.exists()


def test_table_or_query_exactly_one(db: str) -> None:
    with pytest.raises(InvalidInputError, match="exactly one"):
        SqlSource(db)
    with pytest.raises(InvalidInputError, match="exactly one"):
        SqlSource(db, table="tx", query="SELECT 1")


def test_empty_result_is_refused_but_has_a_schema(db: str) -> None:
    source = SqlSource(db, query="SELECT id, name FROM tx WHERE id < 0")
    assert [b.num_rows for b in source.batches()] == [0]
    with pytest.raises(InvalidInputError, match="returned no rows"):
        source.read()


def test_passwords_are_redacted() -> None:
    source = SqlSource("postgresql://bob:s3cret@127.0.0.1:1/db", table="tx", since_column="id")
    assert "s3cret" not in source.describe()
    assert "s3cret" not in (source.key or "")
    assert engine_url("postgresql://h/db") == "postgresql+psycopg://h/db"
    assert engine_url("mariadb://root@h/db") == "mariadb+pymysql://root@h/db"


def test_values_that_change_type_name_the_column(tmp_path: Path) -> None:
    path = tmp_path / "mixed.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE m (v)")
        conn.executemany("INSERT INTO m VALUES (?)", [(1,), (2,), ("three",)])
    source = SqlSource(f"sqlite:///{path}", query="SELECT v FROM m", chunk_rows=2)
    with pytest.raises(InvalidInputError, match=r"column 'v'.*CAST"):
        source.read()


# -- through the ingestion engine -------------------------------------------------------------


def test_incremental_ingest_appends_only_new_rows(db: str, workspace: Workspace) -> None:
    first = ingest(workspace, db, "tx", table="tx", since_column="ts")
    assert first.created and first.dataset.num_rows == 10
    again = ingest(workspace, db, "tx", table="tx", since_column="ts")
    assert not again.created and again.dataset.version == 1  # no new rows: no version
    _insert(db, (20, "1", "late", "2024-01-03 10:00:00", 1, DAY, 0.0))
    third = ingest(workspace, db, "tx", table="tx", since_column="ts")
    assert third.created and third.dataset.version == 2
    assert sorted(load_table(workspace, "tx").column("id").to_pylist()) == [*range(10), 20]


def test_a_failed_run_leaves_the_cursor(db: str, workspace: Workspace) -> None:
    query = "SELECT id, score FROM tx"
    ingest(workspace, db, "tx", query=query, since_column="id")
    key = SqlSource(db, query=query, since_column="id").key
    assert key is not None
    before = workspace.metadata.get_source_position("tx", key)
    assert before is not None and before["value"] == 9
    with sqlite3.connect(db.removeprefix("sqlite:///")) as conn:  # a score that is text
        conn.execute("INSERT INTO tx (id, score) VALUES (10, 1.5), (11, 'abc')")
    with pytest.raises(LoopmlError):
        ingest(workspace, db, "tx", query=query, since_column="id")
    assert workspace.metadata.get_source_position("tx", key) == before
    assert len(list_datasets(workspace, "tx")) == 1
    with sqlite3.connect(db.removeprefix("sqlite:///")) as conn:
        conn.execute("UPDATE tx SET score = 2.5 WHERE id = 11")
    res = ingest(workspace, db, "tx", query=query, since_column="id")
    assert res.created and res.dataset.num_rows == 12
    assert workspace.metadata.get_source_position("tx", key)["value"] == 11
