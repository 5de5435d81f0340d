"""The server's log: one structured line per event, ``event=NAME key=value ...`` (logfmt).

Logger ``loopml.serve``. Events: ``model_loaded``, ``alias_switch``, ``swap_refused``,
``reload_failed``, ``request_error`` (every 4xx and 5xx: method, path, status, code and
``where``; never a request body). Values with spaces or quotes are JSON-quoted and user
values are cut to a readable length, so a line stays one line.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from loopml.utils import shorten

log = logging.getLogger("loopml.serve")

MAX_VALUE = 200


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool | int | float):
        return str(value).lower() if isinstance(value, bool) else str(value)
    if isinstance(value, dict):
        value = ",".join(f"{k}:{v}" for k, v in value.items())
    text = shorten(str(value), MAX_VALUE)
    if not text or any(c in text for c in ' "=\n\r\t\\'):
        return orjson.dumps(text).decode()
    return text


def format_event(event: str, fields: dict[str, Any]) -> str:
    """``event=NAME k=v ...``; see the module docstring."""
    parts = [f"event={event}"]
    parts.extend(f"{k}={_value(v)}" for k, v in fields.items())
    return " ".join(parts)


def log_event(level: int, event: str, /, **fields: Any) -> None:
    """Log one structured line on ``loopml.serve`` (formatted only when enabled)."""
    if log.isEnabledFor(level):
        log.log(level, "%s", format_event(event, fields))
