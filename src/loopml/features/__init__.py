"""Feature engineering: the kinds of columns and fitted feature pipelines.

The names below load on first use (PEP 562), so code that only reads values the way
training did (``loopml.features.values``, used by every signature check) does not import
scikit-learn: a ``loopml monitor`` or ``loopml data`` command that fits nothing never pays
for it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loopml.features.dates import DatetimeFeatures
    from loopml.features.spec import (
        FeatureWarning,
        build_transformer,
        infer_kind,
        prepare_frame,
        resolve_kinds,
    )
    from loopml.project.features import FeatureSpec

_WHERE = {
    "DatetimeFeatures": "loopml.features.dates",
    "FeatureSpec": "loopml.project.features",
    "FeatureWarning": "loopml.features.spec",
    "build_transformer": "loopml.features.spec",
    "infer_kind": "loopml.features.spec",
    "prepare_frame": "loopml.features.spec",
    "resolve_kinds": "loopml.features.spec",
}

__all__ = [
    "DatetimeFeatures",
    "FeatureSpec",
    "FeatureWarning",
    "build_transformer",
    "infer_kind",
    "prepare_frame",
    "resolve_kinds",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'loopml.features' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
