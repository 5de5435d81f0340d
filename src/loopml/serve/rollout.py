"""Which version answers a request: a deployment laid out on the unit interval.

A request key (the ``X-Loopml-Key`` header, or a key field) is hashed with BLAKE2b, salted
with the served name, to a point in [0, 1); each answering version owns an interval there,
so a key always lands on the same version while the deployment stays the same. Without a
key the point is drawn from ``os.urandom``.

The layout is chosen so that stepping a rollout moves as few keys as possible:

- ``canary`` puts the canary at the bottom, ``[0, p)``, and the primary above it: raising
  the canary from 10 % to 20 % moves exactly the keys in ``[0.1, 0.2)`` (about 10 %), all of
  them from the primary to the canary, and none back;
- ``ab`` and ``single`` lay the versions out by version number (however the weights were
  written), so changing 3=90,4=10 to 3=80,4=20 moves only the keys between 0.8 and 0.9.

Pure logic, no I/O: a pick is one hash and a bisection (about a microsecond).
"""

from __future__ import annotations

import hashlib
import os
from bisect import bisect_right

from loopml.errors import InvalidInputError
from loopml.stores.records import Deployment

_SCALE = float(1 << 64)


class Router:
    """Picks the version that answers a request of one served name."""

    __slots__ = ("_bounds", "_hash", "_versions", "deployment")

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        routes = [(v, float(w)) for v, w in deployment.routes]
        if deployment.mode == "canary":
            routes.reverse()  # the canary at the bottom: raising it only takes from the primary
        else:
            routes.sort()  # by version: the same layout however the weights were written
        laid = [(v, w) for v, w in routes if w > 0]
        if not laid:
            raise InvalidInputError(
                f"deployment {deployment.name!r} sends no traffic to any version",
                where={"deployment": deployment.name},
                hint="Give at least one version a share above 0",
            )
        total = sum(w for _, w in laid)
        bounds: list[float] = []
        upper = 0.0
        for _, weight in laid[:-1]:
            upper += weight / total
            bounds.append(upper)
        self._bounds = bounds  # the upper end of each interval but the last (which is 1)
        self._versions = [v for v, _ in laid]
        salt = hashlib.blake2b(deployment.name.encode("utf-8"), digest_size=32).digest()
        self._hash = hashlib.blake2b(digest_size=8, key=salt)

    @classmethod
    def single(cls, name: str, version: int) -> Router:
        """A router that sends everything of ``name`` to ``version``."""
        return cls(Deployment(name, "single", ((version, 100.0),)))

    def point(self, key: str | None) -> float:
        """Where ``key`` lands in [0, 1): stable for a key, random without one (or "")."""
        if not key:
            return int.from_bytes(os.urandom(8), "big") / _SCALE
        h = self._hash.copy()
        h.update(key.encode("utf-8", "surrogatepass"))
        return int.from_bytes(h.digest(), "big") / _SCALE

    def pick(self, key: str | None = None) -> int:
        """The version that answers a request with ``key`` (None or "": at random)."""
        return self._versions[bisect_right(self._bounds, self.point(key))]

    @property
    def shadow(self) -> int | None:
        """The version that scores every request without answering, if any."""
        return self.deployment.shadow

    @property
    def versions(self) -> set[int]:
        """Every version a server must hold loaded: those that answer, and the shadow."""
        held = set(self._versions)
        if self.deployment.shadow is not None:
            held.add(self.deployment.shadow)
        return held

    @property
    def revision(self) -> int:
        return self.deployment.revision

    def shares(self) -> dict[int, float]:
        """version -> the share of keys it answers (0 to 1)."""
        lows = [0.0, *self._bounds]
        highs = [*self._bounds, 1.0]
        return {v: hi - lo for v, lo, hi in zip(self._versions, lows, highs, strict=True)}

    def __repr__(self) -> str:
        routes = " ".join(f"{v}={s * 100:g}%" for v, s in self.shares().items())
        shadow = f" shadow={self.shadow}" if self.shadow is not None else ""
        return f"Router({self.deployment.name!r} {self.deployment.mode} {routes}{shadow})"


__all__ = ["Router"]
