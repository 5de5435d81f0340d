"""The metadata store on SQLAlchemy 2: one implementation, thin SQLite and PostgreSQL subclasses.

Opening a store migrates its schema to the newest Alembic revision (``stores/migrations``), so
an older workspace is brought up to date on first use. Library errors are translated here:
unique violations become :class:`ConflictError`, unreachable databases :class:`StoreError`
naming the URI (never its password) with a hint.
"""

from __future__ import annotations

import hashlib
import random
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url

from loopml.errors import ConflictError, InvalidInputError, NotFoundError, StoreError
from loopml.settings import Settings
from loopml.stores import (
    sql_aliases,
    sql_datasets,
    sql_deployments,
    sql_feedback,
    sql_monitor,
    sql_online,
)
from loopml.stores.base import (
    ANY_VERSION,
    Expected,
    MetadataStore,
    check_limit,
    check_step,
    check_tags,
    id_prefix,
)
from loopml.stores.records import (
    AliasEvent,
    DatasetVersion,
    Deployment,
    DeploymentEvent,
    Feedback,
    Lease,
    ModelVersion,
    MonitorEvent,
    Run,
    RunStep,
)
from loopml.stores.registry import redact_uri
from loopml.stores.sql_online import SqlOnlineCheckpoints, no_run
from loopml.stores.sql_schema import (
    _values,
    alembic_config,
    aliases,
    current_revision,
    datasets,
    migrate,
    model_versions,
    run_steps,
    runs,
)
from loopml.utils import owner_alive, utcnow

_RETRIES = 20  # attempts of a write that lost a race on a unique key
T = TypeVar("T")


# -- the store --------------------------------------------------------------------------------


class SqlMetadataStore(SqlOnlineCheckpoints, MetadataStore):
    """The metadata store on any SQLAlchemy database; subclasses prepare the engine."""

    #: what to check when the database cannot be used
    hint = "Check the metadata URI and that the database is reachable"

    def __init__(self, uri: str, settings: Settings | None = None) -> None:
        self.uri = uri
        self._shown = redact_uri(uri)
        self._engine: Engine = self._translated(lambda: self._create_engine(uri))
        # Several processes may open a new workspace at once; SQLite can answer "locked" at
        # such moments without waiting on its busy timeout, so the opening is retried a while.
        deadline = time.monotonic() + 30
        while True:
            try:
                with self._transaction(write=True, what="opening (migrating the schema)") as conn:
                    self._before_migrate(conn)
                    migrate(conn)
                return
            except StoreError as exc:
                if "locked" not in exc.message or time.monotonic() > deadline:
                    self._engine.dispose()
                    raise
                time.sleep(0.02 + 0.05 * random.random())
            except BaseException:
                self._engine.dispose()
                raise

    # hooks for the subclasses
    def _create_engine(self, uri: str) -> Engine:
        return sa.create_engine(uri)

    def _before_migrate(self, conn: Connection) -> None:
        """Runs in the migration's transaction, before Alembic."""

    # plumbing
    def _error(self, exc: Exception, what: str) -> StoreError:
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        return StoreError(
            f"metadata store {self._shown}: {what} failed: {detail[0] if detail else exc}",
            where={"uri": self._shown},
            hint=self.hint,
        )

    def _translated(self, fn: Callable[[], T]) -> T:
        with self._translate("opening"):
            return fn()

    @contextmanager
    def _translate(self, what: str) -> Iterator[None]:
        try:
            yield
        except sa.exc.IntegrityError as exc:
            raise ConflictError(
                f"the change clashes with what is stored: {str(exc.orig).splitlines()[0]}",
                where={"uri": self._shown},
                hint="Another writer may have got there first; read the current state and retry",
            ) from exc
        except sa.exc.StatementError as exc:
            if not isinstance(exc, sa.exc.DBAPIError) and isinstance(
                exc.orig, TypeError | ValueError
            ):
                raise InvalidInputError(
                    f"cannot store this value: {exc.orig}",
                    hint="Metadata values must be JSON-friendly (str, int, float, bool, None, "
                    "lists and dicts of them) and timestamps datetimes",
                ) from exc
            raise self._error(exc, what) from exc
        except (sa.exc.SQLAlchemyError, OSError) as exc:
            raise self._error(exc, what) from exc

    @contextmanager
    def _transaction(self, *, write: bool = False, what: str = "") -> Iterator[Connection]:
        """One transaction; ``write`` ones take the write lock up front where that matters."""
        what = what or ("writing" if write else "reading")
        with self._translate(what), self._engine.connect() as conn:
            if write:
                conn.execution_options(loopml_write=True)
            with conn.begin():
                yield conn

    def _retrying(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` again when it lost a race on a unique key (another writer got there)."""
        for attempt in range(_RETRIES):
            try:
                return fn()
            except ConflictError as exc:
                # only a lost race on a key is retried; a refusal (a name taken) is final
                if exc.code != ConflictError.code or attempt == _RETRIES - 1:
                    raise
                time.sleep(random.uniform(0.002, 0.02) * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    # names: one spelling per name, whatever the case (they share a folder on macOS/Windows)
    def _lock_name(self, conn: Connection, table: sa.Table, name: str) -> None:
        """Serialise writers creating ``name`` in any case; SQLite's writers already are."""

    @staticmethod
    def _spelled_otherwise(conn: Connection, table: sa.Table, name: str) -> str | None:
        """The stored name that is ``name`` but for case, when ``name`` itself is not stored."""
        if conn.execute(sa.select(table.c.name).where(table.c.name == name).limit(1)).first():
            return None
        query = (
            sa.select(table.c.name)
            .where(sa.func.lower(table.c.name) == name.lower(), table.c.name != name)
            .order_by(table.c.name)
            .limit(1)
        )
        found = conn.execute(query).scalar()
        return None if found is None else str(found)

    def _check_spelling(self, conn: Connection, table: sa.Table, name: str, what: str) -> None:
        existing = self._spelled_otherwise(conn, table, name)
        if existing is not None:
            raise ConflictError(
                f"{what} {name!r} is the existing {what} {existing!r} spelled in another case",
                where={what: name, "existing": existing},
                hint=f"Names that differ only in case are the same name (they share a folder "
                f"on macOS and Windows): use {existing!r}, or choose another name",
                code="name_taken",
            )

    # datasets
    def latest_dataset_version(self, name: str) -> int:
        with self._transaction() as conn:
            latest = self._latest(conn, datasets, name)
            if latest == 0:  # a new name: it must not be an existing one in another case
                self._check_spelling(conn, datasets, name, "dataset")
            return latest

    @staticmethod
    def _latest(conn: Connection, table: sa.Table, name: str) -> int:
        query = sa.select(sa.func.max(table.c.version)).where(table.c.name == name)
        return int(conn.execute(query).scalar() or 0)

    def add_dataset_version(
        self, dv: DatasetVersion, position: tuple[str, dict[str, Any]] | None = None
    ) -> DatasetVersion:
        if position is not None:
            position = sql_datasets.check_position(*position)
        with self._transaction(write=True) as conn:
            self._lock_name(conn, datasets, dv.name)
            self._check_spelling(conn, datasets, dv.name, "dataset")
            same = sa.select(datasets.c.version).where(datasets.c.name == dv.name)
            if conn.execute(same.where(datasets.c.version == dv.version)).first():
                raise ConflictError(
                    f"dataset {dv.name!r} already has a version {dv.version}",
                    where={"dataset": dv.name, "version": dv.version},
                    hint=f"Versions are immutable; the next one is "
                    f"{self._latest(conn, datasets, dv.name) + 1}",
                )
            twin = conn.execute(same.where(datasets.c.sha256 == dv.sha256)).scalar()
            if twin is not None:
                raise ConflictError(
                    f"dataset {dv.name!r} already holds this content as version {twin}",
                    where={"dataset": dv.name, "sha256": dv.sha256},
                    hint=f"Nothing new to add; use {dv.name}@{twin}",
                )
            conn.execute(datasets.insert().values(_values(dv)))
            if position is not None:
                sql_datasets.put_position(conn, dv.name, *position)
        return dv

    def get_source_position(self, dataset: str, key: str) -> dict[str, Any] | None:
        with self._transaction() as conn:
            return sql_datasets.get_position(conn, dataset, key)

    def dataset_users(self, name: str, version: int) -> list[str]:
        with self._transaction() as conn:
            found = sql_datasets.users(conn, name, version)
            found += [f"dataset {name}@{v}" for v in sql_datasets.children(conn, name, version)]
            return found

    def delete_dataset_version(self, name: str, version: int) -> DatasetVersion:
        with self._transaction(write=True) as conn:
            return sql_datasets.delete(conn, name, int(version))

    def get_dataset_version(self, name: str, version: int | None = None) -> DatasetVersion:
        with self._transaction() as conn:
            query = sa.select(datasets).where(datasets.c.name == name)
            if version is None:
                query = query.order_by(datasets.c.version.desc()).limit(1)
            else:
                query = query.where(datasets.c.version == int(version))
            row = conn.execute(query).first()
            if row is not None:
                return DatasetVersion(**row._mapping)
            latest = self._latest(conn, datasets, name)
            if latest:
                raise NotFoundError(
                    f"dataset {name!r} has no version {version}",
                    where={"dataset": name, "version": version},
                    hint=f"Its versions run from 1 to {latest}",
                )
            names = conn.execute(sa.select(datasets.c.name).distinct().order_by("name")).scalars()
            known = ", ".join(list(names)[:20]) or "none yet; run loopml data ingest"
            raise NotFoundError(
                f"no dataset named {name!r}",
                where={"dataset": name},
                hint=f"Known datasets: {known}",
            )

    def find_dataset_version(self, name: str, sha256: str) -> DatasetVersion | None:
        query = sa.select(datasets).where(datasets.c.name == name, datasets.c.sha256 == sha256)
        with self._transaction() as conn:
            row = conn.execute(query).first()
        return None if row is None else DatasetVersion(**row._mapping)

    def list_dataset_versions(self, name: str | None = None) -> list[DatasetVersion]:
        query = sa.select(datasets).order_by(datasets.c.name, datasets.c.version)
        if name is not None:
            query = query.where(datasets.c.name == name)
        with self._transaction() as conn:
            return [DatasetVersion(**row._mapping) for row in conn.execute(query)]

    # runs
    def add_run(self, run: Run) -> Run:
        try:
            with self._transaction(write=True) as conn:
                conn.execute(runs.insert().values(_values(run)))
        except ConflictError as exc:
            raise ConflictError(
                f"a run with id {run.id!r} already exists",
                where={"run": run.id},
                hint="Give the new run a fresh id (loopml.utils.new_id())",
            ) from exc
        return run

    def update_run(self, run: Run) -> Run:
        values = _values(run)
        del values["id"]
        with self._transaction(write=True) as conn:
            result = conn.execute(runs.update().where(runs.c.id == run.id).values(values))
            if result.rowcount == 0:
                raise self._no_run(run.id)
        return run

    def get_run(self, run_id: str) -> Run:
        with self._transaction() as conn:
            row = conn.execute(sa.select(runs).where(runs.c.id == run_id)).first()
        if row is None:
            raise self._no_run(run_id)
        return self._seen(Run(**row._mapping))

    def _seen(self, run: Run) -> Run:
        """``run``, marked aborted (and stored so) when it is running but its process died.

        Only a process of this machine can be checked (:func:`loopml.utils.owner_alive`); the
        update applies only while the stored run is still running, so it never overwrites an
        end that was recorded meanwhile.
        """
        if run.status != "running" or owner_alive(run.owner) is not False:
            return run
        owner = run.owner or {}
        aborted = replace(
            run,
            status="aborted",
            error=f"the process that ran it died (pid {owner.get('pid')} on "
            f"{owner.get('host')}) before it finished; seen at {utcnow():%Y-%m-%d %H:%M:%S} UTC",
        )
        change = (
            runs.update()
            .where(runs.c.id == run.id, runs.c.status == "running")
            .values(status=aborted.status, error=aborted.error)
        )
        try:
            with self._transaction(write=True) as conn:
                if conn.execute(change).rowcount == 1:
                    return aborted
                row = conn.execute(sa.select(runs).where(runs.c.id == run.id)).first()
        except StoreError:
            return aborted  # a read-only store: reported as aborted, stored by a later writer
        return run if row is None else Run(**row._mapping)

    _no_run = staticmethod(no_run)

    def list_runs(
        self, name: str | None = None, limit: int = 100, *, parent: str | None = None
    ) -> list[Run]:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidInputError(
                f"limit must be a positive integer, got {limit!r}",
                where={"field": "limit"},
                hint="Pass limit=1 or more",
            )
        query = sa.select(runs).order_by(runs.c.started_at.desc(), runs.c.id.desc()).limit(limit)
        if name is not None:
            query = query.where(runs.c.name == name)
        if parent is not None:
            query = query.where(runs.c.parent_id == parent)
        with self._transaction() as conn:
            found = [Run(**row._mapping) for row in conn.execute(query)]
        return [self._seen(run) for run in found]

    def set_run_tags(self, run_id: str, tags: Mapping[str, str], delete: Sequence[str] = ()) -> Run:
        check_tags(tags, delete)
        with self._transaction(write=True) as conn:
            locked = sa.select(runs).where(runs.c.id == run_id).with_for_update()
            row = conn.execute(locked).first()  # PostgreSQL: no lost update of other tags
            if row is None:
                raise self._no_run(run_id)
            current = dict(row._mapping["tags"] or {})
            missing = [k for k in delete if k not in current]
            if missing:
                raise NotFoundError(
                    f"run {run_id} has no tag {missing[0]!r}",
                    where={"run": run_id, "tag": missing[0]},
                    hint=f"Its tags: {', '.join(sorted(current)) or 'none'}",
                )
            merged = {k: v for k, v in current.items() if k not in set(delete)}
            merged.update(tags)
            conn.execute(runs.update().where(runs.c.id == run_id).values(tags=merged))
        return self.get_run(run_id)

    def log_step(
        self, run_id: str, key: str, step: int, value: float | None, at: datetime | None = None
    ) -> RunStep:
        check_step(key, step, value)
        record = RunStep(run_id, key, step, None if value is None else float(value), at or utcnow())
        where = (run_steps.c.run_id == run_id) & (run_steps.c.key == key)
        where &= run_steps.c.step == step

        def attempt() -> RunStep:
            with self._transaction(write=True) as conn:
                if conn.execute(sa.select(runs.c.id).where(runs.c.id == run_id)).first() is None:
                    raise self._no_run(run_id)
                change = {"value": record.value, "at": record.at}
                if conn.execute(run_steps.update().where(where).values(change)).rowcount == 0:
                    conn.execute(run_steps.insert().values(_values(record)))
            return record

        return self._retrying(attempt)

    def log_steps(
        self,
        run_id: str,
        rows: Sequence[tuple[str, int, float | None]],
        at: datetime | None = None,
    ) -> list[RunStep]:
        records = sql_online.step_records(run_id, rows, at)

        def attempt() -> list[RunStep]:
            with self._transaction(write=True) as conn:
                sql_online.upsert_steps(conn, run_id, records)
            return records

        return self._retrying(attempt)

    def list_steps(self, run_id: str, key: str | None = None) -> list[RunStep]:
        query = (
            sa.select(run_steps)
            .where(run_steps.c.run_id == run_id)
            .order_by(run_steps.c.key, run_steps.c.step)
        )
        if key is not None:
            query = query.where(run_steps.c.key == key)
        with self._transaction() as conn:
            return [RunStep(**row._mapping) for row in conn.execute(query)]

    def delete_run(self, run_id: str) -> None:
        with self._transaction(write=True) as conn:
            if conn.execute(sa.select(runs.c.id).where(runs.c.id == run_id)).first() is None:
                raise self._no_run(run_id)
            used = conn.execute(
                sa.select(model_versions.c.name, model_versions.c.version)
                .where(model_versions.c.run_id == run_id)
                .order_by(model_versions.c.name, model_versions.c.version)
            ).first()
            if used is not None:
                raise ConflictError(
                    f"run {run_id} trained model version {used.name}@{used.version}; "
                    "it is kept while the version exists",
                    where={"run": run_id, "model": f"{used.name}@{used.version}"},
                    hint=f"Delete model version {used.name}@{used.version} first, or keep "
                    "the run (it is that version's lineage)",
                    code="run_in_use",
                )
            conn.execute(run_steps.delete().where(run_steps.c.run_id == run_id))
            conn.execute(runs.delete().where(runs.c.id == run_id))

    def run_ids_with_prefix(self, prefix: str, limit: int = 10) -> list[str]:
        prefix = id_prefix(prefix, "run")  # hex only: nothing in it is a LIKE wildcard
        check_limit(limit)
        query = (
            sa.select(runs.c.id)
            # LIKE narrows (SQLite's ignores case), the exact substring comparison decides
            .where(runs.c.id.like(f"{prefix}%"))
            .where(sa.func.substr(runs.c.id, 1, len(prefix)) == prefix)
            .order_by(runs.c.id)
            .limit(limit)
        )
        with self._transaction() as conn:
            return [str(row.id) for row in conn.execute(query)]

    # models
    def add_model_version(self, mv: ModelVersion) -> ModelVersion:
        def attempt() -> ModelVersion:
            with self._transaction(write=True) as conn:
                self._lock_name(conn, model_versions, mv.name)
                self._check_spelling(conn, model_versions, mv.name, "model")
                numbered = replace(mv, version=self._latest(conn, model_versions, mv.name) + 1)
                conn.execute(model_versions.insert().values(_values(numbered)))
            return numbered

        return self._retrying(attempt)

    def get_model_version(self, name: str, version: int) -> ModelVersion:
        query = sa.select(model_versions).where(
            model_versions.c.name == name,
            model_versions.c.version == int(version),
            model_versions.c.status != "deleted",
        )
        with self._transaction() as conn:
            row = conn.execute(query).first()
            if row is None:
                raise self._no_model_version(conn, name, version)
        return ModelVersion(**row._mapping)

    def _no_model_version(self, conn: Connection, name: str, version: int) -> NotFoundError:
        latest = self._latest(conn, model_versions, name)
        gone = sa.select(model_versions.c.version).where(
            model_versions.c.name == name,
            model_versions.c.version == int(version),
            model_versions.c.status == "deleted",
        )
        if latest and conn.execute(gone).first() is not None:
            return NotFoundError(
                f"model {name!r} version {version} was deleted",
                where={"model": name, "version": version},
                hint=f"Its record is gone; the versions of {name} left are listed by "
                f"'loopml models list {name} --all'",
            )
        return NotFoundError(
            f"model {name!r} has no version {version}" if latest else f"no model named {name!r}",
            where={"model": name, "version": version},
            hint=f"Its versions run from 1 to {latest}" if latest else "Train or register it first",
        )

    def list_model_versions(self, name: str | None = None) -> list[ModelVersion]:
        query = (
            sa.select(model_versions)
            .where(model_versions.c.status != "deleted")
            .order_by(model_versions.c.name, model_versions.c.version)
        )
        if name is not None:
            query = query.where(model_versions.c.name == name)
        with self._transaction() as conn:
            return [ModelVersion(**row._mapping) for row in conn.execute(query)]

    def set_alias(
        self,
        name: str,
        alias: str,
        version: int,
        *,
        expected: Expected = ANY_VERSION,
        actor: str | None = None,
        reason: str | None = None,
    ) -> AliasEvent | None:
        def attempt() -> AliasEvent | None:
            # a lost race on the first INSERT is retried: the retry reads the winner's row
            with self._transaction(write=True) as conn:
                missing = self._no_model_version(conn, name, version)
                return sql_aliases.set_alias(
                    conn, name, alias, version, expected, actor, reason, missing
                )

        return self._retrying(attempt)

    def delete_alias(
        self,
        name: str,
        alias: str,
        *,
        expected: Expected = ANY_VERSION,
        actor: str | None = None,
        reason: str | None = None,
    ) -> AliasEvent:
        with self._transaction(write=True) as conn:
            return sql_aliases.delete_alias(conn, name, alias, expected, actor, reason)

    def list_alias_events(
        self, name: str, alias: str | None = None, limit: int = 100
    ) -> list[AliasEvent]:
        check_limit(limit)
        with self._transaction() as conn:
            return sql_aliases.list_events(conn, name, alias, limit)

    def set_model_version_status(self, name: str, version: int, status: str) -> ModelVersion:
        if status not in ("active", "archived"):
            raise InvalidInputError(
                f"status {status!r} is not 'active' or 'archived'",
                where={"field": "status"},
                hint="Delete a version with delete_model_version",
            )
        with self._transaction(write=True) as conn:
            missing = self._no_model_version(conn, name, version)
            return sql_aliases.set_status(conn, name, version, status, missing)

    def delete_model_version(self, name: str, version: int) -> ModelVersion:
        with self._transaction(write=True) as conn:
            missing = self._no_model_version(conn, name, version)
            return sql_aliases.delete_version(conn, name, version, missing)

    def get_aliases(self, name: str) -> dict[str, int]:
        with self._transaction() as conn:
            return self._aliases(conn, name)

    @staticmethod
    def _aliases(conn: Connection, name: str) -> dict[str, int]:
        query = (
            sa.select(aliases.c.alias, aliases.c.version)
            .where(aliases.c.model_name == name)
            .order_by(aliases.c.alias)
        )
        return {alias: int(version) for alias, version in conn.execute(query)}

    # deployments
    def get_deployment(self, name: str) -> Deployment | None:
        with self._transaction() as conn:
            return sql_deployments.get(conn, name)

    def set_deployment(self, dep: Deployment, *, expected_revision: int | None) -> Deployment:
        def attempt() -> Deployment:
            # a lost race on the first INSERT is retried: the retry reads the winner's row
            with self._transaction(write=True) as conn:
                return sql_deployments.set_deployment(conn, dep, expected_revision)

        return self._retrying(attempt)

    def list_deployments(self) -> list[Deployment]:
        with self._transaction() as conn:
            return sql_deployments.list_all(conn)

    def list_deployment_events(self, name: str, limit: int = 100) -> list[DeploymentEvent]:
        check_limit(limit)
        with self._transaction() as conn:
            return sql_deployments.list_events(conn, name, limit)

    # feedback
    def add_feedback(self, items: Sequence[Feedback]) -> int:
        if not items:
            return 0
        with self._transaction(write=True) as conn:
            return sql_feedback.add(conn, items)

    def list_feedback(
        self,
        *,
        prediction_ids: Sequence[str] | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[Feedback]:
        if limit is not None:
            check_limit(limit)
        with self._transaction() as conn:
            return sql_feedback.list_feedback(conn, prediction_ids, since, limit)

    # monitor events and leases
    def add_monitor_event(self, event: MonitorEvent) -> MonitorEvent | None:
        with self._transaction(write=True) as conn:
            return sql_monitor.add_event(conn, event)

    def get_monitor_event(self, dedupe: str) -> MonitorEvent | None:
        with self._transaction() as conn:
            return sql_monitor.get_by_dedupe(conn, dedupe)

    def list_monitor_events(
        self,
        *,
        model: str | None = None,
        kind: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[MonitorEvent]:
        check_limit(limit)
        with self._transaction() as conn:
            return sql_monitor.list_events(conn, model, kind, since, limit)

    def acquire_lease(self, name: str, holder: str, ttl_s: float) -> Lease | None:
        def attempt() -> Lease | None:
            with self._transaction(write=True) as conn:
                return sql_monitor.acquire(conn, name, holder, ttl_s, utcnow())

        return self._retrying(attempt)

    def release_lease(self, name: str, holder: str) -> bool:
        with self._transaction(write=True) as conn:
            return sql_monitor.release(conn, name, holder)

    def get_lease(self, name: str) -> Lease | None:
        with self._transaction() as conn:
            return sql_monitor.get_lease(conn, name)

    def close(self) -> None:
        self._engine.dispose()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._shown!r})"


# -- SQLite -----------------------------------------------------------------------------------


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # let SQLAlchemy's "begin" event below emit BEGIN itself (pysqlite's own is unreliable)
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Switching to WAL needs a moment alone with the file and does not wait on the busy
        # timeout: when several processes open a new database at once, retry for a while.
        deadline = time.monotonic() + 30
        while True:
            try:
                if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    cursor.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
    finally:
        cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # writers take the write lock up front: no lock upgrade, so no deadlock between writers
    immediate = conn.get_execution_options().get("loopml_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class SqliteMetadataStore(SqlMetadataStore):
    """Metadata in one SQLite file (WAL journal, foreign keys on, 30 s busy timeout)."""

    hint = (
        "Check that the folder of the database file exists and is writable, and that no other "
        "process keeps a write transaction open"
    )

    def _create_engine(self, uri: str) -> Engine:
        url = make_url(uri)
        database = url.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine


# -- PostgreSQL -------------------------------------------------------------------------------

_MIGRATION_LOCK = 0x6C6F6F70  # pg_advisory_xact_lock key: one migrating process at a time


def psycopg_uri(uri: str) -> str:
    """``postgres://``, ``postgresql://`` -> ``postgresql+psycopg://`` (psycopg 3)."""
    scheme, sep, rest = uri.partition("://")
    if sep and scheme.lower() in ("postgres", "postgresql", "postgresql+psycopg"):
        return f"postgresql+psycopg://{rest}"
    return uri


class PostgresMetadataStore(SqlMetadataStore):
    """Metadata in PostgreSQL through psycopg 3.

    A schema may be chosen in the URI with ``?options=-csearch_path%3D<schema>``; it is created
    when missing, and Alembic's version table lives in it too.
    """

    hint = (
        "Check that PostgreSQL is running and reachable at the host and port of the URI, and "
        "that its user, password and database are right"
    )

    def _create_engine(self, uri: str) -> Engine:
        url = make_url(psycopg_uri(uri))
        connect_args = {} if "connect_timeout" in url.query else {"connect_timeout": 10}
        return sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)

    def _lock_name(self, conn: Connection, table: sa.Table, name: str) -> None:
        # READ COMMITTED would let two writers each miss the other's new spelling: a
        # transaction lock per (table, lower-case name) makes the second see the first
        digest = hashlib.sha256(f"loopml:{table.name}:{name.lower()}".encode()).digest()
        key = int.from_bytes(digest[:8], "big", signed=True)
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})

    def _before_migrate(self, conn: Connection) -> None:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        if conn.execute(sa.text("SELECT current_schema()")).scalar() is None:
            wanted = str(conn.execute(sa.text("SHOW search_path")).scalar() or "")
            first = wanted.split(",")[0].strip().strip('"')
            if not first or first.startswith("$"):
                raise StoreError(
                    f"metadata store {self._shown}: no schema to create tables in "
                    f"(search_path is {wanted!r})",
                    where={"uri": self._shown},
                    hint="Name a schema with ?options=-csearch_path%3D<schema> in the URI",
                )
            conn.execute(
                sa.text(
                    f"CREATE SCHEMA IF NOT EXISTS {conn.dialect.identifier_preparer.quote(first)}"
                )
            )


__all__ = [
    "PostgresMetadataStore",
    "SqlMetadataStore",
    "SqliteMetadataStore",
    "alembic_config",
    "current_revision",
    "migrate",
    "psycopg_uri",
]
