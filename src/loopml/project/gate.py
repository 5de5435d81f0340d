"""Gates: conditions a model must meet before it is registered, e.g. ``roc_auc >= 0.9``.

A condition compares a metric with a number (``roc_auc >= 0.9``), with the current champion
re-scored on the same holdout rows (``roc_auc >= champion + 0.01``: beat it by at least 0.01;
``log_loss <= champion``), or bounds every slice (``slices.roc_auc >= 0.8``: no slice of the
columns in ``evaluation.slices`` worse than 0.8).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from loopml.errors import ConfigError
from loopml.project.suggest import did_you_mean

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}
_NUMBER = r"-?[0-9]*\.?[0-9]+(?:e-?\d+)?"
_COND = re.compile(
    r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(>=|<=|>|<)\s*"
    rf"(?:({_NUMBER})|champion\s*(?:([+-])\s*({_NUMBER}))?)\s*$"
)
CHAMPION = "champion"
SLICES = "slices."


@dataclass(frozen=True)
class Condition:
    metric: str
    op: str
    threshold: float  # the bound, or the margin over the champion's value when ``against``
    against: str | None = None  # "champion": compared with the champion's value + threshold

    def __str__(self) -> str:
        if self.against is None:
            return f"{self.metric} {self.op} {self.threshold:g}"
        if self.threshold == 0:
            return f"{self.metric} {self.op} {self.against}"
        sign = "+" if self.threshold > 0 else "-"
        return f"{self.metric} {self.op} {self.against} {sign} {abs(self.threshold):g}"


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
                    hint="Write conditions like 'roc_auc >= 0.9 and cv.accuracy > 0.85', "
                    "'roc_auc >= champion + 0.01' or 'slices.recall >= 0.7'",
                )
            if m.group(3) is not None:
                conds.append(Condition(m.group(1), m.group(2), float(m.group(3))))
            else:
                margin = float(m.group(5) or 0.0) * (-1.0 if m.group(4) == "-" else 1.0)
                conds.append(Condition(m.group(1), m.group(2), margin, CHAMPION))
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
            if c.against is not None and c.metric not in metric_names:
                raise ConfigError(
                    f"the gate compares {c.metric} with the champion, which is re-scored on "
                    "the holdout only",
                    where=where,
                    hint=f"Compare a holdout metric: {', '.join(metric_names)}",
                )
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

    def check(
        self,
        metrics: Mapping[str, float],
        *,
        champion: Mapping[str, float] | str | None = None,
        slices: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    ) -> tuple[bool, str]:
        """(passed, reason) for the given flat metrics.

        ``champion``: the champion's metrics on the same holdout rows; a text saying why it
        could not be scored (its conditions then fail); None when there is no champion yet
        (its conditions pass: there is nothing to beat). ``slices``: the per-slice metrics,
        ``{column: [{"slice", "rows", "metrics": {...}}, ...]}`` (the ``columns`` of
        :func:`loopml.evaluate.slices.slice_metrics`).
        """
        failures: list[str] = []
        passes: list[str] = []
        for c in self.conditions:
            if c.against is not None:
                ok, text = _check_champion(c, metrics.get(c.metric), champion)
            elif c.metric.startswith(SLICES):
                ok, text = _check_slices(c, slices)
            else:
                value = metrics.get(c.metric)
                if value is None:
                    ok, text = False, f"{c.metric} was not computed"
                elif not _OPS[c.op](value, c.threshold):
                    ok, text = False, f"{c.metric} = {value:.4f}, needs {c.op} {c.threshold:g}"
                else:
                    ok, text = True, f"{c.metric} = {value:.4f} {c.op} {c.threshold:g}"
            (passes if ok else failures).append(text)
        if failures:
            return False, "; ".join(failures)
        if not self.conditions:
            return True, "no gate configured"
        return True, "; ".join(passes)

    def __str__(self) -> str:
        return " and ".join(str(c) for c in self.conditions) or "(none)"


def gate_metric_names(metric_names: Sequence[str]) -> list[str]:
    """Every name a gate may use for these holdout metrics: ``x``, ``cv.x``, ``cv.x.std``
    and ``slices.x``."""
    names = list(metric_names)
    return [
        *names,
        *(f"cv.{n}" for n in names),
        *(f"cv.{n}.std" for n in names),
        *(f"{SLICES}{n}" for n in names),
    ]


def _check_champion(
    c: Condition, value: float | None, champion: Mapping[str, float] | str | None
) -> tuple[bool, str]:
    if champion is None:
        return True, f"{c}: no champion yet"
    if isinstance(champion, str):
        return False, f"{c}: the champion could not be scored ({champion})"
    theirs = champion.get(c.metric)
    if value is None or theirs is None:
        return False, f"{c}: {c.metric} was not computed for both models"
    bound = theirs + c.threshold
    ok = _OPS[c.op](value, bound)
    text = f"{c.metric} = {value:.4f} vs champion {theirs:.4f}"
    return ok, f"{text} {c.op} {bound:.4f}" if ok else f"{text}, needs {c.op} {bound:.4f}"


def _check_slices(
    c: Condition, slices: Mapping[str, Sequence[Mapping[str, Any]]] | None
) -> tuple[bool, str]:
    metric = c.metric[len(SLICES) :]
    seen = []
    for column, rows in (slices or {}).items():
        for s in rows:
            value = (s.get("metrics") or {}).get(metric)
            if isinstance(value, int | float) and value == value:  # not NaN
                label = s["slice"] if "slice" in s else s.get("value")
                seen.append((float(value), column, label, s.get("rows")))
    if not seen:
        return False, f"{c.metric}: no slice has {metric} (declare evaluation.slices)"
    bad = [t for t in seen if not _OPS[c.op](t[0], c.threshold)]
    worst = min(bad or seen, key=lambda t: t[0] if c.op in (">=", ">") else -t[0])
    where = f"{worst[1]}={worst[2]} ({worst[3]} rows)"
    if bad:
        return False, (
            f"{c.metric}: {len(bad)} of {len(seen)} slices fail, worst {where} = "
            f"{worst[0]:.4f}, needs {c.op} {c.threshold:g}"
        )
    shown = f"{c.op} {c.threshold:g} (worst {where} = {worst[0]:.4f})"
    return True, f"{c.metric}: all {len(seen)} slices {shown}"


def _holdout_name(metric: str) -> str:
    return metric.removeprefix("cv.").removesuffix(".std")
