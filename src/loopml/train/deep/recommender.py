"""A matrix-factorization recommender on (user, item[, rating]) interactions, and the
most-popular baseline it must beat.

:func:`fit_mf` learns user and item embeddings with biases
(:class:`~loopml.registry.flavors.torch_nets.MatrixFactorization`) by Bayesian personalised
ranking: each observed (user, item) should score above an item drawn at random. With a
``rating`` column and ``min_rating``, only ratings at or above it count as observed
(explicit feedback made implicit); without, every row does. :func:`most_popular` ranks items
by how many users interacted with them. Both answer :meth:`Recommender.recommend`; a user
never seen in training gets the popular items, and the answer says so.

A :class:`Recommender` (:mod:`loopml.registry.flavors.torch_recommender`) saves without
pickle: the weights (safetensors) and a JSON file of the ids, the popular order and what each
user has seen; :mod:`loopml.train.deep.recommend` trains one from a project file and
registers it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from loopml.errors import InvalidInputError
from loopml.registry.flavors.torch_recommender import (
    ARCH,
    META,
    WEIGHTS,
    Recommendation,
    Recommender,
)


def _index(
    frame: pd.DataFrame, user: str, item: str
) -> tuple[list[Any], list[Any], np.ndarray, np.ndarray]:
    for column in (user, item):
        if column not in frame.columns:
            raise InvalidInputError(
                f"column {column!r} is not in the interactions",
                where={"column": column},
                hint=f"Columns: {', '.join(map(str, frame.columns))}",
            )
    u_codes, users = pd.factorize(frame[user], sort=True)
    i_codes, items = pd.factorize(frame[item], sort=True)
    return list(users), list(items), u_codes.astype(np.int64), i_codes.astype(np.int64)


def _index_onto(
    frame: pd.DataFrame, user: str, item: str, init: Recommender
) -> tuple[list[Any], list[Any], np.ndarray, np.ndarray]:
    """Codes of ``frame`` on ``init``'s ids, extended by the ids it never had (appended)."""
    _index(frame.head(0), user, item)  # the columns exist
    out = []
    for column, known in ((user, init.users), (item, init.items)):
        index = pd.Index(known)
        new = pd.Index(pd.unique(frame[column])).difference(index, sort=False)
        ids = index.append(new)
        out.append((list(ids), ids.get_indexer(frame[column]).astype(np.int64)))
    (users, u), (items, i) = out
    return users, items, u, i


def _copy_rows(net: Any, parent: Any) -> None:
    """The parent's embeddings and biases into the first rows of ``net``'s."""
    import torch

    with torch.no_grad():
        for name in ("user", "item", "user_bias", "item_bias"):
            src = getattr(parent, name).weight
            getattr(net, name).weight[: src.shape[0]] = src


def _seen_and_popular(
    u: np.ndarray, i: np.ndarray, n_items: int
) -> tuple[dict[int, np.ndarray], np.ndarray]:
    pairs = pd.DataFrame({"u": u, "i": i}).drop_duplicates()
    seen = {int(k): np.sort(g["i"].to_numpy()) for k, g in pairs.groupby("u")}  # type: ignore[arg-type]
    counts = np.bincount(pairs["i"].to_numpy(), minlength=n_items)
    popular = np.lexsort((np.arange(n_items), -counts))  # most users first, then by index
    return seen, popular


def most_popular(frame: pd.DataFrame, user: str, item: str) -> Recommender:
    """The baseline: every user gets the items most users interacted with."""
    users, items, u, i = _index(frame, user, item)
    seen, popular = _seen_and_popular(u, i, len(items))
    return Recommender(users, items, popular, seen)


def fit_mf(
    frame: pd.DataFrame,
    user: str,
    item: str,
    rating: str | None = None,
    *,
    min_rating: float | None = None,
    dim: int = 32,
    epochs: int = 20,
    lr: float = 0.01,
    batch_size: int = 4096,
    weight_decay: float = 1e-5,
    seed: int = 0,
    threads: int | None = 1,
    init: Recommender | None = None,
) -> Recommender:
    """Matrix factorization trained by BPR on the observed (user, item) pairs.

    ``init``: fine-tune that recommender instead of starting afresh (its users and items
    keep their embeddings, new ones are added; what each user saw is the union; the
    popular order is this data's). Its ``dim`` must be ``dim``."""
    import torch

    from loopml.registry.flavors.torch_nets import MatrixFactorization
    from loopml.train.deep.loop import cpu_threads

    data = frame
    if rating is not None and min_rating is not None:
        if rating not in frame.columns:
            raise InvalidInputError(
                f"rating column {rating!r} is not in the interactions",
                where={"column": rating},
                hint=f"Columns: {', '.join(map(str, frame.columns))}",
            )
        data = frame[frame[rating] >= min_rating]
    if init is not None:
        if init.net is None or init.dim != dim:
            raise InvalidInputError(
                f"the recommender to fine-tune has dim {init.dim}, not {dim}"
                if init.net is not None
                else "the recommender to fine-tune has no network (most popular)",
                where={"field": "model.params.dim"},
                hint=f"Set dim: {init.dim} to continue it, or train from scratch",
            )
        users, items, u, i = _index_onto(data, user, item, init)
    else:
        users, items, u, i = _index(data, user, item)
    if len(users) < 1 or len(items) < 2:
        raise InvalidInputError(
            "the interactions need at least one user and two items",
            where={"rows": len(data)},
            hint="Give more interactions (or a lower min_rating)",
        )
    seen, popular = _seen_and_popular(u, i, len(items))
    if init is not None:
        for key, before in init.seen.items():
            now = seen.get(key)
            seen[key] = before if now is None else np.union1d(before, now)
    with torch.random.fork_rng(devices=[]), cpu_threads(threads):
        torch.manual_seed(seed)
        net = MatrixFactorization(len(users), len(items), dim)
        if init is not None:
            _copy_rows(net, init.net)
        gen = torch.Generator().manual_seed(seed)
        ut, it = torch.from_numpy(u), torch.from_numpy(i)
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        history: list[dict[str, float]] = []
        for _ in range(epochs):
            total = 0.0
            order = torch.randperm(len(ut), generator=gen)
            for batch in order.split(batch_size):
                bu, bi = ut[batch], it[batch]
                bj = torch.randint(len(items), (len(batch),), generator=gen)
                diff = net(bu, bi) - net(bu, bj)
                reg = (
                    (net.user(bu) ** 2).sum()
                    + (net.item(bi) ** 2).sum()
                    + (net.item(bj) ** 2).sum()
                )
                loss = -torch.nn.functional.logsigmoid(diff).mean() + weight_decay * reg / len(
                    batch
                )
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(batch)
            history.append({"train_loss": total / max(len(ut), 1)})
    net.eval()
    return Recommender(users, items, popular, seen, net=net, dim=dim, history=history)


class MFRecommender:
    """``model.class: loopml.train.deep.MFRecommender``: the parameters of :func:`fit_mf`
    plus the id columns (``user``, ``item``) and the cut-off ``k`` of the ranking metrics;
    trained by :func:`loopml.train.deep.recommend.train_recommender` (``loopml train``)."""

    def __init__(
        self,
        user: str = "",
        item: str = "",
        min_rating: float | None = None,
        dim: int = 32,
        epochs: int = 20,
        lr: float = 0.01,
        batch_size: int = 4096,
        weight_decay: float = 1e-5,
        k: int = 10,
        random_state: int | None = None,
        threads: int | None = 1,
    ) -> None:
        self.user = user
        self.item = item
        self.min_rating = min_rating
        self.dim = dim
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.k = k
        self.random_state = random_state
        self.threads = threads

    def get_params(self, deep: bool = False) -> dict[str, Any]:
        return {k: getattr(self, k) for k in _MF_PARAMS}

    def fit(
        self, frame: pd.DataFrame, rating: str | None = None, init: Recommender | None = None
    ) -> Recommender:
        return fit_mf(
            frame,
            self.user,
            self.item,
            rating,
            min_rating=self.min_rating,
            dim=int(self.dim),
            epochs=int(self.epochs),
            lr=float(self.lr),
            batch_size=int(self.batch_size),
            weight_decay=float(self.weight_decay),
            seed=0 if self.random_state is None else int(self.random_state),
            threads=None if self.threads is None else int(self.threads),
            init=init,
        )


_MF_PARAMS = (
    *("user", "item", "min_rating", "dim", "epochs", "lr", "batch_size", "weight_decay"),
    *("k", "random_state", "threads"),
)


__all__ = [
    "ARCH",
    "META",
    "WEIGHTS",
    "MFRecommender",
    "Recommendation",
    "Recommender",
    "fit_mf",
    "most_popular",
]
