"""What an evaluation report plots, computed from predictions: curves, calibration, confusion,
importances. Plain JSON-friendly dicts, so a report can be stored, printed with ``--json`` and
rendered by :mod:`loopml.evaluate.report`.

Nothing here loads a model: the caller passes predictions, or a ``predict`` callable for
permutation importance, so this stays below the registry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from loopml.evaluate.metrics import confusion

#: points kept per curve (a curve over 200k rows is drawn from at most this many)
CURVE_POINTS = 200
CALIBRATION_BINS = 10
#: rows permutation importance scores on (a seeded sample when there are more)
PERMUTATION_ROWS = 2_000
PERMUTATION_REPEATS = 3
#: features a report lists by importance
TOP_FEATURES = 20
SCATTER_POINTS = 400


def _thin(*arrays: np.ndarray, points: int = CURVE_POINTS) -> list[list[float]]:
    n = len(arrays[0])
    keep: np.ndarray = np.unique(np.linspace(0, max(n - 1, 0), min(n, points)).round().astype(int))
    return [[float(v) for v in np.asarray(a)[keep]] for a in arrays]


def classification_diagnostics(
    y_true: Sequence[Any] | np.ndarray,
    labels: np.ndarray,
    probabilities: np.ndarray | None,
    classes: Sequence[Any],
    positive: Any,
) -> dict[str, Any]:
    """ROC and PR curves and calibration (for ``positive`` against the rest) and the
    confusion matrix at the predicted labels."""
    y = np.asarray(y_true)
    class_list = list(classes)
    out: dict[str, Any] = {
        "positive": positive,
        "confusion": {
            "labels": [str(c) for c in class_list],
            "matrix": confusion(y, np.asarray(labels), class_list)["matrix"],
        },
    }
    if probabilities is None or positive not in class_list:
        return out
    scores = np.asarray(probabilities)[:, class_list.index(positive)]
    hit = y == positive
    if 0 < hit.sum() < len(hit):
        fpr, tpr, _ = skm.roc_curve(hit, scores)
        fpr_kept, tpr_kept = _thin(fpr, tpr)
        out["roc"] = {"fpr": fpr_kept, "tpr": tpr_kept, "auc": float(skm.auc(fpr, tpr))}
        precision, recall, _ = skm.precision_recall_curve(hit, scores)
        rec_kept, prec_kept = _thin(recall[::-1], precision[::-1])
        out["pr"] = {
            "recall": rec_kept,
            "precision": prec_kept,
            "average_precision": float(skm.average_precision_score(hit, scores)),
            "base_rate": float(hit.mean()),
        }
    edges = np.linspace(0.0, 1.0, CALIBRATION_BINS + 1)
    which = np.clip(np.digitize(scores, edges[1:-1]), 0, CALIBRATION_BINS - 1)
    bins = []
    for b in range(CALIBRATION_BINS):
        mask = which == b
        if mask.any():
            bins.append(
                {
                    "predicted": float(scores[mask].mean()),
                    "observed": float(hit[mask].mean()),
                    "count": int(mask.sum()),
                }
            )
    out["calibration"] = bins
    return out


def regression_diagnostics(
    y_true: Sequence[Any] | np.ndarray, predicted: np.ndarray, seed: int = 0
) -> dict[str, Any]:
    """Predicted against actual (a seeded sample of points) and residual quantiles."""
    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(predicted, dtype=np.float64)
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(y), min(len(y), SCATTER_POINTS), replace=False))
    residual = y - p
    return {
        "scatter": {"actual": y[keep].tolist(), "predicted": p[keep].tolist()},
        "residual_quantiles": {
            str(q): float(np.quantile(residual, q)) for q in (0.05, 0.25, 0.5, 0.75, 0.95)
        },
    }


def native_importances(estimator: Any, names: Sequence[str]) -> list[dict[str, Any]]:
    """``feature_importances_``, ``coef_`` (largest magnitude per feature) or a LightGBM
    Booster's gain, by transformed feature name, largest first; [] when the model has none."""
    values: np.ndarray | None = None
    kind = ""
    if hasattr(estimator, "feature_importance"):  # a LightGBM Booster
        values, kind = np.asarray(estimator.feature_importance("gain"), dtype=float), "gain"
        names = list(estimator.feature_name()) if len(names) != len(values) else names
    elif hasattr(estimator, "feature_importances_"):
        values, kind = np.asarray(estimator.feature_importances_, dtype=float), "importance"
    elif hasattr(estimator, "coef_"):
        coef = np.atleast_2d(np.asarray(estimator.coef_, dtype=float))
        values, kind = np.abs(coef).max(axis=0), "|coefficient|"
    if values is None or len(values) != len(names):
        return []
    order = np.argsort(-values, kind="stable")[:TOP_FEATURES]
    return [{"feature": str(names[i]), "value": float(values[i]), "kind": kind} for i in order]


def permutation_importances(
    frame: pd.DataFrame,
    y: Any,
    score: Callable[[pd.DataFrame, np.ndarray], float],
    *,
    seed: int = 0,
    rows: int = PERMUTATION_ROWS,
    repeats: int = PERMUTATION_REPEATS,
) -> list[dict[str, Any]]:
    """How much ``score`` (higher is better) drops when one input column is shuffled, on a
    seeded sample of at most ``rows`` rows, ``repeats`` times; largest drop first."""
    from sklearn.inspection import permutation_importance

    y_arr = np.asarray(y)
    if len(frame) > rows:
        keep = np.sort(np.random.default_rng(seed).choice(len(frame), rows, replace=False))
        frame, y_arr = frame.iloc[keep].reset_index(drop=True), y_arr[keep]
    else:
        frame = frame.reset_index(drop=True)

    class _Scored:  # permutation_importance wants an estimator; the scorer does the work
        def fit(self, *_: Any) -> _Scored:
            return self

    result = permutation_importance(
        _Scored(),
        frame,
        y_arr,
        scoring=lambda _est, x, yy: score(x, np.asarray(yy)),
        n_repeats=repeats,
        random_state=seed,
    )
    order = np.argsort(-result.importances_mean, kind="stable")[:TOP_FEATURES]
    return [
        {
            "feature": str(frame.columns[i]),
            "mean": float(result.importances_mean[i]),
            "std": float(result.importances_std[i]),
        }
        for i in order
    ]
