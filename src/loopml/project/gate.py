"""Gates: conditions a model must meet before it is promoted, e.g. ``roc_auc >= 0.9``."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from loopml.errors import ConfigError

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}
_COND = re.compile(
    r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(>=|<=|>|<)\s*(-?[0-9]*\.?[0-9]+(?:e-?\d+)?)\s*$"
)


@dataclass(frozen=True)
class Condition:
    metric: str
    op: str
    threshold: float

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.threshold:g}"


@dataclass(frozen=True)
class Gate:
    """All conditions must hold (``and``). Metric names may use a ``cv.`` prefix for the
    cross-validated mean; a bare name means the holdout value."""

    conditions: tuple[Condition, ...]

    @classmethod
    def parse(cls, text: str | None, field: str = "evaluation.gate") -> Gate:
        if text is None or not str(text).strip():
            return cls(())
        conds = []
        for part in re.split(r"\s+and\s+", str(text).strip()):
            m = _COND.match(part)
            if not m:
                raise ConfigError(
                    f"cannot read the gate condition {part!r}",
                    where={"field": field},
                    hint="Write conditions like 'roc_auc >= 0.9 and cv.accuracy > 0.85'",
                )
            conds.append(Condition(m.group(1), m.group(2), float(m.group(3))))
        return cls(tuple(conds))

    def check(self, metrics: Mapping[str, float]) -> tuple[bool, str]:
        """(passed, reason) for the given flat metrics."""
        failures = []
        for c in self.conditions:
            value = metrics.get(c.metric)
            if value is None:
                failures.append(f"{c.metric} was not computed")
            elif not _OPS[c.op](value, c.threshold):
                failures.append(f"{c.metric} = {value:.4f}, needs {c.op} {c.threshold:g}")
        if failures:
            return False, "; ".join(failures)
        if not self.conditions:
            return True, "no gate configured"
        return True, "; ".join(
            f"{c.metric} = {metrics[c.metric]:.4f} {c.op} {c.threshold:g}" for c in self.conditions
        )

    def __str__(self) -> str:
        return " and ".join(str(c) for c in self.conditions) or "(none)"
