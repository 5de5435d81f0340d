"""Fitting one model bundle: the feature pipeline and the estimator, with their signature."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
from sklearn.base import clone

from loopml.features.spec import build_transformer, prepare_frame, resolve_kinds
from loopml.project import FeatureSpec
from loopml.registry.bundle import ModelBundle
from loopml.registry.signature import Signature


def infer_task(y: pd.Series) -> str:
    """Strings, booleans and integers with at most 20 distinct values are classes."""
    if not pd.api.types.is_numeric_dtype(y) or pd.api.types.is_bool_dtype(y):
        return "classification"
    if pd.api.types.is_integer_dtype(y) and y.nunique() <= 20:
        return "classification"
    return "regression"


def fit_prepared(
    spec: FeatureSpec,
    kinds: Mapping[str, str],
    estimator: Any,
    x: pd.DataFrame,
    y: pd.Series,
    *,
    task: str,
    target: str,
    flavor: str = "sklearn",
) -> ModelBundle:
    """Fit a fresh copy of ``estimator`` on features ``x`` (from ``prepare_frame``)."""
    features = build_transformer(spec, kinds).fit(x)
    model = clone(estimator).fit(features.transform(x), y.to_numpy())
    classes = list(model.classes_) if task == "classification" else None
    sig = Signature.from_frame(x, kinds, target=target, task=task, classes=classes)
    return ModelBundle(features, model, sig, flavor)


def fit_bundle(
    frame: pd.DataFrame,
    target: str,
    estimator: Any,
    *,
    task: str | None = None,
    features: FeatureSpec | Mapping[str, Any] | None = None,
) -> tuple[ModelBundle, pd.DataFrame]:
    """Fit features + ``estimator`` on a DataFrame in one call, without a project file.

    Returns the bundle (ready for :func:`loopml.register_model`) and the prepared features.
    ``estimator`` is cloned, as scikit-learn's cross-validation does.
    """
    spec = features if isinstance(features, FeatureSpec) else FeatureSpec.from_config(features)
    kinds = resolve_kinds(spec, frame, target)
    x = prepare_frame(frame, kinds)
    y = frame[target]
    flavor = "lightgbm" if type(estimator).__module__.startswith("lightgbm") else "sklearn"
    bundle = fit_prepared(
        spec, kinds, estimator, x, y, task=task or infer_task(y), target=target, flavor=flavor
    )
    return bundle, x
