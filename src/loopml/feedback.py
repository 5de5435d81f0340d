"""Feedback: outcomes (a true label, a reward) that arrive after a prediction, by its id.

:func:`record_feedback` validates items ``{"prediction_id": ..., "label": ...}`` and/or
``"reward"``, checks that each id was served, and stores them in the metadata store, where
the same ``(prediction_id, label, reward)`` is kept once however often it is sent.

An id is *known* when it is in the prediction log in the lake, still in a local log spool
under ``<workspace>/spool/`` (answered, not yet compacted: in flight), among the ids the
caller says it answered recently (a server passes the ids its logger appended), or already
has feedback stored. Anything else is a NotFoundError: a typo, or a prediction whose log row
was dropped because the spool was full (counted by the server's dropped-rows metric).
``check_known=False`` stores feedback without this check.

This module imports the prediction log lazily, so ``import loopml`` stays light.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from loopml.errors import InvalidInputError, NotFoundError

if TYPE_CHECKING:
    from loopml.stores.base import Lake
    from loopml.stores.records import Feedback
    from loopml.workspace import Workspace

ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")
FIELDS = ("prediction_id", "label", "reward")
SHOWN = 5


@dataclass(frozen=True)
class FeedbackResult:
    """What :func:`record_feedback` did: items received, rows inserted, repeats skipped."""

    received: int
    inserted: int
    duplicates: int

    def to_dict(self) -> dict[str, int]:
        return {
            "received": self.received,
            "inserted": self.inserted,
            "duplicates": self.duplicates,
        }


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(isinstance(value, float) and math.isnan(value))
    except TypeError:
        return False


def parse_items(
    items: Mapping[str, Any] | Iterable[Mapping[str, Any]],
    *,
    source: str = "api",
    row_name: str = "item",
    first_row: int = 0,
) -> list[Feedback]:
    """Validated :class:`~loopml.stores.records.Feedback` of one item or a list of them.

    Errors name the item (``row_name`` and its index from ``first_row``) and the field.
    """
    from loopml.stores.records import Feedback

    if isinstance(items, Mapping):
        items = [items]
    if isinstance(items, str | bytes):
        raise InvalidInputError(
            "feedback items are a string, not objects",
            where={"field": "feedback"},
            hint='Pass {"prediction_id": ..., "label": ...} or a list of them',
        )
    now = datetime.now(UTC)
    out: list[Feedback] = []
    for i, item in enumerate(items):
        row = first_row + i
        where: dict[str, Any] = {row_name: row}
        if not isinstance(item, Mapping):
            raise InvalidInputError(
                f"feedback {row_name} {row} is a {type(item).__name__}, not an object",
                where={**where, "field": "feedback"},
                hint='Each item is {"prediction_id": ..., "label": ...} or with "reward"',
            )
        extra = sorted(str(k) for k in item if k not in FIELDS)
        if extra:
            raise InvalidInputError(
                f"feedback {row_name} {row} has an unknown field {extra[0]!r}",
                where={**where, "field": extra[0]},
                hint=f"Use only: {', '.join(FIELDS)}",
            )
        pid = item.get("prediction_id")
        if not isinstance(pid, str) or not ID_PATTERN.match(pid.lower()):
            raise InvalidInputError(
                f"feedback {row_name} {row}: prediction_id {str(pid)[:80]!r} is not a "
                "prediction id (32 hexadecimal characters)",
                where={**where, "field": "prediction_id"},
                hint="Send the prediction_id the server returned with the prediction",
                code="invalid_prediction_id",
            )
        label = item.get("label")
        label = None if _missing(label) else label
        if label is not None and hasattr(label, "item") and not isinstance(label, str | bytes):
            label = label.item()  # numpy scalars from a Parquet or CSV file
        if label is not None and not isinstance(label, str | int | float | bool):
            raise InvalidInputError(
                f"feedback {row_name} {row}: label {str(label)[:80]!r} is a "
                f"{type(label).__name__}, not a string, number or boolean",
                where={**where, "field": "label"},
                hint="Send the true label as the model's classes are written, or a number",
            )
        if isinstance(label, float) and not math.isfinite(label):
            raise InvalidInputError(
                f"feedback {row_name} {row}: label {label} is not a finite number",
                where={**where, "field": "label"},
                hint="Send a finite number or a class name",
            )
        reward = item.get("reward")
        reward = None if _missing(reward) else reward
        if reward is not None:
            if hasattr(reward, "item") and not isinstance(reward, str | bytes):
                reward = reward.item()
            if (
                isinstance(reward, bool)
                or not isinstance(reward, int | float)
                or not math.isfinite(reward)
            ):
                raise InvalidInputError(
                    f"feedback {row_name} {row}: reward {str(reward)[:80]!r} is not a finite "
                    "number",
                    where={**where, "field": "reward"},
                    hint="Send the reward as a number, e.g. 1.0",
                )
            reward = float(reward)
        if label is None and reward is None:
            raise InvalidInputError(
                f"feedback {row_name} {row} has neither a label nor a reward",
                where={**where, "field": "label"},
                hint='Add "label" (the true outcome) or "reward" (a number), or both',
            )
        out.append(Feedback(pid.lower(), label, reward, now, source))
    return out


def lake_ids(lake: Lake, wanted: set[str]) -> set[str]:
    """The ids of ``wanted`` in the lake's prediction log (newest parts first, stopping when
    all are found)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from loopml.predictions import PREFIX, _newest_first

    found: set[str] = set()
    if not wanted:
        return found
    parts = [p for p in lake.list(f"{PREFIX}/") if p.endswith(".parquet")]
    value_set = pa.array(sorted(wanted), pa.string())
    for path in sorted(parts, key=_newest_first, reverse=True):
        ids = lake.read_table(path)["prediction_id"]
        hits = ids.filter(pc.is_in(ids, value_set=value_set))
        found.update(str(v) for v in hits.to_pylist())
        if found >= wanted:
            break
    return found


def known_ids(ws: Workspace, ids: Iterable[str], *, recent: Iterable[str] = ()) -> set[str]:
    """The ids of ``ids`` that were served (see the module's rule)."""
    from pathlib import Path

    from loopml.predictions import spooled_ids

    wanted = set(ids)
    found = wanted.intersection(recent)
    if found < wanted:
        stored = ws.metadata.list_feedback(prediction_ids=sorted(wanted - found))
        found.update(f.prediction_id for f in stored)
    if found < wanted:
        found |= spooled_ids(Path(ws.root) / "spool", wanted - found)
    if found < wanted:
        found |= lake_ids(ws.lake, wanted - found)
    return found


def record_feedback(
    ws: Workspace,
    items: Mapping[str, Any] | Iterable[Mapping[str, Any]],
    *,
    source: str = "api",
    check_known: bool = True,
    recent: Iterable[str] = (),
    row_name: str = "item",
    first_row: int = 0,
) -> FeedbackResult:
    """Store feedback items idempotently; NotFoundError naming the first unknown ids (then
    nothing is stored), InvalidInputError naming the item and field of a bad one."""
    parsed = parse_items(items, source=source, row_name=row_name, first_row=first_row)
    if not parsed:
        return FeedbackResult(0, 0, 0)
    if check_known:
        known = known_ids(ws, (f.prediction_id for f in parsed), recent=recent)
        unknown = [
            (i, f.prediction_id) for i, f in enumerate(parsed) if f.prediction_id not in known
        ]
        if unknown:
            first, pid = unknown[0]
            shown = ", ".join(p for _, p in unknown[:SHOWN])
            more = f" and {len(unknown) - SHOWN} more" if len(unknown) > SHOWN else ""
            raise NotFoundError(
                f"no prediction with id {shown}{more} was served (feedback {row_name} "
                f"{first_row + first})",
                where={row_name: first_row + first, "field": "prediction_id", "prediction_id": pid},
                hint="Check the id; predictions whose log rows were dropped (spool full) "
                "cannot take feedback unless sent with check_known=False "
                "(loopml feedback --allow-unknown)",
                code="unknown_prediction",
            )
    inserted = ws.metadata.add_feedback(parsed)
    return FeedbackResult(len(parsed), inserted, len(parsed) - inserted)
