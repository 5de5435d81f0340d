"""Bootstrap confidence intervals of the holdout metrics.

Each resample draws the holdout's rows with replacement; a metric over a resample equals the
metric weighted by how often each row was drawn, so every resample's metrics come from one
vectorised pass over a (resamples x rows) matrix of counts: one matrix product gives each
resample's confusion matrix and summed losses, and running sums over the rows, put once in
order of score, its AUC and average precision (no per-resample scikit-learn calls: 200
resamples of a 40,000-row binary holdout take about 0.15 CPU s, a multiclass one a little
more per class; set ``evaluation.bootstrap: 0`` to skip them). The interval is the
percentile interval (2.5th and 97.5th percentiles at ``level=0.95``). The numbers agree with
:func:`loopml.evaluate.metrics.compute_metrics` on every resample (tested).

A metric that cannot be computed on a resample (an AUC when the resample holds one class)
skips that resample; it gets no interval when fewer than half of the resamples had it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from loopml.evaluate.metrics import positive_class

#: Most cells of the (resamples x rows) count matrix held at once.
MAX_CELLS = 4_000_000


def bootstrap_ci(
    task: str,
    y_true: Any,
    labels: Any,
    probabilities: np.ndarray | None = None,
    classes: Sequence[Any] | None = None,
    *,
    positive: Any = None,
    resamples: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, list[float]]:
    """metric -> [lo, hi], the percentile interval over ``resamples`` seeded resamples."""
    values = bootstrap_values(
        task,
        y_true,
        labels,
        probabilities,
        classes,
        positive=positive,
        resamples=resamples,
        seed=seed,
    )
    tail = (1.0 - level) / 2.0 * 100.0
    out = {}
    for name, v in values.items():
        ok = v[np.isfinite(v)]
        if len(ok) == 0 or len(ok) < len(v) / 2:
            continue
        lo, hi = np.percentile(ok, [tail, 100.0 - tail])
        out[name] = [float(lo), float(hi)]
    return out


def bootstrap_values(
    task: str,
    y_true: Any,
    labels: Any,
    probabilities: np.ndarray | None = None,
    classes: Sequence[Any] | None = None,
    *,
    positive: Any = None,
    resamples: int = 200,
    seed: int = 0,
    weights: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """metric -> one value per resample (NaN where it cannot be computed).

    ``weights`` (resamples x rows counts) replaces the seeded draw, for tests.
    """
    y = np.asarray(y_true)
    n = len(y)
    plan = _Plan(task, y, labels, probabilities, classes, positive)
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        return plan.metrics(w if plan.order is None else w[:, plan.order])
    rng = np.random.default_rng(seed)
    chunk = max(1, min(resamples, MAX_CELLS // max(n, 1)))
    counts = np.empty((chunk, n))  # reused by every chunk: touched once, not per chunk
    parts: list[dict[str, np.ndarray]] = []
    for done in range(0, resamples, chunk):
        b = min(chunk, resamples - done)
        # each draw picks positions in the plan's row order: as uniform a draw of the rows
        # as one in their given order, and no row shuffle is then needed per resample
        idx = rng.integers(0, n, size=(b, n), dtype=np.int32 if n < 2**31 else np.int64)
        w = counts[:b]
        for j in range(b):
            w[j] = np.bincount(idx[j], minlength=n)
        parts.append(plan.metrics(w))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


#: At most this many (true, predicted) pairs are counted by one matrix product; more
#: (a multiclass target with many classes), or a holdout whose one-hot columns would pass
#: MAX_CELLS, are summed by sorted runs instead.
MAX_PAIRS = 64


class _Plan:
    """Everything about one holdout that does not depend on the resample, worked out once:
    the rows' order (binary: the negatives, then the positives of the positive class, each
    by score) and :attr:`columns`, one row per sum a metric needs (row count, confusion
    cells, squared and absolute errors, losses), so that one product with a resample's
    counts gives them all; :meth:`metrics` then needs only that product and, for the AUCs,
    running sums."""

    def __init__(
        self,
        task: str,
        y: np.ndarray,
        labels: Any,
        probabilities: np.ndarray | None,
        classes: Sequence[Any] | None,
        positive: Any,
    ) -> None:
        self.task = task
        self.order: np.ndarray | None = None
        n = len(y)
        if task == "regression":
            yf = y.astype(np.float64)
            e = np.asarray(labels, dtype=np.float64) - yf
            ape = np.abs(e) / np.maximum(np.abs(yf), np.finfo(np.float64).eps)
            self.columns = np.stack([np.ones(n), e * e, np.abs(e), ape, yf, yf * yf])
            return
        class_list = list(classes) if classes is not None else sorted(set(y.tolist()))
        k = len(class_list)
        self.k = k
        self.binary = k == 2
        self.pos_index = class_list.index(positive_class(class_list, positive)) if k == 2 else -1
        yi = _codes(y, class_list)
        pi = _codes(np.asarray(labels), class_list)
        proba = None if probabilities is None else np.asarray(probabilities, dtype=np.float64)
        if self.binary and proba is not None:  # rows: negatives, then positives, by score
            self.order, _ = _by_class(proba[:, self.pos_index], yi == self.pos_index)
            yi, pi, proba = yi[self.order], pi[self.order], proba[self.order]
        #: multiclass, one vs rest: each class's (row order, number of negatives)
        self.class_orders: list[tuple[np.ndarray, int]] = []
        if not self.binary and proba is not None:
            self.class_orders = [_by_class(proba[:, c], yi == c) for c in range(k)]
        self.proba = proba
        self.yi = yi
        code = yi * (k + 1) + pi
        cells = np.unique(code)
        self.cells = cells
        extra: list[np.ndarray] = [np.ones(n)]
        if proba is not None:
            eps = np.finfo(proba.dtype).eps
            clipped = np.clip(proba / proba.sum(axis=1, keepdims=True), eps, 1 - eps)
            row_loss = np.zeros(n)
            known = yi < k
            row_loss[known] = -np.log(clipped[np.flatnonzero(known), yi[known]])
            extra.append(row_loss)
            if self.binary:
                j = self.pos_index
                extra.append((proba[:, j] - (yi == j)) ** 2)
        self.n_extra = len(extra)
        # the one-hot columns hold n x pairs floats: within MAX_CELLS, as the draws are
        if len(cells) <= MAX_PAIRS and n * len(cells) <= MAX_CELLS:
            onehot = (code[:, None] == cells[None, :]).astype(np.float64)
            self.columns = np.concatenate([np.stack(extra), onehot.T])
            self.code_order = None
        else:
            self.columns = np.stack(extra)
            self.code_order = np.argsort(code, kind="stable")
            sorted_code = code[self.code_order]
            self.code_starts = np.flatnonzero(np.r_[True, sorted_code[1:] != sorted_code[:-1]])

    def metrics(self, w: np.ndarray) -> dict[str, np.ndarray]:
        """metric -> value per resample of ``w`` (resamples x rows, in :attr:`order`)."""
        # einsum, not a BLAS product: BLAS's worker threads would spin on after it,
        # costing more CPU than the product itself
        sums = np.einsum("ij,kj->ik", w, self.columns)  # (resamples, m)
        total = sums[:, 0]
        if self.task == "regression":
            sse, sae, sape, sy, syy = (sums[:, i] for i in range(1, 6))
            sst = syy - sy**2 / total
            with np.errstate(divide="ignore", invalid="ignore"):
                r2 = np.where(sst > 1e-12 * np.maximum(syy, 1.0), 1.0 - sse / sst, np.nan)
            return {
                "rmse": np.sqrt(sse / total),
                "mae": sae / total,
                "r2": r2,
                "mape": sape / total,
            }
        k = self.k
        b = w.shape[0]
        flat = np.zeros((b, (k + 1) * (k + 1)))
        if self.code_order is None:
            flat[:, self.cells] = sums[:, self.n_extra :]
        else:
            flat[:, self.cells] = np.add.reduceat(w[:, self.code_order], self.code_starts, axis=1)
        cm = flat.reshape(b, k + 1, k + 1)[:, :k, :k]  # (b, true, predicted)
        tp = np.diagonal(cm, axis1=1, axis2=2)
        support = cm.sum(axis=2)
        predicted = cm.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            prec = np.where(predicted > 0, tp / predicted, 0.0)
            rec = np.where(support > 0, tp / support, 0.0)
            f1 = np.where(predicted + support > 0, 2 * tp / (predicted + support), 0.0)
            present = support > 0
            out: dict[str, np.ndarray] = {
                "accuracy": tp.sum(axis=1) / total,
                "balanced_accuracy": (rec * present).sum(axis=1) / present.sum(axis=1),
            }
            sup_total = support.sum(axis=1)
            for name, per in (("precision", prec), ("recall", rec), ("f1", f1)):
                out[f"{name}_macro"] = per.mean(axis=1)
                out[f"{name}_weighted"] = (per * support).sum(axis=1) / sup_total
        if self.binary:
            j = self.pos_index
            out.update(precision=prec[:, j], recall=rec[:, j], f1=f1[:, j])
        else:
            for name in ("precision", "recall", "f1"):
                out[name] = out[f"{name}_macro"]
        proba = self.proba
        if proba is None:
            return out
        out["log_loss"] = sums[:, 1] / total
        if self.binary:
            j = self.pos_index
            n_neg = int(np.count_nonzero(self.yi != j))
            auc, ap = _auc_ap(w, n_neg, proba[:, j])
            out.update(roc_auc=auc, roc_auc_ovr=auc, roc_auc_ovr_weighted=auc, pr_auc=ap)
            out["brier"] = sums[:, 2] / total
            return out
        aucs, aps = [], []
        for c, (order, n_neg) in enumerate(self.class_orders):
            a, p = _auc_ap(w[:, order], n_neg, proba[order, c])
            aucs.append(a)
            aps.append(p)
        auc_m, ap_m = np.column_stack(aucs), np.column_stack(aps)
        out["roc_auc_ovr"] = auc_m.mean(axis=1)  # NaN when a class is missing
        out["roc_auc"] = out["roc_auc_ovr"]
        with np.errstate(divide="ignore", invalid="ignore"):
            out["roc_auc_ovr_weighted"] = (auc_m * support).sum(axis=1) / sup_total
        out["roc_auc_ovr_weighted"][np.isnan(out["roc_auc_ovr"])] = np.nan
        out["pr_auc"] = ap_m.mean(axis=1)
        return out


def _by_class(score: np.ndarray, is_pos: np.ndarray) -> tuple[np.ndarray, int]:
    """The rows' order for :func:`_auc_ap` (negatives by score, then positives by score),
    and the number of negatives."""
    neg, pos = np.flatnonzero(~is_pos), np.flatnonzero(is_pos)
    by_score = [rows[np.argsort(score[rows], kind="stable")] for rows in (neg, pos)]
    return np.concatenate(by_score), len(neg)


def _codes(values: np.ndarray, class_list: list[Any]) -> np.ndarray:
    """The index of each value in ``class_list``; ``len(class_list)`` for any other value."""
    k = len(class_list)
    try:
        codes = pd.Categorical(values, categories=class_list).codes.astype(np.int64)
    except (TypeError, ValueError):  # labels pandas cannot hold as categories: one by one
        code = {c: i for i, c in enumerate(class_list)}
        return np.array([code.get(v, k) for v in values.tolist()], dtype=np.int64)
    codes[codes < 0] = k
    return codes


def _auc_ap(w: np.ndarray, n_neg: int, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted ROC-AUC and average precision for each row of ``w`` (resamples x rows),
    the rows ordered as the negatives by ``score`` then the positives by ``score``;
    tied scores are grouped as scikit-learn groups them.

    With ``below`` the weight of negatives scored under a positive (and ``upto`` those
    scored at most as high), AUC sums ``w * (below + upto) / 2`` over positives; average
    precision sums ``w * precision`` at each positive's score, the positives and negatives
    at or above it read from running sums over each side (no row gathers: the order does it).
    """
    b, n = w.shape
    n_pos = n - n_neg
    if n_pos == 0 or n_neg == 0:
        nan = np.full(b, np.nan)
        return nan, nan.copy()
    neg_scores, s_pos = score[:n_neg], score[n_neg:]
    w_pos = w[:, n_neg:]
    c_neg = np.zeros((b, n_neg + 1))
    np.cumsum(w[:, :n_neg], axis=1, out=c_neg[:, 1:])  # c_neg[:, j]: the j lowest negatives
    lo = np.searchsorted(neg_scores, s_pos, side="left")  # negatives strictly below
    hi = np.searchsorted(neg_scores, s_pos, side="right")  # ... and those tied with it
    n_tot = c_neg[:, -1]
    c_lo = np.take(c_neg, lo, axis=1)  # negatives strictly below each positive
    twice = np.einsum("ij,ij->i", w_pos, c_lo)
    if (lo != hi).any():
        twice += np.einsum("ij,ij->i", w_pos, np.take(c_neg, hi, axis=1))
    else:
        twice *= 2.0
    # positives scored at least as high as each positive: all but those strictly below
    c_pos = np.zeros((b, n_pos + 1))
    np.cumsum(w_pos, axis=1, out=c_pos[:, 1:])
    p_tot = c_pos[:, -1].copy()
    first = np.searchsorted(s_pos, s_pos, side="left")  # the first positive tied with each
    tied = (first != np.arange(n_pos)).any()
    tp = np.take(c_pos, first, axis=1) if tied else c_pos[:, :-1]
    np.subtract(p_tot[:, None], tp, out=tp)
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = 0.5 * twice / (p_tot * n_tot)
        seen = np.subtract(n_tot[:, None], c_lo, out=c_lo)  # negatives at or above the score
        seen += tp
        precision = np.divide(tp, seen, out=tp, where=seen > 0)  # seen 0: tp is 0 too
        ap = np.einsum("ij,ij->i", w_pos, precision) / p_tot
    bad = (p_tot == 0) | (n_tot == 0)
    auc[bad] = np.nan
    ap[bad] = np.nan
    return auc, ap
