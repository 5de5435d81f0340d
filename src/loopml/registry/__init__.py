"""Model registry: versions, aliases, signatures, artifacts."""

from loopml.registry.bundle import ModelBundle, Prediction
from loopml.registry.card import model_card
from loopml.registry.compiled import CompiledModel, NativeFallback, Predictor, compile_bundle
from loopml.registry.models import (
    CHAMPION,
    LoadedModel,
    alias_history,
    archive_version,
    delete_alias,
    delete_version,
    list_models,
    load_model,
    register_model,
    resolve_version,
    restore_version,
    set_alias,
)
from loopml.registry.signature import FeatureField, Signature
from loopml.registry.transfer import export_model, import_model
from loopml.stores.base import ANY_VERSION

__all__ = [
    "ANY_VERSION",
    "CHAMPION",
    "CompiledModel",
    "FeatureField",
    "LoadedModel",
    "ModelBundle",
    "NativeFallback",
    "Prediction",
    "Predictor",
    "Signature",
    "alias_history",
    "archive_version",
    "compile_bundle",
    "delete_alias",
    "delete_version",
    "export_model",
    "import_model",
    "list_models",
    "load_model",
    "model_card",
    "register_model",
    "resolve_version",
    "restore_version",
    "set_alias",
]
