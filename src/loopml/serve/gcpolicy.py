"""The garbage collector's settings while ``loopml serve`` runs.

A server process holds a few hundred thousand long-lived objects (scikit-learn, pandas,
pyarrow, the models) and allocates a few dozen short-lived ones per request. With CPython's
default thresholds (700, 10, 10), the requests in flight at each young collection are
promoted, and every few thousand requests a full collection walks the whole heap: measured
on the benchmark's LightGBM server (32 connections), 7 full collections per 60,000 requests,
~150 ms each (a stall of the event loop: the p99), 1.2 CPU s in all, ~20 us per request,
about a quarter of loopml's own CPU per request.

What :class:`GcPolicy` does, in a process the server owns (``loopml serve``, each
``--workers`` process; not a server started in a thread of someone else's process):

- once the models are loaded and warmed up, one full collection, then :func:`gc.freeze`:
  what is alive then (libraries, models) leaves the collector's generations, so later
  collections never walk it;
- a young-generation threshold of :data:`GEN0_THRESHOLD` allocations instead of 700, so a
  collection sees few in-flight requests and promotes almost nothing;
- after a hot swap (a version unloaded), once the old version's last requests are done:
  :func:`gc.unfreeze`, a full collection (the unloaded version's reference cycles, if any,
  are freed: frozen objects would never be) and a new freeze. One pause per swap instead of
  one every few thousand requests;
- at shutdown, the previous thresholds back and the frozen objects unfrozen.

Cyclic garbage made while serving is still collected (young collections run every
``GEN0_THRESHOLD`` net allocations of container objects; the older generations as before).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

from loopml.serve.events import log_event

GEN0_THRESHOLD = 10_000
REFREEZE_AFTER_S = 2.0  # after a swap: in-flight requests of the old version finish first


class GcPolicy:
    """Freeze after loading, a higher young threshold, refreeze after swaps (module doc)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.active = False
        self.refreezes = 0
        self._previous: tuple[int, int, int] | None = None
        self._pending: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """The models are loaded: collect, freeze what is alive, raise the threshold."""
        if not self.enabled or self.active:
            return
        self._previous = gc.get_threshold()
        gc.collect()
        gc.freeze()
        _, gen1, gen2 = self._previous
        gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
        self.active = True

    def swapped(self) -> None:
        """A version was unloaded: refreeze once its last requests are done (debounced)."""
        if not self.active:
            return
        if self._pending is not None:
            self._pending.cancel()
        loop = asyncio.get_running_loop()
        self._pending = loop.call_later(REFREEZE_AFTER_S, self.refreeze)

    def refreeze(self) -> None:
        """Unfreeze, collect everything (an unloaded version's cycles), freeze again."""
        self._pending = None
        if not self.active:
            return
        t0 = time.perf_counter()
        gc.unfreeze()
        freed = gc.collect()
        gc.freeze()
        self.refreezes += 1
        log_event(
            logging.INFO,
            "gc_refreeze",
            freed=freed,
            frozen=gc.get_freeze_count(),
            ms=round((time.perf_counter() - t0) * 1000.0, 1),
        )

    def stop(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        if not self.active:
            return
        gc.unfreeze()
        if self._previous is not None:
            gc.set_threshold(*self._previous)
        self.active = False
