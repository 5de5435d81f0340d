"""Dataset versions in SQL beyond the basics: source positions, lineage users, deletion.

A source position (where an incremental SQL cursor or a stream consumer stopped) is a JSON
object per ``(dataset, key)``. It is written in the transaction that records the dataset
version holding the data up to it, so a run that fails before recording leaves it as it was.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from loopml.errors import InvalidInputError, NotFoundError
from loopml.stores.records import DatasetVersion
from loopml.stores.sql_schema import datasets, model_versions, runs, source_positions
from loopml.utils import utcnow

KEY_MAX = 512


def check_position(key: object, position: object) -> tuple[str, dict[str, Any]]:
    """``(key, position)`` as stored: a non-empty key and a JSON object."""
    if not isinstance(key, str) or not key or len(key) > KEY_MAX:
        raise InvalidInputError(
            f"a source position key must be a text of 1 to {KEY_MAX} characters, got {key!r}",
            where={"field": "key"},
            hint="Use the source's key (Source.key), e.g. 'sql:postgresql://host/db#tx'",
        )
    if not isinstance(position, dict):
        raise InvalidInputError(
            f"a source position must be a JSON object, got {type(position).__name__}",
            where={"field": "position", "key": key},
            hint="Return a dict from Source.position()",
        )
    try:
        json.dumps(position, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"the source position for {key!r} is not JSON: {exc}",
            where={"field": "position", "key": key},
            hint="Give plain str, int, float, bool, None, lists and dicts (timestamps as text)",
        ) from exc
    return key, position


def put_position(conn: Connection, dataset: str, key: str, position: dict[str, Any]) -> None:
    """Insert or replace the position of ``(dataset, key)`` inside the caller's transaction."""
    where = (source_positions.c.dataset == dataset) & (source_positions.c.key == key)
    values = {"position": position, "updated_at": utcnow()}
    done = conn.execute(source_positions.update().where(where).values(**values))
    if not done.rowcount:
        conn.execute(source_positions.insert().values(dataset=dataset, key=key, **values))


def get_position(conn: Connection, dataset: str, key: str) -> dict[str, Any] | None:
    query = sa.select(source_positions.c.position).where(
        source_positions.c.dataset == dataset, source_positions.c.key == key
    )
    found = conn.execute(query).scalar()
    return None if found is None else dict(found)


def users(conn: Connection, name: str, version: int) -> list[str]:
    """What depends on ``name@version``: runs and model versions trained on it, and later
    versions that read its files (appended to it)."""
    out: list[str] = []
    query = (
        sa.select(model_versions.c.name, model_versions.c.version)
        .where(model_versions.c.dataset_name == name, model_versions.c.dataset_version == version)
        .order_by(model_versions.c.name, model_versions.c.version)
    )
    out += [f"model {m}@{v}" for m, v in conn.execute(query)]
    query = (
        sa.select(runs.c.id)
        .where(runs.c.dataset_name == name, runs.c.dataset_version == version)
        .order_by(runs.c.started_at)
    )
    out += [f"run {r}" for r in conn.execute(query).scalars()]
    return out


def children(conn: Connection, name: str, version: int) -> list[int]:
    """Later versions of ``name`` appended to ``version`` (they read its files)."""
    query = (
        sa.select(datasets.c.version)
        .where(datasets.c.name == name, datasets.c.parent == version, datasets.c.mode == "append")
        .order_by(datasets.c.version)
    )
    return [int(v) for v in conn.execute(query).scalars()]


def delete(conn: Connection, name: str, version: int) -> DatasetVersion:
    """Remove the record of ``name@version``; NotFoundError when there is none."""
    query = sa.select(datasets).where(datasets.c.name == name, datasets.c.version == version)
    row = conn.execute(query).first()
    if row is None:
        raise NotFoundError(
            f"dataset {name!r} has no version {version}",
            where={"dataset": name, "version": version},
            hint="List the versions with loopml data list",
        )
    conn.execute(datasets.delete().where(datasets.c.name == name, datasets.c.version == version))
    return DatasetVersion(**row._mapping)
