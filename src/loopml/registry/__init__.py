"""Model registry: versions, aliases, signatures, artifacts.

Names load on first use, so that importing one module of the registry (the bundle, when a
run trains a model) does not import the others (ONNX compiling, export and import).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loopml.utils import lazy_exports

if TYPE_CHECKING:
    from loopml.registry.bundle import ModelBundle, Prediction
    from loopml.registry.card import model_card
    from loopml.registry.compiled import (
        CompiledModel,
        NativeFallback,
        Predictor,
        compile_bundle,
    )
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

_LAZY = {
    "ANY_VERSION": "loopml.stores.base",
    "CHAMPION": "loopml.registry.models",
    "CompiledModel": "loopml.registry.compiled",
    "FeatureField": "loopml.registry.signature",
    "LoadedModel": "loopml.registry.models",
    "ModelBundle": "loopml.registry.bundle",
    "NativeFallback": "loopml.registry.compiled",
    "Prediction": "loopml.registry.bundle",
    "Predictor": "loopml.registry.compiled",
    "Signature": "loopml.registry.signature",
    "alias_history": "loopml.registry.models",
    "archive_version": "loopml.registry.models",
    "compile_bundle": "loopml.registry.compiled",
    "delete_alias": "loopml.registry.models",
    "delete_version": "loopml.registry.models",
    "export_model": "loopml.registry.transfer",
    "import_model": "loopml.registry.transfer",
    "list_models": "loopml.registry.models",
    "load_model": "loopml.registry.models",
    "model_card": "loopml.registry.card",
    "register_model": "loopml.registry.models",
    "resolve_version": "loopml.registry.models",
    "restore_version": "loopml.registry.models",
    "set_alias": "loopml.registry.models",
}

__getattr__ = lazy_exports(__name__, _LAZY)


def __dir__() -> list[str]:
    return sorted(__all__)


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
