"""The model server: a plain Starlette app with a lean hot path.

Per request the server parses the body with orjson, validates the rows against the model
signature, hands them to the model's micro-batcher (one predict call for concurrent
requests, in a worker thread), answers, and appends the rows to the prediction log buffer.
Models load at startup and are swapped by hot reload when their alias moves.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from time import perf_counter
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from loopml.errors import AuthError, InvalidInputError, LoopmlError, NotFoundError, StoreError
from loopml.predictions import PredictionLogger
from loopml.serve.metrics import CONTENT_TYPE, Metrics
from loopml.serve.openapi import build_openapi, docs_page
from loopml.serve.runtime import ModelRuntime, ModelSet, resolve_models
from loopml.serve.v2 import infer_response, model_metadata, parse_infer_request
from loopml.workspace import Workspace

log = logging.getLogger("loopml.serve")

JSON = "application/json"
PREDICT_KEYS = frozenset(("instances",))


def _version() -> str:
    try:
        return package_version("loopml")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0"


MAX_BODY_BYTES = 64 * 1024 * 1024


class InvalidJSONError(InvalidInputError):
    """The request body is not JSON at all."""

    code = "invalid_json"
    http_status = 400


class BodyTooLargeError(InvalidInputError):
    """The request body is larger than the server accepts."""

    code = "body_too_large"
    http_status = 413


def _too_large(size: int | str) -> BodyTooLargeError:
    return BodyTooLargeError(
        f"the request body has {size} bytes, more than the {MAX_BODY_BYTES} this server accepts",
        where={"field": "body"},
        hint="Split the instances over several requests",
    )


async def read_body(request: Request) -> bytes:
    """The body, refusing more than MAX_BODY_BYTES before reading it all into memory."""
    length = request.headers.get("content-length")
    if length is not None:
        if length.isdigit() and int(length) > MAX_BODY_BYTES:
            raise _too_large(length)
        return await request.body()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _too_large(f"more than {size}")
        chunks.append(chunk)
    return b"".join(chunks)


def new_prediction_ids(n: int) -> list[str]:
    """``n`` random 128-bit ids as 32 hex characters."""
    raw = os.urandom(16 * n).hex()
    return [raw[i : i + 32] for i in range(0, 32 * n, 32)]


def _loads(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        hint = "Send a JSON document with Content-Type: application/json"
        if b"NaN" in body or b"Infinity" in body:
            hint = "NaN and Infinity are not JSON; send null for a missing value"
        elif not body:
            hint = "The body is empty; " + hint[0].lower() + hint[1:]
        raise InvalidJSONError(
            f"the request body is not valid JSON: {exc}", where={"field": "body"}, hint=hint
        ) from None


def _json(content: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type=JSON)


class ModelServer:
    """State and endpoints of one server; :func:`create_app` wires it into Starlette."""

    def __init__(
        self,
        ws: Workspace,
        *,
        models: dict[str, str] | None,
        token: str | None,
        log_predictions: bool,
        reload_interval: float,
        max_batch: int,
        max_wait_ms: float,
    ) -> None:
        for what, value, ok in (
            ("max_batch", max_batch, isinstance(max_batch, int) and max_batch >= 1),
            ("max_wait_ms", max_wait_ms, max_wait_ms >= 0),
            ("reload_interval", reload_interval, reload_interval >= 0),
        ):
            if not ok:
                raise InvalidInputError(
                    f"{what} is {value!r}",
                    where={"field": what},
                    hint="max_batch is at least 1; max_wait_ms and reload_interval are >= 0 "
                    "(reload_interval 0 turns hot reload off)",
                )
        self.ws = ws
        self.models_arg = models
        self.token = token or ws.settings.serve_token or None
        self.log_predictions = log_predictions
        self.reload_interval = float(reload_interval)
        self.max_batch = int(max_batch)
        self.max_wait_ms = float(max_wait_ms)
        self.metrics = Metrics()
        self.models: ModelSet | None = None
        self.logger: PredictionLogger | None = None
        self.executor: ThreadPoolExecutor | None = None
        self.startup_error: BaseException | None = None
        self.stopping = False
        self.version = _version()
        self.metrics.add_gauge(
            "loopml_model_version",
            "Registry version each served model answers with.",
            ("model",),
            lambda: {
                (n,): float(s.runtime.version)
                for n, s in (self.models.served.items() if self.models else ())
                if s.runtime is not None
            },
        )
        self.metrics.add_gauge(
            "loopml_prediction_log_buffered_rows",
            "Prediction log rows waiting in memory.",
            (),
            lambda: {(): float(self.logger.buffered_rows)} if self.logger else {},
        )

    # -- lifecycle --------------------------------------------------------------------------

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        self.stopping = False
        self.startup_error = None
        executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="loopml-predict")
        try:
            refs = await loop.run_in_executor(None, resolve_models, self.ws, self.models_arg)
            models = ModelSet(
                self.ws,
                refs,
                auto=self.models_arg is None,
                executor=executor,
                metrics=self.metrics,
                max_batch=self.max_batch,
                max_wait_ms=self.max_wait_ms,
            )
            await models.load_all()
        except BaseException as exc:
            self.startup_error = exc
            executor.shutdown(wait=False)
            raise
        if not refs:
            log.warning("no models to serve: register one and set its champion alias")
        self.executor = executor
        self.models = models
        if self.log_predictions:
            settings = self.ws.settings
            self.logger = PredictionLogger(
                self.ws.lake,
                flush_rows=settings.log_flush_rows,
                flush_seconds=settings.log_flush_seconds,
                metrics=self.metrics,
            )
        reloader = (
            loop.create_task(self._reload_loop(), name="loopml-reload")
            if self.reload_interval > 0
            else None
        )
        try:
            yield
        finally:
            self.stopping = True
            if reloader is not None:
                reloader.cancel()
                with suppress(asyncio.CancelledError):
                    await reloader
            await models.aclose()
            if self.logger is not None:
                await loop.run_in_executor(None, self.logger.close)
            executor.shutdown(wait=True)

    async def _reload_loop(self) -> None:
        while True:
            await asyncio.sleep(self.reload_interval)
            if self.models is None:
                continue
            try:
                await self.models.reload_all()
            except Exception:  # the loop must survive anything
                log.exception("hot reload pass failed")

    def _models(self) -> ModelSet:
        if self.models is None:
            raise StoreError(
                "the server has not loaded its models",
                hint="Wait until /v2/health/ready answers 200",
            )
        return self.models

    def _count(self, model: str, version: str, endpoint: str, status: int, t0: float) -> None:
        self.metrics.requests.inc((model, version, endpoint, str(status)))
        self.metrics.latency.observe((model, endpoint), perf_counter() - t0)

    def _runtime(self, name: str, endpoint: str, t0: float) -> ModelRuntime:
        try:
            return self._models().runtime(name)
        except LoopmlError as exc:
            self._count("_unknown", "", endpoint, exc.http_status, t0)
            raise

    # -- v1 ---------------------------------------------------------------------------------

    async def v1_predict(self, request: Request) -> Response:
        t0 = perf_counter()
        name = request.path_params["name"]
        body = await read_body(request)
        # Pick the runtime after the last await before submitting: a hot swap between the
        # two would otherwise hand the rows to a batcher that is closing.
        runtime = self._runtime(name, "v1_predict", t0)
        try:
            data = _loads(body)
            if not isinstance(data, dict):
                raise InvalidInputError(
                    f"the request body is a JSON {type(data).__name__}, not an object",
                    where={"field": "body"},
                    hint='Send {"instances": [{"feature": value, ...}]}',
                )
            unknown = sorted(set(data) - PREDICT_KEYS)
            if unknown:
                raise InvalidInputError(
                    f"unknown key {unknown[0]!r} in the request",
                    where={"field": unknown[0]},
                    hint='Send {"instances": [{"feature": value, ...}]}',
                )
            frame = runtime.signature.validate_records(data.get("instances"))
            pred = await runtime.batcher.submit(frame)
        except LoopmlError as exc:
            self._count(name, runtime.version_text, "v1_predict", exc.http_status, t0)
            raise
        except Exception:
            self._count(name, runtime.version_text, "v1_predict", 500, t0)
            raise
        ids = new_prediction_ids(len(frame))
        labels = pred.labels.tolist()
        if pred.probabilities is not None and runtime.class_keys is not None:
            keys = runtime.class_keys
            predictions = [
                {
                    "prediction_id": i,
                    "prediction": label,
                    "probabilities": dict(zip(keys, p, strict=True)),
                }
                for i, label, p in zip(ids, labels, pred.probabilities.tolist(), strict=True)
            ]
        else:
            predictions = [
                {"prediction_id": i, "prediction": label}
                for i, label in zip(ids, labels, strict=True)
            ]
        content = orjson.dumps(
            {"model": name, "version": runtime.version, "predictions": predictions}
        )
        latency = perf_counter() - t0
        self.metrics.requests.inc((name, runtime.version_text, "v1_predict", "200"))
        self.metrics.latency.observe((name, "v1_predict"), latency)
        if self.logger is not None:
            loaded = runtime.loaded
            self.logger.log(loaded.name, loaded.version, frame, pred, ids, latency * 1000.0)
        return Response(content, media_type=JSON)

    async def v1_reload(self, request: Request) -> Response:
        self._authorize(request)
        models = self._models()
        served = models.get(request.path_params["name"])
        previous, current = await models.reload(served)
        return _json(
            {
                "model": served.name,
                "reference": served.full_ref,
                "previous_version": previous,
                "version": current,
                "changed": previous != current,
            }
        )

    def _authorize(self, request: Request) -> None:
        if self.token is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), self.token.encode()
        ):
            raise AuthError(
                "missing or wrong bearer token" if header else "this endpoint needs a token",
                where={"header": "Authorization"},
                hint="Send 'Authorization: Bearer <token>' with the server's token "
                "(--token or LOOPML_SERVE_TOKEN)",
            )

    # -- v2 ---------------------------------------------------------------------------------

    def _check_version(self, name: str, runtime: ModelRuntime, version: str | None) -> None:
        if version is not None and version != runtime.version_text:
            raise NotFoundError(
                f"model {name!r} is served at version {runtime.version}, not {version}",
                where={"model": name, "version": version},
                hint=f"Use /v2/models/{name}/versions/{runtime.version} or leave the version "
                "out; to serve another version, map a name to NAME@VERSION",
            )

    async def v2_infer(self, request: Request) -> Response:
        t0 = perf_counter()
        name = request.path_params["name"]
        body = await read_body(request)
        runtime = self._runtime(name, "v2_infer", t0)
        try:
            self._check_version(name, runtime, request.path_params.get("version"))
            if "inference-header-content-length" in request.headers:
                raise InvalidInputError(
                    "the binary tensor data extension is not supported",
                    where={"header": "Inference-Header-Content-Length"},
                    hint="Send the tensors as JSON data",
                )
            parsed = parse_infer_request(_loads(body), runtime)
            frame = runtime.signature.validate_records(parsed.records)
            pred = await runtime.batcher.submit(frame)
        except LoopmlError as exc:
            self._count(name, runtime.version_text, "v2_infer", exc.http_status, t0)
            raise
        except Exception:
            self._count(name, runtime.version_text, "v2_infer", 500, t0)
            raise
        ids = new_prediction_ids(len(frame))
        content = orjson.dumps(infer_response(name, runtime, pred, ids, parsed))
        latency = perf_counter() - t0
        self.metrics.requests.inc((name, runtime.version_text, "v2_infer", "200"))
        self.metrics.latency.observe((name, "v2_infer"), latency)
        if self.logger is not None:
            loaded = runtime.loaded
            self.logger.log(loaded.name, loaded.version, frame, pred, ids, latency * 1000.0)
        return Response(content, media_type=JSON)

    async def v2_metadata(self, request: Request) -> Response:
        name = request.path_params["name"]
        models = self._models()
        runtime = models.runtime(name)
        self._check_version(name, runtime, request.path_params.get("version"))
        return _json(model_metadata(name, models.get(name).full_ref, runtime))

    async def v2_model_ready(self, request: Request) -> Response:
        name = request.path_params["name"]
        served = self._models().get(name)
        if served.runtime is not None:
            self._check_version(name, served.runtime, request.path_params.get("version"))
        ready = served.ready and not self.stopping
        return _json({"name": name, "ready": ready}, 200 if ready else 503)

    async def v2_server(self, request: Request) -> Response:
        return _json({"name": "loopml", "version": self.version, "extensions": []})

    async def live(self, request: Request) -> Response:
        return _json({"live": True})

    async def ready(self, request: Request) -> Response:
        ok = self.models is not None and self.models.ready and not self.stopping
        return _json({"ready": ok}, 200 if ok else 503)

    # -- ops --------------------------------------------------------------------------------

    async def metrics_endpoint(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)

    async def openapi(self, request: Request) -> Response:
        return _json(build_openapi(self.models, self.version))

    async def docs(self, request: Request) -> Response:
        return HTMLResponse(docs_page(build_openapi(self.models, self.version)))

    def routes(self) -> list[Route]:
        return [
            Route("/v1/models/{name}:predict", self.v1_predict, methods=["POST"]),
            Route("/v1/models/{name}:reload", self.v1_reload, methods=["POST"]),
            Route("/v2", self.v2_server, methods=["GET"]),
            Route("/v2/health/live", self.live, methods=["GET"]),
            Route("/v2/health/ready", self.ready, methods=["GET"]),
            Route("/v2/models/{name}", self.v2_metadata, methods=["GET"]),
            Route("/v2/models/{name}/ready", self.v2_model_ready, methods=["GET"]),
            Route("/v2/models/{name}/infer", self.v2_infer, methods=["POST"]),
            Route("/v2/models/{name}/versions/{version}", self.v2_metadata, methods=["GET"]),
            Route(
                "/v2/models/{name}/versions/{version}/ready", self.v2_model_ready, methods=["GET"]
            ),
            Route("/v2/models/{name}/versions/{version}/infer", self.v2_infer, methods=["POST"]),
            Route("/metrics", self.metrics_endpoint, methods=["GET"]),
            Route("/openapi.json", self.openapi, methods=["GET"]),
            Route("/docs", self.docs, methods=["GET"]),
        ]


# -- error handlers -------------------------------------------------------------------------


def _error_body(request: Request, body: dict[str, Any], message: str) -> dict[str, Any]:
    if request.url.path.startswith("/v2"):
        body["error"] = message  # the V2 spec's error object
    return body


async def _loopml_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, LoopmlError):  # pragma: no cover - registered for LoopmlError only
        raise exc
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, AuthError) else None
    body = _error_body(request, exc.to_dict(), str(exc))
    return Response(orjson.dumps(body), exc.http_status, headers=headers, media_type=JSON)


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "error"
    code = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
    message = f"{request.method} {request.url.path}: {detail}"
    body = {
        "code": code,
        "message": message,
        "where": {"path": request.url.path},
        "hint": "The endpoints are listed at /docs",
    }
    headers = getattr(exc, "headers", None)
    return Response(
        orjson.dumps(_error_body(request, body, message)), status, headers=headers, media_type=JSON
    )


async def _internal_error(request: Request, exc: Exception) -> Response:
    message = f"the server failed to answer ({type(exc).__name__})"
    body = {
        "code": "internal_error",
        "message": message,
        "where": {"path": request.url.path},
        "hint": "This is not a problem with the request; the server log has the details",
    }
    return Response(orjson.dumps(_error_body(request, body, message)), 500, media_type=JSON)


def create_app(
    ws: Workspace,
    *,
    models: dict[str, str] | None = None,
    token: str | None = None,
    log_predictions: bool = True,
    reload_interval: float = 2.0,
    max_batch: int = 64,
    max_wait_ms: float = 2.0,
) -> Starlette:
    """The ASGI app serving ``models`` (served name -> ``NAME[@VERSION|@ALIAS]``).

    ``models=None`` serves every registered model at its ``champion`` alias (and picks up
    models that gain one later). ``token`` (else the workspace's ``serve_token``) protects the
    endpoints that change state. The server object is at ``app.state.server``.
    """
    server = ModelServer(
        ws,
        models=models,
        token=token,
        log_predictions=log_predictions,
        reload_interval=reload_interval,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
    )
    app = Starlette(
        routes=server.routes(),
        lifespan=server.lifespan,
        exception_handlers={
            LoopmlError: _loopml_error,
            HTTPException: _http_error,
            Exception: _internal_error,
        },
    )
    app.state.server = server
    return app
