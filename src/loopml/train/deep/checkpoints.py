"""Resumable training state, one file per epoch, so that a killed fit continues where it was.

When a network is trained with a ``checkpoint_dir`` (``model.params.checkpoint_dir``, or the
run's own folder ``<workspace>/checkpoints/<run id>/`` that ``loopml train --workers N``
uses), every epoch ends with ``fit-<key>/state.safetensors`` written atomically (temporary
name, fsync, rename) by the process of rank 0. ``<key>`` is a digest of what the fit is
trained on (its rows, targets, seed, task and validation fraction), so the folds, the final
fit and a refit of one run each have their own file and a file is never resumed by a fit on
other rows. The file holds, as tensors: the weights (``net.*``), the best epoch's weights
(``best.*``), the optimizer's state (``opt.<param>.<name>``), the shuffle generator's state
and each worker's random state (``rng.<rank>``); its safetensors metadata holds the epoch,
the history, the best loss, the epochs without improvement and the settings. Nothing is
pickled.

A fit that runs on a CUDA device also keeps each worker's CUDA random state
(``cuda.<rank>``: the generator of the device it trains on, which dropout draws from there),
and a resume on a CUDA device restores it. A checkpoint whose CUDA states cannot be restored
here (resumed on a machine without CUDA, or by a fit on the CPU) is still resumed: the CUDA
states are left unused, with a line in :attr:`Resumed.notes` saying so, and dropout's draws
go on from the CPU random state; a CPU checkpoint resumed on a CUDA device seeds the
device's generator afresh, and a checkpoint written by another number of workers seeds
every worker's random state afresh, each also saying so. The training loop warns each note
(:class:`CheckpointWarning`, from rank 0 only), and ``loopml train --resume`` records the
same in the run (:func:`loopml.train.deep.resume.mark_resumed`).

A fit that finds its file starts after the epoch it records, with everything restored, so
it reaches the weights an uninterrupted fit reaches. A file written under other training
settings (``lr``, ``batch_size``, ...) is a ConfigError naming the parameter; one whose
tensors do not fit the network (another architecture) is a ConfigError naming the tensor.
``epochs`` may grow: a finished fit then trains the further epochs.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from loopml.errors import ConfigError, IntegrityError
from loopml.train.deep.resume import cpu_state_note, cuda_state_note, world_note
from loopml.utils import atomic_write_bytes

STATE = "state.safetensors"
FORMAT = 1
#: settings that change the trajectory of a fit: a checkpoint made under others is refused
TRAJECTORY = ("lr", "batch_size", "patience", "weight_decay", "seed", "validation_fraction")
#: the prefixes of the random states of each rank: the CPU's and the CUDA device's
CPU_RNG, CUDA_RNG = "rng.", "cuda."


class CheckpointWarning(UserWarning):
    """A checkpoint was resumed without part of its state (the CUDA random states)."""


@dataclass
class Resumed:
    """What a fit continues from."""

    epoch: int  # the last complete epoch (0-based)
    history: list[dict[str, float]]
    best_loss: float
    best_state: dict[str, torch.Tensor]
    stale: int
    stopped: bool  # early stopping ended the fit at ``epoch``
    notes: list[str] = field(default_factory=list)  # what could not be restored, and why

    def unpack(self) -> tuple[list[dict[str, float]], float, dict[str, torch.Tensor], int]:
        return self.history, self.best_loss, self.best_state, self.stale


class EpochCheckpoints:
    """The resumable state of one fit in ``folder`` (see the module's docstring).

    ``shard`` (rank, world): the fit is one worker of a DistributedDataParallel group; every
    worker calls :meth:`save` (the random states are gathered), rank 0 writes."""

    def __init__(
        self,
        folder: str | Path,
        x: np.ndarray,
        y: np.ndarray,
        *,
        task: str,
        settings: Any,
        shard: tuple[int, int] | None = None,
    ) -> None:
        self.key = fit_key(x, y, task=task, settings=settings)
        self.path = Path(folder) / f"fit-{self.key}" / STATE
        self.rank, self.world = shard if shard is not None else (0, 1)
        self.settings = {k: getattr(settings, k) for k in TRAJECTORY}
        self.settings["batch_size"] *= self.world  # a worker's share; the step is the whole
        self.epochs = int(settings.epochs)
        self.cuda = cuda_device(str(getattr(settings, "device", "cpu")))

    def restore(
        self, net: nn.Module, optimizer: torch.optim.Optimizer, gen: torch.Generator
    ) -> Resumed | None:
        """Load the file into ``net``, ``optimizer`` and ``gen`` (and this worker's random
        state); None when there is none."""
        if not self.path.is_file():
            return None
        from safetensors import safe_open
        from safetensors.torch import load_file

        try:
            with safe_open(str(self.path), framework="pt") as fh:
                meta = json.loads((fh.metadata() or {}).get("loopml", "{}"))
            tensors = load_file(str(self.path))
        except Exception as exc:  # a file that is not safetensors at all
            raise IntegrityError(
                f"checkpoint {self.path} cannot be read: {exc}"[:400],
                where={"file": str(self.path)},
                hint="Delete the file to train this fit from its start",
            ) from exc
        self._check_settings(meta)
        weights = _part(tensors, "net.")
        check_tensors(weights, net, self.path)
        net.load_state_dict(weights, strict=True)
        best = _part(tensors, "best.")
        check_tensors(best, net, self.path)
        load_optimizer(optimizer, _part(tensors, "opt."))
        gen.set_state(tensors["gen"])
        was = int(meta.get("world", 1))
        same_world = was == self.world
        rng = tensors.get(f"{CPU_RNG}{self.rank}")
        notes = []
        if rng is not None and same_world:
            torch.set_rng_state(rng)
        else:  # another number of workers: dropout's draws go on from a fresh seed
            torch.manual_seed(int(self.settings["seed"]) + 7919 * (int(meta["epoch"]) + 1))
            if not same_world:
                notes.append(world_note(self.path, was, self.world))
        notes += restore_cuda_rng(
            tensors,
            self.rank,
            self.cuda,
            path=self.path,
            seed=int(self.settings["seed"]) + 7919 * (int(meta["epoch"]) + 1),
            other_world=not same_world,
            warn=False,  # the training loop says them, once (rank 0)
        )
        return Resumed(
            epoch=int(meta["epoch"]),
            history=list(meta["history"]),
            best_loss=float(meta["best_loss"]),
            best_state=best,
            stale=int(meta["stale"]),
            stopped=bool(meta.get("stopped", False)),
            notes=notes,
        )

    def save(
        self,
        epoch: int,
        net: nn.Module,
        optimizer: torch.optim.Optimizer,
        gen: torch.Generator,
        *,
        history: list[dict[str, float]],
        best_loss: float,
        best_state: dict[str, torch.Tensor],
        stale: int,
        stopped: bool,
    ) -> None:
        """Write the state at the end of ``epoch`` (rank 0; every rank must call it)."""
        rngs = _gather_rng(self.world)
        cuda_rngs = _gather_rng(self.world, self.cuda) if self.cuda is not None else []
        if self.rank != 0:
            return
        from safetensors.torch import save

        tensors: dict[str, torch.Tensor] = {}
        for k, v in net.state_dict().items():
            tensors[f"net.{k}"] = v.detach().cpu().contiguous()
        for k, v in best_state.items():
            tensors[f"best.{k}"] = v.detach().cpu().contiguous()
        for k, v in optimizer_tensors(optimizer).items():
            tensors[f"opt.{k}"] = v
        tensors["gen"] = gen.get_state()
        for r, state in enumerate(rngs):
            tensors[f"{CPU_RNG}{r}"] = state
        for r, state in enumerate(cuda_rngs):
            tensors[f"{CUDA_RNG}{r}"] = state
        meta = {
            "format": FORMAT,
            "epoch": epoch,
            "history": history,
            "best_loss": best_loss,
            "stale": stale,
            "stopped": stopped,
            "world": self.world,
            "settings": self.settings,
            **({"cuda": str(self.cuda)} if self.cuda is not None else {}),
        }
        data = save(tensors, metadata={"loopml": json.dumps(meta)})
        atomic_write_bytes(self.path, data)

    def _check_settings(self, meta: dict[str, Any]) -> None:
        saved = meta.get("settings") or {}
        for name in TRAJECTORY:
            if name in saved and saved[name] != self.settings[name]:
                field = "evaluation.seed" if name == "seed" else f"model.params.{name}"
                raise ConfigError(
                    f"checkpoint {self.path} was trained with {name}={saved[name]!r}; this "
                    f"fit has {name}={self.settings[name]!r}, so it cannot continue it",
                    where={"field": field, "file": str(self.path)},
                    hint=f"Put {name} back to {saved[name]!r} to resume, or train from the "
                    "start without --resume (another checkpoint_dir)",
                )


def open_checkpoints(
    settings: Any, x: np.ndarray, y: np.ndarray, task: str, shard: tuple[int, int] | None
) -> EpochCheckpoints | None:
    """The resumable state of a fit in ``settings.checkpoint_dir``; None without one."""
    if settings.checkpoint_dir is None:
        return None
    return EpochCheckpoints(
        settings.checkpoint_dir, x, y, task=task, settings=settings, shard=shard
    )


def fit_key(x: np.ndarray, y: np.ndarray, *, task: str, settings: Any) -> str:
    """A digest of what a fit is trained on: its rows, targets, seed, task and split."""
    digest = hashlib.sha256()
    for arr in (x, y):
        a = np.ascontiguousarray(arr)
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        digest.update(a.tobytes())
    digest.update(f"{task}|{settings.seed}|{settings.validation_fraction}".encode())
    return digest.hexdigest()[:16]


def check_tensors(saved: dict[str, torch.Tensor], net: nn.Module, path: Path) -> None:
    """ConfigError naming the first tensor of ``saved`` that ``net`` lacks, or whose shape
    differs, or the first tensor of ``net`` that ``saved`` lacks."""
    own = net.state_dict()
    where = {"field": "model.params", "file": str(path)}
    hint = (
        "Give model.params the architecture the checkpoint was trained with, or train from "
        "the start without --resume (another checkpoint_dir)"
    )
    for name, tensor in saved.items():
        if name not in own:
            raise ConfigError(
                f"checkpoint {path} holds tensor {name!r}, which the network built from "
                f"model.params does not have",
                where={**where, "tensor": name},
                hint=hint,
            )
        if tuple(tensor.shape) != tuple(own[name].shape):
            raise ConfigError(
                f"checkpoint {path} does not match the network: tensor {name!r} has shape "
                f"{list(tensor.shape)} in the checkpoint and {list(own[name].shape)} in the "
                "network built from model.params",
                where={**where, "tensor": name},
                hint=hint,
            )
    for name in own:
        if name not in saved:
            raise ConfigError(
                f"checkpoint {path} lacks tensor {name!r} of the network built from model.params",
                where={**where, "tensor": name},
                hint=hint,
            )


def _part(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """The optimizer's per-parameter state as CPU tensors named ``<index>.<name>`` (the
    parameter's index in the optimizer, then ``step``, ``exp_avg``, ``exp_avg_sq`` for
    Adam): what a checkpoint keeps (under ``opt.``) and what a torch version's bundle keeps
    (``optimizer.safetensors``) for a fine-tune."""
    tensors: dict[str, torch.Tensor] = {}
    for idx, values in optimizer.state_dict()["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{idx}.{name}"] = value.detach().cpu().contiguous()
    return tensors


def load_optimizer(optimizer: torch.optim.Optimizer, saved: dict[str, torch.Tensor]) -> None:
    """Load the per-parameter state ``saved`` (named as :func:`optimizer_tensors` names it)
    into ``optimizer``; its settings (``lr``, ``weight_decay``...) stay its own. ``saved``
    is left unchanged (torch would step tensors of the right dtype and device in place)."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in saved.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value.clone()
    current = optimizer.state_dict()
    optimizer.load_state_dict({"state": state, "param_groups": current["param_groups"]})


def cuda_device(device: str) -> torch.device | None:
    """The CUDA device a fit on ``device`` (``model.params.device``: ``auto``, ``cpu``,
    ``cuda``, ``cuda:1``...) trains on, with its index; None when it trains on the CPU,
    and always None where CUDA is not available. Nothing is initialized for a CPU fit."""
    if device == "cpu" or not torch.cuda.is_available():
        return None
    chosen = torch.device("cuda") if device == "auto" else torch.device(device)
    if chosen.type != "cuda":
        return None
    index = chosen.index if chosen.index is not None else torch.cuda.current_device()
    return torch.device("cuda", index)


def rng_state(cuda: torch.device | None = None) -> torch.Tensor:
    """This process's random state: the CPU's, or that of the CUDA device ``cuda``."""
    if cuda is None:
        return torch.get_rng_state()
    return torch.cuda.get_rng_state(cuda)


def restore_cuda_rng(
    tensors: dict[str, torch.Tensor],
    rank: int,
    cuda: torch.device | None,
    *,
    path: Path,
    seed: int,
    other_world: bool = False,
    warn: bool = True,
) -> list[str]:
    """Restore rank ``rank``'s CUDA random state from a checkpoint's ``tensors`` onto
    ``cuda`` (the device this fit trains on; None: the CPU or no CUDA here). Returns (and
    with ``warn``, warns: :class:`CheckpointWarning`) what could not be restored; the fit
    goes on."""
    saved = tensors.get(f"{CUDA_RNG}{rank}")
    if other_world:  # torch.manual_seed has seeded every device afresh, as the CPU
        return []
    if saved is not None and cuda is not None:
        torch.cuda.set_rng_state(saved, cuda)
        return []
    notes = []
    if saved is not None:
        where = "it runs on the CPU" if torch.cuda.is_available() else "this machine has no CUDA"
        notes.append(cuda_state_note(path, where))
    elif cuda is not None:
        torch.cuda.manual_seed(seed)
        notes.append(cpu_state_note(path, str(cuda)))
    for note in notes if warn else ():
        warnings.warn(note, CheckpointWarning, stacklevel=3)
    return notes


def _gather_rng(world: int, cuda: torch.device | None = None) -> list[torch.Tensor]:
    """Every worker's random state (dropout's), rank by rank: the CPU's, or with ``cuda``
    that of the CUDA device each worker trains on."""
    mine = rng_state(cuda)
    if world == 1:
        return [mine]
    import torch.distributed as dist

    device = torch.device("cuda") if dist.get_backend() == "nccl" else torch.device("cpu")
    states = [torch.empty_like(mine, device=device) for _ in range(world)]
    dist.all_gather(states, mine.to(device))  # NCCL gathers CUDA tensors only
    return [s.cpu() for s in states]
