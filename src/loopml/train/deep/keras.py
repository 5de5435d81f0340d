"""Keras 3 models (TensorFlow backend, ``pip install 'loopml[tensorflow]'``) as scikit-learn
estimators, so the trainer runs them like any other.

``model.class`` names one of these in ``loopml.yaml`` (``loopml.train.deep.keras.MLPClassifier``
...); ``model.params`` are its constructor arguments. ``fit`` builds the network (loopml's MLP,
or the keras.Model that a user's function or class returns), trains it with Keras' own
``fit`` (early stopping on a validation split, restoring the best epoch) and keeps the result
as ``model_`` (a :class:`~loopml.registry.flavors.keras.KerasModel`, what the keras flavor
saves and predicts with), plus ``classes_`` and ``history_``. TensorFlow is imported only in
``fit`` and ``predict``.

``fit(x, y, init=PARENT)`` (``loopml train --from NAME@VERSION``) continues a registered
version instead: the network these parameters build must be the parent's (the same layers
with the same configuration, the same weight shapes; a ConfigError naming ``model.params``
and the first difference otherwise), it starts from the parent's weights, keeps its classes
(in its order) and target scale, and trains ``epochs`` more on the new rows. Adam goes on
from the parent's optimizer state too (its step count and each weight's moments, which the
parent's ``.keras`` holds: :func:`continue_optimizer`), with this run's ``lr`` and
``weight_decay``; a parent without a state that fits starts a fresh Adam, with a
:class:`FineTuneWarning` (and a line in ``notes_``) saying so. Each epoch's metrics include
the optimizer's step count (``iterations``), so the run shows where it went on from. The
parent is left unchanged.
"""

from __future__ import annotations

import importlib
import inspect
import random
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from loopml.errors import ConfigError, LoopmlError
from loopml.train.deep.finetune import FineTuneWarning as FineTuneWarning
from loopml.train.deep.finetune import warn_fresh

MODEL_WHERE = {"field": "model.params.model"}


class _KerasEstimator(BaseEstimator):
    """What every Keras estimator shares: the training loop's parameters and fit/predict."""

    _task = "classification"
    epochs: int
    lr: float
    batch_size: int
    patience: int
    validation_fraction: float
    weight_decay: float
    random_state: int | None

    def _network(self, keras: Any, n_in: int, n_out: int) -> tuple[Any, str | None]:
        """The untrained keras.Model, and the import path of the user's builder (or None)."""
        raise NotImplementedError

    def fit(self, x: Any, y: Any, *, init: Any = None, classes: Any = None) -> _KerasEstimator:
        """Train on ``x, y``. ``init`` (a :class:`~loopml.registry.flavors.keras.KerasModel`,
        ``loopml train --from``): start from its weights, with its classes (``classes``, in
        its order) and target scale; the network these parameters build must be its
        architecture (ConfigError naming ``model.params`` otherwise)."""
        from loopml.registry.flavors.keras import KerasModel, keras_module

        keras = keras_module()
        xs = _dense(x)
        yv = np.asarray(y)
        if self._task == "classification":
            if classes is not None:  # the parent's classes, in its order
                known = np.asarray(list(classes))
                codes = _codes(yv, known)
            else:
                known, codes = np.unique(yv, return_inverse=True)
            self.classes_ = known
            target = codes.astype(np.int64)
            n_out, y_mean, y_scale = len(known), 0.0, 1.0
        else:
            yf = yv.astype(np.float64)
            y_mean, y_scale = float(yf.mean()), float(yf.std()) or 1.0
            if init is not None:  # the parent's scale: its outputs mean what they meant
                y_mean, y_scale = float(init.y_mean), float(init.y_scale)
            target = ((yf - y_mean) / y_scale).astype(np.float32)
            n_out = 1
        seed = (
            int(self.random_state)
            if self.random_state is not None
            else int(np.random.default_rng().integers(2**31))
        )
        saved = random.getstate(), np.random.get_state()
        try:
            keras.utils.set_random_seed(seed)  # Python's, NumPy's and TensorFlow's
            net, builder = self._network(keras, xs.shape[1], n_out)
            _check_output(net, xs.shape[1], n_out, builder or "the MLP", self._task)
            if init is not None:
                _start_from(net, builder, init)
            history = self._train(keras, net, xs, target, seed, init)
        finally:
            random.setstate(saved[0])
            np.random.set_state(saved[1])
        self.history_ = history
        self.model_ = KerasModel(net, self._task, y_mean, y_scale, builder, history)
        self.n_features_in_ = xs.shape[1]
        return self

    def check_start(self, init: Any) -> None:
        """ConfigError naming ``model.params`` when the network these parameters build is
        not ``init``'s (a :class:`~loopml.registry.flavors.keras.KerasModel`), checked
        before any training (``loopml train --from`` refuses it before a run is recorded).
        A parent whose input and output widths Keras does not record (a subclassed model)
        is checked when :meth:`fit` starts from it."""
        from loopml.registry.flavors.keras import keras_module

        keras = keras_module()
        try:
            n_in = int(init.model.inputs[0].shape[-1])
            n_out = int(init.model.outputs[0].shape[-1])
        except (AttributeError, IndexError, TypeError, ValueError):
            return
        saved = random.getstate(), np.random.get_state()
        try:
            keras.utils.set_random_seed(0)
            net, builder = self._network(keras, n_in, n_out)
            net(np.zeros((1, n_in), dtype=np.float32), training=False)  # builds its weights
            _check_parent(net, builder, init)
        finally:
            random.setstate(saved[0])
            np.random.set_state(saved[1])

    def _train(
        self, keras: Any, net: Any, xs: np.ndarray, target: np.ndarray, seed: int, init: Any
    ) -> list[dict[str, float]]:
        order = np.random.default_rng(seed).permutation(len(xs))
        n_val = round(float(self.validation_fraction) * len(xs))
        n_val = n_val if 0 < n_val < len(xs) else 0
        val, tr = order[:n_val], order[n_val:]
        classify = self._task == "classification"
        net.compile(
            optimizer=keras.optimizers.Adam(
                learning_rate=float(self.lr), weight_decay=float(self.weight_decay) or None
            ),
            loss="sparse_categorical_crossentropy" if classify else "mean_squared_error",
            metrics=["accuracy"] if classify else [],
        )
        self.notes_ = [] if init is None else continue_optimizer(net, init)
        # each epoch's optimizer step count, with its metrics (``epoch.iterations``)
        callbacks = [_iterations(keras, net)]
        if n_val:
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor="val_loss",
                    patience=int(self.patience),
                    restore_best_weights=True,
                    start_from_epoch=0,
                )
            )
        fitted = net.fit(
            xs[tr],
            target[tr],
            validation_data=(xs[val], target[val]) if n_val else None,
            epochs=int(self.epochs),
            batch_size=int(self.batch_size),
            shuffle=True,
            verbose=0,
            callbacks=callbacks,
        )
        raw = fitted.history
        n = len(next(iter(raw.values()), []))
        return [{k: float(v[i]) for k, v in raw.items()} for i in range(n)]

    def predict(self, x: Any) -> np.ndarray:
        out = self.model_.predict(x)
        if self._task == "classification":
            return np.asarray(self.classes_)[out.argmax(axis=1)]
        return out


def _iterations(keras: Any, net: Any) -> Any:
    """A callback that adds the optimizer's step count to each epoch's metrics (the same
    dict Keras' History records next): ``epoch.iterations`` of the run."""

    class Iterations(keras.callbacks.Callback):  # type: ignore[misc,name-defined]
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            if logs is not None:
                logs["iterations"] = float(net.optimizer.iterations.numpy())

    return Iterations()


def continue_optimizer(net: Any, init: Any) -> list[str]:
    """Carry the parent's optimizer state into ``net``'s (compiled, not yet built): Adam's
    step count and each weight's moments, so that a fine-tune goes on where the parent's
    fit stopped (its bias correction too); the learning rate and weight decay stay this
    run's ``model.params``. When the parent holds no state that fits (a file without its
    optimizer, another optimizer, other variables), the optimizer starts afresh: the
    returned note, also warned (:class:`FineTuneWarning`), says so and why."""
    from loopml.registry.flavors.keras import keras_module

    keras = keras_module()
    opt = net.optimizer
    opt.build(net.trainable_variables)
    mine = list(opt.variables)
    got, reason = _parent_optimizer(init)
    if got is not None and got[0] != type(opt).__name__:
        reason = f"the version to continue was trained with {got[0]}, not {type(opt).__name__}"
    elif got is not None and len(got[1]) != len(mine):
        reason = f"the version's optimizer has {len(got[1])} variables, this network's {len(mine)}"
    elif got is not None:
        for var, (path, value) in zip(mine, got[1], strict=True):
            if _role(str(var.path)) != _role(path) or tuple(var.shape) != value.shape:
                reason = (
                    f"the version's optimizer variable {path} {list(value.shape)} does not fit "
                    f"{var.path} {list(var.shape)}"
                )
                break
    if reason is not None:
        return warn_fresh(reason, stacklevel=4)
    assert got is not None
    for var, (path, value) in zip(mine, got[1], strict=True):
        if _role(path) != "learning_rate":  # this run's lr (model.params.lr)
            var.assign(keras.ops.convert_to_tensor(value, dtype=var.dtype))
    return []


def _parent_optimizer(init: Any) -> tuple[Any, str | None]:
    """The parent's optimizer state (:meth:`KerasModel.optimizer_state`), or None and why."""
    try:
        got = init.optimizer_state() if hasattr(init, "optimizer_state") else None
    except LoopmlError as exc:  # the file read again is damaged: the weights still go on
        return None, f"the version's optimizer cannot be read ({exc})"
    if got is not None:
        return got, None
    if getattr(init, "file_sha256", None) and getattr(init, "saved_optimizer", None) is None:
        return None, (
            "the version's optimizer was not read: the version was loaded from its bytes, "
            "not from a workspace's artifact store (loopml.registry.load_model)"
        )
    return None, "the version to continue holds no optimizer state"


def _role(path: str) -> str:
    """What an optimizer variable is: ``iteration``, ``learning_rate``, or the slot of a
    weight (``momentum``, ``velocity``...), from its path (``adam/dense_kernel_momentum``)."""
    last = path.rsplit("/", 1)[-1]
    return last if last in ("iteration", "learning_rate") else last.rsplit("_", 1)[-1]


class _Classifier(ClassifierMixin, _KerasEstimator):
    def predict_proba(self, x: Any) -> np.ndarray:
        out: np.ndarray = self.model_.predict(x)
        return out


class _Regressor(RegressorMixin, _KerasEstimator):
    _task = "regression"


class _MLPMixin:
    hidden: list[int]
    dropout: float
    _task: str

    def _network(self, keras: Any, n_in: int, n_out: int) -> tuple[Any, str | None]:
        layers: list[Any] = [keras.Input((n_in,))]
        for h in self.hidden:
            layers.append(keras.layers.Dense(int(h), activation="relu"))
            if float(self.dropout) > 0:
                layers.append(keras.layers.Dropout(float(self.dropout)))
        last = "softmax" if self._task == "classification" else None
        layers.append(keras.layers.Dense(n_out, activation=last))
        return keras.Sequential(layers), None


class MLPClassifier(_MLPMixin, _Classifier):
    """A multi-layer perceptron classifier in Keras (softmax over the classes)."""

    def __init__(
        self,
        hidden: list[int] | tuple[int, ...] = (64, 32),
        dropout: float = 0.0,
        epochs: int = 30,
        lr: float = 1e-3,
        batch_size: int = 256,
        patience: int = 5,
        validation_fraction: float = 0.1,
        weight_decay: float = 0.0,
        random_state: int | None = None,
    ) -> None:
        self.hidden = hidden  # type: ignore[assignment]
        self.dropout = dropout
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.weight_decay = weight_decay
        self.random_state = random_state


class MLPRegressor(_MLPMixin, _Regressor):
    """A multi-layer perceptron regressor in Keras (trained on the standardized target)."""

    def __init__(
        self,
        hidden: list[int] | tuple[int, ...] = (64, 32),
        dropout: float = 0.0,
        epochs: int = 30,
        lr: float = 1e-3,
        batch_size: int = 256,
        patience: int = 5,
        validation_fraction: float = 0.1,
        weight_decay: float = 0.0,
        random_state: int | None = None,
    ) -> None:
        self.hidden = hidden  # type: ignore[assignment]
        self.dropout = dropout
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.weight_decay = weight_decay
        self.random_state = random_state


class _ModelMixin:
    """A user's model: ``model`` is the import path of a function or class that returns a
    ``keras.Model``, called with ``args`` (plus ``n_in``/``n_out`` when it takes them). From
    ``loopml.yaml`` it is imported only when ``model.trust`` names it; loading the version
    back needs the same trust (recorded on the version)."""

    model: str
    args: dict[str, Any] | None

    def _network(self, keras: Any, n_in: int, n_out: int) -> tuple[Any, str | None]:
        path = str(self.model)
        module_name, _, attr = path.rpartition(".")
        if not module_name:
            raise ConfigError(
                f"model.params.model {path!r} is not an import path (package.module.name)",
                where=MODEL_WHERE,
                hint="Name a function or class that returns a keras.Model by import path",
            )
        try:
            builder = getattr(importlib.import_module(module_name), attr)
        except ImportError as exc:
            raise ConfigError(
                f"model.params.model {path!r}: module {module_name!r} does not import ({exc})",
                where=MODEL_WHERE,
                hint="Name a function or class that returns a keras.Model, by an import path "
                "that imports where loopml runs",
            ) from exc
        except AttributeError as exc:
            raise ConfigError(
                f"model.params.model {path!r}: {module_name} has no {attr!r}",
                where=MODEL_WHERE,
                hint="Check the spelling of the import path",
            ) from exc
        args = dict(self.args or {})
        try:
            taken = inspect.signature(builder).parameters
        except (TypeError, ValueError):
            taken = {}  # type: ignore[assignment]
        for key, value in (("n_in", n_in), ("n_out", n_out)):
            if key in taken and key not in args:
                args[key] = value
        try:
            net = builder(**args)
        except Exception as exc:  # the user's code failing on these arguments
            raise ConfigError(
                f"model.params.model {path}({', '.join(args)}) fails: {type(exc).__name__}: {exc}"[
                    :400
                ],
                where={"field": "model.params.args"},
                hint="Check model.params.args against the function's parameters",
            ) from exc
        if not isinstance(net, keras.Model):
            raise ConfigError(
                f"model.params.model {path} returned a {type(net).__name__}, not a keras.Model",
                where=MODEL_WHERE,
                hint="Return a keras.Model (Sequential, functional, or a subclass)",
            )
        return net, path


class ModelClassifier(_ModelMixin, _Classifier):
    """A user's Keras model as a classifier: it must answer one probability per class
    (end it with a softmax)."""

    def __init__(
        self,
        model: str = "",
        args: dict[str, Any] | None = None,
        epochs: int = 30,
        lr: float = 1e-3,
        batch_size: int = 256,
        patience: int = 5,
        validation_fraction: float = 0.1,
        weight_decay: float = 0.0,
        random_state: int | None = None,
    ) -> None:
        self.model = model
        self.args = args
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.weight_decay = weight_decay
        self.random_state = random_state


class ModelRegressor(_ModelMixin, _Regressor):
    """A user's Keras model as a regressor: it must answer one value per row (``[n, 1]``)."""

    def __init__(
        self,
        model: str = "",
        args: dict[str, Any] | None = None,
        epochs: int = 30,
        lr: float = 1e-3,
        batch_size: int = 256,
        patience: int = 5,
        validation_fraction: float = 0.1,
        weight_decay: float = 0.0,
        random_state: int | None = None,
    ) -> None:
        self.model = model
        self.args = args
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.weight_decay = weight_decay
        self.random_state = random_state


def _check_output(net: Any, n_in: int, n_out: int, path: str, task: str) -> None:
    """ConfigError when the model does not answer ``[n, n_out]`` for ``[n, n_in]`` (and,
    for a classifier, rows of probabilities)."""
    try:
        raw = net(np.zeros((2, n_in), dtype=np.float32), training=False)
        out = np.asarray(raw.numpy() if hasattr(raw, "numpy") else raw)
    except Exception as exc:  # the user's call failing on rows of this width
        raise ConfigError(
            f"{path} fails on rows of {n_in} features: {type(exc).__name__}: {exc}"[:400],
            where=MODEL_WHERE,
            hint=f"The model must take a float tensor [n, {n_in}] (the transformed features)",
        ) from exc
    if out.shape != (2, n_out):
        what = f"{n_out} probabilities (one per class)" if task == "classification" else "1 value"
        raise ConfigError(
            f"{path} answers shape {list(out.shape)} for 2 rows; the {task} task needs {what}: "
            f"[2, {n_out}]",
            where=MODEL_WHERE,
            hint="Change the model's last layer, or take n_out in the function that builds it",
        )
    if task == "classification" and not np.allclose(out.sum(axis=1), 1.0, atol=1e-3):
        raise ConfigError(
            f"{path} answers rows that do not sum to 1; a classifier answers probabilities",
            where=MODEL_WHERE,
            hint="End the model with a softmax (Dense(n_out, activation='softmax'))",
        )


def _codes(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Each label's position in ``classes`` (the parent's; every label is one of them, the
    continuation checked it)."""
    lookup = {_plain(c): i for i, c in enumerate(classes)}
    return np.array([lookup[_plain(v)] for v in y], dtype=np.int64)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


_FROM = {"field": "model.params", "option": "--from"}
_FROM_HINT = (
    "Give the parent's architecture parameters (loopml models show NAME@VERSION), or "
    "train from scratch without --from"
)


def _start_from(net: Any, builder: str | None, init: Any) -> None:
    """The parent's weights into ``net`` (the parent is left unchanged); ConfigError naming
    ``model.params`` when ``net`` is another architecture than the parent's."""
    _check_parent(net, builder, init)
    try:
        net.set_weights(init.model.get_weights())
    except ValueError as exc:  # Keras' own error for weights of other shapes
        raise ConfigError(
            f"the weights of the version to continue do not fit the network: "
            f"{' '.join(str(exc).split())}"[:400],
            where=_FROM,
            hint=_FROM_HINT,
        ) from exc


def _check_parent(net: Any, builder: str | None, init: Any) -> None:
    """ConfigError naming ``model.params`` (``model.params.model`` for another builder)
    and the first difference when ``net`` is not the architecture of ``init``."""
    where, hint = _FROM, _FROM_HINT
    parent_builder = getattr(init, "builder", None)
    if parent_builder != builder:
        was, now = (b or "loopml's MLP" for b in (parent_builder, builder))
        raise ConfigError(
            f"the version to continue was built by {was} (not {now}); model.params build "
            "another network, so its weights cannot be the start",
            where={**where, "field": "model.params.model"},
            hint=hint,
        )
    parent = init.model
    diff = architecture_diff(parent, net, mlp=builder is None)
    if diff is not None:
        raise ConfigError(
            f"the version to continue is a Keras network with {diff}; model.params build "
            "another network, so its weights cannot be the start",
            where=where,
            hint=hint,
        )


def architecture(net: Any) -> list[tuple[str, dict[str, Any]]]:
    """``net``'s layers as Keras configures them, without their names (which Keras numbers
    per process): ``(module.Class, config)`` in order, then the weights' shapes."""
    out = []
    for layer in net.layers:
        cls = type(layer)
        config = {k: v for k, v in layer.get_config().items() if k != "name"}
        out.append((f"{cls.__module__}.{cls.__qualname__}", config))
    out.append(("weights", {"shapes": [list(w.shape) for w in net.weights]}))
    return out


def architecture_diff(parent: Any, net: Any, *, mlp: bool) -> str | None:
    """None when ``net`` is ``parent``'s architecture; else the first difference, in the
    MLP's parameters (``hidden=[16] (not [32])``) when both are loopml's MLP."""
    a, b = architecture(parent), architecture(net)
    if a == b:
        return None
    if mlp:
        was, now = _mlp_params(a), _mlp_params(b)
        parts = [f"{k}={was[k]!r} (not {now[k]!r})" for k in was if was[k] != now[k]]
        if parts:
            return ", ".join(parts)
    if len(a) != len(b):
        return f"{len(a) - 1} layers (not {len(b) - 1})"
    for i, ((ca, fa), (cb, fb)) in enumerate(zip(a, b, strict=True)):
        if ca != cb:
            return f"layer {i} {ca.rsplit('.', 1)[-1]} (not {cb.rsplit('.', 1)[-1]})"
        keys = [k for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)]
        if keys:
            what = "weights" if ca == "weights" else f"layer {i} ({ca.rsplit('.', 1)[-1]})"
            shown = ", ".join(f"{k}={fa.get(k)!r} (not {fb.get(k)!r})" for k in keys[:4])
            return f"{what} {shown}"[:300]
    return "another architecture"


def _mlp_params(arch: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """``hidden`` and ``dropout`` of loopml's MLP, read back from its layers."""
    dense = [c for name, c in arch if name.endswith(".Dense")]
    rates = [float(c.get("rate") or 0.0) for name, c in arch if name.endswith(".Dropout")]
    return {
        "hidden": [int(c.get("units", 0)) for c in dense[:-1]],
        "dropout": rates[0] if rates else 0.0,
        "n_in": (arch[-1][1]["shapes"] or [[None]])[0][0],
    }


def _dense(x: Any) -> np.ndarray:
    to_dense = getattr(x, "toarray", None)
    return np.asarray(to_dense() if callable(to_dense) else x, dtype=np.float32)
