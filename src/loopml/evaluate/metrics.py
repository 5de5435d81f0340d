"""Metrics for classification and regression, computed with scikit-learn.

Classification (``compute_metrics("classification", ...)``):

- at the labels given (so at the model's decision threshold): ``accuracy``,
  ``balanced_accuracy``; ``precision``, ``recall``, ``f1`` of the positive class for a binary
  task (macro averages for multiclass, as before), and every ``*_macro`` / ``*_weighted``
  average of the three;
- from the probabilities: ``roc_auc`` (of the positive class; one-vs-rest macro for
  multiclass), ``roc_auc_ovr`` / ``roc_auc_ovr_weighted``, ``pr_auc`` (average precision of
  the positive class; macro over classes for multiclass), ``log_loss``, and ``brier`` (binary
  only). AUCs are left out when the rows hold a single class.

Regression: ``rmse``, ``mae``, ``mape`` (a fraction, as scikit-learn computes it), ``r2``.

The positive class of a binary task is ``positive=`` when given, otherwise the last of
``classes`` (the sorted labels: kept for backwards compatibility; a project file should name
it with ``data.positive``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn import metrics as skm

from loopml.errors import ConfigError, InvalidInputError

_AVERAGED = tuple(
    f"{m}_{avg}" for m in ("precision", "recall", "f1") for avg in ("macro", "weighted")
)
CLASSIFICATION_METRICS = (
    "accuracy",
    "roc_auc",
    "f1",
    "precision",
    "recall",
    "log_loss",
    "balanced_accuracy",
    "pr_auc",
    "brier",
    "roc_auc_ovr",
    "roc_auc_ovr_weighted",
    *_AVERAGED,
)
REGRESSION_METRICS = ("rmse", "mae", "r2", "mape")
# Metrics where lower is better; everything else is higher-is-better.
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "rmse", "mae", "mape"})


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


def positive_class(classes: Sequence[Any], positive: Any = None) -> Any:
    """The positive class of a binary task: ``positive``, or the last class."""
    class_list = list(classes)
    if positive is None:
        return class_list[-1]
    for c in class_list:
        if c == positive or str(c) == str(positive):
            return c
    raise InvalidInputError(
        f"the positive class {positive!r} is not one of the classes "
        f"{', '.join(map(repr, class_list))}",
        where={"field": "data.positive"},
        hint=f"Set data.positive to one of: {', '.join(map(str, class_list))}",
    )


def compute_metrics(
    task: str,
    y_true: Any,
    labels: Any,
    probabilities: np.ndarray | None = None,
    classes: Sequence[Any] | None = None,
    *,
    positive: Any = None,
) -> dict[str, float]:
    """Every metric of ``task`` for one set of predictions, as plain floats.

    ``probabilities`` has one column per entry of ``classes`` (in that order).
    """
    y = np.asarray(y_true)
    pred = np.asarray(labels)
    if task == "regression":
        y_f, p_f = y.astype(np.float64), pred.astype(np.float64)
        return {
            "rmse": float(np.sqrt(skm.mean_squared_error(y_f, p_f))),
            "mae": float(skm.mean_absolute_error(y_f, p_f)),
            "r2": float(skm.r2_score(y_f, p_f)),
            "mape": float(skm.mean_absolute_percentage_error(y_f, p_f)),
        }
    class_list = list(classes) if classes is not None else sorted(set(y.tolist()))
    binary = len(class_list) == 2
    avg = "binary" if binary else "macro"
    pos = positive_class(class_list, positive) if binary else 1
    kw: dict[str, Any] = {"labels": class_list, "zero_division": 0}
    out = {
        "accuracy": float(skm.accuracy_score(y, pred)),
        "balanced_accuracy": _balanced_accuracy(y, pred),
        "f1": float(skm.f1_score(y, pred, average=avg, pos_label=pos, zero_division=0)),
        "precision": float(
            skm.precision_score(y, pred, average=avg, pos_label=pos, zero_division=0)
        ),
        "recall": float(skm.recall_score(y, pred, average=avg, pos_label=pos, zero_division=0)),
    }
    scorers = {"precision": skm.precision_score, "recall": skm.recall_score, "f1": skm.f1_score}
    for name, fn in scorers.items():
        for average in ("macro", "weighted"):
            out[f"{name}_{average}"] = float(fn(y, pred, average=average, **kw))
    if probabilities is None:
        return out
    proba = np.asarray(probabilities, dtype=np.float64)
    present = set(y.tolist())
    if binary:
        p_pos = proba[:, class_list.index(pos)]
        is_pos = y == pos
        if len(present) == 2:
            auc = float(skm.roc_auc_score(is_pos, p_pos))
            out.update(roc_auc=auc, roc_auc_ovr=auc, roc_auc_ovr_weighted=auc)
            out["pr_auc"] = float(skm.average_precision_score(is_pos, p_pos))
        out["brier"] = float(np.mean((p_pos - is_pos) ** 2))
    else:
        if present == set(class_list):
            for name, average in (("roc_auc_ovr", "macro"), ("roc_auc_ovr_weighted", "weighted")):
                out[name] = float(
                    skm.roc_auc_score(
                        y, proba, multi_class="ovr", labels=class_list, average=average
                    )
                )
            out["roc_auc"] = out["roc_auc_ovr"]
            onehot = np.asarray(y[:, None] == np.asarray(class_list, dtype=object)[None, :])
            out["pr_auc"] = float(skm.average_precision_score(onehot, proba, average="macro"))
    out["log_loss"] = float(skm.log_loss(y, proba, labels=class_list))
    return out


def _balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean recall over the classes present in ``y`` (scikit-learn's definition)."""
    return float(skm.balanced_accuracy_score(y, pred))


def confusion(
    y_true: Any, labels: Any, classes: Sequence[Any] | None = None
) -> dict[str, list[Any]]:
    """The confusion matrix at the given labels: ``{"labels": [...], "matrix": [[...]]}``,
    rows the true class and columns the predicted one, both in ``labels`` order."""
    y = np.asarray(y_true)
    pred = np.asarray(labels)
    class_list = list(classes) if classes is not None else sorted(set(y.tolist()))
    matrix = skm.confusion_matrix(y, pred, labels=class_list)
    return {
        "labels": [_plain(c) for c in class_list],
        "matrix": [[int(v) for v in row] for row in matrix],
    }


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
