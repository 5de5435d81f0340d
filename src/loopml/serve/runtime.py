"""The models a server holds, and hot reload when an alias moves.

A :class:`ServedModel` is one name the server answers to, bound to a registry reference
(``cancer@champion``, ``cancer@3``). Its current :class:`ModelRuntime` (the loaded version,
its batcher and what the hot path precomputes) is replaced in one assignment when the alias
moves: requests that already hold the old runtime finish on it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from functools import partial
from typing import Any

from loopml.errors import InvalidInputError, LoopmlError, NotFoundError
from loopml.kinds import CATEGORICAL
from loopml.names import check_name, parse_ref
from loopml.registry import CHAMPION, LoadedModel, load_model, resolve_version
from loopml.serve.batching import MicroBatcher
from loopml.serve.metrics import Metrics
from loopml.workspace import Workspace

log = logging.getLogger("loopml.serve")


def label_datatype(classes: list[Any] | None, task: str) -> str:
    """The V2 datatype of the ``label`` output."""
    if task != "classification" or not classes:
        return "FP64"
    if all(isinstance(c, bool) for c in classes):
        return "BOOL"
    if all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return "INT64"
    if all(isinstance(c, int | float) and not isinstance(c, bool) for c in classes):
        return "FP64"
    return "BYTES"


class ModelRuntime:
    """One loaded version with its batcher; immutable once built."""

    def __init__(
        self,
        loaded: LoadedModel,
        executor: Executor,
        metrics: Metrics,
        served_name: str,
        *,
        max_batch: int,
        max_wait_ms: float,
    ) -> None:
        self.loaded = loaded
        self.signature = loaded.signature
        self.version = loaded.version
        self.version_text = str(loaded.version)
        self.platform = f"loopml-{loaded.bundle.flavor}"
        classes = self.signature.classes if self.signature.task == "classification" else None
        self.classes: list[Any] | None = list(classes) if classes else None
        self.class_keys: list[str] | None = [str(c) for c in classes] if classes else None
        self.label_datatype = label_datatype(self.classes, self.signature.task)
        self.numeric_only = all(f.kind != CATEGORICAL for f in self.signature.inputs)
        batch_hist = metrics.batch_rows
        req_hist = metrics.batch_requests
        labels = (served_name,)

        def on_batch(rows: int, requests: int) -> None:
            batch_hist.observe(labels, rows)
            req_hist.observe(labels, requests)

        self.batcher = MicroBatcher(
            loaded.bundle.predict_frame,
            executor,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            on_batch=on_batch,
        )


class ServedModel:
    """A served name bound to a registry reference, with its current runtime."""

    def __init__(self, name: str, ref: str) -> None:
        self.name = name
        self.ref = ref
        self.model_name, tag = parse_ref(ref, "model")
        self.tag = tag if tag is not None else CHAMPION
        self.pinned = self.tag.isdigit()
        self.runtime: ModelRuntime | None = None
        self.lock = asyncio.Lock()  # one reload of this model at a time
        self.last_error: str | None = None

    @property
    def ready(self) -> bool:
        return self.runtime is not None

    @property
    def full_ref(self) -> str:
        return f"{self.model_name}@{self.tag}"


def resolve_models(
    ws: Workspace, models: dict[str, str] | None, *, warn: bool = True
) -> dict[str, str]:
    """Served name -> reference; ``None`` means every model that has a champion."""
    if models is not None:
        if not isinstance(models, dict):
            raise InvalidInputError(
                f"models must map served names to references, got {type(models).__name__}",
                where={"field": "models"},
                hint='Pass e.g. {"cancer": "cancer@champion"}',
            )
        out: dict[str, str] = {}
        for served, ref in models.items():
            check_name(served, "served model name")
            if not isinstance(ref, str):
                raise InvalidInputError(
                    f"the reference of served model {served!r} must be a string",
                    where={"model": served},
                    hint="Write NAME, NAME@VERSION or NAME@ALIAS",
                )
            parse_ref(ref, "model")
            out[served] = ref
        return out
    out = {}
    for name in sorted({mv.name for mv in ws.metadata.list_model_versions()}):
        if CHAMPION in ws.metadata.get_aliases(name):
            out[name] = f"{name}@{CHAMPION}"
        elif warn:
            log.warning("not serving model %r: it has no %r alias", name, CHAMPION)
    return out


class ModelSet:
    """Every served model; loading, reloading and lookup."""

    def __init__(
        self,
        ws: Workspace,
        refs: dict[str, str],
        *,
        auto: bool,
        executor: Executor,
        metrics: Metrics,
        max_batch: int,
        max_wait_ms: float,
    ) -> None:
        self.ws = ws
        self.auto = auto
        self.executor = executor
        self.metrics = metrics
        self.max_batch = max_batch
        self.max_wait_ms = max_wait_ms
        self.served: dict[str, ServedModel] = {n: ServedModel(n, r) for n, r in refs.items()}
        self._skipped: dict[str, str] = {}  # auto mode: new models that failed to load

    def get(self, name: str) -> ServedModel:
        served = self.served.get(name)
        if served is None:
            names = ", ".join(sorted(self.served)) or "none"
            raise NotFoundError(
                f"this server does not serve a model named {name!r}",
                where={"model": name},
                hint=f"Served models: {names}",
            )
        return served

    def runtime(self, name: str) -> ModelRuntime:
        served = self.get(name)
        if served.runtime is None:
            raise NotFoundError(
                f"model {name!r} is not loaded",
                where={"model": name},
                hint=f"Loading failed: {served.last_error}" if served.last_error else None,
            )
        return served.runtime

    @property
    def ready(self) -> bool:
        return all(s.ready for s in self.served.values())

    def _build(self, served: ServedModel, loaded: LoadedModel) -> ModelRuntime:
        return ModelRuntime(
            loaded,
            self.executor,
            self.metrics,
            served.name,
            max_batch=self.max_batch,
            max_wait_ms=self.max_wait_ms,
        )

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    async def load_all(self) -> None:
        """Load every served model (in threads); the first failure is raised."""
        for served in self.served.values():
            loaded = await self._in_thread(load_model, self.ws, served.full_ref)
            served.runtime = self._build(served, loaded)
            log.info("serving %s as %r (version %d)", served.full_ref, served.name, loaded.version)

    async def reload(self, served: ServedModel) -> tuple[int | None, int | None]:
        """Re-resolve ``served``'s reference; load and swap when it moved.

        Returns (previous version, current version). Errors propagate to the caller.
        """
        async with served.lock:
            old = served.runtime
            previous = old.version if old is not None else None
            if served.pinned and old is not None:
                return previous, previous
            record = await self._in_thread(resolve_version, self.ws, served.full_ref)
            if old is not None and record.version == old.version:
                return previous, previous
            loaded = await self._in_thread(load_model, self.ws, f"{record.name}@{record.version}")
            served.runtime = self._build(served, loaded)  # the swap: one assignment
            served.last_error = None
            self.metrics.reloads.inc((served.name, "swapped"))
            log.info(
                "%r now serves %s version %d (was %s)",
                served.name,
                served.model_name,
                loaded.version,
                previous,
            )
            if old is not None:
                await old.batcher.aclose()  # requests already queued finish on the old one
            return previous, loaded.version

    async def reload_all(self) -> None:
        """One hot-reload pass over every served model; failures are logged and counted."""
        if self.auto:
            await self._discover()
        for served in list(self.served.values()):
            if served.pinned and served.runtime is not None:
                continue
            try:
                await self.reload(served)
            except LoopmlError as exc:
                self._reload_failed(served, exc)
            except Exception as exc:  # keep serving the old version whatever happens
                log.exception("reloading %r failed", served.name)
                self._reload_failed(served, exc)

    def _reload_failed(self, served: ServedModel, exc: BaseException) -> None:
        message = str(exc)
        if message != served.last_error:
            log.warning("could not reload %r (%s): %s", served.name, served.full_ref, message)
        served.last_error = message
        self.metrics.reloads.inc((served.name, "failed"))

    async def _discover(self) -> None:
        """Auto mode: start serving models that gained a champion since startup."""
        try:
            refs = await self._in_thread(partial(resolve_models, warn=False), self.ws, None)
        except Exception as exc:
            log.warning("could not list registered models: %s", exc)
            return
        for name, ref in refs.items():
            if name in self.served:
                continue
            served = ServedModel(name, ref)
            try:
                loaded = await self._in_thread(load_model, self.ws, served.full_ref)
            except Exception as exc:
                if self._skipped.get(name) != str(exc):
                    log.warning("not serving new model %r: %s", name, exc)
                self._skipped[name] = str(exc)
                self.metrics.reloads.inc((name, "failed"))
                continue
            self._skipped.pop(name, None)
            served.runtime = self._build(served, loaded)
            self.served[name] = served
            log.info("now serving %s as %r (version %d)", ref, name, loaded.version)

    async def aclose(self) -> None:
        for served in self.served.values():
            if served.runtime is not None:
                await served.runtime.batcher.aclose()
