"""Model registry: versions, aliases, signatures, artifacts."""

from loopml.registry.bundle import ModelBundle, Prediction
from loopml.registry.models import (
    CHAMPION,
    LoadedModel,
    list_models,
    load_model,
    register_model,
    resolve_version,
    set_alias,
)
from loopml.registry.signature import FeatureField, Signature

__all__ = [
    "CHAMPION",
    "FeatureField",
    "LoadedModel",
    "ModelBundle",
    "Prediction",
    "Signature",
    "list_models",
    "load_model",
    "register_model",
    "resolve_version",
    "set_alias",
]
