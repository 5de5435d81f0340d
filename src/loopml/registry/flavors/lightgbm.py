"""LightGBM, in its own text model format; predicts with the Booster, as after a reload."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from loopml.registry.flavors.base import Flavor, binary_columns

MEMBER = "model.lgb.txt"


class LightGBMFlavor(Flavor):
    name = "lightgbm"
    roots = ("lightgbm",)
    members = (MEMBER,)
    extra = "lightgbm"
    continues = "any LightGBM estimator (init_model)"

    def defaults(self) -> dict[str, Any]:
        return {"verbose": -1}

    def prepare(self, estimator: Any) -> Any:
        return getattr(estimator, "booster_", estimator)

    def can_continue(self, cls: type) -> bool:
        return True

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
        # model.params' n_estimators more trees on top of the parent's (which is unchanged)
        return estimator.fit(x, y, init_model=model).booster_

    def save(self, model: Any) -> dict[str, bytes]:
        return {MEMBER: model.model_to_string().encode()}

    def load(
        self,
        members: Mapping[str, bytes],
        *,
        trusted: Sequence[str],
        what: str,
        meta: Mapping[str, Any],
        checked: Mapping[str, set[str]] | None = None,
    ) -> Any:
        import lightgbm

        return lightgbm.Booster(model_str=members[MEMBER].decode())

    def predict(self, model: Any, x: Any, task: str) -> np.ndarray:
        raw = np.asarray(model.predict(x), dtype=np.float64)
        return raw if task == "regression" else binary_columns(raw)
