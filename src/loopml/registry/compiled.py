"""Serving a bundle compiled to ONNX, checked against the native model before it is used.

:func:`compile_bundle` turns the whole bundle (the fitted feature pipeline and the
estimator, see :mod:`loopml.registry.onnx_graph`) into one ONNX graph and predicts with ONNX
Runtime. Before the compiled form is used, it predicts the bundle's sample rows plus
:data:`SYNTHETIC_ROWS` rows drawn from the signature (within and a little beyond each
numeric range, every known category, missing values, unknown categories) and must match the
native bundle: class probabilities within :data:`PROB_ATOL` absolute and the same labels
(the decision threshold is applied after ONNX by :func:`~loopml.registry.threshold.labels_at`,
as the native bundle does), regression values within :data:`VALUE_RTOL` of
``max(1, |value|)``. A model that does not convert, or does not match, is served natively
(:class:`NativeFallback`, with the reason); nothing is raised for it, unless the setting
``serve_compile`` is ``onnx``.

The compiled bytes are kept in the artifact store, found again through a pointer file in the
lake, ``compiled/<bundle sha256>.json`` (written atomically), naming the ONNX artifact and the
result of the check; so a reload, or another server, does not compile again (it checks the
cached graph against the native model again, which costs milliseconds). The pointer also
records a native outcome and its reason, so a model that does not convert is not retried
until loopml or a converter changes.

Loading ONNX runs no user code: a graph is refused (UnsafeFormatError) unless every operator
is from the standard ``ai.onnx`` or ``ai.onnx.ml`` domains, it defines no functions and holds
no external data (:func:`check_onnx`). A refused cached graph is compiled again from the
bundle. Sessions run one thread, sequentially (the server batches and runs workers), are
created once and are safe to call from several threads.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import orjson
import pandas as pd

from loopml.errors import (
    ConfigError,
    IntegrityError,
    InvalidInputError,
    LoopmlError,
    UnsafeFormatError,
)
from loopml.kinds import CATEGORICAL, NUMERIC
from loopml.registry.bundle import ModelBundle, Prediction
from loopml.registry.flavors.base import NotConvertible
from loopml.registry.signature import Signature
from loopml.registry.threshold import THRESHOLD, labels_at, positive_index

log = logging.getLogger("loopml.registry.compiled")

COMPILE_MODES = ("auto", "onnx", "native")
POINTER_DIR = "compiled"
POINTER_FORMAT = 1
ALLOWED_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})
PROB_ATOL = 1e-6
VALUE_RTOL = 1e-6
SYNTHETIC_ROWS = 300
MAX_ONNX_BYTES = 1 << 30
#: how many graphs this process built (tests check that a cached one is not built again)
STATS = {"compiled": 0}
_stats_lock = threading.Lock()


@runtime_checkable
class Predictor(Protocol):
    """What the server, batch scoring and gRPC predict with."""

    kind: str  # "onnx" or "native"
    reason: str | None  # why native (None when compiled, or native by the setting)

    def predict_columns(self, columns: Mapping[str, np.ndarray]) -> Prediction: ...


@dataclass(frozen=True)
class Check:
    """How a predictor came to be: the comparison with the native model and its cost."""

    max_abs_diff: float | None  # largest difference from native (None: not compared)
    rows: int  # rows compared
    seconds: float  # converting and checking (or loading and checking the cached graph)
    cached: bool = False  # found through the pointer file, not compiled now
    onnx_sha256: str | None = None
    refused: str | None = None  # a cached graph that was refused, and why

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_abs_diff": self.max_abs_diff,
            "rows": self.rows,
            "seconds": round(self.seconds, 4),
            "cached": self.cached,
            "onnx_sha256": self.onnx_sha256,
            "refused": self.refused,
        }


class NativeFallback:
    """The native bundle as a :class:`Predictor` (one DataFrame per call), with the reason it
    is not compiled."""

    kind = "native"

    def __init__(self, bundle: ModelBundle, reason: str | None, check: Check | None = None):
        self.bundle = bundle
        self.reason = reason
        self.check = check

    def predict_columns(self, columns: Mapping[str, np.ndarray]) -> Prediction:
        return self.bundle.predict_columns(columns)

    def __repr__(self) -> str:
        return f"NativeFallback({self.bundle.name}, reason={self.reason!r})"


class CompiledModel:
    """A bundle compiled to ONNX: one ONNX Runtime session, created once, thread-safe."""

    kind = "onnx"
    reason: str | None = None

    def __init__(
        self, data: bytes, signature: Signature, *, what: str = "model", check: Check | None = None
    ) -> None:
        from loopml.registry.onnx_graph import OUTPUT, categorical_feed

        self._categorical_feed = categorical_feed  # imported once, not on every call
        check_onnx(data, what, signature)
        self.onnx_bytes = data
        self.signature = signature
        self.check = check
        self.name = what
        self._categorical = [(f.name, f.kind == CATEGORICAL) for f in signature.inputs]
        self._classes = list(signature.classes or [])
        self._extra = dict(signature.extra)
        self._positive = positive_index(signature.classes, self._extra)
        # labels_at without a threshold: the most probable class, from classes kept as an
        # array (made once here, not on every call)
        self._class_array = np.asarray(self._classes)
        self._argmax_labels = self._extra.get(THRESHOLD) is None
        self._regression = signature.task == "regression"
        self._outputs = [OUTPUT]
        # The graph takes one [N, 1] tensor per feature; ONNX Runtime's Python binding costs
        # several microseconds per input and call (20 inputs: ~100 us for one row, more than
        # the trees). Where the numeric inputs only meet in one Concat, the session takes
        # them as one [N, k] block instead (the same graph less that Concat, so the same
        # numbers; the check against the native model runs on this form).
        fused = fuse_numeric_inputs(data)
        self._block: tuple[str, list[str]] | None = None
        if fused is not None:
            data_run, block_name, block_columns = fused
            self._block = (block_name, block_columns)
            self._session = _session(data_run, what)
        else:
            self._session = _session(data, what)
        blocked = set(self._block[1]) if self._block is not None else set()
        self._block_names = tuple(self._block[1]) if self._block is not None else None
        self._feeds = [(n, c) for n, c in self._categorical if n not in blocked]

    @property
    def block_input(self) -> bool:
        """Whether the session takes the numeric features as one block (see __init__)."""
        return self._block is not None

    @property
    def takes_whole_block(self) -> tuple[str, ...] | None:
        """The feature names, in order, when the session's only input is the one block of
        every feature: then :meth:`predict_columns` needs nothing of ``columns`` but its
        ``block`` and ``names`` (any object with those two, not only a mapping). None
        otherwise."""
        if self._block_names is None or self._feeds:
            return None
        return self._block_names

    def predict_columns(self, columns: Mapping[str, np.ndarray]) -> Prediction:
        categorical_feed = self._categorical_feed
        feeds: dict[str, np.ndarray] = {}
        if self._block is not None:
            block_name, names = self._block
            given = getattr(columns, "block", None)  # BlockColumns: the rows as one array
            if given is not None and getattr(columns, "names", None) == self._block_names:
                feeds[block_name] = np.ascontiguousarray(given, dtype=np.float64)
            else:
                flat = np.concatenate([np.asarray(columns[n], dtype=np.float64) for n in names])
                feeds[block_name] = np.ascontiguousarray(flat.reshape(len(names), -1).T)
        for name, categorical in self._feeds:
            col = columns[name]
            if categorical:
                feeds[name] = categorical_feed(col)
            else:
                feeds[name] = np.asarray(col, dtype=np.float64).reshape(-1, 1)
        out = self._session.run(self._outputs, feeds)[0]
        if self._regression:
            return Prediction(np.asarray(out, dtype=np.float64).reshape(-1), None, None)
        proba = np.asarray(out, dtype=np.float64)
        if self._argmax_labels:
            labels = self._class_array[proba.argmax(axis=1)]
        else:
            labels = labels_at(proba, self._classes, self._extra)
        return Prediction(labels, proba, self._classes, positive_index=self._positive)

    def __repr__(self) -> str:
        return f"CompiledModel({self.name})"


# -- compiling and checking -----------------------------------------------------------------


def compile_bundle(bundle: ModelBundle) -> CompiledModel | NativeFallback:
    """The bundle compiled to ONNX and checked against its native predictions, or the
    native bundle with the reason it is not (never raises for a model that does not
    convert; ``predictor.check`` holds the comparison and the time taken)."""
    start = time.perf_counter()
    try:
        data = onnx_bytes(bundle)
        try:
            compiled = CompiledModel(data, bundle.signature, what=bundle.name)
        except LoopmlError as exc:  # what the converters made does not check or load
            raise _Fallback(f"the compiled graph does not load: {exc.message}"[:300]) from exc
        diff, rows = verify(compiled, bundle)
    except _Fallback as exc:
        seconds = time.perf_counter() - start
        return NativeFallback(bundle, exc.reason, Check(exc.diff, exc.rows, seconds))
    compiled.check = Check(diff, rows, time.perf_counter() - start)
    return compiled


class _Fallback(Exception):
    def __init__(self, reason: str, diff: float | None = None, rows: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.diff = diff
        self.rows = rows


def onnx_bytes(bundle: ModelBundle) -> bytes:
    """The bundle's ONNX graph, serialized; :class:`_Fallback` with the reason otherwise."""
    try:
        from loopml.registry.onnx_graph import build

        with warnings.catch_warnings():  # converters warn about opsets and deprecations
            warnings.simplefilter("ignore")
            graph = build(bundle)
        data: bytes = graph.model.SerializeToString()
    except NotConvertible as exc:
        raise _Fallback(str(exc)) from exc
    except ImportError as exc:
        raise _Fallback(
            f"{exc.name or 'an ONNX package'} is not installed (pip install 'loopml[onnx]')"
        ) from exc
    except Exception as exc:  # a converter's own failure: the model is served natively
        raise _Fallback(f"the ONNX conversion failed: {type(exc).__name__}: {exc}"[:300]) from exc
    with _stats_lock:
        STATS["compiled"] += 1
    return data


def verify(compiled: CompiledModel, bundle: ModelBundle) -> tuple[float, int]:
    """Compare ``compiled`` with the native bundle on the sample and synthetic rows:
    ``(largest absolute difference, rows)``; :class:`_Fallback` naming the first mismatch."""
    columns = check_columns(bundle)
    rows = len(next(iter(columns.values())))
    try:
        native = bundle.predict_columns(columns)
    except Exception as exc:  # a native model that fails on its own rows: nothing to compare
        raise _Fallback(f"the native model failed on the check rows: {exc}"[:300]) from exc
    try:
        got = compiled.predict_columns(columns)
    except Exception as exc:
        raise _Fallback(f"the compiled graph failed: {type(exc).__name__}: {exc}"[:300]) from exc
    # a flavor may allow more (torch: 1e-5, for a CNN compiled in float32)
    tol = max(PROB_ATOL, float(getattr(bundle.flavor_impl, "onnx_tolerance", 0.0)))
    if bundle.signature.task == "regression":
        want = np.asarray(native.labels, dtype=np.float64)
        have = np.asarray(got.labels, dtype=np.float64)
        if have.shape != want.shape:
            raise _Fallback(f"the compiled graph answers shape {have.shape}, not {want.shape}")
        diff = np.abs(have - want)
        bound = max(VALUE_RTOL, tol) * np.maximum(1.0, np.abs(want))
        worst = float(np.nanmax(diff)) if len(diff) else 0.0
        bad = ~(diff <= bound) & ~(np.isnan(have) & np.isnan(want))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise _Fallback(
                f"the compiled graph differs from the native model by {diff[i]:.3g} at check "
                f"row {i} (allowed {bound[i]:.3g})",
                worst,
                rows,
            )
        return worst, rows
    assert native.probabilities is not None and got.probabilities is not None
    if got.probabilities.shape != native.probabilities.shape:
        raise _Fallback(
            f"the compiled graph answers probabilities of shape {got.probabilities.shape}, "
            f"not {native.probabilities.shape}"
        )
    diff = np.abs(got.probabilities - native.probabilities)
    # a model that answers NaN for a missing value (an imported one that never saw any)
    # agrees where both answer NaN
    diff[np.isnan(got.probabilities) & np.isnan(native.probabilities)] = 0.0
    worst = float(diff.max()) if diff.size else 0.0
    if not np.isfinite(worst) or worst > tol:
        i = int(np.argmax(np.nan_to_num(diff, nan=np.inf).max(axis=1)))
        raise _Fallback(
            f"the compiled graph's probabilities differ from the native model's by {worst:.3g} "
            f"(at check row {i}; allowed {tol:g})",
            worst,
            rows,
        )
    same = np.asarray(got.labels == native.labels, dtype=bool)
    if not same.all():
        i = int(np.flatnonzero(~same)[0])
        raise _Fallback(
            f"the compiled graph predicts {got.labels[i]!r} at check row {i}, the native model "
            f"{native.labels[i]!r}",
            worst,
            rows,
        )
    return worst, rows


def check_columns(
    bundle: ModelBundle, n: int = SYNTHETIC_ROWS, seed: int = 0
) -> dict[str, np.ndarray]:
    """The rows a compiled graph is checked on: the bundle's sample rows, then ``n`` rows
    drawn from the signature (values within each numeric range, its ends and a little
    beyond, every known category, missing values, unknown categories), as Columns."""
    from loopml.registry.onnx_graph import MISSING

    rng = np.random.default_rng(seed)
    sample = bundle.sample
    out: dict[str, np.ndarray] = {}
    for f in bundle.signature.inputs:
        parts: list[np.ndarray] = []
        if sample is not None and len(sample):
            col = sample[f.name]
            if f.kind == NUMERIC:
                parts.append(col.to_numpy(dtype=np.float64, na_value=np.nan))
            elif f.kind == CATEGORICAL:
                parts.append(np.asarray(col.to_numpy(dtype=object), dtype=object))
            else:
                parts.append(np.asarray(col.to_numpy(), dtype="datetime64[us]"))
        if f.kind == NUMERIC:
            if f.binary:
                values = rng.integers(0, 2, n).astype(np.float64)
            else:
                lo = -1.0 if f.min is None else float(f.min)
                hi = 1.0 if f.max is None else float(f.max)
                span = hi - lo if hi > lo else 1.0
                values = rng.uniform(lo - 0.05 * span, hi + 0.05 * span, n)
                values[: min(n, 2)] = [lo, hi][: min(n, 2)]
            values[rng.random(n) < 0.08] = np.nan
            parts.append(values)
        elif f.kind == CATEGORICAL:
            cats = list(f.categories or [])
            picked = np.empty(n, dtype=object)
            picked[:] = [cats[i] for i in rng.integers(0, len(cats), n)] if cats else "unseen"
            for i, c in enumerate(cats[:n]):
                picked[i] = c  # every category at least once
            draw = rng.random(n)
            picked[draw < 0.08] = np.nan
            picked[(draw >= 0.08) & (draw < 0.13)] = "__loopml_unseen__"
            if n >= 3:
                picked[-1], picked[-2], picked[-3] = "", MISSING, None
            parts.append(picked)
        else:
            base = np.datetime64("2020-01-01T00:00:00", "us")
            stamps = base + rng.integers(0, 5 * 365 * 86400, n).astype("timedelta64[s]")
            stamps = stamps.astype("datetime64[us]")
            stamps[rng.random(n) < 0.08] = np.datetime64("NaT")
            parts.append(stamps)
        out[f.name] = np.concatenate(parts) if len(parts) > 1 else parts[0]
    return out


# -- checking a graph before it is loaded ---------------------------------------------------


RECOMPILE = "Compile it again with 'loopml models compile NAME@VERSION'"


def check_onnx(
    data: bytes,
    what: str = "ONNX model",
    signature: Signature | None = None,
    *,
    subject: str = "the compiled graph",
    hint: str = RECOMPILE,
) -> Any:
    """Parse ``data`` and refuse what loading must never do: operators outside the standard
    ``ai.onnx`` / ``ai.onnx.ml`` domains, local functions, external data (UnsafeFormatError);
    with ``signature``, inputs that are not its columns (IntegrityError). Returns the
    ``onnx.ModelProto``. ``subject`` and ``hint`` word the errors (an imported model's file
    is not a compiled graph)."""
    import onnx

    if not isinstance(data, bytes | bytearray) or not data or len(data) > MAX_ONNX_BYTES:
        raise IntegrityError(
            f"{what}: {subject} is empty or too large",
            where={"artifact": what},
            hint=hint,
        )
    try:
        model = onnx.ModelProto.FromString(bytes(data))
    except Exception as exc:
        raise IntegrityError(
            f"{what}: {subject} is not an ONNX model ({type(exc).__name__})",
            where={"artifact": what},
            hint=hint,
        ) from exc
    problems: list[str] = []
    for op in model.opset_import:
        if op.domain not in ALLOWED_DOMAINS:
            problems.append(f"operator set {op.domain!r}")
    if len(model.functions):
        problems.append(f"functions ({', '.join(f.name for f in model.functions)[:100]})")
    _check_graph(model.graph, problems)
    if problems:
        raise UnsafeFormatError(
            f"{what}: {subject} uses {', '.join(sorted(set(problems))[:5])}, which "
            "loopml does not load (only standard ai.onnx and ai.onnx.ml operators, no "
            "functions, no external data)",
            types=sorted(set(problems)),
            where={"artifact": what},
            hint="Compile it again from the bundle with 'loopml models compile NAME@VERSION'"
            if hint == RECOMPILE
            else hint,
        )
    if signature is not None:
        _check_inputs(model, signature, what)
    return model


def _check_graph(graph: Any, problems: list[str]) -> None:
    import onnx

    for node in graph.node:
        domain = node.domain
        if domain not in ALLOWED_DOMAINS:
            problems.append(f"operator {domain}.{node.op_type}")
        elif not onnx.defs.has(node.op_type, domain):
            problems.append(f"unknown operator {node.op_type!r}")
        for attr in node.attribute:
            if attr.HasField("g"):
                _check_graph(attr.g, problems)
            for sub in attr.graphs:
                _check_graph(sub, problems)
    external = onnx.TensorProto.EXTERNAL
    tensors = [*graph.initializer, *(s.values for s in graph.sparse_initializer)]
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                tensors.append(attr.t)
            tensors.extend(attr.tensors)
    for t in tensors:
        if t.data_location == external or len(t.external_data):
            problems.append("external data")


def _check_inputs(model: Any, signature: Signature, what: str) -> None:
    from onnx import TensorProto

    from loopml.registry.onnx_graph import OUTPUT

    want = [
        (f.name, TensorProto.STRING if f.kind == CATEGORICAL else TensorProto.DOUBLE)
        for f in signature.inputs
    ]
    have = [(i.name, i.type.tensor_type.elem_type) for i in model.graph.input]
    outputs = [o.name for o in model.graph.output]
    if have != want or outputs != [OUTPUT]:
        raise IntegrityError(
            f"{what}: the compiled graph does not take this model's columns",
            where={"artifact": what},
            hint="Compile it again with 'loopml models compile NAME@VERSION'",
        )


def fuse_numeric_inputs(data: bytes) -> tuple[bytes, str, list[str]] | None:
    """The graph with its numeric ``[N, 1]`` double inputs taken as one ``[N, k]`` block:
    (the new bytes, the block's input name, the features in block order), or None where the
    graph does not allow it. It allows it when one ``Concat`` on axis 1 takes two or more
    graph inputs and nothing else: those inputs are double ``[N, 1]`` tensors used by that
    node alone (not graph outputs). The node is removed and its output becomes the input,
    so the graph computes exactly what it did."""
    import onnx
    from onnx import TensorProto

    model = onnx.ModelProto.FromString(bytes(data))
    graph = model.graph
    inputs = {i.name: i for i in graph.input}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    outputs = {o.name for o in graph.output}
    for node in graph.node:
        if node.op_type != "Concat" or node.domain not in ("", "ai.onnx"):
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), None)
        names = list(node.input)
        if axis not in (1, -1) or len(names) < 2 or len(set(names)) != len(names):
            continue
        if not all(n in inputs and uses.get(n) == 1 and n not in outputs for n in names):
            continue
        if not all(_is_column(inputs[n], TensorProto.DOUBLE) for n in names):
            continue
        block = node.output[0]
        if block in outputs:
            continue
        graph.node.remove(node)
        kept = [i for i in graph.input if i.name not in set(names)]
        del graph.input[:]
        graph.input.append(
            onnx.helper.make_tensor_value_info(block, TensorProto.DOUBLE, [None, len(names)])
        )
        graph.input.extend(kept)
        return model.SerializeToString(), block, names
    return None


def _is_column(value_info: Any, elem_type: int) -> bool:
    """A ``[N, 1]`` tensor of ``elem_type`` (N dynamic or not)."""
    tensor = value_info.type.tensor_type
    if tensor.elem_type != elem_type:
        return False
    dims = tensor.shape.dim
    return len(dims) == 2 and dims[1].HasField("dim_value") and dims[1].dim_value == 1


def _session(data: bytes, what: str, *, hint: str = RECOMPILE) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise IntegrityError(
            f"{what}: ONNX Runtime cannot load the graph: {exc}"[:400],
            where={"artifact": what},
            hint=hint,
        ) from exc


# -- the cache: artifact store + pointer file -----------------------------------------------


def check_mode(mode: object, field: str = "compile") -> str:
    if not isinstance(mode, str) or mode not in COMPILE_MODES:
        raise InvalidInputError(
            f"{field} must be one of {', '.join(COMPILE_MODES)}, got {mode!r}",
            where={"field": field},
            hint="auto: compiled where it converts and matches; onnx: compiled or an error; "
            "native: never compiled",
        )
    return mode


def pointer_path(bundle_sha: str) -> str:
    return f"{POINTER_DIR}/{bundle_sha}.json"


def load_predictor(
    ws: Any,
    bundle: ModelBundle,
    bundle_sha: str,
    *,
    mode: str = "auto",
    refresh: bool = False,
) -> CompiledModel | NativeFallback:
    """The predictor for ``bundle`` (stored as ``bundle_sha``; ``ws`` None: no cache): the
    cached compiled graph if its pointer names one that passes :func:`check_onnx` and matches
    the native model again, else a fresh :func:`compile_bundle` (stored for next time).
    ``mode`` is ``serve_compile``: ``native`` never compiles, ``onnx`` raises ConfigError
    for a model that does not compile. ``refresh`` ignores the cache. This compiles in the
    calling process; a server uses :func:`serving_predictor`, which never does."""
    mode = check_mode(mode)
    if mode == "native":
        return NativeFallback(bundle, None)
    result: CompiledModel | NativeFallback | None = None
    refused: str | None = None
    if not refresh and ws is not None:
        result, refused = _from_cache(ws, bundle, bundle_sha)
    if result is None:
        result = compile_bundle(bundle)
        if refused is not None and result.check is not None:
            result.check = _with(result.check, refused=refused)
        if ws is not None:
            _store(ws, bundle_sha, result)
    return _strict(result, mode, bundle)


def _strict(
    result: CompiledModel | NativeFallback, mode: str, bundle: ModelBundle
) -> CompiledModel | NativeFallback:
    if mode == "onnx" and result.kind != "onnx":
        raise ConfigError(
            f"model {bundle.name} does not compile to ONNX: {result.reason}",
            where={"model": bundle.name, "setting": "serve_compile"},
            hint="Set serve_compile to auto (LOOPML_SERVE_COMPILE=auto) to serve it natively, "
            "or change the model or its features (e.g. no datetime features)",
        )
    return result


def _from_cache(
    ws: Any, bundle: ModelBundle, bundle_sha: str
) -> tuple[CompiledModel | NativeFallback | None, str | None]:
    """What the pointer of ``bundle_sha`` holds, checked again (the cached graph, or the
    native outcome with its reason), and why a cached graph was refused; ``(None, ...)``
    when it must be compiled."""
    pointer = _read_pointer(ws, bundle_sha)
    if pointer is None:
        return None, None
    start = time.perf_counter()
    if pointer.get("kind") == "onnx":
        sha = str(pointer.get("onnx_sha256"))
        try:
            data = ws.artifacts.get(sha)
            compiled = CompiledModel(data, bundle.signature, what=bundle.name)
            diff, rows = verify(compiled, bundle)
        except (LoopmlError, _Fallback) as exc:
            refused = str(exc)[:300]
            log.warning(
                "%s: cached compiled graph refused, compiling again: %s", bundle.name, refused
            )
            return None, refused
        seconds = time.perf_counter() - start
        compiled.check = Check(diff, rows, seconds, cached=True, onnx_sha256=sha)
        return compiled, None
    reason = str(pointer.get("reason") or "it did not compile")
    check = Check(pointer.get("max_abs_diff"), int(pointer.get("rows") or 0), 0.0, cached=True)
    return NativeFallback(bundle, reason, check), None


# -- compiling off the serving process ------------------------------------------------------

#: the command that compiles one bundle in a separate process (see compile_worker)
WORKER_COMMAND: tuple[str, ...] = ("-m", "loopml.registry.compile_worker")
#: how long a server waits for one compile before serving the version natively
CHILD_TIMEOUT_S = 900.0
#: seconds without a job after which the compile worker is closed (it frees its memory)
WORKER_IDLE_S = 30.0
_sha_locks: dict[str, threading.Lock] = {}


def _sha_lock(bundle_sha: str) -> threading.Lock:
    with _stats_lock:
        return _sha_locks.setdefault(bundle_sha, threading.Lock())


@contextmanager
def _machine_lock(bundle_sha: str) -> Iterator[None]:
    """One compile of a bundle at a time on this machine (the workers of ``loopml serve
    --workers N`` all meet the same new version): a lock file in the temporary folder."""
    try:
        import fcntl
    except ImportError:  # not POSIX: each process compiles, harmlessly
        yield
        return
    import tempfile

    path = os.path.join(tempfile.gettempdir(), f"loopml-compile-{bundle_sha[:40]}.lock")
    try:
        handle = open(path, "a+b")  # noqa: SIM115 (held across the yield)
    except OSError:
        yield
        return
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        yield
    finally:
        # removed while held: a load waiting on this file then finds the bundle cached, and
        # one arriving later makes a new file and finds it cached too (at worst, in a race,
        # two processes compile one bundle, which is harmless)
        with contextlib.suppress(OSError):
            os.unlink(path)
        handle.close()  # releases the lock


def serving_predictor(
    ws: Any, bundle: ModelBundle, bundle_sha: str, *, mode: str = "auto"
) -> CompiledModel | NativeFallback:
    """:func:`load_predictor` for a server: it never compiles in this process.

    A bundle without a usable cached outcome is compiled by a separate process
    (:mod:`loopml.registry.compile_worker`, waited for in the calling thread: run this off
    the event loop), then its cached graph is loaded and checked here. When that process
    fails (crash, :data:`CHILD_TIMEOUT_S`, a store it cannot reach), the version is served
    natively with the reason (mode ``auto``; nothing is cached, so the next load tries
    again), or compiled here as before (mode ``onnx``, which must not serve it natively).
    Two loads of one bundle on this machine (threads, or the workers of one server) wait for
    one compile; processes on two machines compiling the same bundle both write the same
    pointer atomically."""
    mode = check_mode(mode)
    if mode == "native" or ws is None:
        return load_predictor(ws, bundle, bundle_sha, mode=mode)
    result, _ = _from_cache(ws, bundle, bundle_sha)
    if result is None:
        with _sha_lock(bundle_sha), _machine_lock(bundle_sha):
            result, _ = _from_cache(ws, bundle, bundle_sha)  # another load compiled it
            if result is None:
                start = time.perf_counter()
                why = compile_in_child(ws, bundle, bundle_sha)
                refused = None
                if why is None:
                    result, refused = _from_cache(ws, bundle, bundle_sha)
                    if result is None:
                        why = (
                            f"its graph was refused here: {refused}"
                            if refused
                            else "it left no compiled graph in the lake"
                        )
                if result is None:
                    seconds = time.perf_counter() - start
                    log.warning("%s: compiling in a separate process failed (%s)", bundle.name, why)
                    if mode == "onnx":
                        return load_predictor(ws, bundle, bundle_sha, mode=mode, refresh=True)
                    result = NativeFallback(
                        bundle,
                        f"compiling it to ONNX in a separate process failed: {why}"[:400]
                        + f"; served natively (compile it with 'loopml models compile "
                        f"{bundle.name}': the next start or swap to it loads it compiled)",
                        Check(None, 0, seconds),
                    )
    return _strict(result, mode, bundle)


def worker_job(ws: Any, bundle: ModelBundle, bundle_sha: str) -> dict[str, Any]:
    """What :mod:`loopml.registry.compile_worker` needs to compile ``bundle`` of ``ws``."""
    return {
        "root": str(ws.root),
        "settings": ws.settings.model_dump(mode="json"),
        "lake_uri": getattr(ws, "lake_uri", None),
        "artifacts_uri": getattr(ws, "artifacts_uri", None),
        "bundle_sha256": bundle_sha,
        "what": bundle.name,
        "trusted": sorted(bundle.trusted),
    }


def compile_in_child(
    ws: Any, bundle: ModelBundle, bundle_sha: str, *, timeout: float | None = None
) -> str | None:
    """Compile ``bundle`` (stored as ``bundle_sha`` in ``ws``) in this process's compile
    worker, which caches the outcome; None when it finished, else why it failed."""
    limit = CHILD_TIMEOUT_S if timeout is None else timeout
    return _worker.run(worker_job(ws, bundle, bundle_sha), limit)


class _Worker:
    """This process's compile worker (:mod:`loopml.registry.compile_worker`): started on
    first use, one job at a time, closed after :data:`WORKER_IDLE_S` without one (freeing
    what compiling allocated), started again when it died or was stopped."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.proc: Any = None
        self.command: tuple[str, ...] = ()
        self.last_used = 0.0
        self.timer: threading.Timer | None = None

    def _start(self) -> None:
        import subprocess
        import sys
        from pathlib import Path

        import loopml

        env = dict(os.environ)
        # the loopml this process runs, whatever put it on sys.path
        here = str(Path(loopml.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
        self.command = WORKER_COMMAND
        self.proc = subprocess.Popen(
            [sys.executable, *WORKER_COMMAND],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )

    def _stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()
            proc.wait(timeout=5)
        except Exception:  # it does not leave: it goes
            proc.kill()
            proc.wait()
        finally:
            if proc.stdout is not None:
                proc.stdout.close()

    def _ended(self) -> str:
        proc, self.proc = self.proc, None
        code = proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        if code < 0:
            return f"it was killed by signal {-code}"
        return f"it exited with status {code}"

    def run(self, job: dict[str, Any], limit: float) -> str | None:
        import select

        with self.lock:
            if self.timer is not None:
                self.timer.cancel()
            try:
                if self.proc is not None and (
                    self.proc.poll() is not None or self.command != WORKER_COMMAND
                ):
                    self._stop()
                if self.proc is None:
                    self._start()
                proc = self.proc
                try:
                    proc.stdin.write(orjson.dumps(job) + b"\n")
                    proc.stdin.flush()
                except OSError:  # it died before reading the job
                    return self._ended()
                deadline = time.monotonic() + limit
                fd = proc.stdout.fileno()
                got = b""
                while not got.endswith(b"\n"):
                    left = deadline - time.monotonic()
                    ready = select.select([fd], [], [], max(0.0, left))[0] if left > 0 else []
                    if not ready:
                        proc.kill()
                        self._stop()
                        return f"it ran past {limit:g} s and was stopped"
                    chunk = os.read(fd, 1 << 16)
                    if not chunk:
                        return self._ended()
                    got += chunk
                answer = orjson.loads(got)
                if "error" in answer:
                    return f"it failed: {answer['error']}"[:600]
                return None
            except OSError as exc:
                self._stop()
                return f"it could not start: {exc}"
            finally:
                self.last_used = time.monotonic()
                if self.proc is not None:
                    self.timer = threading.Timer(WORKER_IDLE_S, self._idle)
                    self.timer.daemon = True
                    self.timer.start()

    def _idle(self) -> None:
        with self.lock:
            if time.monotonic() - self.last_used >= WORKER_IDLE_S - 0.01:
                self._stop()


_worker = _Worker()


def compile_model(
    ws: Any, ref: str, *, strict: bool = False
) -> tuple[Any, CompiledModel | NativeFallback]:
    """Compile ``NAME@VERSION`` (or an alias) now, whatever the cache holds, and cache the
    outcome: ``(version record, predictor)``. ``strict``: ConfigError when it does not
    compile (as ``serve_compile=onnx``)."""
    from loopml.registry.models import load_model, resolve_version

    record = resolve_version(ws, ref)
    loaded = load_model(ws, f"{record.name}@{record.version}")
    mode = "onnx" if strict else "auto"
    return record, load_predictor(
        ws, loaded.bundle, record.artifact_sha256, mode=mode, refresh=True
    )


def compile_for_traffic(ws: Any, name: str, versions: Any) -> list[str]:
    """Compile the versions of ``name`` about to get traffic (an alias or deployment that
    moves to them), in this process, before the move is recorded, so that no server meets
    them uncompiled; one line per version saying what happened. As ``serve_compile`` says:
    ``native`` compiles nothing, ``auto`` records a model that does not convert as native
    (its reason in the line), ``onnx`` raises ConfigError for it (the move must not happen).
    A version already compiled is checked from the cache; an unknown one is left to the
    move's own checks."""
    from loopml.errors import NotFoundError
    from loopml.registry.models import load_model

    mode = check_mode(ws.settings.serve_compile, "serve_compile")
    if mode == "native":
        return []
    lines: list[str] = []
    for version in sorted({int(v) for v in versions if v is not None}):
        ref = f"{name}@{version}"
        try:
            loaded = load_model(ws, ref)
        except NotFoundError:
            continue  # the move refuses it, with its own message
        start = time.perf_counter()
        predictor = load_predictor(ws, loaded.bundle, loaded.record.artifact_sha256, mode=mode)
        seconds = time.perf_counter() - start
        check = predictor.check
        rows = check.rows if check is not None else 0
        if predictor.kind == "onnx" and check is not None and check.cached:
            lines.append(f"{ref} is compiled to ONNX already (checked on {rows} rows)")
        elif predictor.kind == "onnx":
            lines.append(f"compiled {ref} to ONNX in {seconds:.1f} s (checked on {rows} rows)")
        else:
            lines.append(f"{ref} does not compile to ONNX; served natively: {predictor.reason}")
    return lines


def describe(record: Any, predictor: CompiledModel | NativeFallback) -> dict[str, Any]:
    """What ``loopml models compile --json`` prints."""
    check = predictor.check
    return {
        "model": record.name,
        "version": record.version,
        "bundle_sha256": record.artifact_sha256,
        "kind": predictor.kind,
        "reason": predictor.reason,
        **(check.to_dict() if check is not None else {}),
    }


def _with(check: Check, **changes: Any) -> Check:
    from dataclasses import replace

    return replace(check, **changes)


def _versions() -> dict[str, str]:
    """What a cached outcome depends on besides the bundle."""
    import loopml

    out = {"loopml": str(loopml.__version__), "format": str(POINTER_FORMAT)}
    from importlib.metadata import PackageNotFoundError, version

    for package in ("onnx", "onnxruntime", "skl2onnx", "onnxmltools"):
        try:  # the installed version, without importing the converters
            out[package] = version(package)
        except PackageNotFoundError:  # not installed: part of the key all the same
            out[package] = "missing"
    return out


def _read_pointer(ws: Any, bundle_sha: str) -> dict[str, Any] | None:
    try:
        raw = ws.lake.read_bytes(pointer_path(bundle_sha))
        doc = orjson.loads(raw)
    except Exception:  # absent, unreadable, a lake that is down: compile
        return None
    if not isinstance(doc, dict) or doc.get("bundle_sha256") != bundle_sha:
        return None
    if doc.get("versions") != _versions():
        return None
    return doc


def _store(ws: Any, bundle_sha: str, result: CompiledModel | NativeFallback) -> None:
    """Keep the outcome: the graph in the artifact store, then the pointer (best effort: a
    store that is down costs a compile next time, never the load)."""
    check = result.check
    doc: dict[str, Any] = {
        "bundle_sha256": bundle_sha,
        "kind": result.kind,
        "reason": result.reason,
        "max_abs_diff": None if check is None else check.max_abs_diff,
        "rows": 0 if check is None else check.rows,
        "seconds": None if check is None else round(check.seconds, 4),
        "versions": _versions(),
        "created_at": pd.Timestamp.now(tz="UTC").isoformat(),
        "pid": os.getpid(),  # which process compiled it (a server never does)
    }
    try:
        if isinstance(result, CompiledModel):
            sha = ws.artifacts.put(result.onnx_bytes)
            doc["onnx_sha256"] = sha
            if check is not None:
                result.check = _with(check, onnx_sha256=sha)
        ws.lake.write_bytes(
            pointer_path(bundle_sha), orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
        )
    except Exception as exc:  # the stores' errors: serving goes on
        log.warning("%s: could not cache the compiled graph: %s", result, exc)


__all__ = [
    "COMPILE_MODES",
    "Check",
    "CompiledModel",
    "NativeFallback",
    "NotConvertible",
    "Predictor",
    "check_onnx",
    "compile_bundle",
    "compile_for_traffic",
    "compile_model",
    "describe",
    "fuse_numeric_inputs",
    "load_predictor",
    "serving_predictor",
]
