"""Online checkpoints in SQL, the same statements on SQLite and PostgreSQL.

A checkpoint is one row naming the checkpoint document (an artifact written before: the
learner's state and the loop's) and the stream position after the last event it learned:
the two are committed by one INSERT, so a reader sees both or neither. The primary key
``(name, stream, seq)`` makes the commit a compare-and-set: a learner writes
``seq = last + 1``; of two learners on one stream, the second commit fails with a
ConflictError instead of silently forking the model.

Also here: reading feedback in the order it was stored (by its row id) for the online
learner's ``feedback:<model>`` stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from loopml.errors import ConflictError, InvalidInputError, NotFoundError
from loopml.stores.base import check_limit, check_step
from loopml.stores.records import Feedback, OnlineCheckpoint, RunStep
from loopml.stores.sql_schema import JsonText, UtcDateTime, feedback, metadata, run_steps, runs
from loopml.utils import utcnow

#: a run step to log: (key, step, value)
StepRow = tuple[str, int, float | None]

NAME_MAX = 128
STREAM_MAX = 512
SHA_LEN = 64

online_checkpoints = sa.Table(
    "online_checkpoints",
    metadata,
    sa.Column("name", sa.String(NAME_MAX), primary_key=True),
    sa.Column("stream", sa.String(STREAM_MAX), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("artifact_sha256", sa.String(SHA_LEN), nullable=False),
    sa.Column("checksum", sa.String(SHA_LEN), nullable=False),
    sa.Column("position", JsonText, nullable=False),
    sa.Column("events", sa.BigInteger, nullable=False),
    sa.Column("learned", sa.BigInteger, nullable=False),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("metrics", JsonText, nullable=False),
    sa.Index(None, "created_at"),
)


def _bad(field: str, value: Any, expected: str) -> InvalidInputError:
    return InvalidInputError(
        f"online checkpoint: {field} {value!r} must be {expected}",
        where={"field": field},
        hint=f"Give {field} as {expected}",
    )


_HEX = frozenset("0123456789abcdef")


def _is_sha(value: Any) -> bool:
    return isinstance(value, str) and len(value) == SHA_LEN and _HEX.issuperset(value)


def checked(cp: OnlineCheckpoint) -> OnlineCheckpoint:
    """``cp`` when every field is what the table holds; InvalidInputError naming the field."""
    for field, most in (("name", NAME_MAX), ("stream", STREAM_MAX), ("run_id", 64)):
        value = getattr(cp, field)
        if not isinstance(value, str) or not 1 <= len(value) <= most:
            raise _bad(field, value, f"a string of 1 to {most} characters")
    if isinstance(cp.seq, bool) or not isinstance(cp.seq, int) or cp.seq < 1:
        raise _bad("seq", cp.seq, "an integer of 1 or more")
    for field in ("events", "learned"):
        value = getattr(cp, field)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _bad(field, value, "a non-negative integer")
    if cp.learned > cp.events:
        raise _bad("learned", cp.learned, f"at most events ({cp.events})")
    for field in ("artifact_sha256", "checksum"):
        if not _is_sha(getattr(cp, field)):
            raise _bad(field, getattr(cp, field), "a sha256 in lower-case hex")
    if not isinstance(cp.position, dict):
        raise _bad("position", cp.position, "a mapping (the stream's position)")
    if not isinstance(cp.metrics, dict):
        raise _bad("metrics", cp.metrics, "a mapping")
    if not isinstance(cp.created_at, datetime):
        raise _bad("created_at", cp.created_at, "a timezone-aware datetime")
    return cp


def _record(m: Any) -> OnlineCheckpoint:
    return OnlineCheckpoint(
        name=m["name"],
        stream=m["stream"],
        seq=int(m["seq"]),
        artifact_sha256=m["artifact_sha256"],
        checksum=m["checksum"],
        position=dict(m["position"] or {}),
        events=int(m["events"]),
        learned=int(m["learned"]),
        run_id=m["run_id"],
        created_at=m["created_at"],
        metrics=dict(m["metrics"] or {}),
    )


def latest(conn: Connection, name: str, stream: str) -> OnlineCheckpoint | None:
    query = (
        sa.select(online_checkpoints)
        .where(online_checkpoints.c.name == name, online_checkpoints.c.stream == stream)
        .order_by(online_checkpoints.c.seq.desc())
        .limit(1)
    )
    row = conn.execute(query).first()
    return None if row is None else _record(row._mapping)


#: the statements of a commit, built once: building one (its clauses, its cache key) costs
#: more than running it, and SQLAlchemy compiles a statement object it has seen only once
_OC = online_checkpoints.c
_LAST_SEQ = (
    sa.select(_OC.seq)
    .where(_OC.name == sa.bindparam("b_name"), _OC.stream == sa.bindparam("b_stream"))
    .order_by(_OC.seq.desc())
    .limit(1)
    .scalar_subquery()
)
#: (the last seq stored, the run's id when it exists): one round trip for both checks
_BEFORE_ADD = sa.select(
    _LAST_SEQ, sa.select(runs.c.id).where(runs.c.id == sa.bindparam("b_run")).scalar_subquery()
)
_INSERT = online_checkpoints.insert()
_RUN_EXISTS = sa.select(runs.c.id).where(runs.c.id == sa.bindparam("b_run"))


def _taken(conn: Connection, cp: OnlineCheckpoint) -> ConflictError:
    last = latest(conn, cp.name, cp.stream)
    return ConflictError(
        f"online checkpoint {cp.seq} of {cp.name!r} on {cp.stream}: the last one stored is "
        f"{0 if last is None else last.seq} (written by run {last.run_id if last else '-'})",
        where={"model": cp.name, "stream": cp.stream, "seq": cp.seq},
        hint="Another learner consumes this stream for this model; run one learner per "
        "model and stream (stop the other, then start again to resume from its checkpoint)",
        code="checkpoint_taken",
    )


def no_run(run_id: str) -> NotFoundError:
    """NotFoundError for a run id that is not stored (the metadata store's too)."""
    return NotFoundError(
        f"no run with id {run_id!r}",
        where={"run": run_id},
        hint="List runs with 'loopml runs list'",
    )


def add(
    conn: Connection, cp: OnlineCheckpoint, *, run_must_exist: bool = False
) -> OnlineCheckpoint:
    """Insert ``cp`` when its ``seq`` follows the stored last one; ConflictError otherwise
    (and then, with ``run_must_exist``, NotFoundError when its run is not stored)."""
    cp = checked(cp)
    row = conn.execute(
        _BEFORE_ADD, {"b_name": cp.name, "b_stream": cp.stream, "b_run": cp.run_id}
    ).one()
    last_seq, run_found = row[0], row[1]
    if cp.seq != (1 if last_seq is None else int(last_seq) + 1):
        raise _taken(conn, cp)
    if run_must_exist and run_found is None:
        raise no_run(cp.run_id)
    conn.execute(
        _INSERT,
        {
            "name": cp.name,
            "stream": cp.stream,
            "seq": cp.seq,
            "artifact_sha256": cp.artifact_sha256,
            "checksum": cp.checksum,
            "position": cp.position,
            "events": cp.events,
            "learned": cp.learned,
            "run_id": cp.run_id,
            "created_at": cp.created_at,
            "metrics": cp.metrics,
        },
    )
    return cp


def step_records(run_id: str, rows: Sequence[StepRow], at: datetime | None = None) -> list[RunStep]:
    """``rows`` checked (:func:`~loopml.stores.base.check_step`, InvalidInputError naming the
    row) as records, one per (key, step): of a step given twice the last value is kept."""
    when = at or utcnow()
    records: dict[tuple[str, int], RunStep] = {}
    for i, row in enumerate(rows):
        if not isinstance(row, tuple | list) or len(row) != 3:
            raise InvalidInputError(
                f"step row {i} is {row!r}, not (key, step, value)"[:300],
                where={"row": i},
                hint="Give each step as a (key, step, value) tuple",
            )
        key, step, value = row
        try:
            check_step(key, step, value)
        except InvalidInputError as exc:
            raise InvalidInputError(
                f"step row {i}: {exc.message}", where={"row": i, **exc.where}, hint=exc.hint
            ) from exc
        number = None if value is None else float(value)
        records[(key, step)] = RunStep(run_id, key, step, number, when)
    return list(records.values())


_UPSERTS: dict[str, Any] = {}


def _upsert(dialect: str) -> Any:
    """The ``INSERT ... ON CONFLICT DO UPDATE`` of a run step on SQLite or PostgreSQL (None
    elsewhere), built once: building it (its ``excluded`` columns) costs more than running it."""
    if dialect not in ("sqlite", "postgresql"):
        return None
    stmt = _UPSERTS.get(dialect)
    if stmt is None:
        from sqlalchemy.dialects import postgresql, sqlite

        base: Any = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(run_steps)
        stmt = _UPSERTS[dialect] = base.on_conflict_do_update(
            index_elements=[run_steps.c.run_id, run_steps.c.key, run_steps.c.step],
            set_={"value": base.excluded.value, "at": base.excluded.at},
        )
    return stmt


def upsert_steps(
    conn: Connection, run_id: str, records: Sequence[RunStep], *, checked_run: bool = False
) -> None:
    """Store ``records`` (of run ``run_id``, one per key and step) in the open transaction:
    one statement for all (``INSERT ... ON CONFLICT DO UPDATE`` on SQLite and PostgreSQL,
    a DELETE then an INSERT elsewhere); a step logged again gets its new value.
    NotFoundError for an unknown run (``checked_run``: the caller found it in this
    transaction already)."""
    if not checked_run and conn.execute(_RUN_EXISTS, {"b_run": run_id}).first() is None:
        raise no_run(run_id)
    if not records:
        return
    params = [
        {"run_id": r.run_id, "key": r.key, "step": r.step, "value": r.value, "at": r.at}
        for r in records
    ]
    stmt = _upsert(conn.dialect.name)
    if stmt is not None:
        conn.execute(stmt, params)
        return
    conn.execute(
        run_steps.delete().where(
            (run_steps.c.run_id == sa.bindparam("b_run"))
            & (run_steps.c.key == sa.bindparam("b_key"))
            & (run_steps.c.step == sa.bindparam("b_step"))
        ),
        [{"b_run": p["run_id"], "b_key": p["key"], "b_step": p["step"]} for p in params],
    )
    conn.execute(run_steps.insert(), params)


def list_checkpoints(
    conn: Connection, name: str, stream: str | None, limit: int
) -> list[OnlineCheckpoint]:
    check_limit(limit)
    query = sa.select(online_checkpoints).where(online_checkpoints.c.name == name)
    if stream is not None:
        query = query.where(online_checkpoints.c.stream == stream)
    query = query.order_by(
        online_checkpoints.c.created_at.desc(), online_checkpoints.c.seq.desc()
    ).limit(limit)
    return [_record(row._mapping) for row in conn.execute(query)]


def feedback_after(
    conn: Connection, after: int, limit: int, until: datetime | None
) -> list[tuple[int, Feedback]]:
    if isinstance(after, bool) or not isinstance(after, int) or after < 0:
        raise _bad("after", after, "a non-negative feedback row id")
    check_limit(limit)
    query = sa.select(feedback).where(feedback.c.id > after)
    if until is not None:
        query = query.where(feedback.c.received_at < until)
    query = query.order_by(feedback.c.id).limit(limit)
    found = []
    for row in conn.execute(query):
        m = row._mapping
        record = Feedback(
            m["prediction_id"], m["label"], m["reward"], m["received_at"], m["source"]
        )
        found.append((int(m["id"]), record))
    return found


class SqlOnlineCheckpoints:
    """The metadata store's online-checkpoint methods (mixed into ``SqlMetadataStore``)."""

    if TYPE_CHECKING:

        def _transaction(
            self, *, write: bool = False, what: str = ""
        ) -> AbstractContextManager[Connection]: ...

    def add_online_checkpoint(
        self, cp: OnlineCheckpoint, steps: Sequence[StepRow] = ()
    ) -> OnlineCheckpoint:
        records = step_records(cp.run_id, steps) if steps else []
        with self._transaction(write=True, what="committing an online checkpoint") as conn:
            stored = add(conn, cp, run_must_exist=bool(records))
            if records:  # the windows the checkpoint completed, in its transaction
                upsert_steps(conn, cp.run_id, records, checked_run=True)
            return stored

    def latest_online_checkpoint(self, name: str, stream: str) -> OnlineCheckpoint | None:
        with self._transaction() as conn:
            return latest(conn, name, stream)

    def list_online_checkpoints(
        self, name: str, stream: str | None = None, limit: int = 100
    ) -> list[OnlineCheckpoint]:
        with self._transaction() as conn:
            return list_checkpoints(conn, name, stream, limit)

    def list_feedback_after(
        self, after: int, limit: int = 1000, *, until: datetime | None = None
    ) -> list[tuple[int, Feedback]]:
        with self._transaction() as conn:
            return feedback_after(conn, after, limit, until)
