"""What a fine-tune (``loopml train --from NAME@VERSION``) continues of the parent's optimizer.

A Keras version's ``.keras`` holds its compiled optimizer
(:func:`loopml.train.deep.keras.continue_optimizer`). A torch version's bundle holds Adam's
state after the parent's last epoch in ``optimizer.safetensors`` (each parameter's
``step``, ``exp_avg`` and ``exp_avg_sq`` as tensors named ``<index>.<name>``, as a resumable
checkpoint holds them: :func:`loopml.train.deep.checkpoints.optimizer_tensors`) and, in the
manifest (``model.optimizer``), what they are: the optimizer's kind, its step count, the
parameters' names in order and its settings then (:func:`adam_meta`). Serving never reads the
file; a fine-tune reads it again from the artifact store and continues it when it fits the
network this run builds (:func:`adam_reason`: the same parameter names in order, every
tensor of Adam's kind with the parameter's shape and dtype, finite moments, one step count),
with this run's ``lr`` and ``weight_decay``. When it does not (a bundle registered before
loopml kept it, another network or optimizer, a damaged or crafted file), Adam starts
afresh (step 0, zero moments) from the parent's weights, and a :class:`FineTuneWarning`
says so and why.

This module imports torch only in the functions that need it (Keras' estimators import the
warning).
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

#: Adam's per-parameter state (torch's names), without amsgrad's ``max_exp_avg_sq``
ADAM_SLOTS = ("step", "exp_avg", "exp_avg_sq")
ADAM = "Adam"


class FineTuneWarning(UserWarning):
    """A fine-tune (``loopml train --from``) could not continue part of the parent's state
    (its optimizer's): the message says what starts afresh, and why."""


def fresh_note(reason: str) -> str:
    """The note (and warning) of a fine-tune whose optimizer starts afresh for ``reason``."""
    return (
        f"{reason}: Adam starts afresh for this fine-tune (step 0, zero moments), "
        "from the parent's weights"
    )


def warn_fresh(reason: str, stacklevel: int = 3) -> list[str]:
    """Warn (:class:`FineTuneWarning`) that Adam starts afresh for ``reason``; the note."""
    note = fresh_note(reason)
    warnings.warn(note, FineTuneWarning, stacklevel=stacklevel)
    return [note]


def adam_meta(optimizer: torch.optim.Optimizer, net: nn.Module) -> dict[str, Any]:
    """What ``optimizer``'s state tensors are, as JSON for a version's manifest: its kind,
    step count, the names of ``net``'s parameters in the optimizer's order and its
    settings (``lr``, ``betas``, ``eps``, ``weight_decay``, ``amsgrad``)."""
    group = optimizer.param_groups[0]
    steps = [float(v["step"]) for v in optimizer.state.values() if "step" in v]
    betas = group.get("betas", ())
    return {
        "kind": type(optimizer).__name__,
        "step": int(max(steps)) if steps else 0,
        "params": [name for name, _ in net.named_parameters()],
        "lr": float(group.get("lr", 0.0)),
        "betas": [float(b) for b in betas],
        "eps": float(group.get("eps", 0.0)),
        "weight_decay": float(group.get("weight_decay", 0.0)),
        "amsgrad": bool(group.get("amsgrad", False)),
    }


def adam_reason(meta: Any, tensors: dict[str, torch.Tensor], net: nn.Module) -> str | None:
    """Why Adam's state ``tensors`` (described by ``meta``, a manifest's
    ``model.optimizer``) cannot be the start of loopml's Adam over ``net``; None when it can.
    Everything is checked before anything is loaded: the kind, the parameters' names in
    order, each tensor's name, shape and dtype, that the moments are finite (the second
    non-negative) and that every step count is the manifest's."""
    import torch

    if not isinstance(meta, dict):
        return "the version's manifest does not describe its optimizer state"
    kind = meta.get("kind")
    if kind != ADAM or meta.get("amsgrad", False) is not False:
        shown = f"{kind} with amsgrad" if kind == ADAM else repr(kind)
        return f"the version to continue was trained with {shown}, not {ADAM}"
    own = list(net.named_parameters())
    names = meta.get("params")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return "the version's manifest does not name the parameters of its optimizer state"
    if len(names) != len(own):
        return (
            f"the version's optimizer holds the state of {len(names)} parameters, this "
            f"network has {len(own)}"
        )
    for i, (name, (mine, _)) in enumerate(zip(names, own, strict=True)):
        if name != mine:
            return f"the version's optimizer parameter {i} is {name!r}, this network's {mine!r}"
    step = meta.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        return f"the version's manifest has step {step!r}, not a count of steps"
    slots: dict[int, set[str]] = {}
    for key in tensors:
        index, _, slot = key.partition(".")
        canonical = index.isascii() and index.isdigit() and str(int(index)) == index
        if not canonical or int(index) >= len(own) or slot not in ADAM_SLOTS:
            return f"the version's optimizer file holds tensor {key!r}, which is not {ADAM}'s"
        slots.setdefault(int(index), set()).add(slot)
    for i, have in sorted(slots.items()):  # a parameter that never had a gradient: none
        if missing := [s for s in ADAM_SLOTS if s not in have]:
            return f"the version's optimizer file lacks tensor '{i}.{missing[0]}'"
    for key, value in sorted(tensors.items()):
        idx, _, slot = key.partition(".")
        name, param = own[int(idx)]
        where = f"the version's optimizer tensor {key!r} (of {name})"
        if slot == "step":
            if value.numel() != 1 or value.dtype not in (torch.float32, torch.float64):
                return f"{where} is {_shape(value)}, not one float32 step count"
            count = float(value.reshape(()))
            if not math.isfinite(count) or count != step:
                return f"{where} is {count}, not the manifest's step count {step}"
            continue
        if tuple(value.shape) != tuple(param.shape) or value.dtype != param.dtype:
            return f"{where} is {_shape(value)}; the parameter is {_shape(param)}"
        if not bool(torch.isfinite(value).all()):
            return f"{where} holds values that are not finite"
        if slot == "exp_avg_sq" and bool((value < 0).any()):
            return f"{where} holds negative values (a second moment is not negative)"
    return None


def parent_adam(net: nn.Module, init: Any) -> tuple[dict[str, torch.Tensor] | None, list[str]]:
    """The parent's (``init``, a :class:`~loopml.registry.flavors.torch_nets.TorchModel`)
    Adam state for a fine-tune of ``net``, checked (:func:`adam_reason`), and the notes: when
    there is none that fits, None and the note of a fresh Adam (also warned,
    :class:`FineTuneWarning`)."""
    from loopml.errors import LoopmlError

    reader = getattr(init, "optimizer_state", None)
    try:
        got = reader() if callable(reader) else None
    except LoopmlError as exc:  # a damaged optimizer file: the weights still fine-tune
        return None, warn_fresh(f"the version's optimizer state cannot be read ({exc})", 4)
    if got is None:
        why = getattr(init, "optimizer_missing", None)
        reason = why() if callable(why) else "the version to continue holds no optimizer state"
        return None, warn_fresh(reason, 4)
    reason = adam_reason(got.meta, got.tensors, net)
    if reason is not None:
        return None, warn_fresh(reason, 4)
    return got.tensors, []


def _shape(t: torch.Tensor) -> str:
    return f"{str(t.dtype).removeprefix('torch.')} {list(t.shape)}"
