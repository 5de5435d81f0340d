"""The MetadataStore contract for aliases (compare-and-set, transition log) and version status."""

from __future__ import annotations

from collections.abc import Callable

from loopml.errors import ConflictError, InvalidInputError, NotFoundError
from loopml.stores.base import ANY_VERSION, Expected, MetadataStore
from loopml.testing._common import Check, _equal, _opened, _race, _raises, _unique
from loopml.testing.metadata import _model


def _versions(store: MetadataStore, name: str, n: int) -> None:
    for _ in range(n):
        store.add_model_version(_model(name))


def check_alias_compare_and_set(factory: Callable[[], MetadataStore]) -> None:
    """An alias moves only from the version the caller expects; a miss names the current."""
    name = _unique("m")
    with _opened(factory) as store:
        _versions(store, name, 3)
        first = store.set_alias(name, "champion", 1, expected=None, actor="a@h", reason="first")
        _equal((first.from_version, first.to_version) if first else None, (None, 1), "first set")
        exc = _raises(
            ConflictError,
            lambda: store.set_alias(name, "champion", 2, expected=None),
            "expected=None on an existing alias",
        )
        _equal(getattr(exc, "code", None), "alias_moved", "code of a missed compare-and-set")
        if "version 1" not in str(exc):
            raise AssertionError(f"the conflict does not name the current version: {exc}")
        _raises(
            ConflictError,
            lambda: store.set_alias(name, "champion", 3, expected=2),
            "a wrong expected version",
        )
        _equal(store.get_aliases(name), {"champion": 1}, "after refused moves")
        store.set_alias(name, "champion", 2, expected=1, reason="better")
        _equal(store.get_aliases(name), {"champion": 2}, "after a move from 1")
        _equal(store.set_alias(name, "champion", 2, expected=2), None, "a move to where it is")
        store.set_alias(name, "champion", 3)  # ANY_VERSION: wherever it points
        _raises(
            ConflictError,
            lambda: store.delete_alias(name, "champion", expected=2),
            "delete with a wrong expected version",
        )
        gone = store.delete_alias(name, "champion", expected=3, reason="retired")
        _equal((gone.from_version, gone.to_version), (3, None), "the delete's event")
        _equal(store.get_aliases(name), {}, "after the delete")
        _raises(
            NotFoundError, lambda: store.delete_alias(name, "champion"), "delete an absent alias"
        )


def check_alias_race(factory: Callable[[], MetadataStore]) -> None:
    """Promoters racing with the same expected version (each its own store): exactly one wins."""
    for expected in (None, 1):
        name = _unique("m")
        with _opened(factory) as store:
            _versions(store, name, 6)
            if expected is not None:
                store.set_alias(name, "champion", expected)
        _promotions(factory, name, expected)


def _promotions(factory: Callable[[], MetadataStore], name: str, expected: Expected) -> None:
    writers = 4

    def promote(store: MetadataStore, i: int) -> int:
        version = i + 2
        store.set_alias(name, "champion", version, expected=expected, actor=f"w{version}")
        return version

    won, lost = _race(factory, writers, promote, "a racing promoter")
    _equal(len(won), 1, f"promoters that won (expected={expected!r})")
    _equal(len(lost), writers - 1, "promoters that got a conflict")
    for exc in lost:
        _equal(getattr(exc, "code", None), "alias_moved", "code of a lost promotion")
        if f"version {won[0]}" not in str(exc):
            raise AssertionError(f"a lost promotion does not name the winner {won[0]}: {exc}")
    with _opened(factory) as store:
        _equal(store.get_aliases(name), {"champion": won[0]}, "the alias after the race")
        events = store.list_alias_events(name, "champion")
        _equal(events[0].to_version, won[0], "the newest event is the winner's")
        _equal(events[0].from_version, expected, "the winner moved it from the expected one")


def check_alias_events(factory: Callable[[], MetadataStore]) -> None:
    """Every set, move and delete is logged with who and why, newest first, per alias."""
    name = _unique("m")
    with _opened(factory) as store:
        _versions(store, name, 2)
        _equal(store.list_alias_events(name), [], "events of a model never aliased")
        store.set_alias(name, "champion", 1, actor="ann@h1", reason="first")
        store.set_alias(name, "challenger", 2, actor="bob@h2")
        store.set_alias(name, "champion", 2, expected=1, actor="ann@h1", reason="gate passed")
        store.set_alias(name, "champion", 2, actor="x")  # no change: nothing logged
        store.delete_alias(name, "challenger", actor="bob@h2", reason="done")
        got = [
            (e.alias, e.from_version, e.to_version, e.actor, e.reason)
            for e in store.list_alias_events(name)
        ]
        _equal(
            got,
            [
                ("challenger", 2, None, "bob@h2", "done"),
                ("champion", 1, 2, "ann@h1", "gate passed"),
                ("challenger", None, 2, "bob@h2", None),
                ("champion", None, 1, "ann@h1", "first"),
            ],
            "events newest first",
        )
        only = [(e.from_version, e.to_version) for e in store.list_alias_events(name, "champion")]
        _equal(only, [(1, 2), (None, 1)], "events of one alias")
        _equal(len(store.list_alias_events(name, limit=1)), 1, "events with a limit")
        events = store.list_alias_events(name)
        if events[0].at < events[-1].at or events[0].at.tzinfo is None:
            raise AssertionError(f"event times are not newest first in UTC: {events}")
        _equal(store.list_alias_events(_unique("m")), [], "events of an unknown model")


def check_version_status(factory: Callable[[], MetadataStore]) -> None:
    """Archive and delete refuse an aliased version; a deleted number is never given again."""
    name = _unique("m")
    with _opened(factory) as store:
        _versions(store, name, 3)
        store.set_alias(name, "champion", 1)
        exc = _raises(
            ConflictError,
            lambda: store.set_model_version_status(name, 1, "archived"),
            "archive an aliased version",
        )
        _equal(getattr(exc, "code", None), "version_aliased", "code of the refusal")
        if "champion" not in str(exc):
            raise AssertionError(f"the refusal does not name the alias: {exc}")
        _raises(ConflictError, lambda: store.delete_model_version(name, 1), "delete aliased")
        archived = store.set_model_version_status(name, 2, "archived")
        _equal(archived.status, "archived", "the archived record")
        _equal(store.get_model_version(name, 2).status, "archived", "archived, read back")
        _raises(
            ConflictError,
            lambda: store.set_alias(name, "challenger", 2),
            "an alias to an archived version",
        )
        _equal(store.set_model_version_status(name, 2, "active").status, "active", "restored")
        _raises(
            InvalidInputError,
            lambda: store.set_model_version_status(name, 2, "deleted"),
            "status 'deleted' through set_model_version_status",
        )
        store.delete_model_version(name, 3)
        _raises(NotFoundError, lambda: store.get_model_version(name, 3), "a deleted version")
        _raises(NotFoundError, lambda: store.delete_model_version(name, 3), "delete twice")
        _raises(NotFoundError, lambda: store.set_alias(name, "x", 3), "alias to a deleted one")
        _equal([m.version for m in store.list_model_versions(name)], [1, 2], "listing after delete")
        _equal(store.add_model_version(_model(name)).version, 4, "the number after a delete")
        _raises(
            NotFoundError, lambda: store.set_model_version_status(name, 9, "archived"), "unknown"
        )
        if ANY_VERSION is None:  # pragma: no cover - the sentinel is not None
            raise AssertionError("ANY_VERSION must differ from None")


ALIAS_CHECKS: list[Check] = [
    check_alias_compare_and_set,
    check_alias_race,
    check_alias_events,
    check_version_status,
]
