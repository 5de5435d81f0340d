"""``online:`` in the project file: a model that learns from every event of a stream.

```yaml
name: phishing                      # the registered model name (online.model overrides it)
online:
  stream: redis://127.0.0.1:6379/0?stream=events   # mqtt://..., a JSON Lines file, feedback:NAME
  target: is_phishing
  task: classification              # or regression; inferred from the learner's name if left out
  learner: river.linear_model.LogisticRegression   # or sklearn.linear_model.SGDClassifier ...
  params: {l2: 0.001}
  preprocessing:                    # River transformers applied in order, before the learner
    - river.preprocessing.StandardScaler
    - {step: river.preprocessing.OneHotEncoder, params: {}}
  features: [length, https]         # leave out: every field but target, time and ignore
  time: ts                          # a time field: never a feature
  ignore: [event_id]                # fields that are never features
  strings: keep                     # keep (River one-hot) or drop text fields; sklearn: drop
  positive: true                    # binary: the positive label (ROC-AUC, probabilities)
  classes: [false, true]            # every class up front (scikit-learn classifiers need it)
  batch: 1                          # > 1: mini-batches (required for partial_fit learners)
  checkpoint_every: 1000            # events
  checkpoint_seconds: 60
  alias: online                     # moved to each registered checkpoint; null: do not register
  drift: {detector: adwin, delta: 0.002}   # or page_hinkley, error_window
  dead_letter: null                 # where bad events go (default: JSON Lines in the workspace)
  metric_window: 1000               # the sliding window of the prequential metrics
```

:func:`parse_online` checks the section's shape and values, naming the field of
``loopml.yaml`` that is wrong; whether the learner can be imported and learns online is
checked by :meth:`loopml.train.online.OnlineLearner.from_spec` (this layer imports no
learning library). :func:`load_online` reads the section from a project file that has no
``data:`` or ``model:`` section (a project that only learns online).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from loopml.errors import ConfigError, InvalidInputError, NotFoundError
from loopml.names import check_name
from loopml.project.suggest import did_you_mean

TASKS = ("classification", "regression")
DETECTORS = ("adwin", "page_hinkley", "error_window")
STRINGS = ("keep", "drop")
KEYS = (
    "stream",
    "target",
    "task",
    "learner",
    "params",
    "preprocessing",
    "features",
    "time",
    "ignore",
    "strings",
    "positive",
    "classes",
    "batch",
    "checkpoint_every",
    "checkpoint_seconds",
    "alias",
    "model",
    "drift",
    "dead_letter",
    "metric_window",
)
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")
# learners named like these are classifiers or regressors (when ``task`` is left out)
_CLASSIFIER_HINTS = ("Classifier", "LogisticRegression", "Perceptron", "NB")
_REGRESSOR_HINTS = ("Regressor", "LinearRegression", "Regression")


@dataclass(frozen=True)
class OnlineSpec:
    """The ``online:`` section of ``loopml.yaml``, parsed and validated.

    ``features`` None: every field of an event but ``target``, ``time`` and ``ignore``.
    ``strings`` None: ``keep`` for River learners (one-hot by their own transformers),
    ``drop`` for scikit-learn ones. ``drift`` is the detector's mapping (``detector`` plus
    its parameters), None for no detector. ``source`` is the project file, for messages.
    """

    stream: str
    target: str
    learner: str
    model: str
    task: str
    params: dict[str, Any] = field(default_factory=dict)
    preprocessing: list[dict[str, Any]] = field(default_factory=list)
    features: tuple[str, ...] | None = None
    time: str | None = None
    ignore: tuple[str, ...] = ()
    strings: str | None = None
    positive: Any = None
    classes: tuple[Any, ...] | None = None
    batch: int = 1
    checkpoint_every: int = 1000
    checkpoint_seconds: float = 60.0
    alias: str | None = "online"
    drift: dict[str, Any] | None = None
    dead_letter: str | None = None
    metric_window: int = 1000
    source: str = "loopml.yaml"

    def where(self, key: str) -> dict[str, Any]:
        """``where`` of an error about ``online.<key>``."""
        return {"file": self.source, "field": f"online.{key}"}

    def is_feature(self, name: str) -> bool:
        """Whether the event field ``name`` is a feature of this learner."""
        if self.features is not None:
            return name in self.features
        return name != self.target and name != self.time and name not in self.ignore

    def to_dict(self) -> dict[str, Any]:
        """The section as JSON values (what a run records as its params)."""
        return {
            "stream": self.stream,
            "target": self.target,
            "task": self.task,
            "learner": self.learner,
            "params": dict(self.params),
            "preprocessing": [dict(p) for p in self.preprocessing],
            "features": None if self.features is None else list(self.features),
            "time": self.time,
            "ignore": list(self.ignore),
            "strings": self.strings,
            "positive": self.positive,
            "classes": None if self.classes is None else list(self.classes),
            "batch": self.batch,
            "checkpoint_every": self.checkpoint_every,
            "checkpoint_seconds": self.checkpoint_seconds,
            "alias": self.alias,
            "model": self.model,
            "drift": None if self.drift is None else dict(self.drift),
            "dead_letter": self.dead_letter,
            "metric_window": self.metric_window,
        }


def parse_online(raw: Any, where: str = "loopml.yaml", *, name: str | None = None) -> OnlineSpec:
    """The :class:`OnlineSpec` of the ``online:`` mapping ``raw`` of the project file
    ``where``; ``name`` is the project's ``name`` (the model name unless ``online.model``
    says otherwise). ConfigError naming the field for anything wrong."""
    source = where
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"online must be a mapping, got {type(raw).__name__}",
            where={"file": source, "field": "online"},
            hint="Write online: {stream: events.jsonl, target: label, learner: "
            "river.linear_model.LogisticRegression}",
        )
    for key in raw:
        if key not in KEYS:
            raise ConfigError(
                f"unknown key online.{key}",
                where={"file": source, "field": f"online.{key}"},
                hint=f"{did_you_mean(str(key), KEYS)}Known keys here: {', '.join(sorted(KEYS))}",
            )
    stream = _text(raw, "stream", source, required=True)
    target = _text(raw, "target", source, required=True)
    learner = str(_path(raw.get("learner"), "online.learner", source, required=True))
    model = raw.get("model", name)
    if model in (None, ""):
        raise ConfigError(
            "the online model has no name",
            where={"file": source, "field": "online.model"},
            hint="Give the project a 'name:' or the section a 'model:' (the registered name)",
        )
    model = _checked_name(model, "online.model", "model", source)
    task = raw.get("task")
    if task is None:
        task = infer_task(learner)
        if task is None:
            raise ConfigError(
                f"cannot tell whether {learner} is a classifier or a regressor",
                where={"file": source, "field": "online.task"},
                hint="Add task: classification or task: regression",
            )
    elif task not in TASKS:
        raise ConfigError(
            f"online.task is {task!r}",
            where={"file": source, "field": "online.task"},
            hint="Use classification or regression",
        )
    params = raw.get("params") or {}
    if not isinstance(params, Mapping) or not all(isinstance(k, str) for k in params):
        raise ConfigError(
            f"online.params must be a mapping of parameter names, got {params!r}"[:300],
            where={"file": source, "field": "online.params"},
            hint="Write params: {l2: 0.001}",
        )
    features = _names(raw.get("features"), "online.features", source)
    ignore = _names(raw.get("ignore"), "online.ignore", source) or ()
    time = None if raw.get("time") is None else _text(raw, "time", source)
    for fieldname, names in (("features", features or ()), ("ignore", ignore)):
        if target in names:
            raise ConfigError(
                f"online.{fieldname} names the target {target!r}",
                where={"file": source, "field": f"online.{fieldname}"},
                hint="The target is never a feature; remove it from the list",
            )
    strings = raw.get("strings")
    if strings is not None and strings not in STRINGS:
        raise ConfigError(
            f"online.strings is {strings!r}",
            where={"file": source, "field": "online.strings"},
            hint="Use keep (text fields go to the learner, e.g. for River's one-hot) or drop",
        )
    alias = raw.get("alias", "online")
    if alias is not None:
        alias = _checked_name(alias, "online.alias", "alias", source)
    return OnlineSpec(
        stream=stream,
        target=target,
        learner=learner,
        model=model,
        task=str(task),
        params=dict(params),
        preprocessing=_steps(raw.get("preprocessing"), source),
        features=features,
        time=time,
        ignore=ignore,
        strings=strings,
        positive=_label(raw.get("positive"), "online.positive", source),
        classes=_classes(raw.get("classes"), task, source),
        batch=_count(raw.get("batch", 1), "online.batch", source),
        checkpoint_every=_count(
            raw.get("checkpoint_every", 1000), "online.checkpoint_every", source
        ),
        checkpoint_seconds=_seconds(raw.get("checkpoint_seconds", 60.0), source),
        alias=alias,
        drift=_drift(raw.get("drift"), source),
        dead_letter=None if raw.get("dead_letter") is None else _text(raw, "dead_letter", source),
        metric_window=_count(raw.get("metric_window", 1000), "online.metric_window", source),
        source=source,
    )


def load_online(path: str | Path) -> OnlineSpec:
    """The ``online:`` section of the project file at ``path`` (which needs no ``data:`` or
    ``model:`` section). NotFoundError for a missing file, ConfigError for a file without
    the section or with a wrong value."""
    p = Path(path)
    if not p.exists():
        raise NotFoundError(
            f"project file {str(p)!r} not found",
            where={"file": str(p)},
            hint="Create loopml.yaml with an 'online:' section, or pass -f PATH",
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
    if not isinstance(data, Mapping) or data.get("online") is None:
        raise ConfigError(
            f"project file {str(p)!r} has no 'online:' section",
            where={"file": str(p), "field": "online"},
            hint="Add online: {stream: ..., target: ..., learner: ...} (see loopml.project.online)",
        )
    name = data.get("name")
    return parse_online(data["online"], str(p), name=None if name is None else str(name))


def infer_task(learner: str) -> str | None:
    """classification or regression from the learner's class name; None when it does not
    say (``task`` must then be given)."""
    cls = learner.rsplit(".", 1)[-1]
    if any(h in cls for h in _REGRESSOR_HINTS) and "LogisticRegression" not in cls:
        return "regression"
    if any(h in cls for h in _CLASSIFIER_HINTS):
        return "classification"
    return None


# -- fields -------------------------------------------------------------------------------------


def _text(raw: Mapping[str, Any], key: str, source: str, required: bool = False) -> str:
    value = raw.get(key)
    if value is None or value == "":
        if required:
            raise ConfigError(
                f"project file is missing online.{key}",
                where={"file": source, "field": f"online.{key}"},
                hint=f"Add '{key}: ...' under online:",
            )
        raise ConfigError(
            f"online.{key} is empty",
            where={"file": source, "field": f"online.{key}"},
            hint=f"Give online.{key} a value or leave it out",
        )
    if not isinstance(value, str):
        raise ConfigError(
            f"online.{key} must be text, got {type(value).__name__} {value!r}"[:300],
            where={"file": source, "field": f"online.{key}"},
            hint=f"Write {key}: some_text",
        )
    return value


def _path(value: Any, fieldname: str, source: str, required: bool = False) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not _DOTTED.fullmatch(value):
        raise ConfigError(
            f"{fieldname} must be an import path such as river.linear_model.LogisticRegression, "
            f"got {value!r}"[:300],
            where={"file": source, "field": fieldname},
            hint="Name the class by its module and name, e.g. "
            "river.linear_model.LogisticRegression or sklearn.linear_model.SGDClassifier",
        )
    return value


def _checked_name(value: Any, fieldname: str, what: str, source: str) -> str:
    try:
        return check_name(value if isinstance(value, str) else str(value), what)
    except InvalidInputError as exc:
        raise ConfigError(
            f"{fieldname}: {exc.message}",
            where={"file": source, "field": fieldname},
            hint=exc.hint,
        ) from exc


def _names(value: Any, fieldname: str, source: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(
            f"{fieldname} must be a list of field names, got {value!r}"[:300],
            where={"file": source, "field": fieldname},
            hint=f"Write {fieldname.split('.')[-1]}: [field_a, field_b]",
        )
    if len(set(value)) != len(value):
        dup = next(v for v in value if value.count(v) > 1)
        raise ConfigError(
            f"{fieldname} names {dup!r} twice",
            where={"file": source, "field": fieldname},
            hint="Name each field once",
        )
    return tuple(value)


def _steps(value: Any, source: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(
            f"online.preprocessing must be a list of steps, got {type(value).__name__}",
            where={"file": source, "field": "online.preprocessing"},
            hint="Write preprocessing: [river.preprocessing.StandardScaler]",
        )
    steps: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        fieldname = f"online.preprocessing[{i}]"
        if isinstance(item, str):
            item = {"step": item}
        if not isinstance(item, Mapping):
            raise ConfigError(
                f"{fieldname} must be an import path or {{step: ..., params: {{...}}}}",
                where={"file": source, "field": fieldname},
                hint="Write - river.preprocessing.StandardScaler",
            )
        unknown = set(item) - {"step", "params"}
        if unknown:
            raise ConfigError(
                f"unknown key {fieldname}.{sorted(unknown)[0]}",
                where={"file": source, "field": fieldname},
                hint="A step has 'step' (an import path) and 'params' (a mapping)",
            )
        path = _path(item.get("step"), f"{fieldname}.step", source, required=True)
        params = item.get("params") or {}
        if not isinstance(params, Mapping) or not all(isinstance(k, str) for k in params):
            raise ConfigError(
                f"{fieldname}.params must be a mapping, got {params!r}"[:300],
                where={"file": source, "field": f"{fieldname}.params"},
                hint="Write params: {with_std: true}",
            )
        steps.append({"step": path, "params": dict(params)})
    return steps


def _label(value: Any, fieldname: str, source: str) -> Any:
    if value is not None and not isinstance(value, str | int | float | bool):
        raise ConfigError(
            f"{fieldname} must be a class label (text, a number or true/false), got {value!r}"[
                :300
            ],
            where={"file": source, "field": fieldname},
            hint="Write the label as it appears in the events' target field",
        )
    return value


def _classes(value: Any, task: Any, source: str) -> tuple[Any, ...] | None:
    if value is None:
        return None
    if task != "classification":
        raise ConfigError(
            "online.classes is given for a regression",
            where={"file": source, "field": "online.classes"},
            hint="Leave classes out, or set task: classification",
        )
    if not isinstance(value, list) or len(value) < 2:
        raise ConfigError(
            f"online.classes must list at least two class labels, got {value!r}"[:300],
            where={"file": source, "field": "online.classes"},
            hint="Write classes: [no, yes]",
        )
    labels = tuple(_label(v, "online.classes", source) for v in value)
    if len(set(labels)) != len(labels):
        raise ConfigError(
            f"online.classes names a class twice: {value!r}"[:300],
            where={"file": source, "field": "online.classes"},
            hint="Name each class once",
        )
    return labels


def _count(value: Any, fieldname: str, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"{fieldname} must be a whole number of at least 1, got {value!r}",
            where={"file": source, "field": fieldname},
            hint="Write a number such as 1000",
        )
    return value


def _seconds(value: Any, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e9:
        raise ConfigError(
            f"online.checkpoint_seconds must be a positive number of seconds, got {value!r}",
            where={"file": source, "field": "online.checkpoint_seconds"},
            hint="Write checkpoint_seconds: 60",
        )
    return float(value)


def _drift(value: Any, source: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = {"detector": value}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ConfigError(
            f"online.drift must be a mapping, got {value!r}"[:300],
            where={"file": source, "field": "online.drift"},
            hint="Write drift: {detector: adwin, delta: 0.002}",
        )
    detector = value.get("detector")
    if detector not in DETECTORS:
        raise ConfigError(
            f"online.drift.detector is {detector!r}",
            where={"file": source, "field": "online.drift.detector"},
            hint=f"{did_you_mean(str(detector), DETECTORS)}Use one of: {', '.join(DETECTORS)}",
        )
    for k, v in value.items():
        if k != "detector" and (isinstance(v, bool) or not isinstance(v, int | float | str)):
            raise ConfigError(
                f"online.drift.{k} must be a number or text, got {v!r}"[:300],
                where={"file": source, "field": f"online.drift.{k}"},
                hint="Detector parameters are numbers, e.g. delta: 0.002",
            )
    return dict(value)


__all__ = ["DETECTORS", "OnlineSpec", "infer_task", "load_online", "parse_online"]
