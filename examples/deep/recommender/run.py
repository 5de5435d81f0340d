"""Matrix factorization on MovieLens 100k against the most-popular baseline.

python examples/deep/recommender/run.py

MovieLens 100k is read from inside the recbole wheel (``pip install --no-deps recbole``;
recbole itself is never imported). The ratings are split by time within each user's history
(each user's latest 20 % held out); both models recommend 10 items the user has not rated
in training to each user. The last line printed is one JSON object with the headline figures.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pandas as pd

from loopml.train.deep.ranking import ranking_metrics, time_split
from loopml.train.deep.recommender import Recommender, fit_mf, most_popular

K = 10


def movielens_100k() -> pd.DataFrame:
    """The ratings file of the recbole wheel (located without importing recbole)."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("MovieLens 100k comes with recbole: pip install --no-deps recbole")
    root = Path(next(iter(spec.submodule_search_locations)))
    path = root / "dataset_example" / "ml-100k" / "ml-100k.inter"
    frame = pd.read_csv(path, sep="\t")
    frame.columns = [c.split(":")[0] for c in frame.columns]  # user_id:token -> user_id
    return frame


def evaluate(model: Recommender, test: pd.DataFrame, n_items: int) -> dict[str, float]:
    known = set(model.users)
    relevant = {u: set(g["item_id"]) for u, g in test.groupby("user_id") if u in known}
    recs = model.recommend_many(list(relevant), K)
    recommended = {r.user: r.items for r in recs}
    return ranking_metrics(recommended, relevant, K, n_items)


def main(epochs: int = 20) -> dict[str, Any]:
    ratings = movielens_100k()
    train, test = time_split(ratings, "timestamp", 0.2, by="user_id")
    n_items = ratings["item_id"].nunique()
    popular = evaluate(most_popular(train, "user_id", "item_id"), test, n_items)
    mf = fit_mf(train, "user_id", "item_id", dim=64, epochs=epochs, lr=0.005, seed=0)
    again = Recommender.from_bytes(mf.to_bytes())  # saved and reloaded, no pickle
    scores = evaluate(again, test, n_items)
    unknown = again.recommend("no-such-user", K)
    return {
        "ndcg_at_10": scores["ndcg"],
        "popular_ndcg_at_10": popular["ndcg"],
        "recall_at_10": scores["recall"],
        "popular_recall_at_10": popular["recall"],
        "precision_at_10": scores["precision"],
        "map_at_10": scores["map"],
        "coverage_at_10": scores["coverage"],
        "popular_coverage_at_10": popular["coverage"],
        "users": scores["users"],
        "unknown_user": unknown.reason,
    }


if __name__ == "__main__":
    print(json.dumps(main()))
