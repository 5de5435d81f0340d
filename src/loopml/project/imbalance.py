"""The project file's answers about the classes: which is positive, their weights, the cut.

```yaml
data:
  positive: bad                 # the label that precision, recall, F1 and the score are about
model:
  class_weight: balanced        # or {bad: 10, good: 1}
evaluation:
  threshold: {recall: 0.8}      # or {precision: 0.9}, or {optimize: f1}
```
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from loopml.errors import ConfigError

THRESHOLD_TARGETS = ("precision", "recall")
THRESHOLD_OPTIMIZE = ("f1",)
BOOLEAN_LABELS = ({0, 1}, {False, True})


@dataclass(frozen=True)
class ThresholdSpec:
    """``evaluation.threshold``: a target precision or recall, or the F1 to maximise."""

    kind: str  # "precision", "recall" or "optimize"
    value: float | str  # the target (precision, recall) or the metric optimised ("f1")

    def to_dict(self) -> dict[str, Any]:
        return {self.kind: self.value}

    def __str__(self) -> str:
        if self.kind == "optimize":
            return f"the highest {self.value}"
        return f"{self.kind} >= {self.value:g}" if isinstance(self.value, float) else ""


def parse_threshold(value: Any, source: str, *, folds: int) -> ThresholdSpec | None:
    fieldname = "evaluation.threshold"
    if value is None:
        return None
    hint = "Write threshold: {recall: 0.8}, {precision: 0.9} or {optimize: f1}"
    if not isinstance(value, Mapping) or len(value) != 1:
        raise ConfigError(
            f"{fieldname} must name one target, got {value!r}",
            where={"file": source, "field": fieldname},
            hint=hint,
        )
    ((kind, target),) = value.items()
    if kind == "optimize":
        if target not in THRESHOLD_OPTIMIZE:
            raise ConfigError(
                f"{fieldname}.optimize is {target!r}",
                where={"file": source, "field": f"{fieldname}.optimize"},
                hint=f"Optimise one of: {', '.join(THRESHOLD_OPTIMIZE)}",
            )
        spec = ThresholdSpec("optimize", str(target))
    elif kind in THRESHOLD_TARGETS:
        if isinstance(target, bool) or not isinstance(target, int | float) or not 0 < target <= 1:
            raise ConfigError(
                f"{fieldname}.{kind} is {target!r}",
                where={"file": source, "field": f"{fieldname}.{kind}"},
                hint=f"Give the {kind} to reach, a fraction such as 0.8",
            )
        spec = ThresholdSpec(str(kind), float(target))
    else:
        raise ConfigError(
            f"unknown key {fieldname}.{kind}",
            where={"file": source, "field": f"{fieldname}.{kind}"},
            hint=hint,
        )
    if folds < 2:
        raise ConfigError(
            f"{fieldname} is chosen on out-of-fold predictions, but evaluation.folds is {folds}",
            where={"file": source, "field": fieldname},
            hint="Set evaluation.folds to 2 or more (the threshold is never tuned on the "
            "holdout), or leave out evaluation.threshold",
        )
    return spec


def parse_class_weight(value: Any, source: str) -> str | dict[Any, float] | None:
    fieldname = "model.class_weight"
    if value is None:
        return None
    if value == "balanced":
        return "balanced"
    if (
        isinstance(value, Mapping)
        and value
        and all(
            isinstance(w, int | float) and not isinstance(w, bool) and w > 0 for w in value.values()
        )
    ):
        return {k: float(w) for k, w in value.items()}
    raise ConfigError(
        f"{fieldname} is {value!r}",
        where={"file": source, "field": fieldname},
        hint="Write class_weight: balanced, or a positive weight per label: {bad: 10, good: 1}",
    )


def _same(a: Any, b: Any) -> bool:
    return bool(a == b) or str(a) == str(b)


def match_label(value: Any, labels: Sequence[Any]) -> Any | None:
    """The label of ``labels`` that ``value`` (as YAML read it) names, or None."""
    for label in labels:
        if _same(label, value):
            return label
    return None


def resolve_positive(
    declared: Any, labels: Sequence[Any], *, source: str, dataset: str
) -> Any | None:
    """The positive label of a classification target with ``labels`` (sorted, distinct).

    Binary targets: the declared label (it must be one of them), else 1 / True for labels
    0/1 or False/True; any other pair without ``data.positive`` is a ConfigError naming the
    labels (never the alphabetically last). Multiclass targets have none (and refuse one).
    """
    shown = ", ".join(repr(x) for x in labels[:10])
    if len(labels) != 2:
        if declared is not None:
            raise ConfigError(
                f"data.positive is {declared!r} but the target has {len(labels)} classes",
                where={"file": source, "field": "data.positive", "dataset": dataset},
                hint="A positive class is for a binary target; leave data.positive out",
            )
        return None
    if declared is not None:
        label = match_label(declared, labels)
        if label is None:
            raise ConfigError(
                f"data.positive is {declared!r}, which is not a label of the target",
                where={"file": source, "field": "data.positive", "dataset": dataset},
                hint=f"Set data.positive to one of: {shown}",
            )
        return label
    if set(labels) in BOOLEAN_LABELS:
        return max(labels)
    raise ConfigError(
        f"the target's labels are {shown}: which one is the positive class?",
        where={"file": source, "field": "data.positive", "dataset": dataset},
        hint=f"Add 'positive: LABEL' under data: (one of {shown}); precision, recall, F1 "
        "and the score are measured for it",
    )
