"""Fitting one model bundle: the feature pipeline and the estimator, with their signature."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from loopml.features.spec import (
    build_transformer,
    fit_features,
    open_categories,
    prepare_frame,
    resolve_kinds,
)
from loopml.project import FeatureSpec
from loopml.registry.bundle import SAMPLE_ROWS, ModelBundle
from loopml.registry.flavors import flavor_for, get_flavor
from loopml.registry.signature import Signature, with_tensor
from loopml.train.imbalance import RowWeights
from loopml.train.weights import scaled


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
    flavor: str | None = None,
    trust: Iterable[str] | None = None,
    row_weights: RowWeights | None = None,
    sample_weight: np.ndarray | None = None,
) -> ModelBundle:
    """Fit a fresh copy of ``estimator`` on features ``x`` (from ``prepare_frame``).

    ``flavor`` names how the model is saved (:mod:`loopml.registry.flavors`; None: the
    estimator's own). The bundle keeps up to ``SAMPLE_ROWS`` rows of ``x``, spread over it,
    to warm the version up before serving; ``trust`` is carried to
    :func:`loopml.register_model`. ``row_weights``: ``model.class_weight`` as per-row
    sample weights, computed on ``y`` (:func:`loopml.train.imbalance.weigh_classes`).
    ``sample_weight``: one weight per row of ``x`` (``train.weight``), scaled here to average
    1 and multiplied by the class weights.
    """
    impl = flavor_for(estimator) if flavor is None else get_flavor(flavor)
    features = build_transformer(spec, kinds, estimator, task=task)
    # fit_transform: a target encoding gives the model its out-of-fold values
    encoded = fit_features(features, x, y)
    labels = y.to_numpy()
    weights = None if row_weights is None else row_weights.of(labels)
    if sample_weight is not None:
        if len(sample_weight) != len(labels):
            raise ValueError(f"{len(sample_weight)} sample weights for {len(labels)} rows")
        rows = scaled(np.asarray(sample_weight, dtype=np.float64))
        weights = rows if weights is None else weights * rows
    model, classes = impl.fit(clone(estimator), encoded, labels, task, sample_weight=weights)
    sig = Signature.from_frame(
        x,
        kinds,
        target=target,
        task=task,
        classes=classes,
        unknown=spec.unknown,
        open_categories=open_categories(spec, kinds),
    )
    sig = with_tensor(sig, impl, model)  # a tensor input the model declares (a CNN's image)
    return ModelBundle(features, model, sig, impl.name, sample=sample_rows(x), trusted=trust or ())


def sample_rows(x: pd.DataFrame) -> pd.DataFrame:
    """Up to ``SAMPLE_ROWS`` rows of ``x``, spread over it, to warm a version up."""
    picked = np.unique(np.linspace(0, len(x) - 1, min(len(x), SAMPLE_ROWS)).round().astype(int))
    return x.iloc[picked]


def fit_bundle(
    frame: pd.DataFrame,
    target: str,
    estimator: Any,
    *,
    task: str | None = None,
    features: FeatureSpec | Mapping[str, Any] | None = None,
    trust: Iterable[str] | None = None,
    sample_weight: np.ndarray | None = None,
) -> tuple[ModelBundle, pd.DataFrame]:
    """Fit features + ``estimator`` on a DataFrame in one call, without a project file.

    Returns the bundle (ready for :func:`loopml.register_model`) and the prepared features.
    ``estimator`` is cloned, as scikit-learn's cross-validation does. ``trust`` names types
    or functions beyond loopml's allowlist that the estimator holds (e.g. the function of a
    ``FunctionTransformer``); registering the bundle records them on the version.
    ``sample_weight``: one weight per row of ``frame`` for the estimator's fit (relative:
    scaled to average 1).
    """
    spec = features if isinstance(features, FeatureSpec) else FeatureSpec.from_config(features)
    kinds = resolve_kinds(spec, frame, target)
    x = prepare_frame(frame, kinds)
    y = frame[target]
    bundle = fit_prepared(
        spec,
        kinds,
        estimator,
        x,
        y,
        task=task or infer_task(y),
        target=target,
        trust=trust,
        sample_weight=sample_weight,
    )
    return bundle, x
