"""Gates: conditions a model must meet before it is promoted, e.g. ``roc_auc >= 0.9``."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from loopml.errors import ConfigError
from loopml.project.suggest import did_you_mean

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
    """All conditions must hold (``and``). A bare metric name means the holdout value,
    ``cv.<name>`` the cross-validated mean and ``cv.<name>.std`` its standard deviation."""

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

    def validate(
        self,
        metric_names: Sequence[str],
        *,
        folds: int = 5,
        field: str = "evaluation.gate",
        source: str | None = None,
    ) -> None:
        """ConfigError unless every condition names a metric that training will compute.

        ``metric_names`` are the holdout metrics of the task; ``cv.`` names need ``folds``.
        Checked before any training, so a typo costs nothing and records no run.
        """
        known = gate_metric_names(metric_names)
        where = {"field": field} if source is None else {"file": source, "field": field}
        for c in self.conditions:
            if c.metric in known:
                if c.metric.startswith("cv.") and not folds:
                    raise ConfigError(
                        f"the gate uses {c.metric} but evaluation.folds is 0 (no cross-validation)",
                        where=where,
                        hint=f"Set evaluation.folds to 2 or more, or gate on "
                        f"{_holdout_name(c.metric)} (the holdout value)",
                    )
                continue
            raise ConfigError(
                f"gate metric {c.metric!r} is not a metric of this task",
                where=where,
                hint=f"{did_you_mean(c.metric, known)}Gate on one of: "
                f"{', '.join(metric_names)}, as cv.<name> for the cross-validated mean or "
                "cv.<name>.std for its spread",
            )

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


def gate_metric_names(metric_names: Sequence[str]) -> list[str]:
    """Every name a gate may use for these holdout metrics: ``x``, ``cv.x``, ``cv.x.std``."""
    names = list(metric_names)
    return [*names, *(f"cv.{n}" for n in names), *(f"cv.{n}.std" for n in names)]


def _holdout_name(metric: str) -> str:
    return metric.removeprefix("cv.").removesuffix(".std")
