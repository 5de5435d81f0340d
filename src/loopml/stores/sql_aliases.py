"""Aliases as compare-and-set, their transition log, and a version's status, in SQL.

Each function runs inside the caller's write transaction (``SqlMetadataStore._transaction``):
on SQLite that is ``BEGIN IMMEDIATE`` (writers are serialised); on PostgreSQL the rows read
are locked ``FOR UPDATE``, so of two concurrent moves of one alias the second reads what the
first wrote. A first setting of an alias is an INSERT that fails on the primary key when a
concurrent one got there first; the store turns that into the same conflict.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from loopml.errors import ConflictError, NotFoundError
from loopml.stores.base import ANY_VERSION, Expected
from loopml.stores.records import AliasEvent, ModelVersion
from loopml.stores.sql_schema import _values, alias_events, aliases, model_versions
from loopml.utils import utcnow

ALIAS_MOVED = "alias_moved"
VERSION_ALIASED = "version_aliased"


def _shown(version: int | None) -> str:
    return "no version (it is not set)" if version is None else f"version {version}"


def _expect_word(version: int | None) -> str:
    return "none" if version is None else str(version)


def current_alias(conn: Connection, name: str, alias: str) -> int | None:
    query = (
        sa.select(aliases.c.version)
        .where(aliases.c.model_name == name, aliases.c.alias == alias)
        .with_for_update()
    )
    found = conn.execute(query).scalar()
    return None if found is None else int(found)


def last_event(conn: Connection, name: str, alias: str) -> AliasEvent | None:
    query = (
        sa.select(alias_events)
        .where(alias_events.c.model_name == name, alias_events.c.alias == alias)
        .order_by(alias_events.c.at.desc(), alias_events.c.id.desc())
        .limit(1)
    )
    row = conn.execute(query).first()
    return None if row is None else _event(row._mapping)


def moved_error(
    name: str, alias: str, current: int | None, expected: int | None, event: AliasEvent | None
) -> ConflictError:
    """The conflict of a compare-and-set that found the alias elsewhere."""
    by = ""
    if event is not None:
        by = f" (last moved by {event.actor or 'unknown'} at {event.at:%Y-%m-%d %H:%M:%S} UTC"
        by += f": {event.reason})" if event.reason else ")"
    return ConflictError(
        f"alias {alias!r} of model {name!r} points at {_shown(current)}, not at "
        f"{_shown(expected)} as expected{by}",
        where={"model": name, "alias": alias, "current": current, "expected": expected},
        hint=f"Another change got there first. See 'loopml models history {name} --alias "
        f"{alias}', then retry with --expect {_expect_word(current)} (expected="
        f"{current!r}) if the move still makes sense",
        code=ALIAS_MOVED,
    )


def check_expected(conn: Connection, name: str, alias: str, expected: Expected) -> int | None:
    """The alias's current version (locked); ConflictError when it is not ``expected``."""
    current = current_alias(conn, name, alias)
    if expected is not ANY_VERSION and current != expected:
        raise moved_error(name, alias, current, expected, last_event(conn, name, alias))
    return current


def _locked_version(conn: Connection, name: str, version: int) -> dict[str, Any] | None:
    query = (
        sa.select(model_versions)
        .where(
            model_versions.c.name == name,
            model_versions.c.version == int(version),
            model_versions.c.status != "deleted",
        )
        .with_for_update()
    )
    row = conn.execute(query).first()
    return None if row is None else dict(row._mapping)


def set_alias(
    conn: Connection,
    name: str,
    alias: str,
    version: int,
    expected: Expected,
    actor: str | None,
    reason: str | None,
    missing: NotFoundError,
) -> AliasEvent | None:
    target = _locked_version(conn, name, version)
    if target is None:
        raise missing
    if target["status"] != "active":
        raise ConflictError(
            f"model {name!r} version {version} is {target['status']}; an alias may not point at it",
            where={"model": name, "version": version, "status": target["status"]},
            hint=f"Restore it first with 'loopml models restore {name}@{version}', or "
            "point the alias at an active version",
            code="version_archived",
        )
    current = check_expected(conn, name, alias, expected)
    if current == int(version):
        return None
    key = (aliases.c.model_name == name) & (aliases.c.alias == alias)
    if current is None:
        conn.execute(aliases.insert().values(model_name=name, alias=alias, version=int(version)))
    else:
        moved = conn.execute(
            aliases.update().where(key, aliases.c.version == current).values(version=int(version))
        )
        if moved.rowcount != 1:  # pragma: no cover - the row is locked above
            raise moved_error(name, alias, None, current, None)
    return _log(conn, AliasEvent(name, alias, current, int(version), utcnow(), actor, reason))


def delete_alias(
    conn: Connection,
    name: str,
    alias: str,
    expected: Expected,
    actor: str | None,
    reason: str | None,
) -> AliasEvent:
    current = current_alias(conn, name, alias)
    if current is None:
        known = ", ".join(sorted(alias_map(conn, name))) or "none"
        raise NotFoundError(
            f"model {name!r} has no alias {alias!r}",
            where={"model": name, "alias": alias},
            hint=f"Aliases of {name}: {known}",
        )
    if expected is not ANY_VERSION and current != expected:
        raise moved_error(name, alias, current, expected, last_event(conn, name, alias))
    key = (aliases.c.model_name == name) & (aliases.c.alias == alias)
    conn.execute(aliases.delete().where(key, aliases.c.version == current))
    return _log(conn, AliasEvent(name, alias, current, None, utcnow(), actor, reason))


def _log(conn: Connection, event: AliasEvent) -> AliasEvent:
    conn.execute(alias_events.insert().values(_values(event)))
    return event


def _event(row: Any) -> AliasEvent:
    values = {k: v for k, v in row.items() if k != "id"}
    return AliasEvent(**values)


def alias_map(conn: Connection, name: str) -> dict[str, int]:
    query = (
        sa.select(aliases.c.alias, aliases.c.version)
        .where(aliases.c.model_name == name)
        .order_by(aliases.c.alias)
    )
    return {a: int(v) for a, v in conn.execute(query)}


def list_events(conn: Connection, name: str, alias: str | None, limit: int) -> list[AliasEvent]:
    query = (
        sa.select(alias_events)
        .where(alias_events.c.model_name == name)
        .order_by(alias_events.c.at.desc(), alias_events.c.id.desc())
        .limit(limit)
    )
    if alias is not None:
        query = query.where(alias_events.c.alias == alias)
    return [_event(row._mapping) for row in conn.execute(query)]


def _refuse_aliased(conn: Connection, name: str, version: int, doing: str) -> None:
    pointing = sorted(a for a, v in alias_map(conn, name).items() if v == int(version))
    if not pointing:
        return
    first = pointing[0]
    listed = ", ".join(pointing)
    raise ConflictError(
        f"cannot {doing} model {name!r} version {version}: alias{'es' if len(pointing) > 1 else ''}"
        f" {listed} point{'' if len(pointing) > 1 else 's'} at it",
        where={"model": name, "version": version, "aliases": pointing},
        hint=f"Move the alias first: 'loopml models alias {name} {first} OTHER_VERSION "
        f"--expect {version}', or remove it with 'loopml models alias {name} {first} "
        f"--delete'",
        code=VERSION_ALIASED,
    )


def _refuse_deployed(conn: Connection, name: str, version: int, doing: str) -> None:
    """A version a deployment routes traffic to (or shadows) stays until it is moved off."""
    from loopml.stores.sql_deployments import get

    dep = get(conn, name)
    if dep is None:
        return
    routed = {v for v, _ in dep.routes}
    if int(version) not in routed and dep.shadow != int(version):
        return
    role = "shadows" if int(version) not in routed else "routes traffic to"
    raise ConflictError(
        f"cannot {doing} model {name!r} version {version}: its deployment (revision "
        f"{dep.revision}) {role} it",
        where={"model": name, "version": version, "deployment": dep.revision},
        hint=f"Deploy other versions first, e.g. 'loopml deploy {name} --single OTHER_VERSION "
        f"--expect {dep.revision}'",
        code="version_deployed",
    )


def set_status(
    conn: Connection, name: str, version: int, status: str, missing: NotFoundError
) -> ModelVersion:
    row = _locked_version(conn, name, version)
    if row is None:
        raise missing
    if status != "active":
        _refuse_aliased(conn, name, version, "archive")
        _refuse_deployed(conn, name, version, "archive")
    key = (model_versions.c.name == name) & (model_versions.c.version == int(version))
    conn.execute(model_versions.update().where(key).values(status=status))
    return ModelVersion(**{**row, "status": status})


def delete_version(
    conn: Connection, name: str, version: int, missing: NotFoundError
) -> ModelVersion:
    row = _locked_version(conn, name, version)
    if row is None:
        raise missing
    _refuse_aliased(conn, name, version, "delete")
    _refuse_deployed(conn, name, version, "delete")
    key = (model_versions.c.name == name) & (model_versions.c.version == int(version))
    # the row stays as a tombstone, so that the number is never handed out again
    conn.execute(model_versions.update().where(key).values(status="deleted"))
    return ModelVersion(**row)
