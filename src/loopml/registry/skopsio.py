"""skops.io, imported without the default trust list that loopml never uses.

When imported, skops builds a list of every scikit-learn estimator that it trusts on every
load in addition to the types a caller passes, by calling ``sklearn.utils.all_estimators()``,
which imports every scikit-learn submodule: about 0.4-0.8 s, the largest part of registering a
LightGBM model (the training benchmark). loopml does not want that list: it names every type
it trusts (:mod:`loopml.registry.allowlist`, checked by :mod:`loopml.registry.safeload` before
skops sees a file). :func:`skops_io` imports skops.io with ``all_estimators`` answering an
empty list for the duration of the import, so skops's own default trusts no estimator:
faster, and stricter. (skops also lists numpy's and scipy's ufuncs by scanning every loaded
module, 0.2-0.7 s in a training process; that list cannot be skipped from outside.)
"""

from __future__ import annotations

import importlib
import sys
import threading
from types import ModuleType
from typing import Any

_lock = threading.Lock()


def _no_estimators(*args: Any, **kwargs: Any) -> list[tuple[str, type]]:
    return []


def skops_io() -> ModuleType:
    """The ``skops.io`` module (imported on first use)."""
    module = sys.modules.get("skops.io")
    if module is not None:
        return module
    with _lock:
        module = sys.modules.get("skops.io")
        if module is not None:
            return module
        import sklearn.utils

        original = sklearn.utils.all_estimators
        sklearn.utils.all_estimators = _no_estimators
        try:
            return importlib.import_module("skops.io")
        finally:
            sklearn.utils.all_estimators = original


__all__ = ["skops_io"]
