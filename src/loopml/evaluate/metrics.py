"""Metrics for classification and regression, computed with scikit-learn."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn import metrics as skm

from loopml.errors import ConfigError

CLASSIFICATION_METRICS = ("accuracy", "roc_auc", "f1", "precision", "recall", "log_loss")
REGRESSION_METRICS = ("rmse", "mae", "r2")
# Metrics where lower is better; everything else is higher-is-better.
LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae"})


def metric_names(task: str) -> tuple[str, ...]:
    return CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS


def check_metric(task: str, metric: str, field: str = "evaluation.metric") -> str:
    names = metric_names(task)
    if metric not in names:
        raise ConfigError(
            f"unknown {task} metric {metric!r}",
            where={"field": field},
            hint=f"Choose one of: {', '.join(names)}",
        )
    return metric


def compute_metrics(
    task: str,
    y_true: Any,
    labels: Any,
    probabilities: np.ndarray | None = None,
    classes: Sequence[Any] | None = None,
) -> dict[str, float]:
    """Every metric of ``task`` for one set of predictions, as plain floats."""
    y = np.asarray(y_true)
    pred = np.asarray(labels)
    if task == "regression":
        y_f, p_f = y.astype(np.float64), pred.astype(np.float64)
        return {
            "rmse": float(np.sqrt(skm.mean_squared_error(y_f, p_f))),
            "mae": float(skm.mean_absolute_error(y_f, p_f)),
            "r2": float(skm.r2_score(y_f, p_f)),
        }
    class_list = list(classes) if classes is not None else sorted(set(y.tolist()))
    binary = len(class_list) == 2
    avg = "binary" if binary else "macro"
    pos = class_list[-1] if binary else 1
    out = {
        "accuracy": float(skm.accuracy_score(y, pred)),
        "f1": float(skm.f1_score(y, pred, average=avg, pos_label=pos, zero_division=0)),
        "precision": float(
            skm.precision_score(y, pred, average=avg, pos_label=pos, zero_division=0)
        ),
        "recall": float(skm.recall_score(y, pred, average=avg, pos_label=pos, zero_division=0)),
    }
    if probabilities is not None:
        present = set(y.tolist())
        if binary and len(present) == 2:
            out["roc_auc"] = float(skm.roc_auc_score(y == pos, probabilities[:, 1]))
        elif not binary and present == set(class_list):
            out["roc_auc"] = float(
                skm.roc_auc_score(y, probabilities, multi_class="ovr", labels=class_list)
            )
        out["log_loss"] = float(skm.log_loss(y, probabilities, labels=class_list))
    return out
