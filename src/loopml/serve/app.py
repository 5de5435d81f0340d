"""The model server: a plain Starlette app with a lean hot path.

Per request the server parses the body with orjson and goes through :meth:`ModelServer.infer`
(the V1, V2 and gRPC endpoints alike): the rows are validated straight into columns against
the model signature (no per-request DataFrame), admitted into the model's bounded queue (else
503 with ``Retry-After``), predicted by the micro-batcher (one call for concurrent requests,
with the compiled predictor where there is one), logged, counted, and answered with the
version in the body and the ``X-Loopml-Version`` header. Models load, compile and warm up at
startup, off the event loop, and are swapped by hot reload when their alias moves.

Each route is an :class:`Endpoint` that says what it needs: ``changes_state`` routes take the
bearer token, ``body="json"`` routes a JSON content type; the checks are wired when the
routes are built, so a new route gets them by saying so.
"""

from __future__ import annotations

import asyncio
import hmac
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from functools import partial
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from time import perf_counter
from typing import Any, Literal

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from loopml.errors import AuthError, InvalidInputError, LoopmlError, StoreError
from loopml.predictions import PredictionLogger
from loopml.registry.bundle import Prediction
from loopml.registry.signature import CheckedColumns, Columns
from loopml.serve.events import log
from loopml.serve.feedback import feedback_endpoint
from loopml.serve.gcpolicy import GcPolicy
from loopml.serve.http import (
    JSON,
    NOSNIFF,
    ClientGone,
    Guard,
    HostCheck,
    error_response,
    http_error,
    internal_error,
    json_response,
    loads,
    loopml_error,
    misdirected,
    nosniff_sender,
    overloaded,
    read_asgi_body,
    read_body,
    too_many_rows,
    unsupported_media_type,
)
from loopml.serve.metrics import CONTENT_TYPE, Metrics
from loopml.serve.openapi import DOCS_HEADERS, build_openapi, docs_page
from loopml.serve.recommend import recommend_endpoint
from loopml.serve.records import RowBlock
from loopml.serve.runtime import ModelRuntime, ModelSet, resolve_models
from loopml.serve.security import allowed_hosts as host_allow_list
from loopml.serve.security import is_json_type, resolve_token, split_hosts
from loopml.serve.v2 import (
    infer_response,
    model_metadata,
    parse_index_request,
    parse_infer_request,
    repository_index,
)
from loopml.utils import shorten
from loopml.workspace import Workspace

PREDICT_KEYS = frozenset(("instances",))
Handler = Callable[[Request], Awaitable[Response]]


def _version() -> str:
    try:
        return package_version("loopml")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0"


def split_ref(text: str) -> tuple[str, str | None]:
    """``a@2`` -> (``a``, ``2``); ``a`` -> (``a``, None): V1 paths may name a version."""
    name, at, version = text.partition("@")
    return name, (version if at else None)


@dataclass(slots=True)
class InferResult:
    """What :meth:`ModelServer.infer` answers: the version that answered, its prediction, one
    id per row, and per row the fields holding a value training never had (None: no row)."""

    runtime: ModelRuntime
    prediction: Prediction
    ids: list[str]
    unknown_fields: list[list[str]] | None


@dataclass(frozen=True)
class Endpoint:
    """A route and what it requires; :meth:`ModelServer.routes` wires the checks."""

    path: str
    handler: Handler
    methods: tuple[str, ...] = ("GET",)
    changes_state: bool = False  # needs the bearer token
    body: Literal["none", "json", "json-optional"] = "none"


class ModelServer:
    """State and endpoints of one server; :func:`create_app` wires it into Starlette."""

    def __init__(
        self,
        ws: Workspace,
        *,
        models: Mapping[str, str | Sequence[str]] | None,
        token: str | None,
        token_file: str | Path | None,
        host: str | None,
        allowed_hosts: Sequence[str] | None,
        log_predictions: bool,
        reload_interval: float,
        max_batch: int,
        max_wait_ms: float,
        max_rows: int | None,
        max_body_bytes: int | None,
        queue_rows: int | None = None,
        retry_after: int | None = None,
        worker: int = 0,
        grpc_port: int | None = None,
        grpc_reuse_port: bool = False,
        tune_gc: bool = False,
    ) -> None:
        settings = ws.settings
        max_rows = settings.serve_max_rows if max_rows is None else max_rows
        max_body = settings.serve_max_body_bytes if max_body_bytes is None else max_body_bytes
        queue_rows = settings.serve_queue_rows if queue_rows is None else queue_rows
        retry_after = settings.serve_retry_after if retry_after is None else retry_after
        grpc_port = settings.serve_grpc_port if grpc_port is None else grpc_port
        for what, value, ok in (
            ("grpc_port", grpc_port, isinstance(grpc_port, int) and 0 <= grpc_port < 65536),
            ("queue_rows", queue_rows, isinstance(queue_rows, int) and queue_rows >= 1),
            ("retry_after", retry_after, isinstance(retry_after, int) and retry_after >= 0),
            ("max_batch", max_batch, isinstance(max_batch, int) and max_batch >= 1),
            ("max_wait_ms", max_wait_ms, max_wait_ms >= 0),
            ("reload_interval", reload_interval, reload_interval >= 0),
            ("max_rows", max_rows, isinstance(max_rows, int) and max_rows >= 1),
            ("max_body_bytes", max_body, isinstance(max_body, int) and max_body >= 1),
        ):
            if not ok:
                raise InvalidInputError(
                    f"{what} is {value!r}",
                    where={"field": what},
                    hint="max_batch, max_rows, max_body_bytes and queue_rows are at least 1; "
                    "max_wait_ms, retry_after and reload_interval are >= 0 (reload_interval 0 "
                    "turns hot reload off)",
                )
        self.ws = ws
        self.models_arg = models
        self.host = host or settings.serve_host
        listed = (
            split_hosts(settings.serve_allowed_hosts) if allowed_hosts is None else allowed_hosts
        )
        self.allowed_hosts = host_allow_list(self.host, listed)
        self.token_info = resolve_token(ws, token=token, token_file=token_file)
        self._token = self.token_info.value.encode()
        self.log_predictions = log_predictions
        self.reload_interval = float(reload_interval)
        self.max_batch = int(max_batch)
        self.max_wait_ms = float(max_wait_ms)
        self.max_rows = int(max_rows)
        self.max_body_bytes = int(max_body)
        self.queue_rows = int(queue_rows)
        self.retry_after = int(retry_after)
        self.worker = int(worker)  # which of --workers N processes (its own log spool)
        self.grpc_port = int(grpc_port)  # 0: no gRPC endpoint
        self.grpc_reuse_port = bool(grpc_reuse_port)  # every worker binds the same port
        self.grpc_handle: Any = None  # the running gRPC server (loopml.serve.grpc_server)
        self.metrics = Metrics()
        # the garbage collector's settings, in a process the server owns (serve/gcpolicy.py)
        self.gc = GcPolicy(tune_gc)
        self._retired_seen = 0
        # (model, version, endpoint) -> the label tuples of an answered request's metrics
        self._ok_keys: dict[tuple[str, str, str], tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self.models: ModelSet | None = None
        self.logger: PredictionLogger | None = None
        self.executor: ThreadPoolExecutor | None = None
        self.startup_error: BaseException | None = None
        self.stopping = False
        self._shadow_tasks: set[asyncio.Task[None]] = set()  # held until each ends
        self.version = _version()
        self.metrics.add_gauge(
            "loopml_model_version",
            "Registry version each served reference answers with.",
            ("model", "reference"),
            lambda: {
                (s.name, s.full_ref): float(s.runtime.version)
                for s in (self.models.entries() if self.models else ())
                if s.runtime is not None
            },
        )
        self.metrics.add_gauge(
            "loopml_queue_rows",
            "Rows submitted to a model version and not yet answered (admission control "
            "refuses requests past serve_queue_rows).",
            ("model", "version"),
            self._queue_depths,
        )
        self.metrics.add_gauge(
            "loopml_prediction_log_buffered_rows",
            "Prediction log rows waiting in memory.",
            (),
            lambda: {(): float(getattr(self.logger, "buffered_rows", 0))} if self.logger else {},
        )

    def _queue_depths(self) -> dict[tuple[str, ...], float]:
        out: dict[tuple[str, ...], float] = {}
        for served in self.models.entries() if self.models else ():
            runtime = served.runtime
            if runtime is not None:
                out[runtime.labels] = out.get(runtime.labels, 0.0) + runtime.batcher.queued_rows
        return out

    @property
    def token(self) -> str:
        """The bearer token state-changing endpoints take."""
        return self.token_info.value

    def begin_stop(self) -> None:
        """The server is about to stop (SIGTERM): readiness answers 503 from now on, while
        requests are still served, so that a load balancer stops sending first."""
        self.stopping = True

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
                log=lambda: self.logger,
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
            self.logger = self._new_logger()
        self.gc.start()  # after loading: what is alive now is never walked again
        reloader = (
            loop.create_task(self._reload_loop(), name="loopml-reload")
            if self.reload_interval > 0
            else None
        )
        try:
            if self.grpc_port:
                from loopml.serve.grpc_server import start_grpc  # lazy: grpc is an extra

                try:
                    self.grpc_handle = await start_grpc(
                        self, self.host, self.grpc_port, reuse_port=self.grpc_reuse_port
                    )
                except BaseException as exc:
                    self.startup_error = exc
                    raise
            yield
        finally:
            self.stopping = True
            if self.grpc_handle is not None:  # in-flight gRPC calls finish within the grace
                await self.grpc_handle.stop(self.ws.settings.serve_shutdown_grace)
                self.grpc_handle = None
            if reloader is not None:
                reloader.cancel()
                with suppress(asyncio.CancelledError):
                    await reloader
            await models.aclose()
            if self.logger is not None:
                await loop.run_in_executor(None, self.logger.close)
            executor.shutdown(wait=True)
            self.gc.stop()

    def _new_logger(self) -> PredictionLogger:
        settings = self.ws.settings
        # the spooling logger (group commit, fsync policy): one spool per worker process
        return PredictionLogger(
            self.ws.lake,
            Path(self.ws.root) / "spool" / f"worker-{self.worker}",
            fsync=settings.log_fsync,
            fsync_ms=settings.log_fsync_ms,
            max_spool_bytes=settings.log_spool_max_bytes,
            seal_seconds=settings.log_flush_seconds,
            metrics=self.metrics,
        )

    async def _reload_loop(self) -> None:
        while True:
            await asyncio.sleep(self.reload_interval)
            if self.models is None:
                continue
            try:
                await self.models.reload_all()
            except Exception:  # the loop must survive anything
                log.exception("event=reload_pass_failed")
            self._note_swaps()

    def _note_swaps(self) -> None:
        """A version was retired since the last look: the GC policy refreezes later."""
        if self.models is not None and self.models.retired != self._retired_seen:
            self._retired_seen = self.models.retired
            self.gc.swapped()

    def _models(self) -> ModelSet:
        if self.models is None:
            raise StoreError(
                "the server has not loaded its models",
                hint="Wait until /v2/health/ready answers 200",
            )
        return self.models

    def _count_ok(self, model: str, version: str, endpoint: str, t0: float) -> None:
        """:meth:`_count` of an answered request (200), with its label tuples built once per
        (model, version, endpoint) instead of per request."""
        keys = self._ok_keys.get((model, version, endpoint))
        if keys is None:
            if len(self._ok_keys) >= 4096:  # a bound: names come from requests
                self._ok_keys.clear()
            keys = self._ok_keys[(model, version, endpoint)] = (
                (model, version, endpoint, "200"),
                (model, version, endpoint),
            )
        self.metrics.requests.inc(keys[0])
        self.metrics.latency.observe(keys[1], perf_counter() - t0)

    def _count(
        self, model: str, version: str, endpoint: str, status: int, t0: float, code: str = ""
    ) -> None:
        self.metrics.requests.inc((model, version, endpoint, str(status)))
        self.metrics.latency.observe((model, version, endpoint), perf_counter() - t0)
        if status >= 400:
            self.metrics.errors.inc((model, version, endpoint, code or str(status)))

    def _count_error(
        self, model: str, version: str, endpoint: str, exc: BaseException, t0: float
    ) -> None:
        if isinstance(exc, LoopmlError):
            self._count(model, version, endpoint, exc.http_status, t0, exc.code)
        else:
            self._count(model, version, endpoint, 500, t0, "internal_error")

    def _runtime(
        self, name: str, version: str | None, endpoint: str, t0: float, key: str | None = None
    ) -> ModelRuntime:
        """The version that answers (``version``, else as the deployment routes ``key``)."""
        models = self.models
        if models is not None and version is None and name not in models.rollouts:
            # the common case (a name's default, no deployment), without the lookups below
            group = models.served.get(name)
            if group:
                runtime = group[0].runtime
                if runtime is not None:
                    return runtime
        try:
            return self._models().route(name, version, key)[0]
        except LoopmlError as exc:
            self._count("_unknown", "", endpoint, exc.http_status, t0, exc.code)
            raise

    # -- the core: every protocol predicts through here -------------------------------------

    async def infer(
        self,
        name: str,
        version: str | None,
        rows: list[dict[str, Any]] | Columns | Mapping[str, Any] | RowBlock,
        *,
        endpoint: str,
        key: str | None = None,
        runtime: ModelRuntime | None = None,
        t0: float | None = None,
    ) -> InferResult:
        """Validate ``rows`` (records, or one list/array per feature), admit them (or raise
        :class:`~loopml.serve.http.OverloadedError`), predict them in the model's
        micro-batcher, log them (before returning) and count the request.

        ``version`` None is the name's default. ``runtime`` is the version the caller
        already picked (after its last await, so a hot swap cannot hand the rows to a
        closing batcher); ``t0`` when the request arrived (for the latency metrics).
        """
        start = perf_counter() if t0 is None else t0
        if runtime is None:
            runtime = self._runtime(name, version, endpoint, start, key)
        vtext = runtime.version_text
        checked: CheckedColumns | None = None
        try:
            reader = runtime.reader
            block: RowBlock | None
            if type(rows) is RowBlock:  # read by this runtime's reader (a V2 image tensor)
                block = rows
            else:
                block = (
                    reader.read(rows)
                    if reader is not None and type(rows) is list and len(rows) <= self.max_rows
                    else None
                )
            if block is not None:  # the plain case: every value a number, nothing to flag
                columns: Columns | RowBlock = block
                n = len(block)
            else:  # the general reader: anything else, and every error
                checked = self._check(runtime, rows)
                columns = checked.columns
                n = checked.rows
            batcher = runtime.batcher
            queued = batcher.queued_rows
            if queued and queued + n > self.queue_rows:
                self.metrics.rejected.inc(runtime.labels)
                raise overloaded(name, vtext, queued, self.queue_rows, self.retry_after)
            # predicted with concurrent requests, given ids and spooled to the prediction
            # log (one record per model call) before this returns
            pred, ids = await batcher.submit_ids(columns, n, start)
        except BaseException as exc:
            if isinstance(exc, Exception):
                self._count_error(name, vtext, endpoint, exc, start)
            raise
        flagged = checked is not None and checked.any_flagged
        unknown = checked.unknown_fields() if checked is not None and flagged else None
        self._count_ok(name, vtext, endpoint, start)
        models = self.models
        if version is None and models is not None and models.rollouts:  # a deployment
            shadow = models.shadow(name)
            if shadow is not None and shadow is not runtime:
                task = asyncio.get_running_loop().create_task(
                    self._shadow(name, shadow, columns, n, key)
                )
                self._shadow_tasks.add(task)
                task.add_done_callback(self._shadow_tasks.discard)
        return InferResult(runtime, pred, ids, unknown)

    async def _shadow(
        self, name: str, shadow: ModelRuntime, columns: Columns | RowBlock, n: int, key: str | None
    ) -> None:
        """Score an answered request on the shadow version and log it; never raises, never
        delays or changes the answer (a full shadow queue skips the request, counted)."""
        start = perf_counter()
        vtext = shadow.version_text
        try:
            batcher = shadow.batcher
            if batcher.queued_rows + n > self.queue_rows:
                self.metrics.rejected.inc(shadow.labels)
                return
            await batcher.submit_ids(columns, n, start)  # logged with ids of its own
            self._count_ok(name, vtext, "shadow", start)
        except Exception as exc:  # the shadow's failures never touch the answer
            self._count_error(name, vtext, "shadow", exc, start)

    def _check(self, runtime: ModelRuntime, rows: Any) -> CheckedColumns:
        if isinstance(rows, list):
            if len(rows) > self.max_rows:
                raise too_many_rows(len(rows), self.max_rows, "instances")
            return runtime.signature.check_records_columns(rows)
        if not isinstance(rows, Mapping):
            raise InvalidInputError(
                f"the rows are a {type(rows).__name__}, not records or columns",
                where={"field": "inputs"},
                hint="Send a list of objects, or one list of values per feature",
            )
        checked = runtime.signature.check_columns(rows)
        if checked.rows > self.max_rows:
            raise too_many_rows(checked.rows, self.max_rows, "inputs")
        return checked

    # -- v1 ---------------------------------------------------------------------------------

    def _instances(self, data: Any) -> Any:
        if not isinstance(data, dict):
            raise InvalidInputError(
                f"the request body is a JSON {type(data).__name__}, not an object",
                where={"field": "body"},
                hint='Send {"instances": [{"feature": value, ...}]}',
            )
        if data.keys() != PREDICT_KEYS:
            unknown = sorted(set(data) - PREDICT_KEYS)
            if unknown:
                raise InvalidInputError(
                    f"unknown key {shorten(repr(unknown[0]))} in the request",
                    where={"field": unknown[0]},
                    hint='Send {"instances": [{"feature": value, ...}]}',
                )
        instances = data.get("instances")
        if isinstance(instances, list) and len(instances) > self.max_rows:
            raise too_many_rows(len(instances), self.max_rows, "instances")
        return instances

    async def v1_predict(self, request: Request) -> Response:
        t0 = perf_counter()
        body = await read_body(request, self.max_body_bytes)
        key = request.headers.get("x-loopml-key")
        content, runtime = await self._v1(request.path_params["name"], body, key, t0)
        return Response(content, media_type=JSON, headers=runtime.version_header)

    async def fast_predict(
        self, route: str, match: re.Match[str], scope: Scope, receive: Receive, send: Send
    ) -> None:
        """A predict request (V1 ``:predict`` or V2 ``/infer``) on the raw ASGI channel: the
        route's checks, errors and answer, without Starlette's routing, Request and Response
        objects (a large part of the server's time per request; see :class:`ServerApp`)."""
        t0 = perf_counter()
        try:
            headers = dict(scope["headers"])
            kind = headers.get(b"content-type")
            if kind != b"application/json":  # the usual value, else parsed
                text = None if kind is None else kind.decode("latin-1")
                if not is_json_type(text):
                    raise unsupported_media_type(text)
            body = await read_asgi_body(
                receive, headers.get(b"content-length"), self.max_body_bytes
            )
            raw_key = headers.get(b"x-loopml-key")
            key = None if raw_key is None else raw_key.decode("latin-1")
            if route == "v1":
                content, runtime = await self._v1(match.group(1), body, key, t0)
            else:
                binary = b"inference-header-content-length" in headers
                content, runtime = await self._v2(
                    match.group(1), match.group(2), body, key, binary, t0
                )
        except ClientGone:
            return
        except LoopmlError as exc:
            await error_response(scope, exc)(scope, receive, nosniff_sender(send))
            return
        except Exception as exc:  # never reaches uvicorn (it would drop the keep-alive)
            await internal_error(scope, receive, send, exc)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(content)).encode()),
                    (b"x-loopml-version", runtime.version_bytes),
                    NOSNIFF,
                ],
            }
        )
        await send({"type": "http.response.body", "body": content})

    async def _v1(
        self, ref: str, body: bytes, key: str | None, t0: float
    ) -> tuple[bytes, ModelRuntime]:
        name, version = split_ref(ref)
        # Pick the runtime after the last await before submitting: a hot swap between the
        # two would otherwise hand the rows to a batcher that is closing.
        runtime = self._runtime(name, version, "v1_predict", t0, key)
        try:
            instances = self._instances(loads(body))
            if not isinstance(instances, list):  # names what is wrong, as for records
                runtime.signature.check_records_columns(instances)
        except LoopmlError as exc:
            self._count_error(name, runtime.version_text, "v1_predict", exc, t0)
            raise
        result = await self.infer(
            name,
            version,
            instances,
            endpoint="v1_predict",
            key=key,
            runtime=runtime,
            t0=t0,
        )
        pred = result.prediction
        ids = result.ids
        labels = pred.labels.tolist()
        keys = runtime.class_keys
        if len(ids) == 1 and result.unknown_fields is None:  # the common request: one row
            entry: dict[str, Any] = {"prediction_id": ids[0], "prediction": labels[0]}
            if pred.probabilities is not None and keys is not None:
                (row,) = pred.probabilities.tolist()
                entry["probabilities"] = dict(zip(keys, row, strict=True))
            content = orjson.dumps(
                {"model": name, "version": runtime.version, "predictions": [entry]}
            )
            return content, runtime
        if pred.probabilities is not None and keys is not None:
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
        if result.unknown_fields is not None:  # the unknown policy is flag: which rows, why
            for entry, fields in zip(predictions, result.unknown_fields, strict=True):
                if fields:
                    entry["unknown_fields"] = fields
        content = orjson.dumps(
            {"model": name, "version": runtime.version, "predictions": predictions}
        )
        return content, runtime

    async def v1_reload(self, request: Request) -> Response:
        models = self._models()
        name, version = split_ref(request.path_params["name"])
        group = [models.pick(name, version)] if version is not None else models.get(name)
        entries = []
        for served in group:
            previous, current = await models.reload(served, retry_refused=True)
            entries.append(
                {
                    "reference": served.full_ref,
                    "previous_version": previous,
                    "version": current,
                    "changed": previous != current,
                }
            )
        body: dict[str, Any] = {"model": name, **entries[0], "entries": entries}
        if version is None:
            body["deployment_changed"] = await models.reload_deployment(name, strict=True)
            rollout = models.rollouts.get(name)
            body["deployment"] = None if rollout is None else rollout.deployment.to_dict()
        self._note_swaps()
        return json_response(body)

    async def v1_models(self, request: Request) -> Response:
        entries = self.models.entries() if self.models is not None else ()
        return json_response({"models": [s.describe() for s in entries]})

    def _authorize(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), self._token
        ):
            where = self.token_info.describe()
            raise AuthError(
                "missing or wrong bearer token" if header else "this endpoint needs a token",
                where={"header": "Authorization"},
                hint=f"Send 'Authorization: Bearer <token>' with the server's token ({where})",
            )

    # -- v2 ---------------------------------------------------------------------------------

    async def v2_infer(self, request: Request) -> Response:
        t0 = perf_counter()
        body = await read_body(request, self.max_body_bytes)
        content, runtime = await self._v2(
            request.path_params["name"],
            request.path_params.get("version"),
            body,
            request.headers.get("x-loopml-key"),
            "inference-header-content-length" in request.headers,
            t0,
        )
        return Response(content, media_type=JSON, headers=runtime.version_header)

    async def _v2(
        self,
        name: str,
        version: str | None,
        body: bytes,
        key: str | None,
        binary: bool,
        t0: float,
    ) -> tuple[bytes, ModelRuntime]:
        runtime = self._runtime(name, version, "v2_infer", t0, key)
        try:
            if binary:
                raise InvalidInputError(
                    "the binary tensor data extension is not supported",
                    where={"header": "Inference-Header-Content-Length"},
                    hint="Send the tensors as JSON data",
                )
            parsed = parse_infer_request(loads(body), runtime, self.max_rows, body)
        except LoopmlError as exc:
            self._count_error(name, runtime.version_text, "v2_infer", exc, t0)
            raise
        result = await self.infer(
            name,
            version,
            parsed.columns,
            endpoint="v2_infer",
            key=key,
            runtime=runtime,
            t0=t0,
        )
        content = orjson.dumps(infer_response(name, runtime, result.prediction, result.ids, parsed))
        return content, runtime

    async def v2_metadata(self, request: Request) -> Response:
        name = request.path_params["name"]
        models = self._models()
        runtime = models.runtime(name, request.path_params.get("version"))
        served = models.pick(name, request.path_params.get("version"))
        versions = [runtime.version_text]
        for other in models.get(name):
            text = other.runtime.version_text if other.runtime is not None else None
            if text is not None and text not in versions:
                versions.append(text)
        return json_response(model_metadata(name, served.full_ref, runtime, versions))

    async def v2_model_ready(self, request: Request) -> Response:
        name = request.path_params["name"]
        served = self._models().pick(name, request.path_params.get("version"))
        ready = served.ready and not self.stopping
        return json_response({"name": name, "ready": ready}, 200 if ready else 503)

    async def v2_repository_index(self, request: Request) -> Response:
        body = await read_body(request, self.max_body_bytes)
        if body.strip() and "content-type" not in request.headers:
            raise unsupported_media_type(None)  # a body must say it is JSON; none may be empty
        ready_only = parse_index_request(loads(body) if body.strip() else None)
        entries = list(self.models.entries()) if self.models is not None else []
        return json_response(repository_index(entries, ready_only))

    async def v2_server(self, request: Request) -> Response:
        return json_response({"name": "loopml", "version": self.version, "extensions": []})

    async def live(self, request: Request) -> Response:
        return json_response({"live": True})

    async def ready(self, request: Request) -> Response:
        ok = self.models is not None and self.models.ready and not self.stopping
        return json_response({"ready": ok}, 200 if ok else 503)

    # -- ops --------------------------------------------------------------------------------

    async def metrics_endpoint(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)

    async def openapi(self, request: Request) -> Response:
        return json_response(build_openapi(self.models, self.version))

    async def docs(self, request: Request) -> Response:
        page = docs_page(build_openapi(self.models, self.version))
        return Response(page, media_type="text/html; charset=utf-8", headers=DOCS_HEADERS)

    def endpoints(self) -> list[Endpoint]:
        """Every route with what it requires (see :class:`Endpoint`)."""
        post = ("POST",)
        infer = self.v2_infer
        return [
            Endpoint("/v1/models", self.v1_models),
            Endpoint("/v1/models/{name}:predict", self.v1_predict, post, body="json"),
            Endpoint(  # a read, as :predict is (serve/recommend.py)
                "/v1/models/{name}:recommend", partial(recommend_endpoint, self), post, body="json"
            ),
            Endpoint("/v1/models/{name}:reload", self.v1_reload, post, changes_state=True),
            Endpoint(
                "/v1/feedback",
                partial(feedback_endpoint, self),
                post,
                changes_state=True,
                body="json",
            ),
            Endpoint("/v2", self.v2_server),
            Endpoint("/v2/health/live", self.live),
            Endpoint("/v2/health/ready", self.ready),
            Endpoint("/v2/repository/index", self.v2_repository_index, post, body="json-optional"),
            Endpoint("/v2/models/{name}", self.v2_metadata),
            Endpoint("/v2/models/{name}/ready", self.v2_model_ready),
            Endpoint("/v2/models/{name}/infer", infer, post, body="json"),
            Endpoint("/v2/models/{name}/versions/{version}", self.v2_metadata),
            Endpoint("/v2/models/{name}/versions/{version}/ready", self.v2_model_ready),
            Endpoint("/v2/models/{name}/versions/{version}/infer", infer, post, body="json"),
            Endpoint("/metrics", self.metrics_endpoint),
            Endpoint("/openapi.json", self.openapi),
            Endpoint("/docs", self.docs),
        ]

    def _wire(self, endpoint: Endpoint) -> Handler:
        handler = endpoint.handler
        if endpoint.body == "json":
            inner = handler

            async def json_only(request: Request) -> Response:
                kind = request.headers.get("content-type")
                if not is_json_type(kind):
                    raise unsupported_media_type(kind)
                return await inner(request)

            handler = json_only
        elif endpoint.body == "json-optional":
            inner_opt = handler

            async def json_if_any(request: Request) -> Response:
                kind = request.headers.get("content-type")
                if kind is not None and not is_json_type(kind):
                    raise unsupported_media_type(kind)
                return await inner_opt(request)

            handler = json_if_any
        if endpoint.changes_state:
            protected = handler

            async def authorized(request: Request) -> Response:
                self._authorize(request)
                return await protected(request)

            handler = authorized
        return handler

    def routes(self) -> list[Route]:
        return [
            Route(e.path, self._wire(e), methods=list(e.methods), name=e.path)
            for e in self.endpoints()
        ]


V1_PREDICT = re.compile(r"^/v1/models/([^/]+):predict$")
V2_INFER = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")


class ServerApp(Starlette):
    """The Starlette app, with predict requests taken before its middleware: ``POST
    /v1/models/{name}:predict`` and ``POST /v2/models/{name}[/versions/{v}]/infer`` go
    straight to :meth:`ModelServer.fast_predict` after the Host check (``nosniff`` and the
    JSON 500 applied there too, as :class:`~loopml.serve.http.Guard` does for the rest).
    Starlette's middleware stack and the wrappers around ``send`` cost more per request than
    validating a row (see docs/serving-hotpath.md)."""

    server: ModelServer
    hosts: HostCheck

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path = scope["path"]
            route = "v1"
            found = V1_PREDICT.match(path)
            if found is None:
                route = "v2"
                found = V2_INFER.match(path)
            if found is not None:
                if not self.hosts.host_ok(scope["headers"]):
                    await misdirected(scope, receive, send)
                    return
                scope["app"] = self
                await self.server.fast_predict(route, found, scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(
    ws: Workspace,
    *,
    models: Mapping[str, str | Sequence[str]] | None = None,
    token: str | None = None,
    token_file: str | Path | None = None,
    host: str | None = None,
    allowed_hosts: Sequence[str] | None = None,
    log_predictions: bool = True,
    reload_interval: float = 0.5,
    max_batch: int = 64,
    max_wait_ms: float = 2.0,
    max_rows: int | None = None,
    max_body_bytes: int | None = None,
    queue_rows: int | None = None,
    retry_after: int | None = None,
    worker: int = 0,
    grpc_port: int | None = None,
    grpc_reuse_port: bool = False,
    tune_gc: bool = False,
) -> Starlette:
    """The ASGI app serving ``models`` (served name -> ``NAME[@VERSION|@ALIAS]``, or a list
    of them: each version is addressable under the one name, the first is its default).

    ``models=None`` serves every registered model at its ``champion`` alias (and picks up
    models that gain one later). State-changing endpoints need a bearer token: ``token``,
    else ``token_file``, else ``LOOPML_SERVE_TOKEN``, else ``serve_token_file``, else one
    generated into ``<workspace>/serve-token``. Requests must carry a ``Host`` the server
    answers: ``host`` (the bound interface, default ``serve_host``) and ``allowed_hosts``
    (default ``serve_allowed_hosts``; ``["*"]`` for any). ``max_rows`` and
    ``max_body_bytes`` bound a request (defaults ``serve_max_rows``,
    ``serve_max_body_bytes``); ``queue_rows`` the rows waiting per model version before a
    request gets 503 with ``Retry-After: retry_after`` (``serve_queue_rows``,
    ``serve_retry_after``). ``grpc_port`` (default ``serve_grpc_port``; 0: off) also serves
    the Open Inference Protocol over gRPC. ``tune_gc`` sets the garbage collector for
    serving (:mod:`loopml.serve.gcpolicy`: process-wide, so only for a process the server
    owns, as ``loopml serve``'s). The server object is at ``app.state.server``.
    """
    server = ModelServer(
        ws,
        models=models,
        token=token,
        token_file=token_file,
        host=host,
        allowed_hosts=allowed_hosts,
        log_predictions=log_predictions,
        reload_interval=reload_interval,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        max_rows=max_rows,
        max_body_bytes=max_body_bytes,
        queue_rows=queue_rows,
        retry_after=retry_after,
        worker=worker,
        grpc_port=grpc_port,
        grpc_reuse_port=grpc_reuse_port,
        tune_gc=tune_gc,
    )
    app = ServerApp(
        routes=server.routes(),
        lifespan=server.lifespan,
        middleware=[Middleware(Guard, allowed_hosts=server.allowed_hosts)],
        exception_handlers={LoopmlError: loopml_error, HTTPException: http_error},
    )
    app.server = server
    app.hosts = HostCheck(server.allowed_hosts)
    app.state.server = server
    return app
