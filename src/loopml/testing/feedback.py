"""The MetadataStore contract for feedback: stored once however often sent, also concurrently."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta

import numpy as np

from loopml.errors import InvalidInputError
from loopml.stores.base import MetadataStore
from loopml.stores.records import Feedback
from loopml.testing._common import Check, _equal, _opened, _race, _raises
from loopml.utils import utcnow


def _pid() -> str:
    return uuid.uuid4().hex


def check_feedback_round_trip(factory: Callable[[], MetadataStore]) -> None:
    """Labels and rewards come back as sent, oldest first, by id, since a time, with a limit."""
    t0 = utcnow().replace(microsecond=0)
    a, b, c = _pid(), _pid(), _pid()
    items = [
        Feedback(a, 1, None, t0, "http"),
        Feedback(b, "yes", 0.5, t0 + timedelta(seconds=1), "file.csv"),
        Feedback(c, None, -2.0, t0 + timedelta(seconds=2), ""),
    ]
    with _opened(factory) as store:
        _equal(store.add_feedback(items), 3, "rows inserted")
        _equal(store.add_feedback([]), 0, "nothing to insert")
    with _opened(factory) as store:
        got = store.list_feedback(prediction_ids=[a, b, c])
        _equal(got, items, "read back, oldest first")
        if any(f.received_at.tzinfo is None for f in got):
            raise AssertionError(f"received_at is not in UTC: {got}")
        _equal(store.list_feedback(prediction_ids=[b]), [items[1]], "of one prediction")
        _equal(store.list_feedback(prediction_ids=[_pid()]), [], "of an unknown prediction")
        _equal(store.list_feedback(prediction_ids=[]), [], "of no predictions")
        later = store.list_feedback(prediction_ids=[a, b, c], since=t0 + timedelta(seconds=1))
        _equal(later, items[1:], "since a time")
        _equal(store.list_feedback(prediction_ids=[a, b, c], limit=2), items[:2], "a limit")
        mine = [f for f in store.list_feedback(since=t0) if f.prediction_id in {a, b, c}]
        _equal(mine, items, "all, since a time")
        _raises(InvalidInputError, lambda: store.list_feedback(limit=0), "limit 0")


def check_feedback_idempotent(factory: Callable[[], MetadataStore]) -> None:
    """The same (id, label, reward) thrice is one row; another label or reward is another."""
    pid = _pid()
    at = utcnow()
    with _opened(factory) as store:
        _equal(store.add_feedback([Feedback(pid, 1, None, at, "http")]), 1, "the first")
        again = [Feedback(pid, 1, None, at + timedelta(seconds=1), "http")] * 2
        _equal(store.add_feedback(again), 0, "the same twice more")
        _equal(store.add_feedback([Feedback(pid, 1.0, None, at, "csv")]), 0, "1.0 is 1")
        _equal(store.add_feedback([Feedback(pid, np.int64(1), None, at, "")]), 0, "numpy 1")
        _equal(
            store.add_feedback([Feedback(pid, 0, None, at), Feedback(pid, 0, None, at)]),
            1,
            "a new label, twice in one call",
        )
        _equal(store.add_feedback([Feedback(pid, 1, 1.0, at)]), 1, "a label with a reward")
        _equal(store.add_feedback([Feedback(pid, None, 1, at)]), 1, "a reward alone")
        _equal(store.add_feedback([Feedback(pid, None, 1.0, at)]), 0, "the reward 1.0 again")
        got = [(f.label, f.reward) for f in store.list_feedback(prediction_ids=[pid])]
        _equal(
            sorted(got, key=repr),
            sorted([(1, None), (0, None), (1, 1.0), (None, 1.0)], key=repr),
            "rows",
        )


def check_feedback_invalid(factory: Callable[[], MetadataStore]) -> None:
    """A bad item is an InvalidInputError naming it and its field; nothing of the call is
    stored."""
    pid = _pid()
    at = utcnow()
    bad = [
        (Feedback("", 1, None, at), "prediction_id"),
        (Feedback("x" * 200, 1, None, at), "prediction_id"),
        (Feedback(pid, None, None, at), "label"),
        (Feedback(pid, None, float("nan"), at), "reward"),
        (Feedback(pid, None, float("inf"), at), "reward"),
        (Feedback(pid, None, True, at), "reward"),
        (Feedback(pid, None, "1", at), "reward"),  # type: ignore[arg-type]
        (Feedback(pid, [1, 2], None, at), "label"),
        (Feedback(pid, float("nan"), None, at), "label"),
    ]
    with _opened(factory) as store:
        for item, field in bad:
            exc = _raises(
                InvalidInputError,
                lambda item=item: store.add_feedback([Feedback(pid, 1, None, at), item]),  # type: ignore[misc]
                f"bad feedback {item}",
            )
            where = getattr(exc, "where", {}) or {}
            _equal((where.get("item"), where.get("field")), (1, field), f"where of {item}")
        _equal(store.list_feedback(prediction_ids=[pid]), [], "nothing stored")


def check_feedback_concurrent(factory: Callable[[], MetadataStore]) -> None:
    """Writers sending the same outcomes at once (each its own store): each stored once."""
    writers = 4
    at = utcnow()
    items = [Feedback(_pid(), i % 2, None, at, "race") for i in range(50)]
    counts, _ = _race(factory, writers, lambda store, _i: store.add_feedback(items),
                      "a concurrent writer")  # fmt: skip
    _equal(sum(counts), len(items), f"rows inserted in all (per writer {counts})")
    with _opened(factory) as store:
        stored = store.list_feedback(prediction_ids=[f.prediction_id for f in items])
        _equal(len(stored), len(items), "rows stored")


FEEDBACK_CHECKS: list[Check] = [
    check_feedback_round_trip,
    check_feedback_idempotent,
    check_feedback_invalid,
    check_feedback_concurrent,
]
