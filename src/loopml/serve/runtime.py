"""The models a server holds, warm-up, and hot reload when an alias moves.

A served name (``cancer``) holds one or more :class:`ServedModel` entries, each bound to a
registry reference (``cancer@champion``, ``cancer@3``); the first is the name's default, the
others are addressed by version or alias (``/v2/models/cancer/versions/3/infer``,
``/v1/models/cancer@3:predict``). An entry's current :class:`ModelRuntime` (the loaded
version, its batcher and what the hot path precomputes) is replaced in one assignment when
its alias moves: requests that already hold the old runtime finish on it.

A version is swapped in (or served at startup) only after it has loaded and predicted its
warm-up rows; one that cannot is refused, logged once and counted
(``loopml_model_reloads_total{result="refused"}``), and the old version keeps serving.

A name whose default entry follows an alias also follows its model's *deployment*
(:mod:`loopml.registry.deployments`, ``loopml deploy``) when one is stored: a
:class:`Rollout` holds a runtime for every version the deployment names and its
:class:`~loopml.serve.rollout.Router` picks the one that answers each request (sticky by the
request's key); a shadow version scores each request too, without answering. A new revision
of the deployment is loaded and warmed up beside the old one, then swapped in by one
assignment; versions it no longer names finish their queued requests and are dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor
from concurrent.futures import Future as ThreadFuture
from functools import partial
from time import perf_counter
from typing import Any, Protocol

import numpy as np
import pandas as pd

from loopml.errors import (
    ConflictError,
    IntegrityError,
    InvalidInputError,
    LoopmlError,
    NotFoundError,
    StoreError,
)
from loopml.kinds import CATEGORICAL, DATETIME, NUMERIC, TEXT
from loopml.names import check_name, is_version, parse_ref
from loopml.registry import CHAMPION, LoadedModel, Signature, load_model, resolve_version
from loopml.registry.bundle import Prediction
from loopml.registry.deployments import get_deployment
from loopml.registry.signature import Columns
from loopml.serve.batching import MicroBatcher
from loopml.serve.events import log_event
from loopml.serve.ids import new_prediction_ids
from loopml.serve.metrics import Metrics
from loopml.serve.records import RowBlock, compile_reader
from loopml.serve.rollout import Router
from loopml.stores.records import Deployment
from loopml.utils import shorten
from loopml.workspace import Workspace

Refs = dict[str, list[str]]


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


def example_instance(sig: Signature) -> dict[str, Any]:
    """A valid instance: mid-range numbers, the first category (null where none is known),
    a fixed date."""
    out: dict[str, Any] = {}
    for f in sig.inputs:
        if f.kind == CATEGORICAL:
            out[f.name] = f.categories[0] if f.categories else None
        elif f.kind == DATETIME:
            out[f.name] = "2000-01-01T00:00:00"
        elif f.kind == TEXT:
            out[f.name] = "some text"
        elif f.min is not None and f.max is not None:
            out[f.name] = round((f.min + f.max) / 2, 6)
        else:
            out[f.name] = 0.0
    return out


def warm_up(loaded: LoadedModel) -> None:
    """Predict the bundle's warm-up rows; IntegrityError if the model cannot.

    A bundle kept sample rows at training time (``ModelBundle.warm_up``); an older one, or one
    built by hand without them, predicts one row made from its signature (mid-range numbers,
    first categories), so a model that loads but cannot predict is caught either way.
    """
    bundle = loaded.bundle
    if bundle.sample is not None:
        bundle.warm_up()
        return
    try:
        frame = loaded.signature.validate_records([example_instance(loaded.signature)])
    except LoopmlError:
        return  # no valid row can be made from this signature: nothing to warm up with
    try:
        bundle.predict_frame(frame)
    except Exception as exc:
        raise IntegrityError(
            f"{loaded.name}@{loaded.version} loads but cannot predict a row inside its "
            f"training ranges: {type(exc).__name__}: {shorten(str(exc), 200)}",
            where={"model": loaded.name, "version": loaded.version},
            hint="The estimator does not fit its feature pipeline or signature; retrain or "
            "re-register the model",
        ) from exc


def load_ready(ws: Workspace, ref: str) -> LoadedModel:
    """Load ``ref``, work out its predictor (compiled or native) and warm both up (blocking:
    run it in a thread, never on the event loop).

    A version never compiled before is compiled by a separate process, waited for here
    (:func:`~loopml.registry.compiled.serving_predictor`): converting holds the GIL for
    seconds, which in this process would slow every request while it runs."""
    loaded = load_model(ws, ref)
    warm_up(loaded)
    predictor = loaded.serving_predictor()  # what loaded.predictor answers from now on
    sample = loaded.bundle.sample
    if predictor is not None and sample is not None and len(sample):
        columns = {name: sample[name].to_numpy() for name in loaded.signature.names}
        try:
            predictor.predict_columns(columns)
        except Exception as exc:
            raise IntegrityError(
                f"{loaded.name}@{loaded.version}'s {getattr(predictor, 'kind', '')} predictor "
                f"cannot predict its sample rows: {type(exc).__name__}: "
                f"{shorten(str(exc), 200)}",
                where={"model": loaded.name, "version": loaded.version},
                hint="Serve it natively (serve_compile: native) or re-register the model",
            ) from exc
    return loaded


def columns_predictor(loaded: LoadedModel) -> tuple[Callable[[Columns], Prediction], str]:
    """The function that predicts :data:`Columns` for ``loaded``, and its kind.

    The loaded model's compiled predictor (``loaded.predictor``) where there is one, else the
    bundle's own ``predict_columns``, else the native bundle on one frame per call."""
    predictor = getattr(loaded, "predictor", None)
    if predictor is not None:
        return predictor.predict_columns, str(getattr(predictor, "kind", "native"))
    bundle = loaded.bundle
    direct = getattr(bundle, "predict_columns", None)
    if direct is not None:
        return direct, "native"
    return native_columns(loaded.signature, bundle.predict_frame), "native"


def frame_builder(signature: Signature) -> Callable[[Columns], pd.DataFrame]:
    """A function making the validated frame of :data:`Columns`, the cheap way: a frame from
    a dict of 30 one-row arrays costs ~300-500 us in pandas, from one 2-D block ~20-30 us."""
    names = signature.names
    index = pd.Index(names)
    from_arrays = getattr(pd.DataFrame, "_from_arrays", None)
    if all(f.kind == NUMERIC for f in signature.inputs):

        def numeric(columns: Columns) -> pd.DataFrame:
            block = np.column_stack([columns[n] for n in names])
            return pd.DataFrame(block, columns=index, copy=False)

        return numeric

    def mixed(columns: Columns) -> pd.DataFrame:
        arrays = [columns[n] for n in names]
        if from_arrays is not None:  # pandas' own constructor path, without the dict handling
            return from_arrays(  # type: ignore[no-any-return]
                arrays, columns=index, index=pd.RangeIndex(len(arrays[0])), verify_integrity=False
            )
        return pd.DataFrame(dict(zip(names, arrays, strict=True)), columns=index)

    return mixed


def native_columns(
    signature: Signature, predict_frame: Callable[[pd.DataFrame], Prediction]
) -> Callable[[Columns], Prediction]:
    """``predict_frame`` on one frame per call (see :func:`frame_builder`)."""
    build = frame_builder(signature)

    def predict(columns: Columns) -> Prediction:
        return predict_frame(build(columns))

    return predict


class PredictionSink(Protocol):
    """Where a runtime spools what it answers (:class:`loopml.predictions.PredictionLogger`)."""

    def log_call(
        self,
        model: str,
        version: int,
        columns: Columns | RowBlock,
        prediction: Prediction,
        ids: Sequence[str],
        requests: Sequence[tuple[float, int]],
    ) -> ThreadFuture[None] | None: ...


class ModelRuntime:
    """One loaded version with its batcher and what the hot path precomputes at load."""

    def __init__(
        self,
        loaded: LoadedModel,
        executor: Executor,
        metrics: Metrics,
        served_name: str,
        *,
        max_batch: int,
        max_wait_ms: float,
        log: Callable[[], PredictionSink | None] | None = None,
    ) -> None:
        self.loaded = loaded
        self.served_name = served_name
        self.signature = loaded.signature
        self.version = loaded.version
        self.version_text = str(loaded.version)
        self.version_header = {"X-Loopml-Version": self.version_text}
        self.version_bytes = self.version_text.encode()
        self.platform = f"loopml-{loaded.bundle.flavor}"
        classes = self.signature.classes if self.signature.task == "classification" else None
        self.classes: list[Any] | None = list(classes) if classes else None
        self.class_keys: list[str] | None = [str(c) for c in classes] if classes else None
        self.label_datatype = label_datatype(self.classes, self.signature.task)
        self.numeric = [f.name for f in self.signature.inputs if f.kind == NUMERIC]
        self.numeric_only = len(self.numeric) == len(self.signature.inputs)
        self.predict_columns, self.predictor_kind = columns_predictor(loaded)
        # the plain case of numeric records, read without the general reader (records.py)
        self.reader = compile_reader(self.signature)
        # metric label tuples, built once
        self.labels = (served_name, self.version_text)
        batch_hist = metrics.batch_rows
        req_hist = metrics.batch_requests
        labels = (served_name,)

        def on_batch(rows: int, requests: int) -> None:
            batch_hist.observe(labels, rows)
            req_hist.observe(labels, requests)

        model, version = loaded.name, loaded.version

        def answered(
            columns: Columns | RowBlock,
            pred: Prediction,
            ids: list[str],
            requests: Sequence[tuple[float, int]],
        ) -> ThreadFuture[None] | None:
            sink = log() if log is not None else None
            if sink is None:  # the server logs no predictions
                return None
            return sink.log_call(model, version, columns, pred, ids, requests)

        # every model call gets its ids and is spooled to the prediction log before its
        # requests are answered (one record per call; see MicroBatcher)
        # the compiled graph's one input is the block of every feature, in the records
        # reader's order: a call's rows go to it (and to the log) as that block, without
        # the per-feature views a BlockColumns would make on every call
        whole = getattr(getattr(loaded, "predictor", None), "takes_whole_block", None)
        blocks = self.reader is not None and whole is not None and whole == self.reader.names
        self.batcher = MicroBatcher(
            self.predict_columns,
            executor,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            on_batch=on_batch,
            ids=new_prediction_ids,
            answered=answered,
            blocks=blocks,
        )


class Rollout:
    """A served name's deployment: its router and a runtime for every version it names."""

    __slots__ = ("router", "runtimes")

    def __init__(self, router: Router, runtimes: dict[int, ModelRuntime]) -> None:
        self.router = router
        self.runtimes = runtimes

    @property
    def deployment(self) -> Deployment:
        return self.router.deployment

    def route(self, key: str | None) -> tuple[ModelRuntime, ModelRuntime | None]:
        """The runtime that answers a request with ``key``, and the shadow's (or None)."""
        runtime = self.runtimes[self.router.pick(key)]
        shadow = self.router.shadow
        return runtime, (self.runtimes.get(shadow) if shadow is not None else None)


class ServedModel:
    """One entry of a served name: a registry reference and its current runtime."""

    def __init__(self, name: str, ref: str) -> None:
        self.name = name
        self.ref = ref
        self.model_name, tag = parse_ref(ref, "model")
        self.tag = tag if tag is not None else CHAMPION
        self.pinned = is_version(self.tag)
        self.runtime: ModelRuntime | None = None
        self.lock = asyncio.Lock()  # one reload of this entry at a time
        self.last_error: str | None = None
        self.refused: int | None = None  # a version that failed to load or warm up

    @property
    def ready(self) -> bool:
        return self.runtime is not None

    @property
    def full_ref(self) -> str:
        return f"{self.model_name}@{self.tag}"

    def describe(self) -> dict[str, Any]:
        """One row of ``GET /v1/models``."""
        return {
            "name": self.name,
            "model": self.model_name,
            "reference": self.full_ref,
            "version": self.runtime.version if self.runtime is not None else None,
            "ready": self.ready,
            "last_error": self.last_error,
        }


def _check_ref(served: str, ref: Any) -> str:
    if not isinstance(ref, str):
        raise InvalidInputError(
            f"the reference of served model {served!r} must be a string",
            where={"model": served},
            hint="Write NAME, NAME@VERSION or NAME@ALIAS",
        )
    name, tag = parse_ref(ref, "model")
    return f"{name}@{tag or CHAMPION}"


def resolve_models(
    ws: Workspace, models: Mapping[str, str | Sequence[str]] | None, *, warn: bool = True
) -> Refs:
    """Served name -> its references (default first); ``None``: every model's champion.

    A served name may hold several references (``{"a": ["a@1", "a@2"]}``): each version is
    addressable under the one name. The same reference twice is served once.
    """
    if models is not None:
        if not isinstance(models, Mapping):
            raise InvalidInputError(
                f"models must map served names to references, got {type(models).__name__}",
                where={"field": "models"},
                hint='Pass e.g. {"cancer": "cancer@champion"} or {"a": ["a@1", "a@2"]}',
            )
        out: Refs = {}
        for served, refs in models.items():
            check_name(served, "served model name")
            listed = [refs] if isinstance(refs, str) else list(refs)
            if not listed:
                raise InvalidInputError(
                    f"served model {served!r} has no reference",
                    where={"model": served},
                    hint="Give it NAME, NAME@VERSION or NAME@ALIAS",
                )
            unique: list[str] = []
            for ref in listed:
                full = _check_ref(served, ref)
                if full not in unique:
                    unique.append(full)
            out[served] = unique
        return out
    out = {}
    for name in sorted({mv.name for mv in ws.metadata.list_model_versions()}):
        if CHAMPION in ws.metadata.get_aliases(name):
            out[name] = [f"{name}@{CHAMPION}"]
        elif warn:
            log_event(logging.WARNING, "not_served", model=name, reason=f"no {CHAMPION} alias")
    return out


class SwapRefusedError(ConflictError):
    """A new version failed to load or warm up; the old one keeps serving."""

    code = "swap_refused"


class ModelSet:
    """Every served model; loading, reloading and lookup."""

    def __init__(
        self,
        ws: Workspace,
        refs: Refs,
        *,
        auto: bool,
        executor: Executor,
        metrics: Metrics,
        max_batch: int,
        max_wait_ms: float,
        log: Callable[[], PredictionSink | None] | None = None,
    ) -> None:
        self.ws = ws
        self.auto = auto
        self.log = log  # the server's prediction log, looked up per call (None: no log)
        self.executor = executor
        self.metrics = metrics
        self.max_batch = max_batch
        self.max_wait_ms = max_wait_ms
        self.served: dict[str, list[ServedModel]] = {
            n: [ServedModel(n, r) for r in rs] for n, rs in refs.items()
        }
        self._skipped: dict[str, str] = {}  # auto mode: new models that failed to load
        self.rollouts: dict[str, Rollout] = {}  # served name -> its deployment, when stored
        self._refused_deployments: dict[str, int] = {}  # name -> revision that failed
        self.retired = 0  # versions whose batchers were closed by a swap (GcPolicy reads it)

    def entries(self) -> Iterator[ServedModel]:
        for group in list(self.served.values()):
            yield from group

    def get(self, name: str) -> list[ServedModel]:
        group = self.served.get(name)
        if group is None:
            names = ", ".join(sorted(self.served)) or "none"
            raise NotFoundError(
                f"this server does not serve a model named {shorten(repr(name))}",
                where={"model": name},
                hint=f"Served models: {names}",
            )
        return group

    def pick(self, name: str, version: str | None = None) -> ServedModel:
        """The entry of ``name`` at ``version`` (a version number or the entry's alias);
        the name's default entry when ``version`` is None."""
        group = self.get(name)
        if version is None:
            return group[0]
        for served in group:
            if served.runtime is not None and served.runtime.version_text == version:
                return served
        for served in group:
            if served.tag == version:
                return served
        shown = ", ".join(str(s.runtime.version) for s in group if s.runtime) or "none"
        raise NotFoundError(
            f"model {name!r} is served at version {shown}, not {shorten(version)}",
            where={"model": name, "version": version},
            hint=f"Use one of these versions, or leave the version out (/v2/models/{name}); "
            "to serve another version, add it with -m NAME@VERSION",
        )

    def route(
        self, name: str, version: str | None = None, key: str | None = None
    ) -> tuple[ModelRuntime, ModelRuntime | None]:
        """The runtime that answers a request for ``name`` (at ``version``, else as the
        name's deployment routes ``key``), and the shadow that also scores it (or None)."""
        rollout = self.rollouts.get(name)
        if rollout is not None:
            if version is None:
                return rollout.route(key)
            for runtime in rollout.runtimes.values():
                if runtime.version_text == version:
                    return runtime, None
        return self.runtime(name, version), None

    def shadow(self, name: str) -> ModelRuntime | None:
        """The version that scores every request of ``name`` without answering, if any."""
        rollout = self.rollouts.get(name)
        if rollout is None or rollout.router.shadow is None:
            return None
        return rollout.runtimes.get(rollout.router.shadow)

    def runtime(self, name: str, version: str | None = None) -> ModelRuntime:
        rollout = self.rollouts.get(name)
        if rollout is not None and version is None:
            return rollout.route(None)[0]
        served = self.pick(name, version)
        if served.runtime is None:
            raise NotFoundError(
                f"model {name!r} ({served.full_ref}) is not loaded",
                where={"model": name},
                hint=f"Loading failed: {served.last_error}" if served.last_error else None,
            )
        return served.runtime

    @property
    def ready(self) -> bool:
        return all(s.ready for s in self.entries())

    def _build(self, served: ServedModel, loaded: LoadedModel) -> ModelRuntime:
        return ModelRuntime(
            loaded,
            self.executor,
            self.metrics,
            served.name,
            max_batch=self.max_batch,
            max_wait_ms=self.max_wait_ms,
            log=self.log,
        )

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    async def _load(self, served: ServedModel, ref: str) -> LoadedModel:
        t0 = perf_counter()
        loaded: LoadedModel = await self._in_thread(load_ready, self.ws, ref)
        log_event(
            logging.INFO,
            "model_loaded",
            served=served.name,
            ref=served.full_ref,
            version=loaded.version,
            seconds=round(perf_counter() - t0, 3),
        )
        return loaded

    async def load_all(self) -> None:
        """Load and warm up every served model (in threads); the first failure is raised."""
        for served in self.entries():
            served.runtime = self._build(served, await self._load(served, served.full_ref))
        for name in list(self.served):
            await self.reload_deployment(name, strict=True)

    def _follows_deployment(self, name: str) -> ServedModel | None:
        """The default entry of ``name`` when it follows an alias (so a deployment of its
        model routes it); None for a name pinned to a version."""
        group = self.served.get(name)
        if not group or group[0].pinned:
            return None
        return group[0]

    async def reload_deployment(self, name: str, *, strict: bool = False) -> bool:
        """Pick up a new revision of ``name``'s deployment (or its removal); True when the
        routing changed. A revision whose versions fail to load is refused and logged once
        (raised when ``strict``), and the current routing keeps serving."""
        served = self._follows_deployment(name)
        if served is None:
            return False
        dep = await self._in_thread(get_deployment, self.ws, served.model_name)
        current = self.rollouts.get(name)
        if dep is None:
            if current is None:
                return False
            del self.rollouts[name]  # back to following the alias
            log_event(logging.INFO, "deployment_removed", served=name)
            await self._retire(current.runtimes.values(), keep=())
            return True
        if current is not None and current.deployment == dep:
            return False
        if self._refused_deployments.get(name) == dep.revision and not strict:
            return False
        try:
            router = Router(dep)
            old = current.runtimes if current is not None else {}
            runtimes: dict[int, ModelRuntime] = {}
            for version in sorted(router.versions):
                have = old.get(version)
                if have is None:
                    # a batcher of its own (the alias entry's closes when the alias moves);
                    # the loaded model is shared when the entry already holds that version
                    entry = served.runtime
                    if entry is not None and entry.version == version:
                        loaded = entry.loaded
                    else:
                        loaded = await self._load(served, f"{served.model_name}@{version}")
                    have = self._build(served, loaded)
                runtimes[version] = have
        except Exception as exc:
            self._refused_deployments[name] = dep.revision
            reason = str(exc) if isinstance(exc, LoopmlError) else f"{type(exc).__name__}: {exc}"
            self.metrics.reloads.inc((name, "refused"))
            log_event(
                logging.WARNING,
                "deployment_refused",
                served=name,
                revision=dep.revision,
                reason=shorten(reason, 300),
            )
            if strict:
                raise
            return False
        self._refused_deployments.pop(name, None)
        self.rollouts[name] = Rollout(router, runtimes)  # the swap: one assignment
        self.metrics.reloads.inc((name, "swapped"))
        log_event(
            logging.INFO,
            "deployment_switch",
            served=name,
            revision=dep.revision,
            mode=dep.mode,
            routes=" ".join(f"{v}={w:g}" for v, w in dep.routes),
            shadow=dep.shadow,
        )
        if current is not None:
            await self._retire(current.runtimes.values(), keep=runtimes.values())
        return True

    async def _retire(self, runtimes: Any, keep: Any) -> None:
        """Close the batchers of ``runtimes`` that neither ``keep`` nor an entry holds: their
        queued requests finish first; the versions are freed once no request holds them."""
        held = {id(r) for r in keep}
        for runtime in runtimes:
            if id(runtime) not in held:
                await runtime.batcher.aclose()
                self.retired += 1

    async def reload(
        self, served: ServedModel, *, retry_refused: bool = False
    ) -> tuple[int | None, int | None]:
        """Re-resolve ``served``'s reference; load, warm up and swap when it moved.

        Returns (previous version, current version). A new version that fails to load or
        warm up raises :class:`SwapRefusedError` and is not tried again by the periodic
        reload (``retry_refused`` asks again, as ``POST :reload`` does) until the alias moves.
        """
        async with served.lock:
            old = served.runtime
            previous = old.version if old is not None else None
            if served.pinned and old is not None:
                return previous, previous
            record = await self._in_thread(resolve_version, self.ws, served.full_ref)
            if old is not None and record.version == old.version:
                served.refused = None
                return previous, previous
            if served.refused == record.version and not retry_refused:
                return previous, previous
            try:
                loaded = await self._load(served, f"{record.name}@{record.version}")
            except Exception as exc:
                raise self._refuse(served, record.version, previous, exc) from exc
            served.runtime = self._build(served, loaded)  # the swap: one assignment
            served.last_error = None
            served.refused = None
            self.metrics.reloads.inc((served.name, "swapped"))
            log_event(
                logging.INFO,
                "alias_switch",
                served=served.name,
                ref=served.full_ref,
                previous=previous,
                version=loaded.version,
            )
            if old is not None:
                await old.batcher.aclose()  # requests already queued finish on the old one
                self.retired += 1
            return previous, loaded.version

    def _refuse(
        self, served: ServedModel, version: int, serving: int | None, exc: BaseException
    ) -> SwapRefusedError:
        reason = str(exc) if isinstance(exc, LoopmlError) else f"{type(exc).__name__}: {exc}"
        reason = shorten(reason, 300)
        if not isinstance(exc, StoreError):  # a store that is down may come back: retry
            served.refused = version
        served.last_error = f"version {version} refused: {reason}"
        self.metrics.reloads.inc((served.name, "refused"))
        log_event(
            logging.WARNING,
            "swap_refused",
            served=served.name,
            ref=served.full_ref,
            version=version,
            serving=serving,
            reason=reason,
        )
        still = f"still serving version {serving}" if serving is not None else "not serving it"
        return SwapRefusedError(
            f"{served.full_ref} moved to version {version}, which failed to load or warm up "
            f"({still}): {reason}",
            where={"model": served.name, "version": version},
            hint="Fix or retrain that version and move the alias again",
        )

    async def reload_all(self) -> None:
        """One hot-reload pass over every served model; failures are logged and counted."""
        if self.auto:
            await self._discover()
        for served in list(self.entries()):
            if served.pinned and served.runtime is not None:
                continue
            try:
                await self.reload(served)
            except SwapRefusedError:
                pass  # logged and counted where it was refused
            except Exception as exc:  # keep serving the old version whatever happens
                self._reload_failed(served, exc)
        for name in list(self.served):
            try:
                await self.reload_deployment(name)
            except Exception as exc:  # keep the current routing whatever happens
                self._reload_failed(self.served[name][0], exc)

    def _reload_failed(self, served: ServedModel, exc: BaseException) -> None:
        message = str(exc) if isinstance(exc, LoopmlError) else f"{type(exc).__name__}: {exc}"
        if message != served.last_error:
            log_event(
                logging.WARNING,
                "reload_failed",
                served=served.name,
                ref=served.full_ref,
                reason=shorten(message, 300),
            )
        served.last_error = message
        self.metrics.reloads.inc((served.name, "failed"))

    async def _discover(self) -> None:
        """Auto mode: start serving models that gained a champion since startup."""
        try:
            refs = await self._in_thread(partial(resolve_models, warn=False), self.ws, None)
        except Exception as exc:
            log_event(logging.WARNING, "reload_failed", reason=shorten(str(exc), 300))
            return
        for name, group in refs.items():
            if name in self.served:
                continue
            served = ServedModel(name, group[0])
            try:
                loaded = await self._load(served, served.full_ref)
            except Exception as exc:
                if self._skipped.get(name) != str(exc):
                    log_event(
                        logging.WARNING,
                        "swap_refused",
                        served=name,
                        ref=served.full_ref,
                        reason=shorten(str(exc), 300),
                    )
                    self.metrics.reloads.inc((name, "refused"))
                self._skipped[name] = str(exc)
                continue
            self._skipped.pop(name, None)
            served.runtime = self._build(served, loaded)
            self.served[name] = [served]

    async def aclose(self) -> None:
        closed: set[int] = set()
        runtimes = [s.runtime for s in self.entries() if s.runtime is not None]
        for rollout in self.rollouts.values():
            runtimes.extend(rollout.runtimes.values())
        for runtime in runtimes:
            if id(runtime) not in closed:
                closed.add(id(runtime))
                await runtime.batcher.aclose()
