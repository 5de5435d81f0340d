"""Running the model server: in the foreground (``loopml serve``, one or several worker
processes), or in a background thread (tests, notebooks, the quickstart)."""

from __future__ import annotations

import copy
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from importlib.util import find_spec
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import httpx

from loopml.errors import InvalidInputError, StoreError
from loopml.predictions import PredictionLogger, read_prediction_log
from loopml.registry import CHAMPION, resolve_version
from loopml.serve.app import ModelServer, create_app
from loopml.serve.events import log_event
from loopml.serve.runtime import resolve_models
from loopml.workspace import Workspace

log = logging.getLogger("loopml.serve")


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
    shutdown_grace: float = 30.0,
    on_signal: Callable[[], None] | None = None,
    drain_seconds: float = 0.0,
    configure_logging: bool = True,
) -> Any:
    """``configure_logging=False``: uvicorn leaves the process's logging alone (its
    ``dictConfig`` would close every handler the host process has, a server embedded in
    it: :func:`start_background_server`)."""
    import uvicorn

    class Server(uvicorn.Server):  # type: ignore[misc]
        """Calls ``on_ready`` once the port is bound and the models are loaded.

        On SIGTERM/SIGINT it calls ``on_signal`` at once (the app answers 503 on
        ``/v2/health/ready`` from then on, so a load balancer stops sending), keeps serving
        for ``drain_seconds``, then stops accepting and drains as uvicorn does; a second
        signal stops at once."""

        drain_until: float | None = None

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started and not self.should_exit and on_ready is not None:
                on_ready()

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if self.drain_until is None:
                if on_signal is not None:
                    on_signal()
                if drain_seconds > 0 and not self.should_exit:
                    self.drain_until = time.monotonic() + drain_seconds
                    self._captured_signals.append(sig)
                    log_event(logging.INFO, "draining", seconds=drain_seconds)
                    return
            super().handle_exit(sig, frame)

        async def on_tick(self, counter: int) -> bool:
            if self.drain_until is not None and time.monotonic() >= self.drain_until:
                self.should_exit = True
            return bool(await super().on_tick(counter))

    extra: dict[str, Any] = {} if log_config is None else {"log_config": log_config}
    if not configure_logging:
        extra["log_config"] = None
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        workers=1,
        lifespan="on",
        log_level=log_level,
        access_log=access_log,
        # X-Forwarded-For only names the client in the access log: without it, one ASGI
        # middleware less on every request
        proxy_headers=access_log,
        # no "server: uvicorn" on every answer: one header less to build and send per
        # request, and nothing that names the software to a scanner
        server_header=False,
        timeout_graceful_shutdown=max(1, round(shutdown_grace)),
        loop=event_loop(),
        http=http_parser(),
        **extra,
    )
    return Server(config)


def event_loop() -> str:
    """uvloop where it is installed (it saves CPU per request), else asyncio's own loop."""
    return "uvloop" if find_spec("uvloop") is not None else "asyncio"


def http_parser() -> str:
    """httptools (the C parser) where it is installed, else h11."""
    return "httptools" if find_spec("httptools") is not None else "h11"


@contextmanager
def _exit_zero_on_sigterm() -> Iterator[list[int]]:
    """While serving in the main thread, SIGTERM is a request to stop (uvicorn stops
    accepting, finishes in-flight requests, runs the shutdown that flushes the log), then
    the process ends normally (exit 0) instead of being killed by the re-raised signal."""
    got: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield got
        return

    def note(sig: int, frame: FrameType | None) -> None:
        got.append(sig)

    previous = signal.signal(signal.SIGTERM, note)
    try:
        yield got
    finally:
        signal.signal(signal.SIGTERM, previous)


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
    reload_interval: float = 0.5,
    max_batch: int = 64,
    max_wait_ms: float = 2.0,
    max_rows: int | None = None,
    max_body_bytes: int | None = None,
    log_level: str = "info",
    access_log: bool = False,
    on_ready: Callable[[str, ModelServer], None] | None = None,
    workers: int | None = None,
    shutdown_grace: float | None = None,
    queue_rows: int | None = None,
    grpc_port: int | None = None,
    drain_seconds: float | None = None,
) -> None:
    """Serve until interrupted or SIGTERM (uvicorn on uvloop and httptools where installed).
    Bad references fail before listening.

    ``on_ready(url, server)`` is called once the port is bound and every model is loaded
    and warmed up (``loopml serve`` prints "serving on ..." there). The ``loopml.serve``
    log (one structured line per event) goes to stderr with uvicorn's. ``workers`` (default
    ``serve_workers``) processes share the bound socket, each with its own models. SIGTERM
    stops accepting, lets in-flight requests finish for up to ``shutdown_grace`` seconds
    (``serve_shutdown_grace``), flushes the prediction log and returns. ``grpc_port``
    (default ``serve_grpc_port``; 0: off) serves the Open Inference Protocol over gRPC too.
    ``drain_seconds`` (default ``serve_drain_seconds``): after SIGTERM, how long readiness
    answers 503 while requests are still served, before the server stops accepting.
    """
    settings = ws.settings
    workers = settings.serve_workers if workers is None else workers
    grace = settings.serve_shutdown_grace if shutdown_grace is None else shutdown_grace
    drain = settings.serve_drain_seconds if drain_seconds is None else drain_seconds
    if not isinstance(drain, int | float) or not drain >= 0:
        raise InvalidInputError(
            f"drain_seconds is {drain!r}",
            where={"field": "drain_seconds"},
            hint="Use 0 (stop accepting at once on SIGTERM) or a positive number of seconds "
            "(--drain-seconds, serve_drain_seconds)",
        )
    drain = float(drain)
    if not isinstance(workers, int) or workers < 1:
        raise InvalidInputError(
            f"workers is {workers!r}",
            where={"field": "workers"},
            hint="Run at least 1 worker process (--workers N, serve_workers)",
        )
    for refs in resolve_models(ws, models).values():
        for ref in refs:
            resolve_version(ws, ref, default_alias=CHAMPION)
    options: dict[str, Any] = {
        "models": models,
        "token": token,
        "token_file": token_file,
        "host": host,
        "allowed_hosts": allowed_hosts,
        "log_predictions": log_predictions,
        "reload_interval": reload_interval,
        "max_batch": max_batch,
        "max_wait_ms": max_wait_ms,
        "max_rows": max_rows,
        "max_body_bytes": max_body_bytes,
        "queue_rows": queue_rows,
        "grpc_port": grpc_port,
        "grpc_reuse_port": workers > 1,  # every worker binds the gRPC port too
        "tune_gc": True,  # this process (each worker) is the server's own
    }
    app = create_app(ws, **options)
    model_server: ModelServer = app.state.server
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    url = _url(host, bound)

    def ready() -> None:
        log_event(
            logging.INFO,
            "ready",
            url=url,
            token=model_server.token_info.describe(),
            workers=workers,
        )
        if on_ready is not None:
            on_ready(url, model_server)

    config = _log_config(log_level)
    if workers > 1:
        try:
            _run_workers(
                ws, options, sock, workers, ready, log_level, access_log, config, grace, drain
            )
        finally:
            sock.close()
        return
    server = _uvicorn_server(
        app,
        host,
        bound,
        log_level,
        access_log,
        on_ready=ready,
        log_config=config,
        shutdown_grace=grace,
        on_signal=model_server.begin_stop,
        drain_seconds=drain,
    )
    try:
        with _exit_zero_on_sigterm():
            server.run(sockets=[sock])
    finally:
        sock.close()
    error = model_server.startup_error
    if error is not None:
        raise error


RESPAWN_LIMIT = 5  # worker restarts allowed within RESPAWN_WINDOW_S before the server gives up
RESPAWN_WINDOW_S = 60.0
POLL_S = 0.1  # how often the parent looks for exited workers


def _run_workers(
    ws: Workspace,
    options: dict[str, Any],
    sock: socket.socket,
    workers: int,
    ready: Callable[[], None],
    log_level: str,
    access_log: bool,
    log_config: dict[str, Any],
    grace: float,
    drain: float = 0.0,
) -> None:
    """Pre-fork ``workers`` processes serving the one bound socket (the kernel spreads the
    connections); this process waits, forwards SIGTERM/SIGINT, and returns when all exit.

    Each worker opens its own stores (connections are never shared across a fork) and loads
    its own models; ``ready`` runs once every worker has loaded and warmed up its models. A
    worker that dies after that (killed, out of memory) is replaced by a new process with
    the same index (so the same prediction log spool, which it recovers), at most
    :data:`RESPAWN_LIMIT` times in :data:`RESPAWN_WINDOW_S` seconds; past that the server
    stops. A worker that fails before every worker is ready stops the server.
    """
    host, port = sock.getsockname()[:2]
    url = _url(host, int(port))
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    by_pid: dict[int, int] = {}  # live worker pid -> its index
    stopping: list[int] = []

    def spawn(index: int) -> int:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                os.close(read_end)
                code = _worker_main(
                    ws,
                    options,
                    sock,
                    index,
                    write_end,
                    log_level,
                    access_log,
                    log_config,
                    grace,
                    drain,
                )
            finally:
                os._exit(code)
        by_pid[pid] = index
        return pid

    def forward(sig: int, frame: FrameType | None) -> None:
        stopping.append(sig)
        for pid in list(by_pid):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for index in range(workers):
            spawn(index)
        started = 0
        all_ready = False
        failed: list[int] = []
        restarts: list[float] = []
        halted = False  # a worker is down for good: the rest are being stopped
        while by_pid:
            try:
                started += len(os.read(read_end, 4096))
            except BlockingIOError:
                pass
            if not all_ready and started >= workers and not stopping and not halted:
                all_ready = True
                ready()
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:  # pragma: no cover - every child is gone
                break
            if pid == 0:
                time.sleep(POLL_S)
                continue
            if pid not in by_pid:  # pragma: no cover - not one of ours
                continue
            index = by_pid.pop(pid)
            code = os.waitstatus_to_exitcode(status)
            if stopping or halted or code == 0:
                continue
            now = time.monotonic()
            restarts = [t for t in restarts if now - t < RESPAWN_WINDOW_S]
            if all_ready and len(restarts) < RESPAWN_LIMIT:
                restarts.append(now)
                new = spawn(index)
                log_event(
                    logging.WARNING,
                    "worker_respawned",
                    worker=index,
                    pid=new,
                    died=pid,
                    status=code,
                )
                continue
            failed.append(code)
            halted = True  # one worker is down for good: stop the rest
            for other in list(by_pid):
                with suppress(ProcessLookupError):
                    os.kill(other, signal.SIGTERM)
        if failed and not all_ready:
            raise StoreError(
                f"a server worker failed to start (exit status {failed[0]})",
                where={"url": url},
                hint="See the server log above",
            )
        if failed:
            raise StoreError(
                f"a server worker exited with status {failed[0]}, after "
                f"{RESPAWN_LIMIT} restarts in {RESPAWN_WINDOW_S:g} s",
                where={"url": url},
                hint="See the server log above",
            )
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        os.close(read_end)
        os.close(write_end)


def _worker_main(
    ws: Workspace,
    options: dict[str, Any],
    sock: socket.socket,
    index: int,
    ready_fd: int,
    log_level: str,
    access_log: bool,
    log_config: dict[str, Any],
    grace: float,
    drain: float = 0.0,
) -> int:
    """One worker process: its own stores, app and uvicorn loop on the shared socket."""
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, signal.SIG_DFL)
    try:
        own = Workspace(ws.root, ws.settings)
        try:
            app = create_app(own, worker=index, **options)
            host, port = sock.getsockname()[:2]

            def ready() -> None:
                os.write(ready_fd, b"1")
                os.close(ready_fd)

            server = _uvicorn_server(
                app,
                host,
                int(port),
                log_level,
                access_log,
                on_ready=ready,
                log_config=log_config,
                shutdown_grace=grace,
                on_signal=app.state.server.begin_stop,
                drain_seconds=drain,
            )
            with _exit_zero_on_sigterm():
                server.run(sockets=[sock])
            return 0 if app.state.server.startup_error is None else 1
        finally:
            own.close()
    except BaseException:  # a worker reports and exits; the parent raises
        log.exception("event=worker_failed worker=%d", index)
        return 1


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
    # in the caller's process: its logging handlers stay open (uvicorn's default
    # dictConfig closes them all)
    server = _uvicorn_server(
        app, host, sock.getsockname()[1], log_level, access_log=False, configure_logging=False
    )

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
