"""Alembic migrations of the metadata schema; run by opening a store (``loopml.stores.sql``)."""
