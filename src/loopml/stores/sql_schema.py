"""The metadata schema on SQLAlchemy: column types, tables at the head revision, migrations.

The Alembic revisions in ``migrations/versions/`` build the same schema step by step; opening a
store migrates it to the head.
"""

import json
from dataclasses import fields
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

MIGRATIONS = Path(__file__).with_name("migrations")

# -- column types -----------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy arrays
        return value.tolist()
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    raise TypeError(f"a value of type {type(value).__name__} cannot be stored as JSON")


class JsonText(sa.types.TypeDecorator[Any]):
    """JSON in a text column: the same bytes on every backend, NaN and infinities included."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> str | None:
        if value is None:
            return None
        return json.dumps(value, default=_json_default, ensure_ascii=False, allow_nan=True)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> Any:
        return None if value is None else json.loads(value)


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """Timezone-aware UTC in and out; naive datetimes are taken as UTC."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        # SQLite has no time zones: store naive UTC text
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# -- tables (the head revision; migrations/versions/ builds the same schema step by step) -----

metadata = sa.MetaData(
    naming_convention={
        "pk": "pk_%(table_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(referred_table_name)s",
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    }
)

datasets = sa.Table(
    "datasets",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("num_rows", sa.BigInteger, nullable=False),
    sa.Column("num_bytes", sa.BigInteger, nullable=False),
    sa.Column("schema", JsonText, nullable=False),
    sa.Column("stats", JsonText, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("parent", sa.Integer),
    sa.Column("mode", sa.String(16), nullable=False, server_default="replace"),
    sa.Column("parts", JsonText, nullable=False, server_default="[]"),
    sa.Column("partition_by", JsonText, nullable=False, server_default="[]"),
    sa.UniqueConstraint("name", "sha256"),
)

# where an incremental or streaming source stopped, per dataset: moved in the transaction that
# records the version holding the data up to it
source_positions = sa.Table(
    "source_positions",
    metadata,
    sa.Column("dataset", sa.String(128), primary_key=True),
    sa.Column("key", sa.String(512), primary_key=True),
    sa.Column("position", JsonText, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("params", JsonText, nullable=False),
    sa.Column("metrics", JsonText, nullable=False),
    sa.Column("dataset_name", sa.String(128)),
    sa.Column("dataset_version", sa.Integer),
    sa.Column("git_commit", sa.String(64)),
    sa.Column("packages", JsonText, nullable=False),
    sa.Column("duration_s", sa.Float),
    sa.Column("error", sa.Text),
    sa.Column("model_version", sa.Integer),
    sa.Column("owner", JsonText),
    sa.Column("parent_id", sa.String(64)),
    sa.Column("tags", JsonText, nullable=False, server_default="{}"),
    sa.Index(None, "name", "started_at"),
    sa.Index(None, "started_at"),
    sa.Index(None, "parent_id"),
)

run_steps = sa.Table(
    "run_steps",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("key", sa.String(256), primary_key=True),
    sa.Column("step", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("value", sa.Float),
    sa.Column("at", UtcDateTime, nullable=False),
)

alias_events = sa.Table(
    "alias_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model_name", sa.String(128), nullable=False),
    sa.Column("alias", sa.String(128), nullable=False),
    sa.Column("from_version", sa.Integer),
    sa.Column("to_version", sa.Integer),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("actor", sa.String(256)),
    sa.Column("reason", sa.Text),
    sa.Index(None, "model_name", "at"),
)

model_versions = sa.Table(
    "model_versions",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("artifact_sha256", sa.String(64), nullable=False),
    sa.Column("flavor", sa.String(32), nullable=False),
    sa.Column("signature", JsonText, nullable=False),
    sa.Column("metrics", JsonText, nullable=False),
    sa.Column("dataset_name", sa.String(128)),
    sa.Column("dataset_version", sa.Integer),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("trusted", JsonText, nullable=False, server_default="[]"),
    sa.Column("status", sa.String(16), nullable=False, server_default="active"),
)

aliases = sa.Table(
    "aliases",
    metadata,
    sa.Column("model_name", sa.String(128), primary_key=True),
    sa.Column("alias", sa.String(128), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.ForeignKeyConstraint(
        ["model_name", "version"], ["model_versions.name", "model_versions.version"]
    ),
)

deployments = sa.Table(
    "deployments",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("routes", JsonText, nullable=False),  # [[version, percent], ...]
    sa.Column("shadow", sa.Integer),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("updated_by", sa.String(256)),
    sa.Column("reason", sa.Text),
)

deployment_events = sa.Table(
    "deployment_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("actor", sa.String(256)),
    sa.Column("reason", sa.Text),
    sa.Column("old", JsonText),  # the deployment replaced (None: created)
    sa.Column("new", JsonText, nullable=False),
    sa.Index(None, "name", "at"),
)

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # sha256 of the canonical (prediction_id, label, reward): the same outcome is one row
    sa.Column("key", sa.String(64), nullable=False),
    sa.Column("prediction_id", sa.String(128), nullable=False),
    sa.Column("label", JsonText),
    sa.Column("reward", sa.Float),
    sa.Column("received_at", UtcDateTime, nullable=False),
    sa.Column("source", sa.String(256), nullable=False, server_default=""),
    sa.UniqueConstraint("key"),
    sa.Index(None, "prediction_id"),
    sa.Index(None, "received_at"),
)

monitor_events = sa.Table(
    "monitor_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("evidence", JsonText, nullable=False),
    sa.Column("policy", sa.String(128)),
    # unique when given: what must happen once (one retrain per trigger) is keyed by it
    sa.Column("dedupe", sa.String(256)),
    sa.UniqueConstraint("dedupe"),
    sa.Index(None, "model", "at"),
    sa.Index(None, "at"),
)

leases = sa.Table(
    "leases",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("holder", sa.String(256), nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
)


def _values(record: Any) -> dict[str, Any]:
    return {f.name: getattr(record, f.name) for f in fields(record)}


# -- migrations -------------------------------------------------------------------------------


def alembic_config() -> Any:
    """An Alembic ``Config`` for loopml's migrations, built in code (no alembic.ini needed)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    return config


#: the newest revision in ``stores/migrations/versions`` (a test pins it to Alembic's head):
#: a store already there opens without importing Alembic (0.1-0.5 CPU s per process)
HEAD_REVISION = "0008"


def migrate(connection: Connection, revision: str = "head") -> None:
    """Upgrade the schema reachable through ``connection`` to ``revision`` (in its transaction).

    A database already at :data:`HEAD_REVISION` is left as it is after one plain query;
    anything else (new, older, or a revision this loopml does not know) goes to Alembic.
    """
    if revision == "head" and _recorded_revision(connection) == HEAD_REVISION:
        return
    from alembic import command

    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _recorded_revision(connection: Connection) -> str | None:
    """The one revision in ``alembic_version``, read without Alembic; None otherwise."""
    if not sa.inspect(connection).has_table("alembic_version"):
        return None
    found = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars()
    rows = list(found)
    return str(rows[0]) if len(rows) == 1 else None


def current_revision(connection: Connection) -> str | None:
    """The Alembic revision the database is at, None when it was never migrated."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()
