"""What every check of the contract kits shares."""

from __future__ import annotations

import threading
import unittest
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from loopml.errors import ConflictError
from loopml.stores.base import ArtifactStore, Lake, MetadataStore

S = TypeVar("S", MetadataStore, Lake, ArtifactStore)
T = TypeVar("T")
Check = Callable[[Callable[[], Any]], None]

BAD_PATHS = ("", "/abs/x", "../x", "a/../b", "a/./b", "a//b", "a\\b", "..", ".")


def _unique(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:10]}"


@contextmanager
def _opened(factory: Callable[[], S]) -> Iterator[S]:
    store = factory()
    try:
        yield store
    finally:
        close = getattr(store, "close", None)
        if callable(close):
            close()


def _raises(kind: type[BaseException], fn: Callable[[], Any], what: str) -> BaseException:
    try:
        fn()
    except kind as exc:
        return exc
    except Exception as exc:
        raise AssertionError(f"{what}: expected {kind.__name__}, got {exc!r}") from exc
    raise AssertionError(f"{what}: expected {kind.__name__}, nothing was raised")


def _equal(got: Any, want: Any, what: str) -> None:
    if got != want:
        raise AssertionError(f"{what}:\n  got  {got!r}\n  want {want!r}")


def _run_all(checks: Iterator[tuple[str, Check]], factory: Callable[[], Any]) -> None:
    for name, check in checks:
        try:
            check(factory)
        except unittest.SkipTest:
            continue
        except AssertionError as exc:
            raise AssertionError(f"check {name!r} failed: {exc}") from exc


def _race(
    factory: Callable[[], MetadataStore],
    writers: int,
    work: Callable[[MetadataStore, int], T],
    who: str,
) -> tuple[list[T], list[ConflictError]]:
    """``work(store, i)`` for i in range(writers), in threads released together, each with
    a store of its own (closed after): what each returned, and the ConflictErrors of those
    that lost; any other error fails the check, naming ``who`` (e.g. "a racing writer")."""
    results: list[T] = []
    lost: list[ConflictError] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    stores = [factory() for _ in range(writers)]
    start = threading.Barrier(writers)

    def run(store: MetadataStore, i: int) -> None:
        try:
            start.wait()
            got = work(store, i)
            with lock:
                results.append(got)
        except ConflictError as exc:
            with lock:
                lost.append(exc)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s, i)) for i, s in enumerate(stores)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        for s in stores:
            s.close()
    if errors:
        raise AssertionError(f"{who} failed: {errors[0]!r}") from errors[0]
    return results, lost
