"""Serving: the HTTP model server, micro-batching, hot reload and the prediction log.

The names below load their modules on first use (PEP 562), so ``loopml predict``, which needs
only :mod:`loopml.serve.scoring`, does not import the HTTP server (Starlette, uvicorn, httpx).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loopml.predictions import PredictionLogger, read_prediction_log
    from loopml.serve.app import ModelServer, create_app
    from loopml.serve.server import BackgroundServer, run_server, start_background_server

_WHERE = {
    "BackgroundServer": "loopml.serve.server",
    "run_server": "loopml.serve.server",
    "start_background_server": "loopml.serve.server",
    "_uvicorn_server": "loopml.serve.server",
    "ModelServer": "loopml.serve.app",
    "create_app": "loopml.serve.app",
    "PredictionLogger": "loopml.predictions",
    "read_prediction_log": "loopml.predictions",
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'loopml.serve' has no attribute {name!r}")
    value = getattr(importlib.import_module(where), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


__all__ = [
    "BackgroundServer",
    "ModelServer",
    "PredictionLogger",
    "create_app",
    "read_prediction_log",
    "run_server",
    "start_background_server",
]
