"""The matrix-factorization recommender as a model version: its in-memory form and flavor.

A :class:`Recommender` answers the top k items for a user from a trained
:class:`~loopml.registry.flavors.torch_nets.MatrixFactorization` network, or from popularity
alone (``net`` None, the baseline); a user never seen in training gets the popular items,
and the answer says so. It is written without pickle: the weights as safetensors
(``model.safetensors``) and a JSON file of the ids, the popular order and what each user saw
in training (``recommender.json``), both members of the version's bundle
(:class:`RecommenderFlavor`, flavor ``recommender``). The bundle's signature takes the user
and item columns, so ``:predict`` scores (user, item) pairs; ``:recommend``
(:mod:`loopml.serve.recommend`) answers top-k lists.

Training lives in :mod:`loopml.train.deep.recommender`; this module imports torch only when
a network is built or scored.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from loopml.errors import IntegrityError, InvalidInputError
from loopml.registry.flavors.base import Flavor, class_path

ARCH = "loopml.registry.flavors.torch_nets.MatrixFactorization"
WEIGHTS = "model.safetensors"
META = "recommender.json"
#: ``model.class`` of the recommender (trained by :mod:`loopml.train.deep.recommend`)
ESTIMATOR = "loopml.train.deep.MFRecommender"
FALLBACK_REASON = "user not seen in training: popular"


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
    #: one dict of metrics per epoch of the fit that made it (not saved: the run keeps it)
    history: list[dict[str, float]] = field(default_factory=list)
    _user_index: dict[Any, int] = field(init=False, repr=False)
    _item_index: dict[Any, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._user_index = {u: i for i, u in enumerate(self.users)}
        self._item_index = {v: i for i, v in enumerate(self.items)}

    @property
    def kind(self) -> str:
        return "most_popular" if self.net is None else "matrix_factorization"

    def knows(self, user: Any) -> bool:
        return _key(user) in self._user_index

    def recommend(self, user: Any, k: int = 10, *, exclude_seen: bool = True) -> Recommendation:
        """The top ``k`` items for ``user`` (leaving out what it saw in training when
        ``exclude_seen``); the popular items for a user never seen, with the reason."""
        return self.recommend_many([user], k, exclude_seen=exclude_seen)[0]

    def recommend_many(
        self, users: list[Any], k: int = 10, *, exclude_seen: bool = True
    ) -> list[Recommendation]:
        if k < 1:
            raise InvalidInputError(f"k is {k}", where={"field": "k"}, hint="Ask for k >= 1")
        known = [self._user_index.get(_key(u)) for u in users]
        rows = [i for i in known if i is not None]
        top = self._top(np.asarray(rows, dtype=np.int64), k, exclude_seen) if rows else {}
        out = []
        for user, idx in zip(users, known, strict=True):
            if idx is None:
                items = [self.items[j] for j in self.popular[:k]]
                out.append(Recommendation(user, items, None, False, FALLBACK_REASON))
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

    def score_pairs(self, users: Sequence[Any], items: Sequence[Any]) -> np.ndarray:
        """The score of each (user, item) pair: the network's for a known pair; the item's
        bias (its popularity in the model) for a user never seen; 0 for an unknown item."""
        u = np.array([self._user_index.get(_key(v), -1) for v in users], dtype=np.int64)
        i = np.array([self._item_index.get(_key(v), -1) for v in items], dtype=np.int64)
        out = np.zeros(len(u), dtype=np.float64)
        if self.net is None:
            pop = _popularity_scores(self.popular)
            out[i >= 0] = pop[i[i >= 0]]
            return out
        import torch

        both = (u >= 0) & (i >= 0)
        only_item = (u < 0) & (i >= 0)
        with torch.inference_mode():
            if both.any():
                ut, it = torch.from_numpy(u[both]), torch.from_numpy(i[both])
                out[both] = self.net(ut, it).numpy().astype(np.float64)
            if only_item.any():
                bias = self.net.item_bias.weight[:, 0].numpy().astype(np.float64)
                out[only_item] = bias[i[only_item]]
        return out

    # -- bytes ------------------------------------------------------------------------------

    def meta(self) -> dict[str, Any]:
        return {
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

    def members(self) -> dict[str, bytes]:
        """The files of this recommender: ``recommender.json`` and, with a network, its
        weights (``model.safetensors``)."""
        out = {META: json.dumps(self.meta()).encode()}
        if self.net is not None:
            from safetensors.torch import save

            state = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
            out[WEIGHTS] = save(state)
        return out

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, blob in self.members().items():
                zf.writestr(name, blob)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "recommender") -> Recommender:
        try:
            zf = zipfile.ZipFile(io.BytesIO(data))
            members = {n: zf.read(n) for n in (META, WEIGHTS) if n in zf.namelist()}
        except Exception as exc:  # BadZipFile and the like
            raise IntegrityError(
                f"{what} could not be read: {type(exc).__name__}: {exc}"[:400],
                where={"artifact": what},
                hint="The file is damaged or was not written by this loopml",
            ) from exc
        return cls.from_members(members, what)

    @classmethod
    def from_members(cls, members: Mapping[str, bytes], what: str = "recommender") -> Recommender:
        """The recommender from its files; IntegrityError naming the file for anything that
        is damaged, or weights that do not fit the architecture."""
        try:
            meta = json.loads(members[META])
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
                net.load_state_dict(load(members[WEIGHTS]), strict=True)
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
        except Exception as exc:  # KeyError, JSON, a state_dict that does not fit
            raise IntegrityError(
                f"{what} could not be read: {type(exc).__name__}: {exc}"[:400],
                where={"artifact": what},
                hint="The file is damaged or was not written by this loopml",
            ) from exc


class RecommenderFlavor(Flavor):
    """The MF recommender in a bundle: ``model.safetensors`` + ``recommender.json``. The
    bundle's feature pipeline passes the user and item columns through; :meth:`predict`
    scores each (user, item) row."""

    name = "recommender"
    members = (WEIGHTS, META)
    extra = "torch"

    def handles(self, estimator_or_class_path: object) -> bool:
        if isinstance(estimator_or_class_path, Recommender):
            return True
        return class_path(estimator_or_class_path) == ESTIMATOR

    def save(self, model: Any) -> dict[str, bytes]:
        if not isinstance(model, Recommender) or model.net is None:
            raise ValueError("only a trained matrix-factorization recommender is saved")
        return model.members()

    def manifest(self, model: Any) -> dict[str, Any]:
        return {"kind": model.kind, "weights": WEIGHTS, "ids": META}

    def types(self, meta: Mapping[str, Any]) -> set[str]:
        return {ARCH}

    def load(
        self,
        members: Mapping[str, bytes],
        *,
        trusted: Sequence[str],
        what: str,
        meta: Mapping[str, Any],
        checked: Mapping[str, set[str]] | None = None,
    ) -> Any:
        return Recommender.from_members(members, what)

    def predict(self, model: Any, x: Any, task: str) -> np.ndarray:
        arr = np.asarray(x, dtype=object)
        return model.score_pairs(list(arr[:, 0]), list(arr[:, 1]))  # type: ignore[no-any-return]


def _key(value: Any) -> Any:
    """An id as the maps hold it: a float that is a whole number is the int (JSON and the
    numeric signature give 196.0 for user 196)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _plain(values: list[Any]) -> list[Any]:
    return [v.item() if isinstance(v, np.generic) else v for v in values]


def _popularity_scores(popular: np.ndarray) -> np.ndarray:
    """Higher for more popular items (by rank)."""
    scores = np.empty(len(popular), dtype=np.float64)
    scores[popular] = -np.arange(len(popular), dtype=np.float64)
    return scores
