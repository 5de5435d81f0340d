"""Monitor events: what the monitor saw and what the loop did, each with its reason and evidence.

Drift and decay found, alerts sent, retrains, challengers registered, rollout steps,
promotions, rollbacks and errors are all rows in the metadata store (``monitor_events``),
listed by ``loopml monitor events``. An event may carry a ``dedupe`` key: the store keeps one
event per key, also when two watchers record it at once, so "act once per trigger" is the
database's decision, not a race between processes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from loopml.errors import InvalidInputError
from loopml.stores.records import MonitorEvent
from loopml.utils import utcnow

if TYPE_CHECKING:
    from loopml.workspace import Workspace

KINDS = (
    "drift",
    "decay",
    "alert",
    "schedule",
    "retrain",
    "challenger",
    "rollout",
    "promote",
    "rollback",
    "skip",
    "error",
)


def _check_kind(kind: Any) -> str:
    if kind not in KINDS:
        raise InvalidInputError(
            f"unknown monitor event kind {kind!r}",
            where={"field": "kind", "kind": kind},
            hint=f"Use one of: {', '.join(KINDS)}",
        )
    return str(kind)


def record_event(
    ws: Workspace,
    kind: str,
    model: str,
    reason: str,
    evidence: Mapping[str, Any] | None = None,
    *,
    policy: str | None = None,
    dedupe: str | None = None,
    at: datetime | None = None,
) -> MonitorEvent:
    """Record an event and return it as stored. When ``dedupe`` was recorded before, nothing
    new is written and the earlier event is returned (see :func:`claim_event` to know which)."""
    event, _ = claim_event(ws, kind, model, reason, evidence, policy=policy, dedupe=dedupe, at=at)
    return event


def claim_event(
    ws: Workspace,
    kind: str,
    model: str,
    reason: str,
    evidence: Mapping[str, Any] | None = None,
    *,
    policy: str | None = None,
    dedupe: str | None = None,
    at: datetime | None = None,
) -> tuple[MonitorEvent, bool]:
    """``(event, new)``: ``new`` is False when ``dedupe`` was recorded already (by anyone);
    the event is then the earlier one. Of concurrent claimants of one key exactly one is new."""
    draft = MonitorEvent(
        id=None,
        at=at or utcnow(),
        model=model,
        kind=_check_kind(kind),
        reason=reason,
        evidence=dict(evidence or {}),
        policy=policy,
        dedupe=dedupe,
    )
    stored = ws.metadata.add_monitor_event(draft)
    if stored is not None:
        return stored, True
    assert dedupe is not None
    earlier = ws.metadata.get_monitor_event(dedupe)
    return (earlier if earlier is not None else draft), False


def list_events(
    ws: Workspace,
    model: str | None = None,
    kind: str | None = None,
    limit: int = 100,
    *,
    since: datetime | None = None,
) -> list[MonitorEvent]:
    """Recorded events, newest first."""
    if kind is not None:
        _check_kind(kind)
    return ws.metadata.list_monitor_events(model=model, kind=kind, since=since, limit=limit)


__all__ = ["KINDS", "claim_event", "list_events", "record_event"]
