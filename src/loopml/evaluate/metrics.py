"""Metrics for classification and regression, as scikit-learn computes them.

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

The classification metrics of the plain case (sorted classes, every label one of them,
probabilities that sum to one) come from one confusion matrix and one sort of the scores per
class rather than one scikit-learn call each (about ten times cheaper on a large holdout;
equal to scikit-learn's to 1e-12, tested); any other case goes through scikit-learn, which
then warns or raises as it does.

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
    pos = positive_class(class_list, positive) if binary else 1
    fast = _one_pass(y, pred, probabilities, class_list, pos if binary else None)
    if fast is not None:
        return fast
    return _with_scikit_learn(y, pred, probabilities, class_list, pos)


def _with_scikit_learn(
    y: np.ndarray,
    pred: np.ndarray,
    probabilities: np.ndarray | None,
    class_list: list[Any],
    pos: Any,
) -> dict[str, float]:
    """The classification metrics through scikit-learn's functions, one call each: every
    case :func:`_one_pass` does not take, and the reference it is tested against."""
    binary = len(class_list) == 2
    avg = "binary" if binary else "macro"
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


def _one_pass(
    y: np.ndarray,
    pred: np.ndarray,
    probabilities: np.ndarray | None,
    class_list: list[Any],
    pos: Any,
) -> dict[str, float] | None:
    """:func:`compute_metrics` of a classification from one confusion matrix and one sort
    of the scores per class, as scikit-learn defines each metric (equal to its functions to
    1e-12, tested), without its per-call validation; None (scikit-learn computes them, and
    raises or warns as it does) when the inputs are not the plain case: the classes sorted,
    every label and prediction one of them, probabilities in [0, 1] summing to one.
    ``pos``: the positive class of a binary task (None: multiclass).
    """
    k = len(class_list)
    n = len(y)
    if k < 2 or n == 0 or len(pred) != n:
        return None
    try:
        if class_list != sorted(class_list):
            return None
        yi = _codes(y, class_list)
        pi = _codes(pred, class_list)
    except (TypeError, ValueError):
        return None
    if yi is None or pi is None:
        return None
    proba = None
    if probabilities is not None:
        proba = np.asarray(probabilities, dtype=np.float64)
        if proba.shape != (n, k) or not np.isfinite(proba).all():
            return None
        if proba.min() < 0 or proba.max() > 1:
            return None
        eps = np.finfo(np.float64).eps
        if not np.allclose(proba.sum(axis=1), 1.0, rtol=np.sqrt(eps), atol=0.0):
            return None
    cm = np.bincount(yi * k + pi, minlength=k * k).reshape(k, k)
    tp = np.diagonal(cm).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.where(predicted > 0, tp / predicted, 0.0)
        rec = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(predicted + support > 0, 2 * tp / (predicted + support), 0.0)
    in_y = support > 0
    out: dict[str, float] = {
        "accuracy": float(tp.sum() / n),
        "balanced_accuracy": float(np.mean(rec[in_y])),
    }
    if pos is not None:
        j = class_list.index(pos)
        out.update(f1=float(f1[j]), precision=float(prec[j]), recall=float(rec[j]))
    else:  # macro over the classes in the labels or the predictions, as scikit-learn's
        seen = in_y | (predicted > 0)
        out.update(
            f1=float(np.mean(f1[seen])),
            precision=float(np.mean(prec[seen])),
            recall=float(np.mean(rec[seen])),
        )
    for name, per in (("precision", prec), ("recall", rec), ("f1", f1)):
        out[f"{name}_macro"] = float(np.mean(per))
        out[f"{name}_weighted"] = float(np.average(per, weights=support))
    if proba is None:
        return out
    if pos is not None:
        j = class_list.index(pos)
        p_pos = proba[:, j]
        is_pos = yi == j
        if in_y.all():
            auc, ap = _auc(p_pos, is_pos), _average_precision(p_pos, is_pos)
            out.update(roc_auc=auc, roc_auc_ovr=auc, roc_auc_ovr_weighted=auc, pr_auc=ap)
        out["brier"] = float(np.mean((p_pos - is_pos) ** 2))
    elif in_y.all():
        aucs = np.array([_auc(proba[:, c], yi == c) for c in range(k)])
        aps = np.array([_average_precision(proba[:, c], yi == c) for c in range(k)])
        out["roc_auc_ovr"] = float(np.average(aucs))
        out["roc_auc_ovr_weighted"] = float(np.average(aucs, weights=support))
        out["roc_auc"] = out["roc_auc_ovr"]
        out["pr_auc"] = float(np.average(aps))
    eps = np.finfo(np.float64).eps
    chosen = np.clip(proba[np.arange(n), yi], eps, 1 - eps)
    out["log_loss"] = float(np.mean(-np.log(chosen)))
    return out


def _codes(values: np.ndarray, class_list: list[Any]) -> np.ndarray | None:
    """The index of each value in the sorted ``class_list``; None when one is not in it."""
    cl = np.asarray(class_list)
    if cl.dtype == object or values.dtype == object or cl.dtype.kind != values.dtype.kind:
        code = {c: i for i, c in enumerate(class_list)}
        if len(code) != len(class_list):
            return None
        got = [code.get(v, -1) for v in values.tolist()]
        arr = np.asarray(got, dtype=np.int64)
        return None if (arr < 0).any() else arr
    idx = np.searchsorted(cl, values)
    inside = idx < len(cl)
    if not inside.all() or not (cl[idx] == values).all():
        return None
    return idx.astype(np.int64)


def _auc(score: np.ndarray, is_pos: np.ndarray) -> float:
    """ROC-AUC as the share of (positive, negative) pairs ranked right, ties counting half
    (the area under scikit-learn's ROC curve)."""
    neg = np.sort(score[~is_pos])
    s_pos = score[is_pos]
    twice = (
        np.searchsorted(neg, s_pos, side="left").sum()
        + np.searchsorted(neg, s_pos, side="right").sum()
    )
    return float(twice / (2.0 * len(s_pos) * len(neg)))


def _average_precision(score: np.ndarray, is_pos: np.ndarray) -> float:
    """scikit-learn's average precision: precision at each distinct score, from the top,
    weighted by the recall it adds."""
    order = np.argsort(score, kind="mergesort")[::-1]
    s = score[order]
    distinct = np.flatnonzero(np.diff(s))
    last = np.r_[distinct, len(s) - 1]
    tps = np.cumsum(is_pos[order], dtype=np.float64)[last]
    fps = 1 + last - tps
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    precision = np.r_[precision[::-1], 1.0]
    recall = np.r_[recall[::-1], 0.0]
    return float(max(0.0, -np.sum(np.diff(recall) * precision[:-1])))


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
    matrix = _counts(y, pred, class_list)
    if matrix is None:  # a label that is not a class, or classes not sorted: scikit-learn's
        matrix = skm.confusion_matrix(y, pred, labels=class_list)
    return {
        "labels": [_plain(c) for c in class_list],
        "matrix": [[int(v) for v in row] for row in matrix],
    }


def _counts(y: np.ndarray, pred: np.ndarray, class_list: list[Any]) -> np.ndarray | None:
    """The confusion matrix by one count of (true, predicted) codes; None unless every label
    and prediction is one of the sorted ``class_list``."""
    k = len(class_list)
    if k == 0 or len(y) != len(pred):
        return None
    try:
        if class_list != sorted(class_list):
            return None
        yi, pi = _codes(y, class_list), _codes(pred, class_list)
    except (TypeError, ValueError):
        return None
    if yi is None or pi is None:
        return None
    return np.bincount(yi * k + pi, minlength=k * k).reshape(k, k)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
