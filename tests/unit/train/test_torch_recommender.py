"""Ranking metrics (checked against scikit-learn's NDCG) and the MF recommender."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import ndcg_score

pytest.importorskip("torch")

from loopml.errors import IntegrityError, InvalidInputError
from loopml.train.deep.ranking import ranking_metrics, time_split
from loopml.train.deep.recommender import Recommender, fit_mf, most_popular


def test_metrics_by_hand_for_one_user() -> None:
    # top 4: a hit at ranks 1 and 3; 3 relevant items
    m = ranking_metrics({"u": ["a", "x", "b", "y"]}, {"u": {"a", "b", "c"}}, 4, n_items=10)
    assert m["precision"] == pytest.approx(2 / 4)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["map"] == pytest.approx((1 / 1 + 2 / 3) / 3)
    dcg = 1 + 1 / np.log2(4)
    assert m["ndcg"] == pytest.approx(dcg / (1 + 1 / np.log2(3) + 1 / np.log2(4)))
    assert m["coverage"] == pytest.approx(4 / 10)


def test_ndcg_agrees_with_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    n_items, k = 30, 5
    recommended, relevant, truths, scores = {}, {}, [], []
    for user in range(20):
        score = rng.permutation(n_items).astype(float)
        truth = set(rng.choice(n_items, rng.integers(1, 6), replace=False).tolist())
        recommended[user] = list(np.argsort(-score)[:k])
        relevant[user] = truth
        truths.append([1.0 if j in truth else 0.0 for j in range(n_items)])
        scores.append(score)
    ours = ranking_metrics(recommended, relevant, k, n_items)["ndcg"]
    assert ours == pytest.approx(ndcg_score(np.array(truths), np.array(scores), k=k))


def test_time_split_global_and_per_user() -> None:
    frame = pd.DataFrame(
        {"user": [1, 1, 1, 1, 1, 2, 2, 2, 2, 2], "item": range(10), "t": [5, 1, 4, 2, 3] * 2}
    )
    train, test = time_split(frame, "t", 0.2)
    assert train["t"].max() <= test["t"].min() and len(test) == 2
    train, test = time_split(frame, "t", 0.2, by="user")
    assert sorted(test["item"]) == [0, 5]  # each user's latest
    with pytest.raises(InvalidInputError, match="'when'"):
        time_split(frame, "when")


@pytest.fixture(scope="module")
def blocks() -> pd.DataFrame:
    """Two groups of users, each liking its own half of the items (and not all of it)."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(40):
        half = range(0, 20) if u < 20 else range(20, 40)
        rows += [(f"u{u}", f"i{i}") for i in rng.choice(list(half), 12, replace=False)]
    return pd.DataFrame(rows, columns=["user", "item"])


def test_mf_recommends_the_users_own_half_unseen(blocks: pd.DataFrame) -> None:
    mf = fit_mf(blocks, "user", "item", dim=8, epochs=60, lr=0.05, batch_size=128, seed=0)
    rec = mf.recommend("u3", 5)
    seen = set(blocks.loc[blocks["user"] == "u3", "item"])
    assert rec.known_user and not seen & set(rec.items)
    assert all(int(i[1:]) < 20 for i in rec.items)  # its group's items
    assert len(mf.recommend("u3", 5, exclude_seen=False).items) == 5


def test_an_unknown_user_gets_the_popular_items_and_is_told(blocks: pd.DataFrame) -> None:
    pop = most_popular(blocks, "user", "item")
    rec = pop.recommend("stranger", 3)
    assert not rec.known_user and "not seen in training" in rec.reason
    counts = blocks.drop_duplicates().groupby("item").size()
    assert counts[rec.items].min() >= counts.drop(rec.items).max()


def test_round_trip_and_a_damaged_file(blocks: pd.DataFrame) -> None:
    mf = fit_mf(blocks, "user", "item", dim=4, epochs=2, seed=0)
    again = Recommender.from_bytes(mf.to_bytes())
    assert again.recommend("u1", 5) == mf.recommend("u1", 5)
    src = zipfile.ZipFile(io.BytesIO(mf.to_bytes()))
    meta = json.loads(src.read("recommender.json"))
    meta["architecture"]["args"]["dim"] = 5
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as out:
        out.writestr("recommender.json", json.dumps(meta))
        out.writestr("model.safetensors", src.read("model.safetensors"))
    with pytest.raises(IntegrityError, match="could not be read"):
        Recommender.from_bytes(buf.getvalue())
