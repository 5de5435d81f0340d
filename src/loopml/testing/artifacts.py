"""The ArtifactStore contract."""

from __future__ import annotations

import hashlib
import unittest
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from urllib.parse import unquote, urlsplit

from loopml.errors import IntegrityError, InvalidInputError, NotFoundError
from loopml.stores.base import ArtifactStore
from loopml.testing._common import Check, _equal, _opened, _raises, _run_all


def check_put_get(factory: Callable[[], ArtifactStore]) -> None:
    """put returns the sha256; get gives the bytes back; put is idempotent."""
    data = uuid.uuid4().bytes * 1000 + b"\x00\xff"
    with _opened(factory) as store:
        sha = store.put(data)
        _equal(sha, hashlib.sha256(data).hexdigest(), "the returned sha256")
        _equal(store.exists(sha), True, "exists")
        _equal(store.get(sha), data, "content")
        _equal(store.put(data), sha, "put again")
        _equal(store.get(sha), data, "content after putting again")
        _equal(sha in store.url(sha), True, "the URL names the hash")
        empty = store.put(b"")
        _equal(store.get(empty), b"", "an empty blob")


def check_artifact_not_found(factory: Callable[[], ArtifactStore]) -> None:
    """An absent blob raises NotFoundError; exists says False."""
    sha = hashlib.sha256(uuid.uuid4().bytes).hexdigest()
    with _opened(factory) as store:
        _equal(store.exists(sha), False, "exists")
        _raises(NotFoundError, lambda: store.get(sha), "get")


def check_invalid_sha256(factory: Callable[[], ArtifactStore]) -> None:
    """Anything but 64 hex digits is refused before it can become a path."""
    with _opened(factory) as store:
        for bad in ["", "abc", "../" + "0" * 61, "g" * 64, "0" * 63 + "/", "0" * 65]:
            _raises(InvalidInputError, partial(store.get, bad), f"get({bad!r})")
            _raises(InvalidInputError, partial(store.exists, bad), f"exists({bad!r})")


def _tamper(store: ArtifactStore, sha: str, data: bytes) -> None:
    url = store.url(sha)
    parts = urlsplit(url)
    if parts.scheme == "file":
        Path(unquote(parts.path)).write_bytes(data)
        return
    fs = getattr(store, "fs", None)  # an fsspec filesystem, as the fsspec-based stores expose
    if fs is None or not hasattr(fs, "pipe_file"):
        raise unittest.SkipTest(f"cannot change the blob at {url} behind the store's back")
    fs.pipe_file(f"{parts.netloc}{parts.path}", data)


def check_tampered_blob(factory: Callable[[], ArtifactStore]) -> None:
    """A blob changed behind the store's back raises IntegrityError on get."""
    data = uuid.uuid4().bytes * 100
    with _opened(factory) as store:
        sha = store.put(data)
        _tamper(store, sha, data[:-1] + b"!")
        _raises(IntegrityError, lambda: store.get(sha), "get a tampered blob")
        store.put(data)
        _equal(store.get(sha), data, "content after putting it again")


def artifact_store_checks() -> Iterator[tuple[str, Check]]:
    """``(name, check)`` for every check of the ArtifactStore contract."""
    checks: list[Check] = [
        check_put_get,
        check_artifact_not_found,
        check_invalid_sha256,
        check_tampered_blob,
    ]
    for check in checks:
        yield check.__name__.removeprefix("check_"), check


def check_artifact_store(store_factory: Callable[[], ArtifactStore]) -> None:
    """Run every ArtifactStore check against ``store_factory``; the first failure raises."""
    _run_all(artifact_store_checks(), store_factory)
