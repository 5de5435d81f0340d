"""HTTP plumbing of the server: reading bodies, JSON errors, and the guard around the app.

Every error answers ``{"code", "message", "where", "hint"}`` (plus ``"error"`` on V2 paths,
per the spec), is logged as one ``request_error`` line, and leaves the keep-alive connection
usable: no exception ever reaches the ASGI server, which would close the connection (uvicorn
closes it when an exception escapes after the response started, and Starlette re-raises every
unhandled exception after answering 500).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loopml.errors import AuthError, InvalidInputError, LoopmlError
from loopml.serve.events import log, log_event
from loopml.serve.security import normalize_host
from loopml.utils import shorten

JSON = "application/json"
NOSNIFF = (b"x-content-type-options", b"nosniff")
MAX_MESSAGE = 1000  # characters of a message or hint in an error body
MAX_WHERE = 80  # characters of a value in ``where``


class InvalidJSONError(InvalidInputError):
    """The request body is not JSON at all."""

    code = "invalid_json"
    http_status = 400


class BodyTooLargeError(InvalidInputError):
    """The request body is larger than the server accepts."""

    code = "body_too_large"
    http_status = 413


class TooManyRowsError(InvalidInputError):
    """A request holds more rows than the server predicts at once."""

    code = "too_many_rows"
    http_status = 413


class UnsupportedMediaTypeError(InvalidInputError):
    """A JSON route got a body that does not say it is JSON."""

    code = "unsupported_media_type"
    http_status = 415


class MisdirectedRequestError(InvalidInputError):
    """The Host header names a host this server does not answer for."""

    code = "host_not_allowed"
    http_status = 421


class OverloadedError(LoopmlError):
    """A model's queue is full: the request is refused (503) instead of waiting unboundedly.

    ``retry_after`` (seconds) goes out as the ``Retry-After`` header; gRPC maps the error to
    UNAVAILABLE."""

    code = "overloaded"
    http_status = 503
    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        retry_after: int = 1,
        where: dict[str, Any] | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, where=where, hint=hint)
        self.retry_after = int(retry_after)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "retry_after": self.retry_after}


def overloaded(
    model: str, version: str, queued: int, limit: int, retry_after: int
) -> OverloadedError:
    return OverloadedError(
        f"model {shorten(model)!r} version {version} has {queued} rows waiting, its queue "
        f"holds {limit}: the server is over capacity",
        retry_after=retry_after,
        where={"model": model, "version": version},
        hint=f"Retry after {retry_after} s, send fewer concurrent requests, or add "
        "workers (--workers) or raise serve_queue_rows",
    )


def too_many_rows(rows: int, limit: int, field: str) -> TooManyRowsError:
    return TooManyRowsError(
        f"the request has {rows} rows, more than the {limit} this server predicts at once",
        where={"field": field},
        hint="Split the rows over several requests, or raise --max-rows (serve_max_rows)",
    )


def unsupported_media_type(value: str | None) -> UnsupportedMediaTypeError:
    got = "no Content-Type" if value is None else f"Content-Type {shorten(repr(value))}"
    return UnsupportedMediaTypeError(
        f"this endpoint takes a JSON body, and the request has {got}",
        where={"header": "Content-Type"},
        hint="Send the body with 'Content-Type: application/json'",
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing more than ``limit`` bytes before reading it all into memory."""
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit() or int(length) > limit:
            raise _too_large(length, limit)
        return await request.body()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(f"more than {size}", limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: str | int, limit: int) -> BodyTooLargeError:
    return BodyTooLargeError(
        f"the request body has {shorten(str(size), 40)} bytes, more than the {limit} this "
        "server accepts",
        where={"field": "body"},
        hint="Split the rows over several requests, or raise --max-body-bytes "
        "(serve_max_body_bytes)",
    )


def loads(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        hint = "Send a JSON document with Content-Type: application/json"
        if b"NaN" in body or b"Infinity" in body:
            hint = "NaN and Infinity are not JSON; send null for a missing value"
        elif not body:
            hint = "The body is empty; " + hint[0].lower() + hint[1:]
        raise InvalidJSONError(
            f"the request body is not valid JSON: {shorten(str(exc), 200)}",
            where={"field": "body"},
            hint=hint,
        ) from None


def json_response(content: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type=JSON)


# -- error bodies ---------------------------------------------------------------------------


def _bounded(body: dict[str, Any]) -> dict[str, Any]:
    """Cap what an error echoes: a huge value sent by a client never comes back whole."""
    for key in ("message", "hint"):
        if isinstance(body.get(key), str):
            body[key] = shorten(body[key], MAX_MESSAGE)
    where = body.get("where")
    if isinstance(where, dict):
        body["where"] = {
            shorten(str(k), MAX_WHERE): shorten(v, MAX_WHERE) if isinstance(v, str) else v
            for k, v in where.items()
        }
    return body


def _error_response(
    scope: Scope, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response:
    body = _bounded(body)
    path = scope.get("path", "")
    if path.startswith("/v2"):
        body["error"] = body["message"]  # the V2 spec's error object
    level = logging.ERROR if status >= 500 else logging.INFO
    log_event(
        level,
        "request_error",
        method=scope.get("method"),
        path=path,
        status=status,
        code=body.get("code"),
        where=body.get("where") or None,
    )
    return Response(orjson.dumps(body), status, headers=headers, media_type=JSON)


async def loopml_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, LoopmlError):  # pragma: no cover - registered for LoopmlError only
        raise exc
    return error_response(request.scope, exc)


def error_response(scope: Scope, exc: LoopmlError) -> Response:
    """The JSON answer to ``exc`` (logged as one ``request_error`` line)."""
    headers: dict[str, str] | None = None
    if isinstance(exc, AuthError):
        headers = {"WWW-Authenticate": "Bearer"}
    elif isinstance(exc, OverloadedError):
        headers = {"Retry-After": str(exc.retry_after)}
    return _error_response(scope, exc.http_status, exc.to_dict(), headers)


class ClientGone(Exception):
    """The client disconnected before its request body arrived: nothing to answer."""


async def read_asgi_body(receive: Receive, length: bytes | None, limit: int) -> bytes:
    """:func:`read_body` on the raw ASGI channel (for the predict fast path)."""
    if length is not None:
        text = length.decode("latin-1")
        if not text.isdigit() or int(text) > limit:
            raise _too_large(text, limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(f"more than {size}", limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "error"
    code = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
    path = request.url.path
    body = {
        "code": code,
        "message": f"{request.method} {shorten(path)}: {detail}",
        "where": {"path": path},
        "hint": "The endpoints are listed at /docs",
    }
    return _error_response(request.scope, status, body, getattr(exc, "headers", None))


def internal_error_body(scope: Scope, exc: BaseException) -> dict[str, Any]:
    return {
        "code": "internal_error",
        "message": f"the server failed to answer ({type(exc).__name__})",
        "where": {"path": scope.get("path", "")},
        "hint": "This is not a problem with the request; the server log has the details",
    }


# -- the guard ------------------------------------------------------------------------------


class HostCheck:
    """Whether a request's Host header names a host the server answers for (None: any)."""

    def __init__(self, allowed_hosts: frozenset[str] | None) -> None:
        self.allowed = allowed_hosts
        self._seen: dict[bytes, bool] = {}  # Host header -> allowed; clients repeat theirs

    def host_ok(self, headers: Iterable[tuple[bytes, bytes]]) -> bool:
        if self.allowed is None:
            return True
        for key, value in headers:
            if key == b"host":
                known = self._seen.get(value)
                if known is None:
                    known = normalize_host(value.decode("latin-1")) in self.allowed
                    if len(self._seen) < 256:
                        self._seen[value] = known
                return known
        return False


def nosniff_sender(send: Send) -> Send:
    """``send`` adding ``nosniff`` to the response's headers."""

    async def send_nosniff(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), NOSNIFF]
        await send(message)

    return send_nosniff


async def misdirected(scope: Scope, receive: Receive, send: Send) -> None:
    """The 421 answer to a request whose Host the server does not answer for."""
    host = next((v for k, v in scope["headers"] if k == b"host"), None)
    shown = "no Host header" if host is None else f"Host {host.decode('latin-1')!r}"
    body = {
        "code": MisdirectedRequestError.code,
        "message": f"this server does not answer requests for {shorten(shown)}",
        "where": {"header": "Host"},
        "hint": "Use the address the server was started on, or add the name with "
        "--allowed-host (serve_allowed_hosts)",
    }
    await _error_response(scope, MisdirectedRequestError.http_status, body)(
        scope, receive, nosniff_sender(send)
    )


def _log_internal(scope: Scope, exc: BaseException) -> None:
    log.error(
        "event=internal_error method=%s path=%s",
        scope.get("method"),
        scope.get("path"),
        exc_info=exc,
    )


async def internal_error(scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
    """Log ``exc`` and answer a JSON 500 (the caller knows no response has started)."""
    _log_internal(scope, exc)
    await _error_response(scope, 500, internal_error_body(scope, exc))(
        scope, receive, nosniff_sender(send)
    )


class Guard:
    """Pure ASGI middleware around the app: the Host check, ``nosniff`` on every response,
    and a JSON 500 for any exception, which it keeps from reaching the server."""

    def __init__(self, app: ASGIApp, allowed_hosts: frozenset[str] | None) -> None:
        self.app = app
        self.hosts = HostCheck(allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_nosniff(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), NOSNIFF]
            await send(message)

        if not self.hosts.host_ok(scope["headers"]):
            await misdirected(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send_nosniff)
        except Exception as exc:
            if started:  # part of the answer is out: nothing more can be said to the client
                _log_internal(scope, exc)
            else:
                await internal_error(scope, receive, send, exc)


__all__ = [
    "BodyTooLargeError",
    "ClientGone",
    "Guard",
    "HostCheck",
    "InvalidJSONError",
    "MisdirectedRequestError",
    "OverloadedError",
    "TooManyRowsError",
    "UnsupportedMediaTypeError",
    "error_response",
    "http_error",
    "internal_error",
    "json_response",
    "loads",
    "loopml_error",
    "misdirected",
    "nosniff_sender",
    "overloaded",
    "read_asgi_body",
    "read_body",
    "too_many_rows",
    "unsupported_media_type",
]
