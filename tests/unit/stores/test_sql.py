"""The SQL metadata store: migrations, SQLite settings, error translation."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from loopml.errors import InvalidInputError, StoreError
from loopml.settings import Settings
from loopml.stores.registry import open_metadata
from loopml.stores.sql import SqliteMetadataStore
from loopml.stores.sql_schema import (
    HEAD_REVISION,
    alembic_config,
    current_revision,
    metadata,
    migrate,
)
from loopml.testing import _model, _run
from loopml.utils import utcnow

HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_the_revisions_form_one_line() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    revisions = [r.revision for r in script.walk_revisions()]
    assert revisions == ["0008", "0007", "0006", "0005", "0004", "0003", "0002", "0001"]
    assert HEAD == "0008"
    assert HEAD_REVISION == HEAD  # a new migration moves both


def test_a_store_at_the_head_opens_without_alembic(tmp_path: Path) -> None:
    """Opening an up-to-date workspace reads its revision with one query: Alembic (0.1-0.5
    CPU s to import) is loaded only to create or upgrade a schema."""
    uri = _sqlite(tmp_path)
    SqliteMetadataStore(uri).close()  # creates the schema (Alembic)
    code = (
        "import sys\n"
        "from loopml.stores.sql import SqliteMetadataStore\n"
        f"SqliteMetadataStore({uri!r}).close()\n"
        "assert 'alembic' not in sys.modules, 'alembic was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'loopml.db'}"


def _at_0001(uri: str) -> None:
    """A database as an older loopml left it: revision 0001, with a dataset in it."""
    engine = sa.create_engine(uri.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.begin() as conn:
            migrate(conn, "0001")
            conn.execute(
                sa.text(
                    "INSERT INTO datasets (name, version, sha256, path, num_rows, num_bytes, "
                    "schema, stats, source, created_at) VALUES ('old', 1, :sha, "
                    "'datasets/old/v=1', 3, 10, '[]', '{}', 'old.csv', :at)"
                ),
                {"sha": "a" * 64, "at": utcnow()},
            )
            assert current_revision(conn) == "0001"
            assert not sa.inspect(conn).has_table("model_versions")
    finally:
        engine.dispose()


def _opening_migrates(uri: str) -> None:
    _at_0001(uri)
    store = open_metadata(uri, Settings())
    try:
        with store._engine.connect() as conn:  # type: ignore[attr-defined]
            assert current_revision(conn) == HEAD
        dv = store.get_dataset_version("old")
        assert (dv.version, dv.num_rows, dv.created_at.utcoffset()) == (1, 3, timedelta(0))
        assert store.add_model_version(_model("m")).version == 1
        store.set_alias("m", "champion", 1)
        assert store.get_aliases("m") == {"champion": 1}
    finally:
        store.close()


def test_opening_an_older_sqlite_workspace_migrates_it(tmp_path: Path) -> None:
    _opening_migrates(_sqlite(tmp_path))


@pytest.mark.postgres
def test_opening_an_older_postgres_schema_migrates_it(postgres_uri: str) -> None:
    _opening_migrates(postgres_uri)


def _no_drift(uri: str) -> None:
    store = open_metadata(uri, Settings())
    try:
        with store._engine.connect() as conn:  # type: ignore[attr-defined]
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == []
    finally:
        store.close()


def test_migrations_build_the_tables_the_code_uses_sqlite(tmp_path: Path) -> None:
    _no_drift(_sqlite(tmp_path))


@pytest.mark.postgres
def test_migrations_build_the_tables_the_code_uses_postgres(postgres_uri: str) -> None:
    _no_drift(postgres_uri)


def test_sqlite_settings_and_parent_folder(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "loopml.db"
    store = SqliteMetadataStore(f"sqlite:///{path}")
    try:
        assert path.exists()
        with store._engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    finally:
        store.close()


def test_concurrent_first_opens_migrate_once(tmp_path: Path) -> None:
    uri = _sqlite(tmp_path)
    errors: list[BaseException] = []

    def open_close() -> None:
        try:
            open_metadata(uri, Settings()).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_close) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []


def test_sqlite_in_an_impossible_place_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError) as info:
        open_metadata(f"sqlite:///{tmp_path / 'file' / 'loopml.db'}", Settings())
    assert info.value.hint


def test_unreachable_postgres_is_a_store_error_without_the_password() -> None:
    pytest.importorskip("psycopg")
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    uri = f"postgresql://me:s3cret@127.0.0.1:{port}/db?connect_timeout=3"
    with pytest.raises(StoreError) as info:
        open_metadata(uri, Settings())
    text = str(info.value)
    assert "s3cret" not in text
    assert f"me:***@127.0.0.1:{port}" in text
    assert "PostgreSQL is running" in text


def test_values_that_are_not_json_are_invalid_input(tmp_path: Path) -> None:
    store = open_metadata(_sqlite(tmp_path), Settings())
    try:
        with pytest.raises(InvalidInputError):
            store.add_run(_run("m", params={"x": object()}))
        with pytest.raises(InvalidInputError):
            store.list_runs(limit=0)
    finally:
        store.close()


@pytest.mark.postgres
def test_a_missing_postgres_schema_is_created(postgres_server: str) -> None:
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:16]}"
    try:
        store = open_metadata(f"{postgres_server}?options=-csearch_path%3D{schema}", Settings())
        try:
            assert store.add_model_version(_model("m")).version == 1
        finally:
            store.close()
        with psycopg.connect(postgres_server) as conn:
            tables = conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (schema,),
            ).fetchall()
        assert {t for (t,) in tables} == {
            "alembic_version",
            "alias_events",
            "aliases",
            "datasets",
            "deployment_events",
            "deployments",
            "feedback",
            "leases",
            "model_versions",
            "monitor_events",
            "online_checkpoints",
            "run_steps",
            "runs",
            "source_positions",
        }
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_a_run_whose_process_died_is_stored_as_aborted_when_seen(tmp_path: Path) -> None:
    from loopml.testing import _exited_owner

    store = open_metadata(_sqlite(tmp_path), Settings())
    try:
        owner = _exited_owner()
        run = store.add_run(_run("m", owner=owner))
        seen = store.get_run(run.id)
        assert seen.status == "aborted"
        assert seen.error is not None and f"pid {owner['pid']}" in seen.error
        with store._engine.connect() as conn:  # type: ignore[attr-defined]
            row = conn.execute(sa.text("SELECT status, error FROM runs")).one()
        assert tuple(row) == ("aborted", seen.error)  # persisted, not just reported
        assert store.list_runs("m") == [seen]
    finally:
        store.close()
