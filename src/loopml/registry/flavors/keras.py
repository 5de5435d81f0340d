"""Keras 3 models (TensorFlow backend): the ``.keras`` format, loaded with safe mode on.

A bundle holds ``model.keras`` (Keras' own zip: the architecture as JSON config plus the
weights in HDF5) and, in the manifest, the task, the regression target's scale and the
import path of the user's builder when a user's model made it. Before Keras reads the file,
every object its config names (``module.class_name``) must be one loopml declares
(:data:`loopml.registry.allowlist.KERAS`) or one the version trusts: Keras imports what a
config names, so this check is what keeps a crafted file from importing a module of its
choosing. Keras then loads it with ``safe_mode=True``, which refuses the Python code of a
``Lambda`` layer even when the layer's class is trusted.

``loopml train --from NAME@VERSION`` continues a version of this flavor: the parent is loaded
as above (safe mode), the network this run's ``model.params`` build must be its architecture
(checked before the run is recorded), and training goes on from its weights and from its
optimizer's state (:meth:`KerasModel.optimizer_state`: the ``.keras`` of a compiled model
holds its optimizer, which the file is read again for, from the artifact store and with safe
mode on, only then: a loaded version keeps none of the file's bytes,
:meth:`KerasFlavor.attach_source`).

Keras and TensorFlow are imported only when a Keras model is trained, loaded, compiled or
predicted; ``KERAS_BACKEND`` is set to ``tensorflow`` here, before Keras is first imported.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import io
import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from loopml.errors import ConfigError, IntegrityError, LoopmlError, UnsafeFormatError
from loopml.registry.flavors.base import ONNX_OPSET, NetworkFlavor, NotConvertible, class_path

MEMBER = "model.keras"
#: the estimators of this flavor (model.class), by module prefix
ESTIMATOR_PREFIX = "loopml.train.deep.keras."
#: the estimators that build a user's model by import path (which needs model.trust)
USER_MODEL = ("ModelClassifier", "ModelRegressor")


def keras_module() -> Any:
    """Keras with the TensorFlow backend (set before Keras is first imported)."""
    import sys

    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = "tensorflow"
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # no C++ start-up chatter
    import keras

    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise LoopmlError(
            f"Keras was imported with the {backend} backend before loopml needed it",
            where={"field": "KERAS_BACKEND"},
            hint="loopml's Keras models run on TensorFlow: unset KERAS_BACKEND (or set it to "
            "tensorflow) in this process",
            code="missing_dependency",
        )
    return keras


class KerasFlavor(NetworkFlavor):
    name = "keras"
    roots = ("loopml",)  # model.class names loopml's own Keras estimators
    members = (MEMBER,)
    extra = "tensorflow"
    continues = "MLPs and users' models, from the parent's weights"
    needs_every_class = False  # the parent's classes are kept, in its order

    def handles(self, estimator_or_class_path: object) -> bool:
        return class_path(estimator_or_class_path).startswith(ESTIMATOR_PREFIX)

    def check_spec(self, spec: Any, source: str) -> None:
        """A user's model by import path is refused before it is imported, unless
        ``model.trust`` names it (the opt-in is recorded on the version)."""
        from loopml.registry.allowlist import check_trust

        if spec.cls.rpartition(".")[2] not in USER_MODEL:
            return
        path = spec.params.get("model")
        if not isinstance(path, str) or not path:
            raise ConfigError(
                f"{spec.cls} needs model.params.model: the import path of a function or "
                "class that returns a keras.Model",
                where={"file": source, "field": "model.params.model"},
                hint="Write params: {model: package.module.build_model} and trust: "
                "[package.module.build_model] under model:",
            )
        if path not in check_trust(spec.trust, "model.trust"):
            raise ConfigError(
                f"model.params.model {path!r} is a user's Keras model; loopml imports it only "
                "when model.trust names it",
                where={"file": source, "field": "model.trust"},
                hint=f"If you trust the code, add 'trust: [{path}]' under model: (the opt-in is "
                "recorded on the version)",
            )

    def prepare(self, estimator: Any) -> Any:
        return getattr(estimator, "model_", estimator)

    def can_continue(self, cls: type) -> bool:
        return class_path(cls).startswith(ESTIMATOR_PREFIX)

    def types(self, meta: Mapping[str, Any]) -> set[str]:
        """What loading needs trusted: the user's builder and the objects the config names
        beyond loopml's Keras list (the load checks the file's config itself again)."""
        names = meta.get("needs")
        return {n for n in names if isinstance(n, str)} if isinstance(names, list) else set()

    # -- bytes ----------------------------------------------------------------------------

    def save(self, model: Any) -> dict[str, bytes]:
        with tempfile.TemporaryDirectory(prefix="loopml-keras-") as tmp:
            path = Path(tmp) / MEMBER
            model.model.save(path)
            return {MEMBER: path.read_bytes()}

    def manifest(self, model: Any) -> dict[str, Any]:
        from loopml.registry.allowlist import KERAS

        names = config_names(_config(self.save(model)[MEMBER], "the model"))
        needs = sorted({n for n in names if n not in KERAS} | ({model.builder} - {None}))
        return {
            "task": model.task,
            "y_mean": model.y_mean,
            "y_scale": model.y_scale,
            "builder": model.builder,
            "needs": needs,
            "weights": MEMBER,
        }

    def load(
        self,
        members: Mapping[str, bytes],
        *,
        trusted: Sequence[str],
        what: str,
        meta: Mapping[str, Any],
        checked: Mapping[str, set[str]] | None = None,
    ) -> Any:
        from loopml.registry.allowlist import KERAS
        from loopml.registry.safeload import refused_names, unsafe

        data = members[MEMBER]
        config = _config(data, what)
        names = config_names(config)
        builder = meta.get("builder")
        needed = {n for n in names if n not in KERAS}
        if isinstance(builder, str):
            needed.add(builder)
        refused = refused_names(needed, trusted)
        if refused:
            raise unsafe(refused, what, MEMBER)
        keras = keras_module()
        custom = _custom_objects(needed - {builder}, what)
        with tempfile.TemporaryDirectory(prefix="loopml-keras-") as tmp:
            path = Path(tmp) / MEMBER
            path.write_bytes(data)
            try:
                net = keras.saving.load_model(
                    path, custom_objects=custom, compile=False, safe_mode=True
                )
            except ValueError as exc:
                text = " ".join(str(exc).split())
                if "safe_mode" in text:
                    raise UnsafeFormatError(
                        f"{what}: Keras' safe mode refuses it: {text}"[:500],
                        types=["keras.safe_mode"],
                        where={"artifact": what, "file": MEMBER},
                        hint="A Lambda layer holds Python code, which loopml never loads; "
                        "rebuild the model with a custom layer class (registered with "
                        "keras.saving.register_keras_serializable) and trust that class",
                    ) from exc
                raise IntegrityError(
                    f"{what} has a .keras file Keras cannot load: {text}"[:500],
                    where={"artifact": what, "file": MEMBER},
                    hint="The file is damaged or was saved by another Keras; retrain the model",
                ) from exc
        return KerasModel(
            net,
            str(meta.get("task", "classification")),
            y_mean=float(meta.get("y_mean", 0.0)),
            y_scale=float(meta.get("y_scale", 1.0)),
            builder=builder if isinstance(builder, str) else None,
            file_sha256=hashlib.sha256(data).hexdigest(),  # not the bytes: attach_source
            custom=custom,
        )

    def attach_source(self, model: Any, read: Callable[[], bytes], what: str) -> None:
        """Let ``model`` (loaded from a bundle that ``read`` gives again, from the artifact
        store) read its optimizer from its ``.keras`` when a fine-tune asks: the file is
        read again then (the same bytes as loaded, checked by their sha256), not kept."""
        digest = getattr(model, "file_sha256", None)
        if isinstance(digest, str):
            model.saved_optimizer = functools.partial(
                _reread_optimizer, read, digest, what, dict(model.custom or {})
            )

    # -- compiling ------------------------------------------------------------------------

    def to_onnx(self, model: Any, n_features: int, task: str) -> tuple[Any, str]:
        """tf2onnx on the same ``tf.function`` :meth:`KerasModel.predict` runs (float
        input ``[N, n]``, probabilities or the unscaled value out, in double)."""
        return function_to_onnx(model.head(n_features), "this Keras model")

    # -- predicting -----------------------------------------------------------------------

    def predict(self, model: Any, x: Any, task: str) -> np.ndarray:
        out: np.ndarray = model.predict(x)
        return out


@dataclass
class KerasModel:
    """A trained Keras model as loopml predicts with it, exactly as after a reload.

    ``model`` answers class probabilities (classification) or the standardized target
    (regression, unscaled with ``y_mean``/``y_scale``); ``builder`` is the import path of the
    user's function or class that built it (None for loopml's MLP); ``history`` holds one dict
    of metrics per epoch of the fit that made it (not saved: the run keeps it as steps)."""

    model: Any
    task: str
    y_mean: float = 0.0
    y_scale: float = 1.0
    builder: str | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    #: a loaded version's optimizer, read from its ``.keras`` again (from the artifact
    #: store) when asked for (a fine-tune, :meth:`optimizer_state`); None for a model
    #: trained in this process, or one loaded from bytes alone
    saved_optimizer: Callable[[], Any] | None = field(default=None, repr=False, compare=False)
    #: a loaded version's ``.keras``: its sha256 and the trusted classes its config names
    file_sha256: str | None = field(default=None, repr=False, compare=False)
    custom: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    _heads: dict[int, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def optimizer_state(self) -> tuple[str, list[tuple[str, np.ndarray]]] | None:
        """The optimizer the network was trained with, as its class name and its variables
        in order (``(path, value)``: the step count ``iteration``, ``learning_rate``, then
        each weight's ``momentum`` and ``velocity`` for Adam); None when it has none (a
        network that was never compiled, or a file without its optimizer). A loaded version
        reads its ``.keras`` again for it, with safe mode on, as :meth:`KerasFlavor.load`
        does (the optimizer's config was checked with the rest of the file's)."""
        opt = getattr(self.model, "optimizer", None)
        if opt is None and self.saved_optimizer is not None:
            opt = self.saved_optimizer()
        if opt is None or not getattr(opt, "built", False) or not opt.variables:
            return None
        keras = keras_module()
        values = [(str(v.path), np.asarray(keras.ops.convert_to_numpy(v))) for v in opt.variables]
        return type(opt).__name__, values

    def head(self, n_features: int) -> Any:
        """The ``tf.function`` predictions come from, natively and in ONNX: the model in
        double precision where Keras can clone it so (the float32 weights are exact in
        double), so that ONNX Runtime, running the same double graph, answers the same
        numbers to about 1e-15; else the float32 model. Probabilities, or the unscaled
        value, out in double."""
        if n_features not in self._heads:
            import tensorflow as tf

            net = _double_net(keras_module(), self.model, n_features)
            dtype = tf.float64 if net is not None else tf.float32
            net = self.model if net is None else net
            task = self.task
            y_mean, y_scale = float(self.y_mean), float(self.y_scale)

            def head(x: Any) -> Any:
                out = tf.cast(net(x, training=False), tf.float64)
                if task == "classification":
                    return tf.identity(out, name="y")
                return tf.identity(out[:, 0] * y_scale + y_mean, name="y")

            spec = tf.TensorSpec([None, n_features], dtype, name="x")
            self._heads[n_features] = tf.function(head, input_signature=[spec])
        return self._heads[n_features]

    def predict(self, x: Any) -> np.ndarray:
        head = self.head(_dense(x).shape[1])
        dtype = head.input_signature[0].dtype.as_numpy_dtype
        out = head(np.ascontiguousarray(_dense(x), dtype=dtype))
        return np.asarray(out.numpy(), dtype=np.float64)


def _reread_optimizer(
    read: Callable[[], bytes], digest: str, what: str, custom: dict[str, Any]
) -> Any:
    """The optimizer of a loaded version's ``.keras``, read again from its bundle (``read``:
    from the artifact store); IntegrityError when the file is not the one loaded."""
    from loopml.registry.bundle import bundle_member

    data = bundle_member(read(), MEMBER, what)
    if hashlib.sha256(data).hexdigest() != digest:
        raise IntegrityError(
            f"{what}: the {MEMBER} read again for its optimizer is not the file loaded",
            where={"artifact": what, "file": MEMBER},
            hint="The artifact changed under the version; load it again",
        )
    return _saved_optimizer(data, custom)


def _saved_optimizer(data: bytes, custom: dict[str, Any]) -> Any:
    """The optimizer a ``.keras`` file holds (Keras writes a compiled model's optimizer with
    its weights: its config and variables), loaded with safe mode on; None when the file
    has none or Keras cannot compile it from its config."""
    keras = keras_module()
    with tempfile.TemporaryDirectory(prefix="loopml-keras-") as tmp:
        path = Path(tmp) / MEMBER
        path.write_bytes(data)
        try:
            net = keras.saving.load_model(path, custom_objects=custom, compile=True, safe_mode=True)
        except Exception:  # a compile config Keras cannot rebuild: the fine-tune says so
            return None
    return getattr(net, "optimizer", None)


def _double_net(keras: Any, net: Any, n_features: int) -> Any:
    """A float64 copy of ``net`` with its weights (None when Keras cannot clone it: a
    subclassed model without ``get_config``...)."""

    def as_double(layer: Any) -> Any:
        config = layer.get_config()
        config["dtype"] = "float64"
        return layer.__class__.from_config(config)

    try:
        clone = keras.models.clone_model(
            net,
            clone_function=as_double,
            input_tensors=keras.Input((n_features,), dtype="float64"),
        )
        clone.set_weights(net.get_weights())
    except Exception:  # Keras' own errors for models it cannot rebuild from their config
        return None
    return clone


def function_to_onnx(function: Any, subject: str) -> tuple[Any, str]:
    """tf2onnx on a ``tf.function`` with one input signature; NotConvertible with the reason
    when it fails or leaves TensorFlow operators that ONNX lacks."""
    try:
        import tf2onnx
    except ImportError as exc:
        raise NotConvertible("tf2onnx is not installed (pip install 'loopml[tensorflow]')") from exc
    try:
        with _quiet_tf2onnx():
            proto, _ = tf2onnx.convert.from_function(
                function, input_signature=function.input_signature, opset=ONNX_OPSET
            )
    except Exception as exc:  # the converter's own errors for operators it lacks
        text = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        raise NotConvertible(f"tf2onnx cannot convert {subject} ({text})") from exc
    check_converted(proto, subject)
    return proto, proto.graph.output[0].name


def check_converted(proto: Any, subject: str) -> None:
    """NotConvertible when tf2onnx left TensorFlow operators in the graph (it does for the
    ones ONNX lacks, such as ``ReadFile``)."""
    import onnx

    left = sorted(
        {n.op_type for n in proto.graph.node if not onnx.defs.has(n.op_type, n.domain or "")}
    )
    if left:
        raise NotConvertible(
            f"{subject} uses TensorFlow operators with no ONNX form: {', '.join(left)}"
        )


class _quiet_tf2onnx:
    """tf2onnx logs every operator it cannot convert at ERROR level, and TensorFlow warns
    about the v1 functions tf2onnx calls; loopml reports what matters once."""

    def __enter__(self) -> None:
        import logging

        self.loggers = [logging.getLogger(n) for n in ("tf2onnx", "tensorflow")]
        self.levels = [logger.level for logger in self.loggers]
        for logger in self.loggers:
            logger.setLevel(logging.CRITICAL)

    def __exit__(self, *exc: object) -> None:
        for logger, level in zip(self.loggers, self.levels, strict=True):
            logger.setLevel(level)


def config_names(config: Any) -> set[str]:
    """Every object a Keras config names, as ``module.class_name`` (a serialized function
    as ``module.name``)."""
    names: set[str] = set()
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            cls, module = node.get("class_name"), node.get("module")
            # Keras' own markers (``__keras_tensor__``, ``__numpy__``...) import nothing; a
            # ``__lambda__``'s code is safe mode's to refuse
            marker = isinstance(cls, str) and cls.startswith("__") and not module
            if isinstance(cls, str) and not marker:
                if cls == "function" and isinstance(node.get("config"), str):
                    cls = node["config"]
                name = f"{module}.{cls}" if isinstance(module, str) and module else cls
                registered = node.get("registered_name")
                if (
                    isinstance(registered, str)
                    and registered not in ("", cls)
                    and name.startswith("keras")
                ):
                    # Keras looks a registered name up first: a built-in has none of its own
                    name = f"{name} (registered as {registered})"
                names.add(name)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return names


def _config(data: bytes, what: str) -> Any:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return json.loads(zf.read("config.json"))
    except Exception as exc:  # BadZipFile, KeyError (no config), JSONDecodeError
        raise IntegrityError(
            f"{what} has a {MEMBER} without a readable config.json: {type(exc).__name__}",
            where={"artifact": what, "file": MEMBER},
            hint="The file is damaged or was not written by Keras 3; retrain the model",
        ) from exc


def _custom_objects(names: set[Any], what: str) -> dict[str, Any]:
    """The trusted classes a config names, imported for Keras (by class name)."""
    out: dict[str, Any] = {}
    for name in sorted(n for n in names if isinstance(n, str)):
        module_name, _, attr = name.rpartition(".")
        try:
            obj = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError, ValueError) as exc:
            raise IntegrityError(
                f"{what} names {name}, which does not import here: {exc}"[:400],
                where={"artifact": what, "file": MEMBER},
                hint="Install the package that defines it where the model is loaded",
            ) from exc
        out[attr] = obj
    return out


def _dense(x: Any) -> np.ndarray:
    to_dense = getattr(x, "toarray", None)
    return np.asarray(to_dense() if callable(to_dense) else x)
