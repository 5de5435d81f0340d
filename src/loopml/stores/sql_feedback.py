"""Feedback (outcomes that arrive after a prediction) in SQL, stored once however often sent.

Each row carries a key, the sha256 of its canonical ``(prediction_id, label, reward)``, under
a unique constraint; rows are inserted with ``INSERT ... ON CONFLICT (key) DO NOTHING`` on
SQLite and PostgreSQL alike, so a repeat (even a concurrent one, from another server) is
skipped by the database, never an error, and the count returned is what was new.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from loopml.errors import InvalidInputError
from loopml.stores.records import Feedback
from loopml.stores.sql_schema import feedback

PREDICTION_ID_MAX = 128
SOURCE_MAX = 256
#: rows per INSERT (SQLite allows 32766 bound parameters in one statement; 7 per row)
CHUNK = 500


def canonical_label(label: Any) -> Any:
    """``label`` as stored: numpy scalars as Python ones, a whole float as an int (1.0 -> 1).

    So that the label 1 sent as JSON and the label 1.0 read from a CSV are one outcome.
    """
    if hasattr(label, "item") and callable(label.item) and not isinstance(label, str | bytes):
        label = label.item()
    if isinstance(label, float) and math.isfinite(label) and label.is_integer():
        return int(label)
    return label


def checked(item: Feedback, index: int) -> Feedback:
    """``item`` with a canonical label and a float reward; InvalidInputError naming the item."""
    where: dict[str, Any] = {"item": index, "prediction_id": item.prediction_id}
    pid = item.prediction_id
    if not isinstance(pid, str) or not 1 <= len(pid) <= PREDICTION_ID_MAX:
        raise InvalidInputError(
            f"feedback item {index}: prediction_id {pid!r} must be a string of 1 to "
            f"{PREDICTION_ID_MAX} characters",
            where={**where, "field": "prediction_id"},
            hint="Send the prediction_id the server returned with the prediction",
        )
    label = canonical_label(item.label)
    if label is not None and not isinstance(label, str | int | float | bool):
        raise InvalidInputError(
            f"feedback item {index}: label {label!r} is a {type(label).__name__}, not a "
            "string, number or boolean",
            where={**where, "field": "label"},
            hint="Send the true class as the model's classes are written, e.g. 1 or 'yes'",
        )
    if isinstance(label, float) and not math.isfinite(label):
        raise InvalidInputError(
            f"feedback item {index}: label {label!r} is not a finite number",
            where={**where, "field": "label"},
            hint="Send a finite number or a class name",
        )
    reward = item.reward
    if reward is not None:
        if hasattr(reward, "item") and callable(reward.item):
            reward = reward.item()
        if (
            isinstance(reward, bool)
            or not isinstance(reward, int | float)
            or not math.isfinite(reward)
        ):
            raise InvalidInputError(
                f"feedback item {index}: reward {reward!r} is not a finite number",
                where={**where, "field": "reward"},
                hint="Send the reward as a number, e.g. 1.0",
            )
        reward = float(reward)
    if label is None and reward is None:
        raise InvalidInputError(
            f"feedback item {index} for prediction {pid!r} has neither a label nor a reward",
            where={**where, "field": "label"},
            hint="Send a label, a reward, or both",
        )
    if not isinstance(item.received_at, datetime):
        raise InvalidInputError(
            f"feedback item {index}: received_at {item.received_at!r} is not a datetime",
            where={**where, "field": "received_at"},
            hint="Give received_at as a timezone-aware datetime (loopml.utils.utcnow())",
        )
    source = item.source or ""
    if not isinstance(source, str) or len(source) > SOURCE_MAX:
        raise InvalidInputError(
            f"feedback item {index}: source must be a string of at most {SOURCE_MAX} characters",
            where={**where, "field": "source"},
            hint="Name where the outcome came from, e.g. 'http' or a file name",
        )
    return Feedback(pid, label, reward, item.received_at, source)


def key(item: Feedback) -> str:
    """The sha256 of the canonical ``(prediction_id, label, reward)`` of a checked item."""
    text = json.dumps(
        [item.prediction_id, item.label, item.reward],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(text.encode()).hexdigest()


def add(conn: Connection, items: Sequence[Feedback]) -> int:
    """Insert the new ones of ``items``; the number inserted."""
    rows: list[dict[str, Any]] = [
        {
            "key": key(item),
            "prediction_id": item.prediction_id,
            "label": item.label,
            "reward": item.reward,
            "received_at": item.received_at,
            "source": item.source,
        }
        for item in (checked(it, i) for i, it in enumerate(items))
    ]
    # in key order: concurrent writers of overlapping batches then wait on each other's
    # rows in one order, never in a deadlock
    rows.sort(key=lambda row: str(row["key"]))
    # the dialect's own insert (ON CONFLICT); imported here, by the one in use
    if conn.dialect.name == "sqlite":
        from sqlalchemy.dialects import sqlite as dialect
    else:
        from sqlalchemy.dialects import postgresql as dialect  # type: ignore[no-redef]
    inserted = 0
    for start in range(0, len(rows), CHUNK):
        statement = dialect.insert(feedback).values(rows[start : start + CHUNK])
        statement = statement.on_conflict_do_nothing(index_elements=["key"])
        # the rows RETURNING gives are the inserted ones (rowcount is not reliable across
        # drivers for a multi-row INSERT)
        inserted += len(conn.execute(statement.returning(feedback.c.id)).all())
    return inserted


def list_feedback(
    conn: Connection,
    prediction_ids: Sequence[str] | None,
    since: datetime | None,
    limit: int | None,
) -> list[Feedback]:
    base = sa.select(feedback).order_by(feedback.c.received_at, feedback.c.id)
    if since is not None:
        base = base.where(feedback.c.received_at >= since)
    queries = [base]
    if prediction_ids is not None:
        ids = sorted(set(prediction_ids))
        queries = [
            base.where(feedback.c.prediction_id.in_(ids[i : i + CHUNK]))
            for i in range(0, len(ids), CHUNK)
        ]
    found: list[tuple[datetime, int, Feedback]] = []
    for query in queries:
        if limit is not None:
            query = query.limit(limit)
        for row in conn.execute(query):
            m = row._mapping
            record = Feedback(
                m["prediction_id"], m["label"], m["reward"], m["received_at"], m["source"]
            )
            found.append((m["received_at"], int(m["id"]), record))
    if len(queries) > 1:
        found.sort(key=lambda t: (t[0], t[1]))
    kept = found if limit is None else found[:limit]
    return [record for _, _, record in kept]
