"""Comparing two models on the same rows with a paired test.

Both models predicted the same holdout rows, so the question "is the challenger worse than
the champion?" is answered on the per-row pairs: a paired bootstrap of the metric difference
(the same resampled rows score both models; seeded, so a re-run gives the same interval) for
every metric, and McNemar's exact test on the rows where exactly one model is right, for
accuracy. ``improvement`` is signed so that positive always means the challenger is better
(for a lower-is-better metric such as log loss it is champion - challenger).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats
from sklearn import metrics as skm

from loopml.evaluate.metrics import LOWER_IS_BETTER, compute_metrics

N_BOOTSTRAP = 1000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Scored:
    """One model's predictions of the comparison rows."""

    labels: np.ndarray
    probabilities: np.ndarray | None = None
    classes: Sequence[Any] | None = None


@dataclass(frozen=True)
class Comparison:
    metric: str
    challenger: float
    champion: float
    improvement: float  # > 0: the challenger is better (sign follows the metric's direction)
    ci_low: float  # confidence interval of the improvement (paired bootstrap)
    ci_high: float
    p_value: float  # two-sided, of "no difference"
    test: str
    rows: int
    confidence: float = CONFIDENCE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def metric_value(
    task: str,
    metric: str,
    y: np.ndarray,
    s: Scored,
    *,
    positive: Any = None,
) -> float:
    """One metric of one model's predictions (NaN where it is undefined on these rows)."""
    labels = s.labels
    if task == "regression":
        yf, pf = y.astype(np.float64), labels.astype(np.float64)
        if metric == "rmse":
            return float(np.sqrt(np.mean((yf - pf) ** 2)))
        if metric == "mae":
            return float(np.mean(np.abs(yf - pf)))
        if metric == "r2":
            return float(skm.r2_score(yf, pf)) if len(np.unique(yf)) > 1 else float("nan")
    classes = list(s.classes) if s.classes is not None else sorted(set(y.tolist()))
    binary = len(classes) == 2
    pos = positive if positive is not None else (classes[-1] if binary else None)
    if metric == "accuracy":
        return float(np.mean(labels == y))
    if metric in ("precision", "recall", "f1") and binary:
        fn: Callable[..., float] = {
            "precision": skm.precision_score,
            "recall": skm.recall_score,
            "f1": skm.f1_score,
        }[metric]
        return float(fn(y, labels, pos_label=pos, zero_division=0))
    if metric == "roc_auc" and binary and s.probabilities is not None:
        truth = y == pos
        if truth.all() or not truth.any():
            return float("nan")
        col = [str(c) for c in classes].index(str(pos))
        return _auc(truth, s.probabilities[:, col])
    if metric in ("log_loss", "brier") and s.probabilities is not None:
        where = {str(c): i for i, c in enumerate(classes)}
        idx = np.asarray([where[str(v)] for v in y])
        if metric == "log_loss":  # as scikit-learn: rows renormalised, clipped at eps
            proba = s.probabilities / s.probabilities.sum(axis=1, keepdims=True)
            eps = np.finfo(proba.dtype).eps
            picked = np.clip(proba[np.arange(len(y)), idx], eps, 1 - eps)
            return float(-np.mean(np.log(picked)))
        if binary:
            col = [str(c) for c in classes].index(str(pos))
            return float(np.mean((s.probabilities[:, col] - (idx == col)) ** 2))
    try:  # any other metric of the evaluation stage, through its one entry point
        out = compute_metrics(task, y, labels, s.probabilities, classes, positive=pos)
    except ValueError:  # e.g. an AUC of rows that hold a single class
        return float("nan")
    return float(out.get(metric, float("nan")))


def _auc(truth: np.ndarray, score: np.ndarray) -> float:
    """ROC-AUC by the rank-sum (Mann-Whitney) identity, ties counted half."""
    ranks = stats.rankdata(score)
    n_pos = int(truth.sum())
    n_neg = len(truth) - n_pos
    return float((ranks[truth].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def compare(
    task: str,
    metric: str,
    y: Any,
    challenger: Scored,
    champion: Scored,
    *,
    positive: Any = None,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int = 0,
    blocks: int = 0,
) -> Comparison:
    """Paired comparison of two models' predictions of the same rows ``y`` on ``metric``.

    ``blocks`` > 1: the bootstrap resamples that many contiguous runs of the rows (in their
    order, e.g. time) instead of single rows, so that rows that come in correlated runs (a
    user's session, a day of storms) widen the interval as they should; 0: single rows."""
    y_arr = np.asarray(y)
    n = len(y_arr)
    runs = _runs(n, blocks) if blocks > 1 and n > 1 else None
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0

    def both(idx: np.ndarray | None) -> tuple[float, float]:
        if idx is None:
            return (
                metric_value(task, metric, y_arr, challenger, positive=positive),
                metric_value(task, metric, y_arr, champion, positive=positive),
            )
        return (
            metric_value(task, metric, y_arr[idx], _take(challenger, idx), positive=positive),
            metric_value(task, metric, y_arr[idx], _take(champion, idx), positive=positive),
        )

    new, old = both(None)
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_bootstrap):
        if runs is None:
            idx = rng.integers(0, n, n)
        else:
            idx = np.concatenate([runs[k] for k in rng.integers(0, len(runs), len(runs))])
        a, b = both(idx)
        if np.isfinite(a) and np.isfinite(b):
            diffs.append(sign * (a - b))
    d = np.asarray(diffs, dtype=np.float64)
    alpha = (1.0 - CONFIDENCE) / 2
    if len(d):
        lo, hi = (float(v) for v in np.quantile(d, [alpha, 1 - alpha]))
        p = min(1.0, 2.0 * float(min(np.mean(d <= 0), np.mean(d >= 0))))
    else:
        lo = hi = p = float("nan")
    test = f"paired bootstrap ({len(d)} resamples)"
    if runs is not None:
        test = f"paired block bootstrap ({len(d)} resamples of {len(runs)} contiguous runs)"
    if metric == "accuracy" and task == "classification":
        right_new = challenger.labels == y_arr
        right_old = champion.labels == y_arr
        b = int(np.sum(right_new & ~right_old))
        c = int(np.sum(~right_new & right_old))
        p = float(stats.binomtest(b, b + c, 0.5).pvalue) if b + c else 1.0
        test = f"McNemar exact ({b} rows only the challenger got right, {c} only the champion)"
    return Comparison(metric, new, old, sign * (new - old), lo, hi, p, test, n)


def _runs(n: int, blocks: int) -> list[np.ndarray]:
    """Row positions ``0..n-1`` cut into ``blocks`` contiguous runs of (nearly) equal size."""
    edges = np.linspace(0, n, min(blocks, max(n, 1)) + 1).round().astype(int)
    return [np.arange(a, b) for a, b in itertools.pairwise(edges) if b > a]


def _take(s: Scored, idx: np.ndarray) -> Scored:
    proba = s.probabilities[idx] if s.probabilities is not None else None
    return Scored(s.labels[idx], proba, s.classes)
