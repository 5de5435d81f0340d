"""Alembic environment: migrates the connection the store hands over.

The store builds the Alembic ``Config`` in code and passes an open connection (inside its
transaction) as ``config.attributes["connection"]``; nothing here reads an ``alembic.ini``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection


def run_migrations() -> None:
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError(
            "loopml migrations run through a store: open one with "
            "loopml.stores.registry.open_metadata(uri, settings), or call "
            "loopml.stores.sql_schema.migrate(connection)"
        )
    context.configure(connection=connection, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
