"""Deployments as compare-and-set on a revision, and their change log, in SQL.

Each function runs inside the caller's write transaction (``SqlMetadataStore._transaction``):
SQLite serialises writers (``BEGIN IMMEDIATE``); on PostgreSQL the row read is locked ``FOR
UPDATE``, so of two concurrent changes naming one revision the second reads what the first
wrote. Two concurrent first deployments both INSERT; the loser fails on the primary key, and
the store retries it, so that it then reads the winner's row and gets the same conflict.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from loopml.errors import ConflictError, InvalidInputError
from loopml.stores.records import DEPLOYMENT_MODES, Deployment, DeploymentEvent
from loopml.stores.sql_schema import deployment_events, deployments
from loopml.utils import utcnow

DEPLOYMENT_MOVED = "deployment_moved"
#: how far from 100 the percentages of a deployment may sum (float rounding)
PERCENT_SLACK = 1e-6


def check_deployment(dep: Deployment) -> None:
    """The shape every stored deployment has; InvalidInputError naming what is off.

    Whether the versions exist is the registry's business (``loopml.registry.deployments``).
    """
    where = {"deployment": dep.name}
    if not isinstance(dep.name, str) or not 1 <= len(dep.name) <= 128:
        raise InvalidInputError(
            f"deployment name {dep.name!r} must be a string of 1 to 128 characters",
            where=where,
            hint="Name a deployment after the model it serves",
        )
    if dep.mode not in DEPLOYMENT_MODES:
        raise InvalidInputError(
            f"deployment mode {dep.mode!r} is not one of {', '.join(DEPLOYMENT_MODES)}",
            where={**where, "mode": dep.mode},
            hint="Use single, ab or canary",
        )
    routes = dep.routes
    if not routes or (dep.mode == "single" and len(routes) != 1):
        raise InvalidInputError(
            f"a {dep.mode} deployment cannot have {len(routes)} route(s)",
            where={**where, "routes": [list(r) for r in routes]},
            hint="single: one version at 100; ab: two or more; canary: primary then canary",
        )
    if dep.mode == "canary" and len(routes) != 2:
        raise InvalidInputError(
            f"a canary deployment has a primary and a canary, not {len(routes)} route(s)",
            where={**where, "routes": [list(r) for r in routes]},
            hint="Give routes ((primary, 100 - p), (canary, p))",
        )
    seen: set[int] = set()
    for version, weight in routes:
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise InvalidInputError(
                f"deployment {dep.name!r} routes to {version!r}, which is not a version number",
                where={**where, "version": version},
                hint="Versions are whole numbers from 1",
            )
        if version in seen:
            raise InvalidInputError(
                f"deployment {dep.name!r} names version {version} twice",
                where={**where, "version": version},
                hint="Give each version once, with its whole share",
            )
        seen.add(version)
        if (
            isinstance(weight, bool)
            or not isinstance(weight, int | float)
            or not math.isfinite(weight)
            or not 0 <= weight <= 100
        ):
            raise InvalidInputError(
                f"deployment {dep.name!r} gives version {version} the share {weight!r}",
                where={**where, "version": version, "weight": weight},
                hint="Shares are percentages from 0 to 100",
            )
    total = sum(float(w) for _, w in routes)
    if abs(total - 100.0) > PERCENT_SLACK:
        raise InvalidInputError(
            f"the shares of deployment {dep.name!r} sum to {total:g}, not 100",
            where={**where, "routes": [list(r) for r in routes]},
            hint="Make the percentages add up to 100",
        )
    if dep.shadow is not None and (
        isinstance(dep.shadow, bool) or not isinstance(dep.shadow, int) or dep.shadow < 1
    ):
        raise InvalidInputError(
            f"shadow {dep.shadow!r} of deployment {dep.name!r} is not a version number",
            where={**where, "shadow": dep.shadow},
            hint="Give the shadow as a version number, or None",
        )


def _row(dep: Deployment) -> dict[str, Any]:
    return {
        "name": dep.name,
        "mode": dep.mode,
        "routes": [[int(v), float(w)] for v, w in dep.routes],
        "shadow": dep.shadow,
        "revision": dep.revision,
        "updated_at": dep.updated_at,
        "updated_by": dep.updated_by,
        "reason": dep.reason,
    }


def _deployment(row: Any) -> Deployment:
    return Deployment(
        name=row["name"],
        mode=row["mode"],
        routes=tuple((int(v), float(w)) for v, w in row["routes"]),
        shadow=None if row["shadow"] is None else int(row["shadow"]),
        revision=int(row["revision"]),
        updated_at=row["updated_at"],
        updated_by=row["updated_by"],
        reason=row["reason"],
    )


def get(conn: Connection, name: str, *, lock: bool = False) -> Deployment | None:
    query = sa.select(deployments).where(deployments.c.name == name)
    if lock:
        query = query.with_for_update()
    row = conn.execute(query).first()
    return None if row is None else _deployment(row._mapping)


def list_all(conn: Connection) -> list[Deployment]:
    query = sa.select(deployments).order_by(deployments.c.name)
    return [_deployment(row._mapping) for row in conn.execute(query)]


def moved_error(name: str, current: Deployment | None, expected: int | None) -> ConflictError:
    """The conflict of a compare-and-set that found another revision."""
    if current is None:
        now = "does not exist"
        retry = "without --expect (it will be created)"
    else:
        now = f"is at revision {current.revision}"
        by = current.updated_by or "unknown"
        at = f" at {current.updated_at:%Y-%m-%d %H:%M:%S} UTC" if current.updated_at else ""
        now += f" (changed by {by}{at}"
        now += f": {current.reason})" if current.reason else ")"
        retry = f"with --expect {current.revision} (expected_revision={current.revision})"
    wanted = "not to exist" if expected is None else f"to be at revision {expected}"
    return ConflictError(
        f"deployment {name!r} {now}; it was expected {wanted}",
        where={
            "deployment": name,
            "current": None if current is None else current.revision,
            "expected": expected,
        },
        hint=f"Another change got there first. See 'loopml deploy status {name}', then retry "
        f"{retry} if the change still makes sense",
        code=DEPLOYMENT_MOVED,
    )


def set_deployment(conn: Connection, dep: Deployment, expected: int | None) -> Deployment:
    """Store ``dep`` as the next revision after ``expected`` and log the change."""
    check_deployment(dep)
    current = get(conn, dep.name, lock=True)
    if (None if current is None else current.revision) != expected:
        raise moved_error(dep.name, current, expected)
    stored = replace(
        dep,
        routes=tuple((int(v), float(w)) for v, w in dep.routes),
        revision=(expected or 0) + 1,
        updated_at=dep.updated_at or utcnow(),
    )
    if current is None:
        conn.execute(deployments.insert().values(_row(stored)))
    else:
        values = _row(stored)
        del values["name"]
        changed = conn.execute(
            deployments.update()
            .where(deployments.c.name == dep.name, deployments.c.revision == expected)
            .values(values)
        )
        if changed.rowcount != 1:  # pragma: no cover - the row is locked above
            raise moved_error(dep.name, get(conn, dep.name), expected)
    conn.execute(
        deployment_events.insert().values(
            name=stored.name,
            revision=stored.revision,
            at=stored.updated_at,
            actor=stored.updated_by,
            reason=stored.reason,
            old=None if current is None else current.to_dict(),
            new=stored.to_dict(),
        )
    )
    return stored


def list_events(conn: Connection, name: str, limit: int) -> list[DeploymentEvent]:
    query = (
        sa.select(deployment_events)
        .where(deployment_events.c.name == name)
        .order_by(deployment_events.c.revision.desc(), deployment_events.c.id.desc())
        .limit(limit)
    )
    found = []
    for row in conn.execute(query):
        m = row._mapping
        found.append(
            DeploymentEvent(
                name=m["name"],
                revision=int(m["revision"]),
                at=m["at"],
                actor=m["actor"],
                reason=m["reason"],
                old=None if m["old"] is None else Deployment.from_dict(m["old"]),
                new=Deployment.from_dict(m["new"]),
            )
        )
    return found
