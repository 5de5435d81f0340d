"""The PyTorch architectures loopml declares, and the in-memory form of a torch model.

A torch model in a bundle is data, never code: the architecture is a class path (one of
:data:`ARCHITECTURES`, or a user's ``torch.nn.Module`` that the version trusts) with its
constructor arguments as JSON, and the weights are a safetensors file. Rebuilding it imports
the class, calls it with the arguments and loads the weights with ``strict=True``, so a file
whose tensors do not fit the architecture is refused instead of half-loaded.

This module imports torch; :mod:`loopml.registry.flavors.torch` imports it only when a torch
model is trained, loaded or predicted.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

#: the architectures a bundle may name without an opt-in (exact class paths)
ARCHITECTURES = (
    "loopml.registry.flavors.torch_nets.MLP",
    "loopml.registry.flavors.torch_nets.SmallCNN",
)


class MLP(nn.Module):
    """Fully connected layers with ReLU (and dropout) between them; answers raw outputs
    (logits for classification, one value for regression)."""

    def __init__(
        self, n_in: int, n_out: int, hidden: list[int] | None = None, dropout: float = 0.0
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_in
        for h in hidden or []:
            layers += [nn.Linear(width, int(h)), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = int(h)
        layers.append(nn.Linear(width, n_out))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out


class SmallCNN(nn.Module):
    """Two 3x3 convolutions with max pooling, then a linear layer: for small images fed as
    flat rows of ``channels * height * width`` pixels (channel first, row by row)."""

    def __init__(
        self,
        n_in: int,
        n_out: int,
        channels: int = 1,
        height: int = 8,
        width: int = 8,
        filters: list[int] | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if channels * height * width != n_in:
            raise ValueError(
                f"the images are {channels}x{height}x{width} = {channels * height * width} "
                f"pixels, but the rows have {n_in} features"
            )
        self.shape = (channels, height, width)
        f1, f2 = (filters or [16, 32])[:2]
        self.features = nn.Sequential(
            nn.Conv2d(channels, f1, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(f1, f2, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        flat = f2 * (height // 4) * (width // 4)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(flat, n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.features(x.reshape(-1, *self.shape)))
        return out


class MatrixFactorization(nn.Module):
    """User and item embeddings with biases; ``forward(users, items)`` scores pairs."""

    def __init__(self, n_users: int, n_items: int, dim: int = 32) -> None:
        super().__init__()
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items, dim)
        self.user_bias = nn.Embedding(n_users, 1)
        self.item_bias = nn.Embedding(n_items, 1)
        for emb in (self.user, self.item):
            nn.init.normal_(emb.weight, std=0.1)
        for emb in (self.user_bias, self.item_bias):
            nn.init.zeros_(emb.weight)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        dot = (self.user(users) * self.item(items)).sum(dim=-1)
        out: torch.Tensor = dot + self.user_bias(users)[..., 0] + self.item_bias(items)[..., 0]
        return out

    def all_scores(self, users: torch.Tensor) -> torch.Tensor:
        """Scores of every item for each of ``users``: ``[len(users), n_items]``."""
        out: torch.Tensor = (
            self.user(users) @ self.item.weight.T
            + self.user_bias(users)
            + self.item_bias.weight[:, 0]
        )
        return out


def import_module_class(path: str) -> type[nn.Module]:
    """The ``torch.nn.Module`` subclass at ``module.Class``; ValueError naming the problem."""
    module_name, _, attr = path.rpartition(".")
    if not module_name:
        raise ValueError(f"{path!r} is not an import path (module.Class)")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"module {module_name!r} does not import ({exc})") from exc
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"{path!r} is not a torch.nn.Module subclass")
    return cls


class Head(nn.Module):
    """The network and what turns its raw output into loopml's answer: class probabilities
    (softmax) or the regression value (unscaled to the target's units). What serving runs,
    natively and in ONNX."""

    def __init__(self, net: nn.Module, task: str, y_mean: float, y_scale: float) -> None:
        super().__init__()
        self.net = net
        self.task = task
        self.y_mean = float(y_mean)
        self.y_scale = float(y_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        if self.task == "classification":
            return torch.softmax(out, dim=1)
        return out[:, 0] * self.y_scale + self.y_mean


@dataclass
class OptimizerState:
    """Adam's state after a fit: per-parameter tensors named ``<index>.<name>`` (``step``,
    ``exp_avg``, ``exp_avg_sq``) and what they are (``meta``: the kind, the step count, the
    parameters' names in order, the settings; :func:`loopml.train.deep.finetune.adam_meta`)."""

    meta: dict[str, Any]
    tensors: dict[str, torch.Tensor]


@dataclass
class TorchModel:
    """A trained torch network as loopml predicts with it, exactly as after a reload.

    ``architecture`` is ``{"class": path, "args": {...}}`` (``n_in`` and ``n_out`` included);
    ``y_mean``/``y_scale`` unscale a regression output; ``history`` is one dict of metrics per
    epoch of the fit that made it (not saved: the run keeps it as steps); ``threads`` is
    the CPU threads it predicts on natively, those it trained on (``model.params.threads``,
    kept in the manifest; None: torch's setting, as for a version saved without it).

    ``optimizer`` is Adam's state after the fit that made it (what the bundle keeps for a
    fine-tune); a loaded version has none in memory: it knows the manifest's description
    (``optimizer_meta``) and, when loaded from a workspace, reads the file again from the
    artifact store when a fine-tune asks (``saved_optimizer``, :meth:`optimizer_state`)."""

    net: nn.Module
    architecture: dict[str, Any]
    task: str
    y_mean: float = 0.0
    y_scale: float = 1.0
    history: list[dict[str, float]] = field(default_factory=list)
    threads: int | None = field(default=None, compare=False)
    optimizer: OptimizerState | None = field(default=None, repr=False, compare=False)
    optimizer_meta: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    saved_optimizer: Callable[[], OptimizerState] | None = field(
        default=None, repr=False, compare=False
    )
    _double: Head | None = field(default=None, init=False, repr=False, compare=False)

    def optimizer_state(self) -> OptimizerState | None:
        """Adam's state of the fit that made this network: in memory for a model trained in
        this process, else read again from the version's bundle (IntegrityError when the
        file is damaged); None when there is none (see :meth:`optimizer_missing`)."""
        if self.optimizer is not None:
            return self.optimizer
        if self.saved_optimizer is not None:
            return self.saved_optimizer()
        return None

    def optimizer_missing(self) -> str:
        """Why :meth:`optimizer_state` is None."""
        if self.optimizer_meta is None:
            return (
                "the version to continue holds no optimizer state (its bundle has no "
                "optimizer.safetensors: registered before loopml kept it)"
            )
        return (
            "the version's optimizer state was not read: the version was loaded from its "
            "bytes, not from a workspace's artifact store (loopml.registry.load_model)"
        )

    def head(self) -> Head:
        """What predictions come from: the network in double precision on the CPU (the
        float32 weights are exact in double), so that the ONNX form, which runs the same
        double graph, answers the same numbers to about 1e-12 rather than float32's 1e-6."""
        if self._double is None:
            net = copy.deepcopy(self.net).cpu().double().eval()
            self._double = Head(net, self.task, self.y_mean, self.y_scale).eval()
        return self._double

    def predict(self, x: Any) -> np.ndarray:
        arr = np.ascontiguousarray(_dense(x), dtype=np.float64)
        head = self.head()  # built outside inference mode: its weights stay ordinary tensors
        before = torch.get_num_threads()
        threads = before if self.threads is None else max(1, int(self.threads))
        if threads != before:
            torch.set_num_threads(threads)
        try:
            with torch.inference_mode():
                out = head(torch.from_numpy(arr))
        finally:
            if threads != before:
                torch.set_num_threads(before)
        return out.numpy().astype(np.float64, copy=False)


def build(architecture: dict[str, Any]) -> nn.Module:
    """A fresh network from its declared architecture (the class is imported, not loaded)."""
    cls = import_module_class(str(architecture["class"]))
    args = architecture.get("args") or {}
    if not isinstance(args, dict):
        raise ValueError("the architecture's args are not an object")
    return cls(**args)


def _dense(x: Any) -> np.ndarray:
    to_dense = getattr(x, "toarray", None)
    return np.asarray(to_dense() if callable(to_dense) else x)
