"""Drift detectors on an online learner's stream of errors, whose state is data.

``online.drift`` names one:

- ``adwin``: ADWIN (Bifet & Gavaldà, 2007), adaptive windowing, with River's parameters
  (``delta``, ``clock``, ``max_buckets``, ``min_window_length``, ``grace_period``). River's
  own ADWIN keeps its window in compiled code that cannot be read back, so it could not
  resume after a crash; :class:`Adwin` is the same algorithm in Python (its window is plain
  lists), checked to raise at the same events as ``river.drift.ADWIN`` (the tests).
- ``page_hinkley``: River's ``drift.PageHinkley`` itself (its state goes through
  :mod:`loopml.registry.flavors.river_state`).
- ``error_window``: the mean error of the last ``window`` events against that of the
  ``window`` before them, a one-sided test at level ``alpha`` (normal approximation of the
  difference of two means: for 0/1 errors, the two-proportion test): drift when the error
  has risen. Both windows start over after a detection.

Feed :meth:`DriftDetector.update` the error of each prediction (0/1 for a misclassification,
the absolute error for a regression); it answers True on the event where drift is detected.
:meth:`DriftDetector.state` and :meth:`DriftDetector.from_state` round-trip it as JSON, so a
resumed learner resumes its detector too.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Mapping
from typing import Any

from loopml.errors import ConfigError, IntegrityError, InvalidInputError
from loopml.registry.flavors.river_state import decode, encode

DETECTORS = ("adwin", "page_hinkley", "error_window")
_PARAMS: dict[str, dict[str, Any]] = {
    "adwin": {"delta": 0.002, "clock": 32, "max_buckets": 5, "min_window_length": 5,
              "grace_period": 10},
    "page_hinkley": {"min_instances": 30, "delta": 0.005, "threshold": 50.0,
                     "alpha": 1 - 0.0001, "mode": "both"},
    "error_window": {"window": 500, "alpha": 0.01},
}  # fmt: skip


class Adwin:
    """ADWIN over a stream of numbers; its state is :meth:`state` (plain lists).

    The window is kept as rows of buckets: row ``i`` holds buckets of ``2**i`` values (the
    newest values in row 0), each bucket its total and its variance; a row with more than
    ``max_buckets`` merges its two oldest into one bucket of the next row. Every ``clock``
    values, each cut of the window into an older and a newer part is tested, and the oldest
    bucket dropped while one differs."""

    def __init__(
        self,
        delta: float = 0.002,
        clock: int = 32,
        max_buckets: int = 5,
        min_window_length: int = 5,
        grace_period: int = 10,
    ) -> None:
        self.delta = float(delta)
        self.clock = int(clock)
        self.max_buckets = int(max_buckets)
        self.min_window_length = int(min_window_length)
        self.grace_period = int(grace_period)
        self.drift_detected = False
        self.detections = 0
        self._clear()

    def _clear(self) -> None:
        # rows[i] = [totals, variances], oldest bucket of the row first
        self.rows: list[list[list[float]]] = [[[], []]]
        self.total = 0.0
        self.variance = 0.0
        self.width = 0.0
        self.tick = 0

    def update(self, x: float) -> bool:
        """Add ``x``; True when drift is detected (the window then starts over on the next
        value, as River's ADWIN does)."""
        if self.drift_detected:
            self._clear()
        self._insert(float(x))
        self.drift_detected = self._detect()
        if self.drift_detected:
            self.detections += 1
        return self.drift_detected

    def _insert(self, value: float) -> None:
        totals, variances = self.rows[0]
        totals.append(value)
        variances.append(0.0)
        self.width += 1
        if self.width > 1.0:
            d = value - self.total / (self.width - 1.0)
            self.variance += (self.width - 1.0) * d * d / self.width
        self.total += value
        self._merge()

    def _merge(self) -> None:
        i = 0
        while i < len(self.rows):
            totals, variances = self.rows[i]
            if len(totals) != self.max_buckets + 1:
                return
            if i + 1 == len(self.rows):
                self.rows.append([[], []])
            size = 2.0**i
            mu1, mu2 = totals[0] / size, totals[1] / size
            merged_variance = (
                variances[0]
                + variances[1]
                + size * size * (mu1 - mu2) * (mu1 - mu2) / (size + size)
            )
            above = self.rows[i + 1]
            above[0].append(totals[0] + totals[1])
            above[1].append(merged_variance)
            del totals[:2], variances[:2]
            if len(above[0]) <= self.max_buckets:
                return
            i += 1

    def _drop_oldest(self) -> float:
        i = len(self.rows) - 1
        totals, variances = self.rows[i]
        n = 2.0**i
        u, v = totals[0], variances[0]
        self.width -= n
        self.total -= u
        mu_window = self.total / self.width
        self.variance -= v + n * self.width * (u / n - mu_window) * (u / n - mu_window) / (
            n + self.width
        )
        del totals[0], variances[0]
        if not totals:
            self.rows.pop()
        return n

    def _detect(self) -> bool:
        self.tick += 1
        if self.tick % self.clock != 0 or self.width <= self.grace_period:
            return False
        detected = False
        again = True
        while again:
            again = False
            n0, n1, u0, u1 = 0.0, self.width, 0.0, self.total
            done = False
            for i in range(len(self.rows) - 1, -1, -1):
                if done:
                    break
                totals = self.rows[i][0]
                size = 2.0**i
                for k in range(len(totals)):
                    n0 += size
                    n1 -= size
                    u0 += totals[k]
                    u1 -= totals[k]
                    if i == 0 and k == len(totals) - 1:
                        done = True  # the newest bucket: nothing after the cut
                        break
                    if (
                        n1 >= self.min_window_length
                        and n0 >= self.min_window_length
                        and self._cut(n0, n1, u0 / n0 - u1 / n1)
                    ):
                        again = detected = True
                        if self.width > 0:
                            n0 -= self._drop_oldest()
                            done = True
                            break
        return detected

    def _cut(self, n0: float, n1: float, delta_mean: float) -> bool:
        delta_prime = math.log(2 * math.log(self.width) / self.delta)
        m_recip = 1.0 / (n0 - self.min_window_length + 1) + 1.0 / (n1 - self.min_window_length + 1)
        epsilon = (
            math.sqrt(2 * m_recip * (self.variance / self.width) * delta_prime)
            + 2 / 3 * delta_prime * m_recip
        )
        return abs(delta_mean) > epsilon

    def state(self) -> dict[str, Any]:
        return {
            "params": {
                "delta": self.delta,
                "clock": self.clock,
                "max_buckets": self.max_buckets,
                "min_window_length": self.min_window_length,
                "grace_period": self.grace_period,
            },
            "rows": encode(self.rows, "drift.rows"),
            "total": encode(self.total, "drift.total"),
            "variance": encode(self.variance, "drift.variance"),
            "width": self.width,
            "tick": self.tick,
            "drift_detected": self.drift_detected,
            "detections": self.detections,
        }

    @classmethod
    def from_state(cls, doc: Mapping[str, Any]) -> Adwin:
        out = cls(**doc["params"])
        out.rows = decode(doc["rows"], "drift.rows")
        out.total = float(decode(doc["total"], "drift.total"))
        out.variance = float(decode(doc["variance"], "drift.variance"))
        out.width = float(doc["width"])
        out.tick = int(doc["tick"])
        out.drift_detected = bool(doc["drift_detected"])
        out.detections = int(doc["detections"])
        return out


class ErrorWindow:
    """The mean error of the last ``window`` values against the ``window`` before them.

    Both windows keep running sums (exact again every ``window`` values), so an update is
    constant time."""

    def __init__(self, window: int = 500, alpha: float = 0.01) -> None:
        self.window = int(window)
        self.alpha = float(alpha)
        if self.window < 2 or not 0.0 < self.alpha < 0.5:
            raise ValueError(f"window {window} must be at least 2 and alpha {alpha} in (0, 0.5)")
        self._z = statistics.NormalDist().inv_cdf(1.0 - self.alpha)
        self.drift_detected = False
        self.detections = 0
        self.last_z: float | None = None
        self._clear()

    def _clear(self) -> None:
        self.old: deque[float] = deque()
        self.new: deque[float] = deque()
        # sums and sums of squares of the old and the new window; values since the last
        # exact recount
        self.sums = [0.0, 0.0, 0.0, 0.0]
        self.count = 0

    def update(self, x: float) -> bool:
        if self.drift_detected:
            self._clear()
        w = self.window
        sums = self.sums
        self.new.append(x)
        sums[2] += x
        sums[3] += x * x
        if len(self.new) > w:
            y = self.new.popleft()
            sums[2] -= y
            sums[3] -= y * y
            self.old.append(y)
            sums[0] += y
            sums[1] += y * y
            if len(self.old) > w:
                z = self.old.popleft()
                sums[0] -= z
                sums[1] -= z * z
        self.count += 1
        if self.count % w == 0:  # running sums drift: count them again, exactly
            self.sums = sums = [
                math.fsum(self.old),
                math.fsum(v * v for v in self.old),
                math.fsum(self.new),
                math.fsum(v * v for v in self.new),
            ]
        self.drift_detected = False
        if len(self.old) == w:
            m0, m1 = sums[0] / w, sums[2] / w
            v0 = max(sums[1] / w - m0 * m0, 0.0)
            v1 = max(sums[3] / w - m1 * m1, 0.0)
            se = math.sqrt((v0 + v1) / w)
            if se > 1e-12:
                self.last_z = (m1 - m0) / se
                self.drift_detected = self.last_z > self._z
            elif m1 > m0 + 1e-12:  # no spread at all, and the error rose
                self.last_z = math.inf
                self.drift_detected = True
        if self.drift_detected:
            self.detections += 1
        return self.drift_detected

    def state(self) -> dict[str, Any]:
        return {
            "params": {"window": self.window, "alpha": self.alpha},
            "old": encode(list(self.old), "drift.old"),
            "new": encode(list(self.new), "drift.new"),
            "sums": encode(self.sums, "drift.sums"),
            "count": self.count,
            "drift_detected": self.drift_detected,
            "detections": self.detections,
            "last_z": encode(self.last_z, "drift.last_z"),
        }

    @classmethod
    def from_state(cls, doc: Mapping[str, Any]) -> ErrorWindow:
        out = cls(**doc["params"])
        out.old.extend(decode(doc["old"], "drift.old"))
        out.new.extend(decode(doc["new"], "drift.new"))
        out.sums = [float(v) for v in decode(doc["sums"], "drift.sums")]
        out.count = int(doc["count"])
        out.drift_detected = bool(doc["drift_detected"])
        out.detections = int(doc["detections"])
        out.last_z = decode(doc.get("last_z"), "drift.last_z")
        return out


class _PageHinkley:
    """River's ``drift.PageHinkley``, its state through the online state format."""

    def __init__(self, **params: Any) -> None:
        from river import drift

        self.params = params
        self.detector = drift.PageHinkley(**params)
        self.detections = 0

    def update(self, x: float) -> bool:
        self.detector.update(float(x))
        detected = bool(self.detector.drift_detected)
        if detected:
            self.detections += 1
        return detected

    def state(self) -> dict[str, Any]:
        return {
            "params": dict(self.params),
            "detector": encode(self.detector, "drift.detector"),
            "detections": self.detections,
        }

    @classmethod
    def from_state(cls, doc: Mapping[str, Any]) -> _PageHinkley:
        out = cls(**doc["params"])
        out.detector = decode(doc["detector"], "drift.detector")
        out.detections = int(doc["detections"])
        return out


_KINDS: dict[str, Any] = {"adwin": Adwin, "page_hinkley": _PageHinkley, "error_window": ErrorWindow}


class DriftDetector:
    """One of :data:`DETECTORS` on a stream of errors, counting what it sees."""

    def __init__(self, detector: str = "adwin", **params: Any) -> None:
        if detector not in _KINDS:
            raise ConfigError(
                f"online.drift.detector is {detector!r}",
                where={"field": "online.drift.detector"},
                hint=f"Use one of: {', '.join(DETECTORS)}",
            )
        known = _PARAMS[detector]
        for key in params:
            if key not in known:
                raise ConfigError(
                    f"online.drift.{key} is not a parameter of the {detector} detector",
                    where={"field": f"online.drift.{key}"},
                    hint=f"Parameters of {detector}: {', '.join(known)}",
                )
        self.kind = detector
        self.params = {**known, **params}
        try:
            self._impl = _KINDS[detector](**self.params)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"online.drift: the {detector} detector refused its parameters: {exc}"[:300],
                where={"field": "online.drift"},
                hint=f"Parameters of {detector}, with their defaults: {known}",
            ) from exc
        #: errors seen, and the events (1-based counts) at which drift was detected
        self.n = 0
        self.last_detection: int | None = None

    @classmethod
    def from_spec(cls, drift: Mapping[str, Any] | None) -> DriftDetector | None:
        """The detector of ``online.drift`` (None when it names none)."""
        if drift is None:
            return None
        params = {k: v for k, v in drift.items() if k != "detector"}
        return cls(str(drift.get("detector", "adwin")), **params)

    @property
    def detections(self) -> int:
        return int(self._impl.detections)

    def update(self, error: float) -> bool:
        """Add the error of one prediction; True when drift is detected at it."""
        if isinstance(error, bool):
            error = float(error)
        if not isinstance(error, int | float) or not math.isfinite(error):
            raise InvalidInputError(
                f"a drift detector takes a finite error, got {error!r}",
                where={"field": "error"},
                hint="Pass 0/1 for a misclassification or the absolute error of a regression",
            )
        self.n += 1
        detected = bool(self._impl.update(float(error)))
        if detected:
            self.last_detection = self.n
        return detected

    def state(self) -> dict[str, Any]:
        """The detector as JSON values (what a checkpoint keeps)."""
        return {
            "detector": self.kind,
            "n": self.n,
            "last_detection": self.last_detection,
            "impl": self._impl.state(),
        }

    @classmethod
    def from_state(cls, doc: Mapping[str, Any]) -> DriftDetector:
        """The detector of :meth:`state`; IntegrityError for a damaged document."""
        try:
            kind = doc["detector"]
            impl = doc["impl"]
            out = cls(kind, **impl["params"])
            out._impl = _KINDS[kind].from_state(impl)
            out.n = int(doc["n"])
            last = doc.get("last_detection")
            out.last_detection = None if last is None else int(last)
            return out
        except (KeyError, TypeError, ValueError, ConfigError) as exc:
            raise IntegrityError(
                f"a drift detector's state is damaged: {type(exc).__name__}: {exc}"[:300],
                where={"field": "drift"},
                hint="Use another checkpoint, or start the learner again",
            ) from exc

    def __repr__(self) -> str:
        return f"DriftDetector({self.kind}, n={self.n}, detections={self.detections})"


__all__ = ["DETECTORS", "Adwin", "DriftDetector", "ErrorWindow"]
