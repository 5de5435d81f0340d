"""What every check of the contract kits shares."""

from __future__ import annotations

import unittest
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from loopml.stores.base import ArtifactStore, Lake, MetadataStore

S = TypeVar("S", MetadataStore, Lake, ArtifactStore)
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
