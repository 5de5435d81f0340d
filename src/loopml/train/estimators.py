"""Estimators named by import path: any scikit-learn estimator, LightGBM or XGBoost.

Which packages may be named, and how each family is saved, comes from the flavor table
(:mod:`loopml.registry.flavors`).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any

from sklearn.base import is_classifier, is_regressor

from loopml.errors import ConfigError
from loopml.project import ModelSpec
from loopml.project.suggest import closest, did_you_mean
from loopml.registry.allowlist import allowed_types, check_trust
from loopml.registry.flavors import FLAVORS, flavor_for, flavor_roots, get_flavor


def __getattr__(name: str) -> Any:
    # ALLOWED_ROOTS: the top-level packages some flavor trains, worked out on first use
    # (it imports every flavor's module; a run's own check stops at its flavor)
    if name == "ALLOWED_ROOTS":
        return flavor_roots()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _allowed_root(root: str) -> bool:
    """Whether some flavor trains classes of the top-level package ``root``; the flavors
    are asked in the table's order, so a common one imports no other flavor's module."""
    return any(root in get_flavor(name).roots for name in FLAVORS)


def flavor_of(class_path: str) -> str:
    """The name of the flavor that saves estimators of ``class_path``."""
    return flavor_for(class_path).name


def estimator_class(spec: ModelSpec, source: str = "loopml.yaml") -> type:
    """Import the class named in ``model.class``, with a clear error when it is wrong."""
    path = spec.cls
    module_name, _, attr = path.rpartition(".")
    where = {"file": source, "field": "model.class"}
    if not module_name or not _allowed_root(module_name.split(".")[0]):
        raise ConfigError(
            f"model.class {path!r} is not an estimator of a package loopml trains "
            f"({', '.join(flavor_roots())})",
            where=where,
            hint="Name an estimator by import path, e.g. sklearn.ensemble.RandomForestClassifier"
            ", lightgbm.LGBMClassifier or xgboost.XGBClassifier",
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        package = flavor_for(path).extra
        extra = f" (pip install 'loopml[{package}]')" if package else ""
        raise ConfigError(
            f"cannot import module {module_name!r} for model.class{extra}",
            where=where,
            hint=f"{did_you_mean(path, _near_paths(module_name, attr))}Check the spelling "
            "of the import path",
        ) from exc
    cls = getattr(module, attr, None)
    if not isinstance(cls, type):
        classes = [f"{module_name}.{n}" for n in _public_classes(module)]
        raise ConfigError(
            f"unknown model class {path!r}: {module_name} has no class {attr!r}",
            where=where,
            hint=f"{did_you_mean(path, classes)}Check the spelling, e.g. "
            "sklearn.linear_model.LogisticRegression",
        )
    _check_allowed(cls, spec, source)
    return cls


def _check_allowed(cls: type, spec: ModelSpec, source: str) -> None:
    """A scikit-learn class the artifact allowlist refuses fails now, not after training."""
    trusted = check_trust(spec.trust, "model.trust")
    check_spec = getattr(flavor_for(spec.cls), "check_spec", None)
    if callable(check_spec):  # a flavor's own refusals, before anything is imported (keras)
        check_spec(spec, source)
    if not flavor_for(spec.cls).skops_members:
        return  # stored in its library's own format, not by skops
    stored = f"{cls.__module__}.{cls.__name__}"
    if stored in allowed_types() or stored in trusted:
        return
    raise ConfigError(
        f"model.class {spec.cls!r} is not a type loopml loads from a model artifact ({stored})",
        where={"file": source, "field": "model.class"},
        hint=f"Choose a listed estimator, or opt in with 'trust: [{stored}]' under model: "
        "if you trust the class (the opt-in is recorded on the version)",
    )


def _public_classes(module: Any) -> list[str]:
    return [
        n for n in dir(module) if not n.startswith("_") and isinstance(getattr(module, n), type)
    ]


def _near_paths(module_name: str, attr: str) -> list[str]:
    """``module.attr`` for the modules next to a misspelled one that do have ``attr``."""
    parent, _, child = module_name.rpartition(".")
    if not parent:
        return []
    try:
        package = importlib.import_module(parent)
    except ImportError:
        return []
    names = [m.name for m in pkgutil.iter_modules(getattr(package, "__path__", []))]
    match = closest(child, [n for n in names if not n.startswith("_")])
    if match is None:
        return []
    try:
        near = importlib.import_module(f"{parent}.{match}")
    except ImportError:
        return []
    return [f"{parent}.{match}.{attr}"] if isinstance(getattr(near, attr, None), type) else []


def _check_param_names(cls: type, params: dict[str, Any], spec: ModelSpec, source: str) -> None:
    """ConfigError for a parameter ``cls`` does not take, suggesting the closest it does."""
    try:
        signature = inspect.signature(cls)  # of __init__, without self
    except (TypeError, ValueError):
        return
    accepted = [n for n in signature.parameters if n != "self"]
    if any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
        return  # takes anything (LightGBM passes extras on to its booster)
    for name in params:
        if name not in accepted:
            raise ConfigError(
                f"model.params do not fit {spec.cls}: it takes no parameter {name!r}",
                where={"file": source, "field": f"model.params.{name}"},
                hint=f"{did_you_mean(name, accepted)}{cls.__name__} takes: {', '.join(accepted)}",
            )


def make_estimator(spec: ModelSpec, task: str, source: str = "loopml.yaml") -> Any:
    """A fresh unfitted estimator with ``model.params``; checks it fits the task."""
    cls = estimator_class(spec, source)
    params = {**flavor_for(spec.cls).defaults(), **spec.params}
    _check_param_names(cls, params, spec, source)
    try:
        est = cls(**params)
    except TypeError as exc:
        raise ConfigError(
            f"model.params do not fit {spec.cls}: {exc}",
            where={"file": source, "field": "model.params"},
            hint=f"See the parameters of {cls.__name__} in its documentation",
        ) from exc
    # scikit-learn's own value checks, which it runs only in fit (LightGBM declares none)
    validate = getattr(est, "_validate_params", None)
    if callable(validate) and hasattr(est, "_parameter_constraints"):
        try:
            validate()
        except (TypeError, ValueError) as exc:
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
