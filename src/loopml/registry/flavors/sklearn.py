"""scikit-learn estimators and pipelines, stored with skops (allowlisted types only)."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from loopml.registry.flavors.base import Flavor
from loopml.registry.safeload import load_skops

MEMBER = "model.skops"


class SklearnFlavor(Flavor):
    name = "sklearn"
    roots = ("sklearn",)
    members = (MEMBER,)
    skops_members = (MEMBER,)
    continues = "estimators with partial_fit (e.g. sklearn.linear_model.SGDClassifier)"
    needs_every_class = False  # partial_fit is told the classes

    def can_continue(self, cls: type) -> bool:
        return callable(getattr(cls, "partial_fit", None))

    def continue_training(
        self,
        model: Any,
        estimator: Any,
        x: Any,
        y: np.ndarray,
        *,
        task: str,
        classes: Sequence[Any] | None,
    ) -> Any:
        # the parent's fitted state goes on; this run's params do not replace it
        model = copy.deepcopy(model)
        if task == "classification":
            model.partial_fit(x, y, classes=np.asarray(classes))
        else:
            model.partial_fit(x, y)
        return model

    def save(self, model: Any) -> dict[str, bytes]:
        import skops.io as sio

        return {MEMBER: sio.dumps(model)}

    def load(
        self,
        members: Mapping[str, bytes],
        *,
        trusted: Sequence[str],
        what: str,
        meta: Mapping[str, Any],
        checked: Mapping[str, set[str]] | None = None,
    ) -> Any:
        names = None if checked is None else checked.get(MEMBER)
        return load_skops(members[MEMBER], MEMBER, what, trusted, names=names)

    def predict(self, model: Any, x: Any, task: str) -> np.ndarray:
        if task == "regression":
            return np.asarray(model.predict(x))
        return np.asarray(model.predict_proba(x), dtype=np.float64)
