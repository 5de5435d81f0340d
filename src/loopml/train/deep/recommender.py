"""A matrix-factorization recommender on (user, item[, rating]) interactions, and the
most-popular baseline it must beat.

:func:`fit_mf` learns user and item embeddings with biases
(:class:`~loopml.registry.flavors.torch_nets.MatrixFactorization`) by Bayesian personalised
ranking: each observed (user, item) should score above an item drawn at random. With a
``rating`` column and ``min_rating``, only ratings at or above it count as observed
(explicit feedback made implicit); without, every row does. :func:`most_popular` ranks items
by how many users interacted with them. Both answer :meth:`Recommender.recommend`; a user
never seen in training gets the popular items, and the answer says so.

A recommender saves to bytes without pickle: a zip of the weights (safetensors) and a JSON
file of the ids, the popular order and what each user has seen.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from loopml.errors import IntegrityError, InvalidInputError

ARCH = "loopml.registry.flavors.torch_nets.MatrixFactorization"
WEIGHTS = "model.safetensors"
META = "recommender.json"


@dataclass(frozen=True)
class Recommendation:
    user: Any
    items: list[Any]
    scores: list[float] | None  # None: the popular items (a user never seen in training)
    known_user: bool
    reason: str


@dataclass
class Recommender:
    """Top-k items per user: a trained MF network, or popularity alone (``net`` None)."""

    users: list[Any]
    items: list[Any]
    popular: np.ndarray  # item indices, most popular first
    seen: dict[int, np.ndarray]  # user index -> item indices in training
    net: Any = None
    dim: int = 0
    _user_index: dict[Any, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._user_index = {u: i for i, u in enumerate(self.users)}

    @property
    def kind(self) -> str:
        return "most_popular" if self.net is None else "matrix_factorization"

    def recommend(self, user: Any, k: int = 10, *, exclude_seen: bool = True) -> Recommendation:
        """The top ``k`` items for ``user`` (leaving out what it saw in training when
        ``exclude_seen``); the popular items for a user never seen, with the reason."""
        return self.recommend_many([user], k, exclude_seen=exclude_seen)[0]

    def recommend_many(
        self, users: list[Any], k: int = 10, *, exclude_seen: bool = True
    ) -> list[Recommendation]:
        if k < 1:
            raise InvalidInputError(f"k is {k}", where={"field": "k"}, hint="Ask for k >= 1")
        known = [self._user_index.get(u) for u in users]
        rows = [i for i in known if i is not None]
        top = self._top(np.asarray(rows, dtype=np.int64), k, exclude_seen) if rows else {}
        out = []
        for user, idx in zip(users, known, strict=True):
            if idx is None:
                items = [self.items[j] for j in self.popular[:k]]
                out.append(
                    Recommendation(user, items, None, False, "user not seen in training: popular")
                )
                continue
            picks, scores = top[idx]
            out.append(
                Recommendation(user, [self.items[j] for j in picks], scores, True, self.kind)
            )
        return out

    def _top(
        self, rows: np.ndarray, k: int, exclude_seen: bool
    ) -> dict[int, tuple[np.ndarray, list[float]]]:
        n_items = len(self.items)
        if self.net is None:
            scores = np.tile(_popularity_scores(self.popular), (len(rows), 1))
        else:
            import torch

            with torch.inference_mode():
                scores = self.net.all_scores(torch.from_numpy(rows)).numpy().astype(np.float64)
        if exclude_seen:
            for r, u in enumerate(rows):
                scores[r, self.seen.get(int(u), np.arange(0))] = -np.inf
        kk = min(k, n_items)
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        out = {}
        for r, u in enumerate(rows):
            order = part[r][np.argsort(-scores[r, part[r]], kind="stable")]
            order = order[np.isfinite(scores[r, order])]
            out[int(u)] = (order, [float(scores[r, j]) for j in order])
        return out

    # -- bytes ------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        meta = {
            "kind": self.kind,
            "architecture": None
            if self.net is None
            else {
                "class": ARCH,
                "args": {"n_users": len(self.users), "n_items": len(self.items), "dim": self.dim},
            },
            "users": _plain(self.users),
            "items": _plain(self.items),
            "popular": self.popular.tolist(),
            "seen": {str(u): v.tolist() for u, v in self.seen.items()},
        }
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(META, json.dumps(meta))
            if self.net is not None:
                from safetensors.torch import save

                zf.writestr(
                    WEIGHTS, save({k: v.contiguous() for k, v in self.net.state_dict().items()})
                )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "recommender") -> Recommender:
        try:
            zf = zipfile.ZipFile(io.BytesIO(data))
            meta = json.loads(zf.read(META))
            net = None
            arch = meta.get("architecture")
            if arch is not None:
                if arch.get("class") != ARCH:
                    raise IntegrityError(
                        f"{what} names architecture {arch.get('class')!r}, not {ARCH}",
                        where={"artifact": what, "file": META},
                        hint="The file was not written by loopml's recommender",
                    )
                from safetensors.torch import load

                from loopml.registry.flavors.torch_nets import MatrixFactorization

                net = MatrixFactorization(**arch["args"])
                net.load_state_dict(load(zf.read(WEIGHTS)), strict=True)
                net.eval()
            return cls(
                users=list(meta["users"]),
                items=list(meta["items"]),
                popular=np.asarray(meta["popular"], dtype=np.int64),
                seen={int(u): np.asarray(v, dtype=np.int64) for u, v in meta["seen"].items()},
                net=net,
                dim=0 if arch is None else int(arch["args"]["dim"]),
            )
        except IntegrityError:
            raise
        except Exception as exc:  # BadZipFile, KeyError, JSON, a state_dict that does not fit
            raise IntegrityError(
                f"{what} could not be read: {type(exc).__name__}: {exc}"[:400],
                where={"artifact": what},
                hint="The file is damaged or was not written by this loopml",
            ) from exc


def _plain(values: list[Any]) -> list[Any]:
    return [v.item() if isinstance(v, np.generic) else v for v in values]


def _popularity_scores(popular: np.ndarray) -> np.ndarray:
    """Higher for more popular items (by rank)."""
    scores = np.empty(len(popular), dtype=np.float64)
    scores[popular] = -np.arange(len(popular), dtype=np.float64)
    return scores


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
) -> Recommender:
    """Matrix factorization trained by BPR on the observed (user, item) pairs."""
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
    users, items, u, i = _index(data, user, item)
    if len(users) < 1 or len(items) < 2:
        raise InvalidInputError(
            "the interactions need at least one user and two items",
            where={"rows": len(data)},
            hint="Give more interactions (or a lower min_rating)",
        )
    seen, popular = _seen_and_popular(u, i, len(items))
    with torch.random.fork_rng(devices=[]), cpu_threads(threads):
        torch.manual_seed(seed)
        net = MatrixFactorization(len(users), len(items), dim)
        gen = torch.Generator().manual_seed(seed)
        ut, it = torch.from_numpy(u), torch.from_numpy(i)
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        for _ in range(epochs):
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
    net.eval()
    return Recommender(users, items, popular, seen, net=net, dim=dim)
