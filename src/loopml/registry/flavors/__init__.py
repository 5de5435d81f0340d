"""The flavors of model loopml saves, loads and serves, in one table.

:data:`FLAVORS` maps each flavor's name to where its class lives (``module:Class``), imported
only when used, so that an installed loopml does not import LightGBM or XGBoost until a
model of theirs is trained or loaded. Adding a flavor is a new module with a
:class:`~loopml.registry.flavors.base.Flavor` subclass and one line in this table; nothing
else branches on flavor names.
"""

from __future__ import annotations

import importlib
from functools import cache

from loopml.errors import IntegrityError
from loopml.registry.flavors.base import Flavor, class_path

FLAVORS: dict[str, str] = {
    "sklearn": "loopml.registry.flavors.sklearn:SklearnFlavor",
    "lightgbm": "loopml.registry.flavors.lightgbm:LightGBMFlavor",
    "xgboost": "loopml.registry.flavors.xgboost:XGBoostFlavor",
    # before torch, whose estimators share the loopml.train.deep prefix
    "keras": "loopml.registry.flavors.keras:KerasFlavor",
    "savedmodel": "loopml.registry.flavors.keras_savedmodel:SavedModelFlavor",
    "torch": "loopml.registry.flavors.torch:TorchFlavor",
    "recommender": "loopml.registry.flavors.torch_recommender:RecommenderFlavor",
    "onnx": "loopml.registry.flavors.onnx:OnnxFlavor",
    "online": "loopml.registry.flavors.river:OnlineFlavor",
}
#: what an estimator no flavor claims is saved as (a user's scikit-learn-style class,
#: which then needs ``trust`` to load)
DEFAULT_FLAVOR = "sklearn"


@cache
def get_flavor(name: str) -> Flavor:
    """The flavor called ``name``; KeyError when there is none."""
    module_name, _, attr = FLAVORS[name].partition(":")
    flavor: Flavor = getattr(importlib.import_module(module_name), attr)()
    return flavor


def flavor_names() -> tuple[str, ...]:
    return tuple(FLAVORS)


def flavor_for(estimator_or_class_path: object) -> Flavor:
    """The flavor of an estimator, class or import path (``DEFAULT_FLAVOR`` when none
    claims it)."""
    for name in FLAVORS:
        flavor = get_flavor(name)
        if flavor.handles(estimator_or_class_path):
            return flavor
    return get_flavor(DEFAULT_FLAVOR)


def flavor_roots() -> tuple[str, ...]:
    """The top-level packages whose estimators some flavor handles by import path."""
    return tuple(root for name in FLAVORS for root in get_flavor(name).roots)


def known_flavor(name: object, what: str) -> Flavor:
    """The flavor a bundle's manifest names; IntegrityError for one this loopml lacks."""
    if not isinstance(name, str) or name not in FLAVORS:
        raise IntegrityError(
            f"{what} has flavor {name!r}, which this loopml cannot read",
            where={"artifact": what},
            hint=f"Flavors of this loopml: {', '.join(FLAVORS)}. Upgrade loopml or retrain "
            "the model",
        )
    return get_flavor(name)


__all__ = [
    "DEFAULT_FLAVOR",
    "FLAVORS",
    "Flavor",
    "class_path",
    "flavor_for",
    "flavor_names",
    "flavor_roots",
    "get_flavor",
    "known_flavor",
]
