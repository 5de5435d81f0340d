"""Monitor events and leases in SQL, the same statements on SQLite and PostgreSQL.

An event with a ``dedupe`` key is inserted with ``INSERT ... ON CONFLICT (dedupe) DO NOTHING``:
of two watchers recording the same trigger, exactly one row is stored and only its writer is
told it was new. A lease is taken with one ``INSERT ... ON CONFLICT (name) DO UPDATE ...
WHERE`` the stored lease has expired or is the caller's own: a compare-and-set the database
decides, so two processes asking at once never both hold it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from loopml.errors import InvalidInputError
from loopml.stores.records import Lease, MonitorEvent
from loopml.stores.sql_schema import leases, monitor_events

MODEL_MAX = 128
KIND_MAX = 32
POLICY_MAX = 128
DEDUPE_MAX = 256
LEASE_NAME_MAX = 128
HOLDER_MAX = 256


def _text(value: Any, field: str, most: int, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not isinstance(value, str) or not 1 <= len(value) <= most:
        raise InvalidInputError(
            f"monitor store: {field} {value!r} must be a string of 1 to {most} characters",
            where={"field": field},
            hint=f"Give {field} as a short non-empty string",
        )


def checked_event(event: MonitorEvent) -> MonitorEvent:
    _text(event.model, "model", MODEL_MAX)
    _text(event.kind, "kind", KIND_MAX)
    _text(event.policy, "policy", POLICY_MAX, optional=True)
    _text(event.dedupe, "dedupe", DEDUPE_MAX, optional=True)
    if not isinstance(event.reason, str):
        raise InvalidInputError(
            f"monitor store: reason {event.reason!r} is not a string",
            where={"field": "reason"},
            hint="Say why, in words",
        )
    if not isinstance(event.evidence, dict):
        raise InvalidInputError(
            f"monitor store: evidence must be a mapping, got {type(event.evidence).__name__}",
            where={"field": "evidence"},
            hint="Give the numbers behind the event as a dict",
        )
    if not isinstance(event.at, datetime):
        raise InvalidInputError(
            f"monitor store: at {event.at!r} is not a datetime",
            where={"field": "at"},
            hint="Give at as a timezone-aware datetime (loopml.utils.utcnow())",
        )
    return event


def _dialect(conn: Connection) -> Any:
    """The module of the dialect in use (its insert has ON CONFLICT), imported on use."""
    if conn.dialect.name == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite
    from sqlalchemy.dialects import postgresql

    return postgresql


def add_event(conn: Connection, event: MonitorEvent) -> MonitorEvent | None:
    """Insert ``event``; it as stored (with its id), None when its dedupe key is taken."""
    event = checked_event(event)
    row = {
        "at": event.at,
        "model": event.model,
        "kind": event.kind,
        "reason": event.reason,
        "evidence": event.evidence,
        "policy": event.policy,
        "dedupe": event.dedupe,
    }
    statement = _dialect(conn).insert(monitor_events).values(row)
    if event.dedupe is not None:
        statement = statement.on_conflict_do_nothing(index_elements=["dedupe"])
    got = conn.execute(statement.returning(monitor_events.c.id)).first()
    if got is None:
        return None
    stored = conn.execute(sa.select(monitor_events).where(monitor_events.c.id == got[0])).one()
    return _event(stored._mapping)


def _event(m: Any) -> MonitorEvent:
    return MonitorEvent(
        id=int(m["id"]),
        at=m["at"],
        model=m["model"],
        kind=m["kind"],
        reason=m["reason"],
        evidence=dict(m["evidence"] or {}),
        policy=m["policy"],
        dedupe=m["dedupe"],
    )


def get_by_dedupe(conn: Connection, dedupe: str) -> MonitorEvent | None:
    row = conn.execute(sa.select(monitor_events).where(monitor_events.c.dedupe == dedupe)).first()
    return None if row is None else _event(row._mapping)


def list_events(
    conn: Connection,
    model: str | None,
    kind: str | None,
    since: datetime | None,
    limit: int,
) -> list[MonitorEvent]:
    query = sa.select(monitor_events).order_by(
        monitor_events.c.at.desc(), monitor_events.c.id.desc()
    )
    if model is not None:
        query = query.where(monitor_events.c.model == model)
    if kind is not None:
        query = query.where(monitor_events.c.kind == kind)
    if since is not None:
        query = query.where(monitor_events.c.at >= since)
    return [_event(row._mapping) for row in conn.execute(query.limit(limit))]


def _check_lease(name: Any, holder: Any, ttl_s: Any = 1.0) -> None:
    _text(name, "lease name", LEASE_NAME_MAX)
    _text(holder, "lease holder", HOLDER_MAX)
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int | float) or not 0 < ttl_s < 1e7:
        raise InvalidInputError(
            f"lease {name!r}: ttl {ttl_s!r} must be a positive number of seconds",
            where={"field": "ttl_s", "lease": name},
            hint="Give the lease a lifetime longer than one watch cycle, e.g. 300",
        )


def acquire(conn: Connection, name: str, holder: str, ttl_s: float, now: datetime) -> Lease | None:
    """Take or renew lease ``name`` for ``holder`` until ``now + ttl_s``: the lease, or None
    when another holder's lease has not expired (then nothing changes)."""
    _check_lease(name, holder, ttl_s)
    expires = now + timedelta(seconds=float(ttl_s))
    statement = _dialect(conn).insert(leases).values(name=name, holder=holder, expires_at=expires)
    excluded = statement.excluded
    statement = statement.on_conflict_do_update(
        index_elements=["name"],
        set_={"holder": excluded.holder, "expires_at": excluded.expires_at},
        where=sa.or_(leases.c.expires_at <= now, leases.c.holder == holder),
    )
    got = conn.execute(statement.returning(leases.c.name)).first()
    return None if got is None else Lease(name, holder, expires)


def release(conn: Connection, name: str, holder: str) -> bool:
    """Give lease ``name`` up when ``holder`` holds it; whether it did."""
    _check_lease(name, holder)
    statement = sa.delete(leases).where(leases.c.name == name, leases.c.holder == holder)
    return len(conn.execute(statement.returning(leases.c.name)).all()) > 0


def get_lease(conn: Connection, name: str) -> Lease | None:
    row = conn.execute(sa.select(leases).where(leases.c.name == name)).first()
    return None if row is None else Lease(row.name, row.holder, row.expires_at)
