"""Cross-validation and holdout splits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

from loopml.errors import InvalidInputError

Fold = tuple[np.ndarray, np.ndarray]


def holdout_split(
    x: pd.DataFrame, y: pd.Series, *, fraction: float, task: str, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    """Train/holdout split, stratified for classification."""
    stratify = y if task == "classification" and _can_stratify(y, fraction) else None
    x_tr, x_ho, y_tr, y_ho = train_test_split(
        x, y, test_size=fraction, random_state=seed, stratify=stratify
    )
    return x_tr, x_ho, y_tr, y_ho


def _can_stratify(y: pd.Series, fraction: float) -> bool:
    counts = y.value_counts()
    return bool(counts.min() >= 2 and len(y) * fraction >= len(counts))


def folds(y: pd.Series, *, n_folds: int, task: str, seed: int) -> list[Fold]:
    """k-fold indices (stratified for classification when every class can be split)."""
    if n_folds < 2:
        raise InvalidInputError(
            f"evaluation.folds is {n_folds}",
            where={"field": "evaluation.folds"},
            hint="Use at least 2 folds, or 0 to skip cross-validation",
        )
    if len(y) < n_folds:
        raise InvalidInputError(
            f"{len(y)} training rows cannot be split into {n_folds} folds",
            where={"field": "evaluation.folds"},
            hint="Use fewer folds or more data",
        )
    idx = np.arange(len(y))
    if task == "classification" and y.value_counts().min() >= n_folds:
        splitter: Any = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        return list(splitter.split(idx, y))
    return list(KFold(n_splits=n_folds, shuffle=True, random_state=seed).split(idx))


def cross_validate(
    x: pd.DataFrame,
    y: pd.Series,
    fit_score: Callable[[pd.DataFrame, pd.Series, pd.DataFrame, pd.Series], dict[str, float]],
    *,
    n_folds: int,
    task: str,
    seed: int,
    on_fold: Callable[[int], None] | None = None,
    splits: list[Fold] | None = None,
) -> dict[str, dict[str, float]]:
    """Run ``fit_score`` on each fold (``splits``, or shuffled k-fold); returns
    metric -> {mean, std, min, max}."""
    per_fold: list[dict[str, float]] = []
    if splits is None:
        splits = folds(y, n_folds=n_folds, task=task, seed=seed)
    for i, (tr, te) in enumerate(splits):
        per_fold.append(fit_score(x.iloc[tr], y.iloc[tr], x.iloc[te], y.iloc[te]))
        if on_fold is not None:
            on_fold(i)
    names = sorted(set().union(*per_fold))
    out = {}
    for name in names:
        values = np.array([f[name] for f in per_fold if name in f], dtype=np.float64)
        out[name] = {
            "mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "min": float(values.min()),
            "max": float(values.max()),
        }
    return out
