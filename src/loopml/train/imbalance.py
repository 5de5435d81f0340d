"""Class imbalance at training: class weights for the estimator, and the decision threshold.

Class weights (``model.class_weight``) go to the estimator's ``class_weight`` parameter
when it has one, else to its ``fit`` as per-row ``sample_weight`` (:class:`RowWeights`);
the run records which.

The threshold (``evaluation.threshold``) is chosen on the out-of-fold predictions of the
training part, never on the holdout, so the holdout metrics (computed at that threshold)
stay an honest estimate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_curve
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.validation import has_fit_parameter

from loopml.errors import ConfigError
from loopml.project.imbalance import ThresholdSpec, match_label
from loopml.registry.bundle import ModelBundle
from loopml.registry.threshold import POSITIVE, THRESHOLD

#: a threshold must flag at least this many out-of-fold rows (or every positive) as positive
MIN_FLAGGED = 10


@dataclass(frozen=True)
class RowWeights:
    """``model.class_weight`` given to the estimator's ``fit`` as one weight per row, for an
    estimator without a ``class_weight`` parameter (XGBoost, gradient boosting...):
    ``balanced`` weighs each row by ``n / (k * rows of its class)`` (scikit-learn's
    definition, computed on the rows of each fit), a mapping by its label's weight (1 for
    labels it leaves out)."""

    weights: str | dict[Any, float]

    def of(self, y: Any) -> np.ndarray:
        """One weight per label of ``y``."""
        if isinstance(self.weights, str):  # balanced, on these rows
            return np.asarray(compute_sample_weight(self.weights, np.asarray(y)), np.float64)
        mapped = pd.Series(np.asarray(y)).map(self.weights)
        return mapped.fillna(1.0).to_numpy(dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {"applied_as": "sample_weight", "weights": self.weights}


def weigh_classes(
    estimator: Any, class_weight: str | dict[Any, float] | None, labels: Sequence[Any], source: str
) -> tuple[Any, RowWeights | None]:
    """``model.class_weight`` for ``estimator``: its own ``class_weight`` parameter when it
    has one (returned set, with None), else per-row sample weights for its ``fit``
    (returned unchanged, with the :class:`RowWeights` to fit with). ConfigError naming
    ``model.class_weight`` when it takes neither, or names a label the target lacks."""
    if class_weight is None:
        return estimator, None
    weights = _matched(class_weight, labels, source)
    if "class_weight" in estimator.get_params(deep=False):
        return estimator.set_params(class_weight=weights), None
    if takes_sample_weight(estimator):
        return estimator, RowWeights(weights)
    raise ConfigError(
        f"model.class {type(estimator).__name__} takes neither class_weight nor "
        "sample_weight in fit, so model.class_weight cannot be applied",
        where={"file": source, "field": "model.class_weight"},
        hint="Use an estimator with a class_weight parameter (LogisticRegression, "
        "RandomForestClassifier, lightgbm.LGBMClassifier...) or one whose fit takes "
        "sample_weight (xgboost.XGBClassifier, GradientBoostingClassifier...), or leave "
        "model.class_weight out",
    )


def takes_sample_weight(estimator: Any) -> bool:
    """Whether ``estimator`` (or a Pipeline's last step) takes ``sample_weight`` in fit."""
    steps = getattr(estimator, "steps", None)
    final = steps[-1][1] if isinstance(steps, list) and steps else estimator
    return bool(has_fit_parameter(final, "sample_weight"))


def apply_class_weight(
    estimator: Any, class_weight: str | dict[Any, float] | None, labels: Sequence[Any], source: str
) -> Any:
    """``estimator`` with ``model.class_weight`` set as its ``class_weight`` parameter
    (labels matched to the target's); for a caller that cannot pass per-row weights to the
    fit. ConfigError for an estimator without the parameter (see :func:`weigh_classes`)."""
    if class_weight is None:
        return estimator
    if "class_weight" not in estimator.get_params(deep=False):
        raise ConfigError(
            f"model.class {type(estimator).__name__} does not take class_weight",
            where={"file": source, "field": "model.class_weight"},
            hint="Use an estimator with a class_weight parameter (LogisticRegression, "
            "RandomForestClassifier, lightgbm.LGBMClassifier...), or for XGBoost set "
            "model.params.scale_pos_weight instead",
        )
    return estimator.set_params(class_weight=_matched(class_weight, labels, source))


def _matched(
    class_weight: str | dict[Any, float], labels: Sequence[Any], source: str
) -> str | dict[Any, float]:
    """``class_weight`` with its keys as the target's own labels."""
    where = {"file": source, "field": "model.class_weight"}
    weights: Any = class_weight
    if isinstance(class_weight, dict):
        weights = {}
        for key, w in class_weight.items():
            label = match_label(key, labels)
            if label is None:
                raise ConfigError(
                    f"model.class_weight names {key!r}, which is not a label of the target",
                    where=where,
                    hint=f"Weigh the labels: {', '.join(repr(x) for x in labels[:10])}",
                )
            weights[label.item() if hasattr(label, "item") else label] = w
    return weights  # type: ignore[no-any-return]


def choose_threshold(
    spec: ThresholdSpec, is_positive: np.ndarray, score: np.ndarray, source: str
) -> dict[str, Any]:
    """The cut on P(positive) that ``spec`` asks for, from out-of-fold predictions.

    ``recall: R``: the highest threshold whose recall is at least R; ``precision: P``: the
    lowest threshold whose precision is at least P (the most recall at that precision),
    among those flagging at least :data:`MIN_FLAGGED` rows;
    ``optimize: f1``: the threshold of the highest F1. ConfigError (``evaluation.threshold``)
    when the target cannot be met. Returns the threshold and what it reaches out of fold.
    """
    keep = np.isfinite(score)
    truth, s = np.asarray(is_positive)[keep], np.asarray(score, dtype=np.float64)[keep]
    precision, recall, thresholds = precision_recall_curve(truth, s)
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    f1 = np.divide(
        2 * precision * recall,
        precision + recall,
        out=np.zeros_like(precision),
        where=(precision + recall) > 0,
    )
    if spec.kind == "optimize":
        i = int(np.argmax(f1))
    else:
        reached = precision if spec.kind == "precision" else recall
        # a cut that flags a handful of rows reaches any precision by luck: not a choice
        ordered = np.sort(s)
        flagged = len(s) - np.searchsorted(ordered, thresholds, side="left")
        enough = flagged >= min(MIN_FLAGGED, int(truth.sum()))
        reached = np.where(enough, reached, -np.inf)
        ok = np.flatnonzero(reached >= float(spec.value) - 1e-12)
        if not len(ok):
            raise ConfigError(
                f"evaluation.threshold asks for {spec.kind} >= {spec.value:g}, but no "
                f"threshold reaches it on the out-of-fold predictions (best {spec.kind} "
                f"{float(reached.max()):.4f} with at least {MIN_FLAGGED} rows flagged)",
                where={"file": source, "field": f"evaluation.threshold.{spec.kind}"},
                hint=f"Lower the {spec.kind} target, or improve the model; nothing was registered",
            )
        i = int(ok[0] if spec.kind == "precision" else ok[-1])
    return {
        "value": float(thresholds[i]),
        "target": spec.to_dict(),
        "chosen_on": "out_of_fold",
        "rows": len(s),
        "out_of_fold": {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
        },
    }


def mark_bundle(
    bundle: ModelBundle, positive: Any, threshold: dict[str, Any] | None = None
) -> ModelBundle:
    """Record the positive label and the chosen threshold in ``bundle``'s signature (where
    :meth:`ModelBundle.predict_frame` reads them); returns the bundle."""
    extra = dict(bundle.signature.extra)
    if positive is not None:
        extra[POSITIVE] = positive.item() if hasattr(positive, "item") else positive
    if threshold is not None:
        extra[THRESHOLD] = float(threshold["value"])
    bundle.signature = replace(bundle.signature, extra=extra)
    return bundle
