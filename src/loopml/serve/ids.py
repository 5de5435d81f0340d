"""Prediction ids: unique without a system call per row."""

from __future__ import annotations

import itertools
import os


class _IdSource:
    """Prediction ids: 32 hex characters, a random 64-bit prefix drawn once per process
    (again after a fork: each worker draws its own) and a 64-bit counter starting at a
    random point. Unique without a system call per row (``os.urandom`` per id cost a few
    microseconds a request); two processes collide only if their prefixes do (2^-64)."""

    def __init__(self) -> None:
        self._prefix = ""
        self._counter = itertools.count()
        self.reset()

    def reset(self) -> None:
        """A new prefix and counter (at start, and in the child after a fork)."""
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count(int.from_bytes(os.urandom(4), "big") << 16)

    def take(self, n: int) -> list[str]:
        prefix = self._prefix
        counter = self._counter  # next() on itertools.count is atomic (threads)
        return [f"{prefix}{next(counter):016x}" for _ in range(n)]


_ids = _IdSource()
os.register_at_fork(after_in_child=_ids.reset)  # each worker process draws its own


def new_prediction_ids(n: int) -> list[str]:
    """``n`` unique prediction ids as 32 hex characters (see :class:`_IdSource`)."""
    return _ids.take(n)


__all__ = ["new_prediction_ids"]
