"""The MetadataStore contract for deployments: compare-and-set on a revision, the change log."""

from __future__ import annotations

from collections.abc import Callable

from loopml.errors import ConflictError, InvalidInputError
from loopml.stores.base import MetadataStore
from loopml.stores.records import Deployment
from loopml.testing._common import Check, _equal, _opened, _race, _raises, _unique


def _dep(name: str, mode: str, routes: tuple[tuple[int, float], ...], **more: object) -> Deployment:
    return Deployment(name, mode, routes, **more)  # type: ignore[arg-type]


def check_deployment_round_trip(factory: Callable[[], MetadataStore]) -> None:
    """A deployment comes back as stored, numbered 1, 2, ... and listed by name."""
    name = _unique("d")
    with _opened(factory) as store:
        _equal(store.get_deployment(name), None, "an unknown deployment")
        first = store.set_deployment(
            _dep(name, "single", ((3, 100),), updated_by="ann@h", reason="first"),
            expected_revision=None,
        )
        _equal((first.revision, first.routes, first.shadow), (1, ((3, 100.0),), None), "stored")
        if first.updated_at is None or first.updated_at.tzinfo is None:
            raise AssertionError(f"updated_at is not a UTC time: {first.updated_at!r}")
        _equal(store.get_deployment(name), first, "read back")
        second = store.set_deployment(
            _dep(name, "canary", ((3, 90), (4, 10)), shadow=5, updated_by="bob@h"),
            expected_revision=1,
        )
        _equal(second.revision, 2, "the second revision")
        got = store.get_deployment(name)
        _equal(got, second, "the canary read back")
        _equal(got.routes if got else None, ((3, 90.0), (4, 10.0)), "routes keep their order")
        _equal(got.answering if got else None, (3, 4), "the answering versions")
    with _opened(factory) as again:
        _equal(again.get_deployment(name), second, "after reopening")
        names = [d.name for d in again.list_deployments()]
        if name not in names or names != sorted(names):
            raise AssertionError(f"list_deployments misses {name!r} or is unsorted: {names}")


def check_deployment_compare_and_set(factory: Callable[[], MetadataStore]) -> None:
    """A change names the revision it replaces; a miss names the current one and changes
    nothing."""
    name = _unique("d")
    with _opened(factory) as store:
        store.set_deployment(_dep(name, "single", ((1, 100),)), expected_revision=None)
        exc = _raises(
            ConflictError,
            lambda: store.set_deployment(_dep(name, "single", ((2, 100),)), expected_revision=None),
            "create over an existing deployment",
        )
        _equal(getattr(exc, "code", None), "deployment_moved", "code of a missed CAS")
        if "revision 1" not in str(exc):
            raise AssertionError(f"the conflict does not name the current revision: {exc}")
        _raises(
            ConflictError,
            lambda: store.set_deployment(_dep(name, "single", ((2, 100),)), expected_revision=7),
            "a wrong expected revision",
        )
        _raises(
            ConflictError,
            lambda: store.set_deployment(
                _dep(_unique("d"), "single", ((2, 100),)), expected_revision=1
            ),
            "an expected revision of a deployment that does not exist",
        )
        current = store.get_deployment(name)
        _equal(current.routes if current else None, ((1, 100.0),), "after refused changes")
        _equal(current.revision if current else None, 1, "the revision after refusals")


def check_deployment_shape(factory: Callable[[], MetadataStore]) -> None:
    """Malformed deployments are InvalidInputError, and nothing is stored."""
    name = _unique("d")
    bad = [
        _dep(name, "blue-green", ((1, 100),)),
        _dep(name, "single", ((1, 50), (2, 50))),
        _dep(name, "ab", ((1, 60), (2, 60))),
        _dep(name, "ab", ((1, 50), (1, 50))),
        _dep(name, "ab", ((0, 50), (2, 50))),
        _dep(name, "ab", ((1, -10), (2, 110))),
        _dep(name, "ab", ((1, float("nan")), (2, 50))),
        _dep(name, "canary", ((1, 100),)),
        _dep(name, "single", ()),
        _dep(name, "single", ((1, 100),), shadow=0),
        _dep("", "single", ((1, 100),)),
    ]
    with _opened(factory) as store:
        for dep in bad:
            _raises(
                InvalidInputError,
                lambda dep=dep: store.set_deployment(dep, expected_revision=None),  # type: ignore[misc]
                f"malformed {dep}",
            )
        _equal(store.get_deployment(name), None, "nothing stored")


def check_deployment_race(factory: Callable[[], MetadataStore]) -> None:
    """Writers racing with the same expected revision (each its own store): exactly one wins."""
    for expected in (None, 1):
        name = _unique("d")
        if expected is not None:
            with _opened(factory) as store:
                store.set_deployment(_dep(name, "single", ((1, 100),)), expected_revision=None)
        _changes(factory, name, expected)


def _changes(factory: Callable[[], MetadataStore], name: str, expected: int | None) -> None:
    writers = 4

    def change(store: MetadataStore, i: int) -> int:
        version = i + 2
        dep = _dep(name, "single", ((version, 100),), updated_by=f"w{version}")
        store.set_deployment(dep, expected_revision=expected)
        return version

    won, lost = _race(factory, writers, change, "a racing writer")
    _equal(len(won), 1, f"writers that won (expected={expected!r})")
    _equal(len(lost), writers - 1, "writers that got a conflict")
    for exc in lost:
        _equal(exc.code, "deployment_moved", "code of a lost change")
        if f"w{won[0]}" not in str(exc):
            raise AssertionError(f"a lost change does not name the winner w{won[0]}: {exc}")
    with _opened(factory) as store:
        stored = store.get_deployment(name)
        _equal(stored.routes if stored else None, ((won[0], 100.0),), "the deployment after")
        _equal(stored.revision if stored else None, (expected or 0) + 1, "its revision")
        events = store.list_deployment_events(name)
        _equal(len(events), (expected or 0) + 1, "one event per successful change")


def check_deployment_events(factory: Callable[[], MetadataStore]) -> None:
    """Every change is logged with who, when, why, the old and the new, newest first."""
    name = _unique("d")
    with _opened(factory) as store:
        _equal(store.list_deployment_events(name), [], "events of an unknown deployment")
        one = store.set_deployment(
            _dep(name, "single", ((1, 100),), updated_by="ann@h", reason="launch"),
            expected_revision=None,
        )
        two = store.set_deployment(
            _dep(name, "canary", ((1, 95), (2, 5)), updated_by="bob@h", reason="try 2"),
            expected_revision=1,
        )
        three = store.set_deployment(
            _dep(name, "canary", ((1, 80), (2, 20)), updated_by="bob@h"), expected_revision=2
        )
        events = store.list_deployment_events(name)
        got = [(e.revision, e.actor, e.reason, e.old, e.new) for e in events]
        _equal(
            got,
            [
                (3, "bob@h", None, two, three),
                (2, "bob@h", "try 2", one, two),
                (1, "ann@h", "launch", None, one),
            ],
            "events newest first",
        )
        if any(e.at.tzinfo is None for e in events) or events[0].at < events[-1].at:
            raise AssertionError(f"event times are not newest first in UTC: {events}")
        _equal(len(store.list_deployment_events(name, limit=1)), 1, "events with a limit")
        _raises(InvalidInputError, lambda: store.list_deployment_events(name, limit=0), "limit 0")


def check_deployed_version_kept(factory: Callable[[], MetadataStore]) -> None:
    """A version a deployment routes to or shadows cannot be archived or deleted."""
    from loopml.testing.metadata import _model

    name = _unique("m")
    with _opened(factory) as store:
        for _ in range(4):
            store.add_model_version(_model(name))
        store.set_deployment(
            _dep(name, "canary", ((1, 90), (2, 10)), shadow=3), expected_revision=None
        )
        for version in (1, 2, 3):
            exc = _raises(
                ConflictError,
                lambda v=version: store.set_model_version_status(name, v, "archived"),  # type: ignore[misc]
                f"archive deployed version {version}",
            )
            _equal(getattr(exc, "code", None), "version_deployed", "code of the refusal")
            _raises(
                ConflictError,
                lambda v=version: store.delete_model_version(name, v),  # type: ignore[misc]
                f"delete deployed version {version}",
            )
        _equal(store.set_model_version_status(name, 4, "archived").status, "archived", "free")


DEPLOYMENT_CHECKS: list[Check] = [
    check_deployment_round_trip,
    check_deployment_compare_and_set,
    check_deployment_shape,
    check_deployment_race,
    check_deployment_events,
    check_deployed_version_kept,
]
