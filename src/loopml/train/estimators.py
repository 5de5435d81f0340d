"""Estimators named by import path: any scikit-learn estimator, or LightGBM."""

from __future__ import annotations

import importlib
from typing import Any

from sklearn.base import is_classifier, is_regressor

from loopml.errors import ConfigError
from loopml.project import ModelSpec

ALLOWED_ROOTS = ("sklearn", "lightgbm")


def flavor_of(class_path: str) -> str:
    return "lightgbm" if class_path.split(".")[0] == "lightgbm" else "sklearn"


def estimator_class(spec: ModelSpec, source: str = "loopml.yaml") -> type:
    """Import the class named in ``model.class``, with a clear error when it is wrong."""
    path = spec.cls
    module_name, _, attr = path.rpartition(".")
    where = {"file": source, "field": "model.class"}
    if not module_name or module_name.split(".")[0] not in ALLOWED_ROOTS:
        raise ConfigError(
            f"model.class {path!r} is not a scikit-learn or LightGBM estimator",
            where=where,
            hint="Name an estimator by import path, e.g. sklearn.ensemble.RandomForestClassifier"
            " or lightgbm.LGBMClassifier",
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        extra = " (pip install 'loopml[lightgbm]')" if module_name.startswith("lightgbm") else ""
        raise ConfigError(
            f"cannot import module {module_name!r} for model.class{extra}",
            where=where,
            hint="Check the spelling of the import path",
        ) from exc
    cls = getattr(module, attr, None)
    if not isinstance(cls, type):
        raise ConfigError(
            f"unknown model class {path!r}: {module_name} has no class {attr!r}",
            where=where,
            hint="Check the spelling, e.g. sklearn.linear_model.LogisticRegression",
        )
    return cls


def make_estimator(spec: ModelSpec, task: str, source: str = "loopml.yaml") -> Any:
    """A fresh unfitted estimator with ``model.params``; checks it fits the task."""
    cls = estimator_class(spec, source)
    params = dict(spec.params)
    if flavor_of(spec.cls) == "lightgbm":
        params.setdefault("verbose", -1)
    try:
        est = cls(**params)
    except TypeError as exc:
        raise ConfigError(
            f"model.params do not fit {spec.cls}: {exc}",
            where={"file": source, "field": "model.params"},
            hint=f"See the parameters of {cls.__name__} in its documentation",
        ) from exc
    ok = is_classifier(est) if task == "classification" else is_regressor(est)
    if not ok:
        raise ConfigError(
            f"{spec.cls} is not a {'regressor' if task == 'regression' else 'classifier'}",
            where={"file": source, "field": "model.class"},
            hint=f"The task is {task}; choose a matching estimator or set data.task",
        )
    if task == "classification" and not hasattr(est, "predict_proba"):
        raise ConfigError(
            f"{spec.cls} has no predict_proba",
            where={"file": source, "field": "model.class"},
            hint="loopml serves class probabilities; choose a probabilistic classifier "
            "(e.g. set probability=True for SVC)",
        )
    return est
