"""Where a search's Optuna study lives, and the sampler that keeps trials reproducible.

Optuna's RDBStorage keeps its schema version in an Alembic table named like loopml's own
(``alembic_version``), so it cannot share loopml's schema: in PostgreSQL it gets a schema of
its own in the same database (``loopml_optuna``, or ``<schema>_optuna`` when the URI chooses a
schema), with SQLite a file next to the metadata file (``loopml.optuna.db``). One process at
a time creates the tables (an advisory lock, a file lock), so processes starting together
on a new workspace do not trip over each other.

Trials send heartbeats (:func:`heartbeat`, every ``HEARTBEAT_S``): a trial whose process died
on any machine stops beating, and after ``GRACE_S`` the other processes of the search mark it
failed (Optuna's ``fail_stale_trials``) instead of waiting for it forever.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.errors import InvalidInputError
from loopml.workspace import Workspace

if TYPE_CHECKING:
    import optuna

HEARTBEAT_S = 10  # how often a running trial says it is alive
GRACE_S = 60  # a running trial silent this long is taken as dead (its process, any machine)


def _heartbeats() -> dict[str, Any]:
    return {"heartbeat_interval": HEARTBEAT_S, "grace_period": GRACE_S}


def quiet_heartbeat_warnings() -> None:
    """Optuna calls heartbeats experimental (unchanged since 2.9) and warns that they are
    meant for Study.optimize; loopml sends them itself around ask/tell (:func:`heartbeat`)."""
    import warnings

    import optuna

    warnings.filterwarnings(
        "ignore", category=optuna.exceptions.ExperimentalWarning, message=".*heartbeat.*"
    )
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")


@contextlib.contextmanager
def heartbeat(study: optuna.Study, trial: optuna.Trial) -> Iterator[None]:
    """Record the trial's heartbeat now and every ``HEARTBEAT_S`` until the block ends."""
    # Optuna keeps these private: the study's storage (wrapped in a cache), a trial's id
    storage: Any = getattr(study._storage, "_backend", study._storage)
    trial_id = trial._trial_id
    if getattr(storage, "heartbeat_interval", None) is None:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            try:
                storage.record_heartbeat(trial_id)
            except Exception:  # a lost connection: the next beat tries again
                pass
            if stop.wait(HEARTBEAT_S):
                return

    thread = threading.Thread(target=beat, name="loopml-trial-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def study_storage(ws: Workspace) -> optuna.storages.RDBStorage:
    """Optuna's storage for the workspace: beside loopml's tables, never in their schema."""
    import optuna
    import sqlalchemy as sa

    from loopml.stores.sql import psycopg_uri

    quiet_heartbeat_warnings()
    uri = ws.metadata_uri
    url = sa.engine.make_url(psycopg_uri(uri))
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if not database or database == ":memory:" or database.startswith("file:"):
            raise InvalidInputError(
                f"a search needs a metadata database on disk or PostgreSQL, not {uri!r}",
                where={"uri": uri},
                hint="Use the workspace's default sqlite:///<ws>/loopml.db or postgresql://...",
            )
        db = Path(database)
        path = db.with_name(f"{db.stem}.optuna{db.suffix or '.db'}")
        with _file_lock(path.with_name(path.name + ".lock")):
            import sqlite3

            with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
                conn.execute("PRAGMA journal_mode=WAL")
            return optuna.storages.RDBStorage(
                f"sqlite:///{path}",
                engine_kwargs={"connect_args": {"timeout": 30}},
                **_heartbeats(),
            )
    if url.get_backend_name() == "postgresql":
        schema = f"{_pg_schema(url.query.get('options'))}_optuna"
        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                # one process at a time creates the schema and Optuna's tables
                conn.execute(sa.text("SELECT pg_advisory_lock(hashtext('loopml.optuna'))"))
                conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
                conn.commit()
                try:
                    return optuna.storages.RDBStorage(
                        url.render_as_string(hide_password=False),
                        engine_kwargs={
                            "pool_pre_ping": True,
                            "connect_args": {"options": f"-csearch_path={schema}"},
                        },
                        **_heartbeats(),
                    )
                finally:
                    conn.execute(sa.text("SELECT pg_advisory_unlock(hashtext('loopml.optuna'))"))
                    conn.commit()
        finally:
            engine.dispose()
    raise InvalidInputError(
        f"a search cannot keep its study in {url.get_backend_name()} ({uri!r})",
        where={"uri": uri},
        hint="Use SQLite or PostgreSQL for the workspace's metadata",
    )


# -- the parts -------------------------------------------------------------------------------


class TrialSeededSampler:
    """Optuna's TPE sampler, seeded per trial by ``seed + trial number``.

    The same seed in every process would make two processes suggest the same parameters;
    a seed per trial number keeps one process's search reproducible while each trial of a
    shared study (numbers are unique in it) draws its own.
    """

    def __init__(self, seed: int) -> None:
        import optuna

        self.seed = seed
        self._inner = optuna.samplers.TPESampler(seed=seed)

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        import optuna

        self._inner = optuna.samplers.TPESampler(seed=self.seed + trial.number)
        self._inner.before_trial(study, trial)

    def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
        return self._inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study: Any, trial: Any, search_space: Any) -> dict[str, Any]:
        return self._inner.sample_relative(study, trial, search_space)

    def sample_independent(self, study: Any, trial: Any, name: str, distribution: Any) -> Any:
        return self._inner.sample_independent(study, trial, name, distribution)

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        self._inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._inner.reseed_rng()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _pg_schema(options: Any) -> str:
    """The first schema of ``-csearch_path=...`` in a URI's ``options``, else ``loopml``."""
    text = options if isinstance(options, str) else " ".join(options or ())
    for part in text.replace("%3D", "=").split():
        key, _, value = part.removeprefix("-c").partition("=")
        if key.strip() == "search_path" and value.split(",")[0].strip():
            return value.split(",")[0].strip().strip('"')
    return "loopml"
