"""The project file, ``loopml.yaml``: what to train on, how, and how to judge it.

```yaml
name: cancer                      # model name in the registry
data:
  dataset: cancer                 # NAME or NAME@VERSION in the lake
  target: target
  task: classification            # or regression; inferred when left out
features:
  include: all                    # or a list of columns; exclude: [...]
  numeric: {impute: median, scale: standard}
  categorical: {impute: most_frequent, encode: onehot}
model:
  class: sklearn.ensemble.RandomForestClassifier   # any estimator by import path, or lightgbm
  params: {n_estimators: 100}
evaluation:
  metric: roc_auc
  folds: 5
  holdout: 0.2
  seed: 42
  gate: roc_auc >= 0.9
registry:
  alias: champion                 # alias moved to a version that passes; null to never move
  promote: if_not_worse           # vs the champion on the same holdout: if_better, always
train:
  weight: {recency: {time: when, half_life: 30d}}   # or {column: w}: per-row sample weights
```

``data.positive``, ``model.class_weight`` and ``evaluation.threshold`` are read by
:mod:`loopml.project.imbalance`; ``registry.promote`` and ``registry.tolerance`` by
:mod:`loopml.project.promotion`; ``train.weight`` by :mod:`loopml.project.weight`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from loopml.errors import ConfigError, NotFoundError
from loopml.names import check_name, is_version, parse_ref
from loopml.project.data import parse_datasets
from loopml.project.evaluation import (
    DEFAULT_BOOTSTRAP,
    SliceSpec,
    SplitSpec,
    parse_bootstrap,
    parse_slices,
    parse_split,
)
from loopml.project.features import FeatureSpec
from loopml.project.gate import Gate
from loopml.project.imbalance import ThresholdSpec, parse_class_weight, parse_threshold
from loopml.project.online import OnlineSpec, parse_online
from loopml.project.policy import PolicySpec, parse_policy
from loopml.project.promotion import PromotionSpec, parse_promotion
from loopml.project.search import SearchSpec
from loopml.project.suggest import did_you_mean
from loopml.project.weight import WeightSpec, parse_weight

COLUMNS_SHOWN = 30

PROJECT_FILE = "loopml.yaml"
TASKS = ("classification", "regression")


@dataclass(frozen=True)
class ModelSpec:
    cls: str
    params: dict[str, Any] = field(default_factory=dict)
    # type or function names trusted beyond loopml's artifact allowlist (an explicit opt-in,
    # recorded on the registered version)
    trust: tuple[str, ...] = ()
    # "balanced" or {label: weight}: passed to the estimator's class_weight
    class_weight: str | dict[Any, float] | None = None


@dataclass(frozen=True)
class EvaluationSpec:
    metric: str | None = None
    folds: int = 5
    holdout: float = 0.2
    seed: int = 42
    gate: Gate = field(default_factory=lambda: Gate(()))
    split: SplitSpec = field(default_factory=SplitSpec)
    slices: tuple[SliceSpec, ...] = ()
    bootstrap: int = DEFAULT_BOOTSTRAP  # holdout resamples for confidence intervals; 0: none
    refit: bool = True  # refit on all the data (training part + holdout) after evaluation
    threshold: ThresholdSpec | None = None  # decision threshold chosen out of fold


@dataclass(frozen=True)
class ProjectConfig:
    name: str
    dataset: str
    dataset_version: int | None
    target: str
    task: str | None
    features: FeatureSpec
    model: ModelSpec
    evaluation: EvaluationSpec
    alias: str | None = "champion"
    source: str = PROJECT_FILE
    search: SearchSpec | None = None  # the hyperparameter search, run by --search
    positive: Any = None  # data.positive: the positive label of a binary target
    promotion: PromotionSpec = field(default_factory=PromotionSpec)  # registry.promote
    policy: PolicySpec | None = None  # policy: retraining and rollout (project/policy.py)
    # monitor: drift thresholds, alerts, webhook; checked by loopml.monitor (it sits above)
    monitor: Mapping[str, Any] = field(default_factory=dict)
    online: OnlineSpec | None = None  # online: learning from a stream (project/online.py)
    weight: WeightSpec | None = None  # train.weight: per-row sample weights (project/weight.py)

    @classmethod
    def from_file(cls, path: str | Path = PROJECT_FILE) -> ProjectConfig:
        p = Path(path)
        if not p.exists():
            raise NotFoundError(
                f"project file {str(p)!r} not found",
                where={"file": str(p)},
                hint="Create loopml.yaml (see 'loopml train --help') or pass -f PATH",
            )
        try:
            data = yaml.safe_load(p.read_text())
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where: dict[str, Any] = {"file": str(p)}
            if mark is not None:
                where["line"] = mark.line + 1
            raise ConfigError(
                f"project file is not valid YAML: {getattr(exc, 'problem', exc)}",
                where=where,
                hint="Fix the YAML syntax at that line",
            ) from exc
        return cls.from_dict(data, source=str(p))

    @classmethod
    def from_dict(cls, data: Any, *, source: str = PROJECT_FILE) -> ProjectConfig:
        if not isinstance(data, Mapping):
            raise ConfigError(
                "project file must be a mapping with name, data, model, evaluation",
                where={"file": source},
                hint="See the example in 'loopml train --help'",
            )
        _known(
            data,
            {
                "name",
                "data",
                "features",
                "model",
                "evaluation",
                "registry",
                "search",
                "policy",
                "monitor",
                "online",
                "train",
            },
            "",
            source,
        )
        name = check_name(_req(data, "name", source), "model")
        d = _section(data, "data", source, required=True)
        _known(d, {"dataset", "target", "task", "positive", "datasets"}, "data.", source)
        parse_datasets(d.get("datasets"), source)  # checked here; read by loopml data ingest
        ds_name, ds_tag = parse_ref(str(_req(d, "dataset", source, "data.")), "dataset")
        ds_version = None
        if ds_tag is not None:
            if not is_version(ds_tag):
                raise ConfigError(
                    f"data.dataset version {ds_tag!r} is not a number",
                    where={"file": source, "field": "data.dataset"},
                    hint="Write NAME or NAME@3",
                )
            ds_version = int(ds_tag)
        task = d.get("task")
        if task is not None and task not in TASKS:
            raise ConfigError(
                f"data.task is {task!r}",
                where={"file": source, "field": "data.task"},
                hint="Use classification or regression, or leave it out to infer it",
            )
        m = _section(data, "model", source, required=True)
        _known(m, {"class", "params", "trust", "class_weight"}, "model.", source)
        trust = m.get("trust") or []
        if not isinstance(trust, list) or not all(isinstance(t, str) for t in trust):
            raise ConfigError(
                f"model.trust must be a list of type names, got {trust!r}",
                where={"file": source, "field": "model.trust"},
                hint="Write trust: [sklearn.preprocessing._function_transformer."
                "FunctionTransformer], with the names the refusal named",
            )
        params = m.get("params") or {}
        if not isinstance(params, Mapping):
            raise ConfigError(
                "model.params must be a mapping",
                where={"file": source, "field": "model.params"},
                hint="Write params: {n_estimators: 100}",
            )
        e = _section(data, "evaluation", source)
        _known(
            e,
            {
                *("metric", "folds", "holdout", "seed", "gate", "split", "slices", "bootstrap"),
                *("refit", "threshold"),
            },
            "evaluation.",
            source,
        )
        folds = _int(e.get("folds", 5), "evaluation.folds", source)
        if folds == 1 or folds < 0:
            raise ConfigError(
                f"evaluation.folds is {folds}",
                where={"file": source, "field": "evaluation.folds"},
                hint="Use 0 to skip cross-validation, or 2 or more",
            )
        holdout = e.get("holdout", 0.2)
        if not isinstance(holdout, int | float) or not 0 < float(holdout) < 1:
            raise ConfigError(
                f"evaluation.holdout is {holdout!r}",
                where={"file": source, "field": "evaluation.holdout"},
                hint="Give the fraction held out for the final evaluation, e.g. 0.2",
            )
        r = _section(data, "registry", source)
        _known(r, {"alias", "promote", "tolerance"}, "registry.", source)
        refit = e.get("refit", True)
        if not isinstance(refit, bool):
            raise ConfigError(
                f"evaluation.refit must be true or false, got {refit!r}",
                where={"file": source, "field": "evaluation.refit"},
                hint="true (the default) refits on all the data after evaluation; false keeps "
                "the model fitted on the training part",
            )
        alias = r.get("alias", "champion")
        if alias is not None:
            check_name(str(alias), "alias")
        t = _section(data, "train", source)
        _known(t, {"weight"}, "train.", source)
        return cls(
            name=name,
            dataset=ds_name,
            dataset_version=ds_version,
            target=str(_req(d, "target", source, "data.")),
            task=task,
            features=FeatureSpec.from_config(_section(data, "features", source), trust=trust),
            model=ModelSpec(
                str(_req(m, "class", source, "model.")),
                dict(params),
                tuple(sorted(set(trust))),
                class_weight=parse_class_weight(m.get("class_weight"), source),
            ),
            evaluation=EvaluationSpec(
                metric=str(e["metric"]) if e.get("metric") else None,
                folds=folds,
                holdout=float(holdout),
                seed=_int(e.get("seed", 42), "evaluation.seed", source),
                gate=Gate.parse(e.get("gate")),
                split=parse_split(e.get("split"), source),
                slices=parse_slices(e.get("slices"), source),
                bootstrap=parse_bootstrap(e.get("bootstrap"), source),
                refit=refit,
                threshold=parse_threshold(e.get("threshold"), source, folds=folds),
            ),
            alias=None if alias is None else str(alias),
            source=source,
            search=None
            if data.get("search") is None
            else SearchSpec.from_config(data["search"], source=source),
            positive=d.get("positive"),
            promotion=parse_promotion(r, source),
            policy=parse_policy(data.get("policy"), source),
            monitor=_monitor_section(data.get("monitor"), source),
            online=None
            if data.get("online") is None
            else parse_online(data["online"], source, name=name),
            weight=parse_weight(t.get("weight"), source),
        )

    # -- checks against what the file refers to (run before any training) --------------------

    def check_columns(self, columns: Sequence[str], *, source: str) -> None:
        """ConfigError unless the target and every column the ``features`` section names are
        among ``columns`` (of the dataset ``source``); the hint suggests the closest name."""
        names = [str(c) for c in columns]
        known = set(names)
        shown = ", ".join(names[:COLUMNS_SHOWN]) + (" ..." if len(names) > COLUMNS_SHOWN else "")
        spec = self.features
        named = [("data.target", self.target, "target column")]
        named += [("features.include", c, "feature column") for c in spec.include or []]
        named += [("features.exclude", c, "excluded column") for c in spec.exclude]
        named += [("features.kinds", c, "column") for c in spec.kinds]
        named += [(f"features.columns.{c}", c, "column") for c in spec.columns]
        if self.evaluation.split.column is not None:
            named.append(("evaluation.split.column", self.evaluation.split.column, "split column"))
        named += [("evaluation.slices", s.column, "slice column") for s in self.evaluation.slices]
        if self.weight is not None:
            named += [(f, c, "weight column") for f, c in self.weight.named()]
        for fieldname, column, what in named:
            if column in known:
                continue
            raise ConfigError(
                f"{what} {column!r} is not in {source}",
                where={"file": self.source, "field": fieldname, "column": column},
                hint=f"{did_you_mean(column, names)}Columns of {source}: {shown}",
            )

    def check_metrics(self, metric_names: Sequence[str]) -> None:
        """ConfigError unless ``evaluation.metric`` and every gate condition name metrics in
        ``metric_names`` (the holdout metrics of the task), with the closest name as a hint."""
        metric = self.evaluation.metric
        if metric is not None and metric not in metric_names:
            raise ConfigError(
                f"evaluation.metric {metric!r} is not a metric of this task",
                where={"file": self.source, "field": "evaluation.metric"},
                hint=f"{did_you_mean(metric, metric_names)}Choose one of: "
                f"{', '.join(metric_names)}",
            )
        self.evaluation.gate.validate(metric_names, folds=self.evaluation.folds, source=self.source)
        sliced = [c for c in self.evaluation.gate.conditions if c.metric.startswith("slices.")]
        if sliced and not self.evaluation.slices:
            raise ConfigError(
                f"the gate uses {sliced[0].metric} but evaluation.slices names no column",
                where={"file": self.source, "field": "evaluation.gate"},
                hint="Declare the slices, e.g. slices: [{column: age, bins: 4}], or drop the "
                "condition",
            )

    def to_dict(self) -> dict[str, Any]:
        ds = (
            self.dataset
            if self.dataset_version is None
            else f"{self.dataset}@{self.dataset_version}"
        )
        return {
            "name": self.name,
            "data": {
                "dataset": ds,
                "target": self.target,
                "task": self.task,
                **({"positive": self.positive} if self.positive is not None else {}),
            },
            "features": self.features.to_dict(),
            "model": {
                "class": self.model.cls,
                "params": self.model.params,
                **({"trust": list(self.model.trust)} if self.model.trust else {}),
                **(
                    {"class_weight": self.model.class_weight}
                    if self.model.class_weight is not None
                    else {}
                ),
            },
            "evaluation": {
                "metric": self.evaluation.metric,
                "folds": self.evaluation.folds,
                "holdout": self.evaluation.holdout,
                "seed": self.evaluation.seed,
                "gate": str(self.evaluation.gate) if self.evaluation.gate.conditions else None,
                "split": self.evaluation.split.to_dict(),
                "slices": [s.to_dict() for s in self.evaluation.slices],
                "bootstrap": self.evaluation.bootstrap,
                "refit": self.evaluation.refit,
                **(
                    {"threshold": self.evaluation.threshold.to_dict()}
                    if self.evaluation.threshold is not None
                    else {}
                ),
            },
            "registry": {"alias": self.alias, **self.promotion.to_dict()},
            **({"search": self.search.to_dict()} if self.search else {}),
            **({"train": {"weight": self.weight.to_dict()}} if self.weight else {}),
        }


def _section(data: Mapping[str, Any], key: str, source: str, required: bool = False) -> dict:
    value = data.get(key)
    if value is None:
        if required:
            raise ConfigError(
                f"project file has no {key!r} section",
                where={"file": source, "field": key},
                hint=f"Add a '{key}:' section (see 'loopml train --help')",
            )
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{key!r} must be a mapping",
            where={"file": source, "field": key},
            hint=f"Indent the keys of '{key}:' under it",
        )
    return dict(value)


def _req(data: Mapping[str, Any], key: str, source: str, prefix: str = "") -> Any:
    if data.get(key) in (None, ""):
        raise ConfigError(
            f"project file is missing {prefix}{key}",
            where={"file": source, "field": f"{prefix}{key}"},
            hint=f"Add '{key}: ...' to the project file",
        )
    return data[key]


def _monitor_section(data: Any, source: str) -> dict[str, Any]:
    """The ``monitor:`` mapping, its keys checked; loopml.monitor checks the values."""
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"monitor must be a mapping, got {type(data).__name__}",
            where={"file": source, "field": "monitor"},
            hint="Write monitor: {drift: {...}, alerts: [...], webhook: {url: ...}}",
        )
    _known(data, {"drift", "alerts", "webhook"}, "monitor.", source)
    return dict(data)


def _known(data: Mapping[str, Any], known: set[str], prefix: str, source: str) -> None:
    for key in data:
        if key not in known:
            raise ConfigError(
                f"unknown key {prefix}{key}",
                where={"file": source, "field": f"{prefix}{key}"},
                hint=f"{did_you_mean(str(key), sorted(known))}Known keys here: "
                f"{', '.join(sorted(known))}",
            )


def _int(value: Any, fieldname: str, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(
            f"{fieldname} must be a whole number, got {value!r}",
            where={"file": source, "field": fieldname},
            hint="Write a number such as 5",
        )
    return value
