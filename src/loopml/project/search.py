"""The ``search:`` section of ``loopml.yaml``: a hyperparameter search space for Optuna.

```yaml
search:
  trials: 20
  metric: roc_auc          # default: evaluation.metric; the direction follows the metric
  pruner: median           # median | none (pruned on the score of each cross-validation fold)
  folds: 5                 # default: evaluation.folds (5 when that is 0)
  study: cancer-rf         # default: project name + dataset version + a hash of the space
  space:
    n_estimators: {int: [50, 300], step: 50}
    max_depth: {int: [2, 12]}
    learning_rate: {float: [0.01, 0.3], log: true}
    criterion: {choice: [gini, entropy]}
```

Everything here is checked when the file is read (the estimator's parameter names later,
before any work): a wrong field is a ConfigError naming it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from loopml.errors import ConfigError
from loopml.project.suggest import did_you_mean

PRUNERS = ("median", "none")
SEARCH_KEYS = ("folds", "metric", "pruner", "space", "study", "trials")
KINDS = ("int", "float", "choice")
PARAM_KEYS = ("choice", "float", "int", "log", "step")


@dataclass(frozen=True)
class ParamSpace:
    """One parameter's range: ``int`` or ``float`` between ``low`` and ``high`` (inclusive),
    optionally on a log scale or in steps, or a ``choice`` among ``choices``."""

    name: str
    kind: str  # one of KINDS
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "choice":
            return {"choice": list(self.choices)}
        out: dict[str, Any] = {self.kind: [self.low, self.high]}
        if self.step is not None:
            out["step"] = self.step
        if self.log:
            out["log"] = True
        return out

    def edges(self) -> list[Any]:
        """The values at the edges of the range (every choice): what a check tries."""
        if self.kind == "choice":
            return list(self.choices)
        return [self.low, self.high]


@dataclass(frozen=True)
class SearchSpec:
    space: tuple[ParamSpace, ...]
    trials: int = 20
    metric: str | None = None
    pruner: str = "median"
    folds: int | None = None
    study: str | None = None

    @classmethod
    def from_config(cls, data: Any, *, source: str = "loopml.yaml") -> SearchSpec:
        if not isinstance(data, Mapping):
            raise ConfigError(
                "search must be a mapping with a space",
                where={"file": source, "field": "search"},
                hint="Write search: {trials: 20, space: {max_depth: {int: [2, 12]}}}",
            )
        _known(data, SEARCH_KEYS, "search.", source)
        trials = data.get("trials", 20)
        if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
            raise ConfigError(
                f"search.trials must be a whole number of 1 or more, got {trials!r}",
                where={"file": source, "field": "search.trials"},
                hint="Write trials: 20",
            )
        pruner = str(data.get("pruner", "median")).lower()
        if data.get("pruner", "median") is None:
            pruner = "none"
        if pruner not in PRUNERS:
            raise ConfigError(
                f"search.pruner is {data.get('pruner')!r}",
                where={"file": source, "field": "search.pruner"},
                hint=f"{did_you_mean(pruner, PRUNERS)}Use one of: {', '.join(PRUNERS)}",
            )
        folds = data.get("folds")
        if folds is not None and (
            isinstance(folds, bool) or not isinstance(folds, int) or folds < 2
        ):
            raise ConfigError(
                f"search.folds is {folds!r}",
                where={"file": source, "field": "search.folds"},
                hint="Trials are scored by cross-validation: use 2 folds or more",
            )
        study = data.get("study")
        if study is not None and (not isinstance(study, str) or not study.strip()):
            raise ConfigError(
                f"search.study must be a name, got {study!r}",
                where={"file": source, "field": "search.study"},
                hint="Write study: my-search, or leave it out for a name derived from the project",
            )
        space = data.get("space")
        if not isinstance(space, Mapping) or not space:
            raise ConfigError(
                "search.space is empty" if not space else "search.space must be a mapping",
                where={"file": source, "field": "search.space"},
                hint="Name at least one model parameter and its range, e.g. "
                "space: {max_depth: {int: [2, 12]}, criterion: {choice: [gini, entropy]}}",
            )
        metric = data.get("metric")
        return cls(
            space=tuple(_param(str(k), v, source) for k, v in space.items()),
            trials=trials,
            metric=None if metric is None else str(metric),
            pruner=pruner,
            folds=folds,
            study=None if study is None else study.strip(),
        )

    def space_hash(self) -> str:
        """A short digest of the space (the default study name changes with it)."""
        text = json.dumps({p.name: p.to_dict() for p in self.space}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:10]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "trials": self.trials,
            "metric": self.metric,
            "pruner": self.pruner,
            "space": {p.name: p.to_dict() for p in self.space},
        }
        if self.folds is not None:
            out["folds"] = self.folds
        if self.study is not None:
            out["study"] = self.study
        return out


def _param(name: str, spec: Any, source: str) -> ParamSpace:
    fieldname = f"search.space.{name}"
    where = {"file": source, "field": fieldname}
    example = "{int: [2, 12]}, {float: [0.01, 0.3], log: true} or {choice: [gini, entropy]}"
    if not isinstance(spec, Mapping):
        raise ConfigError(
            f"{fieldname} must be a range or a choice, got {spec!r}",
            where=where,
            hint=f"Write one of {example}",
        )
    _known(spec, PARAM_KEYS, f"{fieldname}.", source)
    kinds = [k for k in KINDS if k in spec]
    if len(kinds) != 1:
        raise ConfigError(
            f"{fieldname} needs exactly one of int, float or choice, got "
            f"{', '.join(kinds) or 'none'}",
            where=where,
            hint=f"Write one of {example}",
        )
    kind = kinds[0]
    if kind == "choice":
        choices = spec["choice"]
        if extra := [k for k in ("step", "log") if k in spec]:
            raise ConfigError(
                f"{fieldname}.{extra[0]} does not apply to a choice",
                where={"file": source, "field": f"{fieldname}.{extra[0]}"},
                hint="Remove it, or give a numeric range with int: or float:",
            )
        if not isinstance(choices, list) or not choices:
            raise ConfigError(
                f"{fieldname}.choice must be a non-empty list, got {choices!r}",
                where={"file": source, "field": f"{fieldname}.choice"},
                hint="Write choice: [gini, entropy]",
            )
        for c in choices:
            if not isinstance(c, str | int | float | bool | type(None)):
                raise ConfigError(
                    f"{fieldname}.choice holds {c!r}, which is not a plain value",
                    where={"file": source, "field": f"{fieldname}.choice"},
                    hint="Choices are strings, numbers, booleans or null",
                )
        if len(set(map(repr, choices))) != len(choices):
            raise ConfigError(
                f"{fieldname}.choice lists a value twice: {choices!r}",
                where={"file": source, "field": f"{fieldname}.choice"},
                hint="List each value once",
            )
        return ParamSpace(name, "choice", choices=tuple(choices))
    bounds = spec[kind]
    bfield = f"{fieldname}.{kind}"
    number: tuple[type, ...] = (int,) if kind == "int" else (int, float)
    if (
        not isinstance(bounds, list)
        or len(bounds) != 2
        or any(isinstance(b, bool) or not isinstance(b, number) for b in bounds)
    ):
        raise ConfigError(
            f"{bfield} must be [low, high] of {'whole numbers' if kind == 'int' else 'numbers'},"
            f" got {bounds!r}",
            where={"file": source, "field": bfield},
            hint=f"Write {kind}: [{'2, 12' if kind == 'int' else '0.01, 0.3'}]",
        )
    low: Any = bounds[0]
    high: Any = bounds[1]
    if not low < high:
        raise ConfigError(
            f"{bfield} has low {low!r} not below high {high!r}",
            where={"file": source, "field": bfield},
            hint="Give the lower bound first, and a range wider than one value (a fixed "
            "value belongs in model.params)",
        )
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(
            f"{fieldname}.log must be true or false, got {log!r}",
            where={"file": source, "field": f"{fieldname}.log"},
            hint="Write log: true",
        )
    if log and low <= 0:
        raise ConfigError(
            f"{fieldname} is on a log scale but its low bound is {low!r}",
            where={"file": source, "field": bfield},
            hint="A log-scale range must be above 0",
        )
    step: Any = spec.get("step")
    if step is not None:
        positive = isinstance(step, int | float) and step > 0
        if isinstance(step, bool) or not isinstance(step, number) or not positive:
            raise ConfigError(
                f"{fieldname}.step must be a positive {'whole ' if kind == 'int' else ''}"
                f"number, got {step!r}",
                where={"file": source, "field": f"{fieldname}.step"},
                hint="Write step: 50",
            )
        if log:
            raise ConfigError(
                f"{fieldname} has both step and log",
                where={"file": source, "field": f"{fieldname}.step"},
                hint="Optuna samples either in steps or on a log scale: keep one",
            )
        if step > high - low:
            raise ConfigError(
                f"{fieldname}.step {step!r} is wider than the range {bounds!r}",
                where={"file": source, "field": f"{fieldname}.step"},
                hint="Use a step smaller than high - low",
            )
    if kind == "float":
        low, high = float(low), float(high)
        step = None if step is None else float(step)
    return ParamSpace(name, kind, low=low, high=high, step=step, log=log)


def _known(data: Mapping[str, Any], known: tuple[str, ...], prefix: str, source: str) -> None:
    for key in data:
        if key not in known:
            raise ConfigError(
                f"unknown key {prefix}{key}",
                where={"file": source, "field": f"{prefix}{key}"},
                hint=f"{did_you_mean(str(key), known)}Known keys here: {', '.join(known)}",
            )
