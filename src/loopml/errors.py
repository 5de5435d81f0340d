"""Errors a user can act on.

Every error loopml raises for a user's mistake derives from :class:`LoopmlError` and carries a
stable ``code``, the HTTP status it maps to, the CLI exit code, ``where`` (file, row, column,
field) and a ``hint`` saying how to fix it. Subclasses also inherit the matching built-in, so
``except ValueError`` keeps working for callers who do not know loopml.
"""

from __future__ import annotations

from typing import Any


class LoopmlError(Exception):
    """Root of every loopml error."""

    code: str = "loopml_error"
    http_status: int = 500
    exit_code: int = 2

    def __init__(
        self,
        message: str,
        *,
        where: dict[str, Any] | None = None,
        hint: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.where: dict[str, Any] = dict(where or {})
        self.hint = hint
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        text = self.message
        if self.where:
            loc = ", ".join(f"{k} {v}" for k, v in self.where.items())
            text = f"{text} ({loc})"
        if self.hint:
            text = f"{text}. {self.hint}" if not text.endswith(".") else f"{text} {self.hint}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """The JSON body the server answers with and ``--json`` prints."""
        return {"code": self.code, "message": self.message, "where": self.where, "hint": self.hint}


class InvalidInputError(LoopmlError, ValueError):
    """The user gave something malformed: a file, a request, a name, a config value."""

    code = "invalid_input"
    http_status = 422
    exit_code = 2


class NotFoundError(LoopmlError, LookupError):
    """A named thing (dataset, model, version, alias, workspace, file) does not exist."""

    code = "not_found"
    http_status = 404
    exit_code = 2


class ConflictError(LoopmlError):
    """The operation clashes with the current state (e.g. a concurrent write)."""

    code = "conflict"
    http_status = 409
    exit_code = 2


class ConfigError(InvalidInputError):
    """The project file or workspace settings are wrong."""

    code = "invalid_config"


class IntegrityError(LoopmlError):
    """Stored content does not match its recorded checksum, or is of an untrusted type."""

    code = "integrity_error"
    http_status = 500
    exit_code = 2


class UnsafeFormatError(IntegrityError):
    """An artifact holds a type or function loopml does not load without an explicit opt-in.

    ``types`` lists the refused names, exactly as an opt-in (``trust=[...]``) would name them.
    """

    code = "unsafe_format"

    def __init__(self, message: str, *, types: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.types: list[str] = list(types or [])


class StoreError(LoopmlError):
    """A backend (database, object store) failed or could not be reached."""

    code = "store_error"
    http_status = 503
    exit_code = 2


class GateFailedError(LoopmlError):
    """A model did not pass its evaluation gate. A finding, not a crash: exit code 1."""

    code = "gate_failed"
    http_status = 409
    exit_code = 1


class AuthError(LoopmlError):
    """Missing or wrong bearer token."""

    code = "unauthorized"
    http_status = 401
    exit_code = 2


__all__ = [
    "AuthError",
    "ConfigError",
    "ConflictError",
    "GateFailedError",
    "IntegrityError",
    "InvalidInputError",
    "LoopmlError",
    "NotFoundError",
    "StoreError",
    "UnsafeFormatError",
]
