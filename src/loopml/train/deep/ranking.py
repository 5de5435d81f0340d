"""Ranking metrics for top-k recommendations, and a time-ordered split of interactions.

For each user with at least one held-out item: ``precision@k`` (hits / k), ``recall@k``
(hits / held-out items), ``NDCG@k`` (binary relevance, log2 discounts, over the ideal
ranking of min(k, held-out) hits), ``MAP@k`` (the mean of precision at each hit's rank,
over min(k, held-out)); averaged over those users. ``coverage@k`` is the share of the
catalogue that appears in at least one user's top k.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from loopml.errors import InvalidInputError


def time_split(
    frame: pd.DataFrame, time_column: str, fraction: float = 0.2, *, by: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The earliest ``1 - fraction`` of the rows by ``time_column``, and the latest
    ``fraction`` (ties broken by the row order, so the split is the same every time).

    ``by`` (a user column): the split is made within each user's own history instead, so
    every user keeps its earliest rows for training and is asked about its latest ones
    (a global cut instead leaves most held-out users unseen in training)."""
    for column in (time_column, by):
        if column is not None and column not in frame.columns:
            raise InvalidInputError(
                f"column {column!r} is not in the interactions",
                where={"column": column},
                hint=f"Columns: {', '.join(map(str, frame.columns))}",
            )
    if by is not None and 0 < fraction < 1:
        ordered = frame.sort_values(time_column, kind="stable")
        rank = ordered.groupby(by, sort=False).cumcount()
        size = ordered.groupby(by, sort=False)[time_column].transform("size")
        held = rank >= np.round(size * (1 - fraction))
        return ordered[~held.to_numpy()], ordered[held.to_numpy()]
    if time_column not in frame.columns:
        raise InvalidInputError(
            f"time column {time_column!r} is not in the interactions",
            where={"column": time_column},
            hint=f"Columns: {', '.join(map(str, frame.columns))}",
        )
    if not 0 < fraction < 1:
        raise InvalidInputError(
            f"the held-out fraction is {fraction!r}",
            where={"field": "fraction"},
            hint="Give a fraction between 0 and 1, e.g. 0.2",
        )
    ordered = frame.sort_values(time_column, kind="stable")
    cut = round(len(ordered) * (1 - fraction))
    return ordered.iloc[:cut], ordered.iloc[cut:]


def ranking_metrics(
    recommended: Mapping[Any, Sequence[Any]], relevant: Mapping[Any, set[Any]], k: int, n_items: int
) -> dict[str, float]:
    """``precision``, ``recall``, ``ndcg``, ``map`` at ``k`` (means over the users of
    ``relevant`` with a held-out item), ``coverage`` of ``n_items``, and ``users``."""
    if k < 1:
        raise InvalidInputError(f"k is {k}", where={"field": "k"}, hint="Ask for k >= 1")
    precision, recall, ndcg, average = [], [], [], []
    shown: set[Any] = set()
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    for user, truth in relevant.items():
        if not truth:
            continue
        top = list(recommended.get(user, ()))[:k]
        shown.update(top)
        hits = np.array([item in truth for item in top], dtype=bool)
        n_hits = int(hits.sum())
        precision.append(n_hits / k)
        recall.append(n_hits / len(truth))
        ideal = discounts[: min(k, len(truth))].sum()
        ndcg.append(float(discounts[: len(hits)][hits].sum() / ideal))
        ranks = np.flatnonzero(hits) + 1
        prec_at_hits = np.arange(1, n_hits + 1) / ranks
        average.append(float(prec_at_hits.sum() / min(k, len(truth))))
    n = len(precision)
    mean = (lambda v: float(np.mean(v))) if n else (lambda v: 0.0)
    return {
        "precision": mean(precision),
        "recall": mean(recall),
        "ndcg": mean(ndcg),
        "map": mean(average),
        "coverage": len(shown) / n_items if n_items else 0.0,
        "users": float(n),
    }
