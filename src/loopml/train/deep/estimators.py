"""PyTorch networks as scikit-learn estimators, so the trainer runs them like any other.

``model.class`` names one of these in ``loopml.yaml``; ``model.params`` are its constructor
arguments (the architecture's and the training loop's). ``fit`` builds the network from its
declared architecture, trains it with :func:`loopml.train.deep.loop.fit_network` and keeps
the result as ``model_`` (a :class:`~loopml.registry.flavors.torch_nets.TorchModel`, what the
torch flavor saves and predicts with), plus ``classes_`` and ``history_``.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from loopml.errors import ConfigError

MODULE_WHERE = {"field": "model.params.module"}


class _TorchEstimator(BaseEstimator):
    """What every torch estimator shares: the loop's parameters and ``fit``/``predict``."""

    _task = "classification"
    _arch_class = ""
    epochs: int
    lr: float
    batch_size: int
    patience: int
    validation_fraction: float
    weight_decay: float
    random_state: int | None
    device: str
    checkpoint_dir: str | None
    progress: bool
    threads: int | None
    workers: int

    def _arch_args(self) -> dict[str, Any]:
        raise NotImplementedError

    def _architecture(self, n_in: int, n_out: int) -> dict[str, Any]:
        args = {"n_in": n_in, "n_out": n_out, **self._arch_args()}
        return {"class": self._arch_class, "args": args}

    def check_start(self, init: Any) -> None:
        """ConfigError naming ``model.params`` when these parameters build another network
        than ``init``'s (the version ``--from`` names), before any run is recorded; the fit
        checks the weights themselves again."""
        parent = getattr(init, "architecture", None)
        args = parent.get("args") if isinstance(parent, dict) else None
        if not isinstance(args, dict) or not {"n_in", "n_out"} <= set(args):
            return  # nothing to compare before the data is read: the fit checks it
        _same_architecture(parent, self._architecture(int(args["n_in"]), int(args["n_out"])))

    def fit(self, x: Any, y: Any, *, init: Any = None, classes: Any = None) -> _TorchEstimator:
        """Train on ``x, y``. ``init`` (a :class:`TorchModel`, ``loopml train --from``):
        start from its weights, with its classes (``classes``, in its order) and target
        scale; its architecture must be the one these parameters build (ConfigError
        naming ``model.params`` otherwise). Adam goes on from its state (step count and
        moments, with this run's ``lr`` and ``weight_decay``) when it has one that fits,
        else starts afresh with a :class:`~loopml.train.deep.finetune.FineTuneWarning`
        (and a line in ``notes_``)."""
        import torch

        from loopml.registry.flavors.torch_nets import OptimizerState, TorchModel, build
        from loopml.train.deep.finetune import parent_adam
        from loopml.train.deep.loop import LoopSettings, cpu_threads, train_network

        xs = _dense(x)
        yv = np.asarray(y)
        if self._task == "classification":
            if classes is not None:  # the parent's classes, in its order
                known = np.asarray(list(classes))
                codes = _codes(yv, known)
            else:
                known, codes = _classes(yv)
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
        arch = self._architecture(xs.shape[1], n_out)
        threads = None if self.threads is None else int(self.threads)
        # the check of the new network runs on the loop's threads too (torch's default
        # threads spin on a busy machine: a 2-row forward then costs milliseconds)
        with torch.random.fork_rng(devices=[]), cpu_threads(threads):
            torch.manual_seed(seed)
            net = self._build(build, arch)
            _check_output(net, xs.shape[1], n_out, arch["class"], self._task)
            adam_start: Any = None
            self.notes_: list[str] = []
            if init is not None:
                _start_from(net, arch, init)
                # the parent's Adam (step count, moments) when it fits; else a fresh one
                adam_start, self.notes_ = parent_adam(net, init)
            settings = LoopSettings(
                epochs=int(self.epochs),
                lr=float(self.lr),
                batch_size=int(self.batch_size),
                patience=int(self.patience),
                validation_fraction=float(self.validation_fraction),
                weight_decay=float(self.weight_decay),
                seed=seed,
                device=str(self.device),
                checkpoint_dir=self.checkpoint_dir,
                progress=bool(self.progress),
                threads=threads,
            )
            if int(self.workers) > 1:
                from loopml.train.deep.ddp import train_distributed

                trained = train_distributed(
                    net, arch, xs, target, task=self._task, settings=settings,
                    workers=int(self.workers), adam_start=adam_start,
                )  # fmt: skip
            else:
                trained = train_network(
                    net, xs, target, task=self._task, settings=settings, adam_start=adam_start
                )
        history = trained.history
        self.history_ = history
        self.model_ = TorchModel(
            net,
            arch,
            self._task,
            y_mean,
            y_scale,
            history,
            threads=settings.threads,
            optimizer=OptimizerState(trained.optimizer_meta, trained.optimizer),
        )
        self.n_features_in_ = xs.shape[1]
        return self

    def _build(self, build: Any, arch: dict[str, Any]) -> Any:
        try:
            return build(arch)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"model.params do not build {arch['class']}: {exc}",
                where={"field": "model.params"},
                hint="Check the architecture's parameters (see docs/deep-learning.md)",
            ) from exc

    def predict(self, x: Any) -> np.ndarray:
        out = self.model_.predict(x)
        if self._task == "classification":
            return np.asarray(self.classes_)[out.argmax(axis=1)]
        return out


class _Classifier(ClassifierMixin, _TorchEstimator):
    def predict_proba(self, x: Any) -> np.ndarray:
        out: np.ndarray = self.model_.predict(x)
        return out


class _Regressor(RegressorMixin, _TorchEstimator):
    _task = "regression"


class _MLPMixin:
    _arch_class = "loopml.registry.flavors.torch_nets.MLP"
    hidden: list[int]
    dropout: float

    def _arch_args(self) -> dict[str, Any]:
        return {"hidden": [int(h) for h in self.hidden], "dropout": float(self.dropout)}


class MLPClassifier(_MLPMixin, _Classifier):
    """A multi-layer perceptron classifier (softmax over the classes)."""

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
        device: str = "auto",
        checkpoint_dir: str | None = None,
        progress: bool = False,
        threads: int | None = 1,
        workers: int = 1,
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
        self.device = device
        self.checkpoint_dir = checkpoint_dir
        self.progress = progress
        self.threads = threads
        self.workers = workers


class MLPRegressor(_MLPMixin, _Regressor):
    """A multi-layer perceptron regressor (trained on the standardized target)."""

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
        device: str = "auto",
        checkpoint_dir: str | None = None,
        progress: bool = False,
        threads: int | None = 1,
        workers: int = 1,
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
        self.device = device
        self.checkpoint_dir = checkpoint_dir
        self.progress = progress
        self.threads = threads
        self.workers = workers


class CNNClassifier(_Classifier):
    """A small convolutional network for images given as rows of pixels (``channels *
    height * width`` feature columns, e.g. the 64 pixel columns of scikit-learn's digits)."""

    _arch_class = "loopml.registry.flavors.torch_nets.SmallCNN"

    def __init__(
        self,
        channels: int = 1,
        height: int = 8,
        width: int = 8,
        filters: list[int] | tuple[int, ...] = (16, 32),
        dropout: float = 0.0,
        epochs: int = 30,
        lr: float = 1e-3,
        batch_size: int = 256,
        patience: int = 5,
        validation_fraction: float = 0.1,
        weight_decay: float = 0.0,
        random_state: int | None = None,
        device: str = "auto",
        checkpoint_dir: str | None = None,
        progress: bool = False,
        threads: int | None = 1,
        workers: int = 1,
    ) -> None:
        self.channels = channels
        self.height = height
        self.width = width
        self.filters = filters
        self.dropout = dropout
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.weight_decay = weight_decay
        self.random_state = random_state
        self.device = device
        self.checkpoint_dir = checkpoint_dir
        self.progress = progress
        self.threads = threads
        self.workers = workers

    def _arch_args(self) -> dict[str, Any]:
        return {
            "channels": int(self.channels),
            "height": int(self.height),
            "width": int(self.width),
            "filters": [int(f) for f in self.filters],
            "dropout": float(self.dropout),
        }


class _ModuleMixin:
    """A user's ``torch.nn.Module`` by import path (``module``) with its constructor
    arguments (``args``); ``n_in``/``n_out`` are passed too when its constructor takes them.
    Loading it back needs ``trust: [the.module.Path]`` (recorded on the version)."""

    module: str
    args: dict[str, Any] | None

    def _architecture(self, n_in: int, n_out: int) -> dict[str, Any]:
        from loopml.registry.flavors.torch_nets import import_module_class

        try:
            cls = import_module_class(str(self.module))
        except ValueError as exc:
            raise ConfigError(
                f"model.params.module {self.module!r}: {exc}",
                where=MODULE_WHERE,
                hint="Name a torch.nn.Module subclass by import path (package.module.Class) "
                "that imports where loopml runs",
            ) from exc
        taken = inspect.signature(cls).parameters
        args = dict(self.args or {})
        for key, value in (("n_in", n_in), ("n_out", n_out)):
            if key in taken and key not in args:
                args[key] = value
        return {"class": f"{cls.__module__}.{cls.__qualname__}", "args": args}


def _module_init(self: Any, module: str, args: dict[str, Any] | None, **loop: Any) -> None:
    self.module = module
    self.args = args
    for k, v in loop.items():
        setattr(self, k, v)


class ModuleClassifier(_ModuleMixin, _Classifier):
    """A user's network as a classifier: it must answer one logit per class."""

    def __init__(
        self,
        module: str = "",
        args: dict[str, Any] | None = None,
        epochs: int = 30,
        lr: float = 1e-3,
        batch_size: int = 256,
        patience: int = 5,
        validation_fraction: float = 0.1,
        weight_decay: float = 0.0,
        random_state: int | None = None,
        device: str = "auto",
        checkpoint_dir: str | None = None,
        progress: bool = False,
        threads: int | None = 1,
        workers: int = 1,
    ) -> None:
        _module_init(**{k: v for k, v in locals().items() if k != "__class__"})


class ModuleRegressor(_ModuleMixin, _Regressor):
    """A user's network as a regressor: it must answer one value per row (``[n, 1]``)."""

    def __init__(
        self,
        module: str = "",
        args: dict[str, Any] | None = None,
        epochs: int = 30,
        lr: float = 1e-3,
        batch_size: int = 256,
        patience: int = 5,
        validation_fraction: float = 0.1,
        weight_decay: float = 0.0,
        random_state: int | None = None,
        device: str = "auto",
        checkpoint_dir: str | None = None,
        progress: bool = False,
        threads: int | None = 1,
        workers: int = 1,
    ) -> None:
        _module_init(**{k: v for k, v in locals().items() if k != "__class__"})


def _check_output(net: Any, n_in: int, n_out: int, path: str, task: str) -> None:
    """ConfigError when the network does not answer ``[n, n_out]`` for ``[n, n_in]``."""
    import torch

    net.eval()
    try:
        with torch.inference_mode():
            shape = tuple(net(torch.zeros(2, n_in)).shape)
    except Exception as exc:  # the user's forward failing on rows of this width
        raise ConfigError(
            f"{path} fails on rows of {n_in} features: {type(exc).__name__}: {exc}"[:400],
            where=MODULE_WHERE,
            hint=f"The network must take a float tensor [n, {n_in}] (the transformed features)",
        ) from exc
    net.train()
    if shape != (2, n_out):
        what = f"{n_out} logits (one per class)" if task == "classification" else "1 value"
        raise ConfigError(
            f"{path} answers shape {list(shape)} for 2 rows; the {task} task needs {what}: "
            f"[2, {n_out}]",
            where=MODULE_WHERE,
            hint="Change the network's last layer, or pass n_out to its constructor",
        )


def _classes(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(y, return_inverse=True)``: the sorted labels and each row's index among
    them; integer labels of a small range by counting (one pass, not a sort)."""
    if y.ndim == 1 and y.size and (y.dtype.kind == "i" or (y.dtype.kind == "u" and y.itemsize < 8)):
        low, high = int(y.min()), int(y.max())
        if high - low <= max(1024, y.size):
            shifted = y.astype(np.int64) - low
            present = np.bincount(shifted, minlength=high - low + 1) > 0
            lookup = np.cumsum(present) - 1
            known = (np.flatnonzero(present) + low).astype(y.dtype)
            return known, lookup[shifted]
    known, codes = np.unique(y, return_inverse=True)
    return known, codes


def _codes(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """The index of each label of ``y`` in ``classes`` (every label is one of them: the
    continuation checked it)."""
    lookup = {(c.item() if isinstance(c, np.generic) else c): i for i, c in enumerate(classes)}
    return np.array([lookup[v.item() if isinstance(v, np.generic) else v] for v in y])


def _start_from(net: Any, arch: dict[str, Any], init: Any) -> None:
    """The parent's weights into ``net``; ConfigError when its architecture differs."""
    _same_architecture(init.architecture, arch)
    try:
        net.load_state_dict(init.net.state_dict(), strict=True)
    except RuntimeError as exc:
        raise ConfigError(
            f"the weights of the version to continue do not fit the network: "
            f"{' '.join(str(exc).split())}"[:400],
            where={"field": "model.params", "option": "--from"},
            hint="Train from scratch without --from",
        ) from exc


def _same_architecture(parent: Any, arch: dict[str, Any]) -> None:
    """ConfigError naming ``model.params`` when the parent's architecture is not ``arch``."""
    if parent != arch:
        diff = _arch_diff(parent, arch)
        raise ConfigError(
            f"the version to continue is {parent.get('class', '?').rsplit('.', 1)[-1]} "
            f"with {diff}; model.params build another network, so its weights cannot be "
            "the start",
            where={"field": "model.params", "option": "--from"},
            hint="Give the parent's architecture parameters (loopml models show NAME@VERSION), "
            "or train from scratch without --from",
        )


def _arch_diff(parent: dict[str, Any], new: dict[str, Any]) -> str:
    if parent.get("class") != new.get("class"):
        return f"class {parent.get('class')} (not {new.get('class')})"
    a, b = parent.get("args") or {}, new.get("args") or {}
    parts = [
        f"{k}={a.get(k)!r} (not {b.get(k)!r})"
        for k in sorted(set(a) | set(b))
        if a.get(k) != b.get(k)
    ]
    return ", ".join(parts[:4]) or "other arguments"


def _dense(x: Any) -> np.ndarray:
    to_dense = getattr(x, "toarray", None)
    return np.asarray(to_dense() if callable(to_dense) else x, dtype=np.float32)
