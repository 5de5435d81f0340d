"""Serving: the HTTP model server, micro-batching, hot reload and the prediction log."""

from __future__ import annotations

import copy
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from loopml.errors import InvalidInputError, StoreError
from loopml.predictions import PredictionLogger, read_prediction_log
from loopml.registry import CHAMPION, resolve_version
from loopml.serve.app import ModelServer, create_app
from loopml.serve.events import log_event
from loopml.serve.runtime import resolve_models
from loopml.workspace import Workspace


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say they are
    # TCP, and without it small responses wait ~40 ms for delayed ACKs (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InvalidInputError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            where={"host": host, "port": port},
            hint="Choose another --port (0 picks a free one) or stop what uses this one",
        ) from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _log_config(log_level: str) -> dict[str, Any]:
    """uvicorn's logging, plus the ``loopml`` loggers on the same stderr handler."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["loopml"] = {
        "handlers": ["default"],
        "level": log_level.upper(),
        "propagate": False,
    }
    return config


def _uvicorn_server(
    app: Any,
    host: str,
    port: int,
    log_level: str,
    access_log: bool,
    on_ready: Callable[[], None] | None = None,
    log_config: dict[str, Any] | None = None,
) -> Any:
    import uvicorn

    class Server(uvicorn.Server):  # type: ignore[misc]
        """Calls ``on_ready`` once the port is bound and the models are loaded."""

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started and not self.should_exit and on_ready is not None:
                on_ready()

    extra: dict[str, Any] = {} if log_config is None else {"log_config": log_config}
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        workers=1,
        lifespan="on",
        log_level=log_level,
        access_log=access_log,
        timeout_graceful_shutdown=10,
        **extra,
    )
    return Server(config)


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def run_server(
    ws: Workspace,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    models: Mapping[str, str | Sequence[str]] | None = None,
    token: str | None = None,
    token_file: str | Path | None = None,
    allowed_hosts: Sequence[str] | None = None,
    log_predictions: bool = True,
    reload_interval: float = 2.0,
    max_batch: int = 64,
    max_wait_ms: float = 2.0,
    max_rows: int | None = None,
    max_body_bytes: int | None = None,
    log_level: str = "info",
    access_log: bool = False,
    on_ready: Callable[[str, ModelServer], None] | None = None,
) -> None:
    """Serve until interrupted (uvicorn, one worker). Bad references fail before listening.

    ``on_ready(url, server)`` is called once the port is bound and every model is loaded
    and warmed up (``loopml serve`` prints "serving on ..." there). The ``loopml.serve``
    log (one structured line per event) goes to stderr with uvicorn's.
    """
    for refs in resolve_models(ws, models).values():
        for ref in refs:
            resolve_version(ws, ref, default_alias=CHAMPION)
    app = create_app(
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
    )
    model_server: ModelServer = app.state.server
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    url = _url(host, bound)

    def ready() -> None:
        log_event(logging.INFO, "ready", url=url, token=model_server.token_info.describe())
        if on_ready is not None:
            on_ready(url, model_server)

    server = _uvicorn_server(
        app, host, bound, log_level, access_log, on_ready=ready, log_config=_log_config(log_level)
    )
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    error = model_server.startup_error
    if error is not None:
        raise error


class BackgroundServer:
    """A server running in a thread of this process; ``stop()`` (or ``with``) ends it."""

    def __init__(self, app: Any, server: Any, thread: threading.Thread, sock: socket.socket):
        self.app = app
        self._server = server
        self._thread = thread
        self._sock = sock
        host, port = sock.getsockname()[:2]
        self.host = host
        self.port = int(port)
        self.url = _url(host, self.port)

    @property
    def model_server(self) -> ModelServer:
        return self.app.state.server  # type: ignore[no-any-return]

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the server to finish in-flight requests and shut down; wait for it."""
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():  # pragma: no cover - a stuck request
            self._server.force_exit = True
            self._thread.join(5.0)
        self._sock.close()

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_background_server(
    ws: Workspace,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    models: Mapping[str, str | Sequence[str]] | None = None,
    token: str | None = None,
    startup_timeout: float = 60.0,
    log_level: str = "warning",
    **options: Any,
) -> BackgroundServer:
    """Start uvicorn in a daemon thread and return once ``/v2/health/ready`` answers 200.

    ``port=0`` picks a free port (see ``.url``). ``options`` go to :func:`create_app`
    (``log_predictions``, ``reload_interval``, ``max_batch``, ``max_wait_ms``, ``max_rows``,
    ``token_file``, ``allowed_hosts``, ...). The bearer token is at
    ``.model_server.token``.
    """
    app = create_app(ws, models=models, token=token, host=host, **options)
    sock = _bind(host, port)
    server = _uvicorn_server(app, host, sock.getsockname()[1], log_level, access_log=False)

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except SystemExit:  # uvicorn exits when startup fails; the error is raised below
            pass

    thread = threading.Thread(target=run, name="loopml-server", daemon=True)
    thread.start()
    handle = BackgroundServer(app, server, thread, sock)
    deadline = time.monotonic() + startup_timeout
    with httpx.Client(timeout=2.0) as client:
        while True:
            error = app.state.server.startup_error
            if error is not None or not thread.is_alive():
                handle.stop()
                if error is not None:
                    raise error
                raise StoreError(
                    "the model server stopped while starting",
                    where={"url": handle.url},
                    hint="See the server log above",
                )
            try:
                if client.get(f"{handle.url}/v2/health/ready").status_code == 200:
                    return handle
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                handle.stop()
                raise StoreError(
                    f"the model server at {handle.url} was not ready after {startup_timeout:g}s",
                    where={"url": handle.url},
                    hint="Loading the models takes too long, or the port is blocked",
                )
            time.sleep(0.02)


__all__ = [
    "BackgroundServer",
    "ModelServer",
    "PredictionLogger",
    "create_app",
    "read_prediction_log",
    "run_server",
    "start_background_server",
]
