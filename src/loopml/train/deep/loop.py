"""One training loop for every torch estimator: mini-batches, early stopping, checkpoints.

The rows are split once into a training and a validation part (by the seed); each epoch
shuffles the training part (by the seed), steps the optimizer over mini-batches, and scores
the validation part. The best epoch's weights (lowest validation loss) are kept, written to
``checkpoint_dir`` as safetensors when one is given, and restored at the end; training stops
after ``patience`` epochs without improvement. Everything random (the initial weights, the
split, the shuffles, dropout) comes from the seed, so one seed gives the same weights.

A fit that continues its checkpoint warns, once (rank 0), each thing the checkpoint could
not restore as it was (:attr:`~loopml.train.deep.checkpoints.Resumed.notes`, a
:class:`~loopml.train.deep.checkpoints.CheckpointWarning` each).
"""

from __future__ import annotations

import contextlib
import json
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from loopml.train.deep.checkpoints import (
    CheckpointWarning,
    load_optimizer,
    open_checkpoints,
    optimizer_tensors,
)
from loopml.train.deep.finetune import adam_meta
from loopml.utils import atomic_write_bytes

CHECKPOINT = "best.safetensors"
CHECKPOINT_INFO = "best.json"


@dataclass(frozen=True)
class LoopSettings:
    epochs: int
    lr: float
    batch_size: int
    patience: int
    validation_fraction: float
    weight_decay: float
    seed: int
    device: str
    checkpoint_dir: str | None
    progress: bool
    threads: int | None = 1


@contextlib.contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` intra-op CPU threads (None: torch's default), restored after.

    Small networks train fastest on one thread: their operations are too short to split,
    and on a busy machine the threads' spin-waits cost far more than they save (an MF epoch
    on MovieLens 100k: 0.8 s on one thread, 17 s on two with the cores shared)."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def pick_device(device: str) -> torch.device:
    """``auto``: CUDA when this machine has it, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def split_rows(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation row numbers (no validation part for tiny data or 0)."""
    n_val = round(n * fraction) if fraction > 0 else 0
    if n_val < 1 or n - n_val < 1:
        return np.arange(n), np.arange(0)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


@dataclass
class Trained:
    """What a fit leaves besides the weights: one dict of metrics per epoch, and Adam's
    state after the last epoch (per-parameter tensors named as
    :func:`~loopml.train.deep.checkpoints.optimizer_tensors` names them, on the CPU, and
    :func:`~loopml.train.deep.finetune.adam_meta`'s description), which a version's bundle
    keeps so that a fine-tune goes on from it."""

    history: list[dict[str, float]]
    optimizer: dict[str, torch.Tensor]
    optimizer_meta: dict[str, Any]


def fit_network(
    net: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    *,
    task: str,
    settings: LoopSettings,
    shard: tuple[int, int] | None = None,
) -> list[dict[str, float]]:
    """:func:`train_network`'s history."""
    return train_network(net, x, y, task=task, settings=settings, shard=shard).history


def train_network(
    net: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    *,
    task: str,
    settings: LoopSettings,
    shard: tuple[int, int] | None = None,
    adam_start: dict[str, torch.Tensor] | None = None,
) -> Trained:
    """Train ``net`` in place on ``x`` (float32) and ``y`` (class codes, or the scaled
    target); returns one dict of metrics per epoch and the optimizer's final state. ``net``
    ends on the CPU with the best epoch's weights, in eval mode. ``shard`` (rank, world):
    this process is one worker of a DistributedDataParallel group
    (:mod:`loopml.train.deep.ddp`) and steps on its share of each epoch's order.
    ``adam_start``: Adam's per-parameter state to go on from (a fine-tune's parent's,
    checked by :func:`~loopml.train.deep.finetune.parent_adam`); its ``lr`` and
    ``weight_decay`` stay ``settings``'. A checkpoint to resume replaces it."""
    device = pick_device(settings.device)
    tr, va = split_rows(len(x), settings.validation_fraction, settings.seed)
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
    yt = torch.from_numpy(y).to(device)
    loss_fn: nn.Module = nn.CrossEntropyLoss() if task == "classification" else nn.MSELoss()
    net.to(device)
    model: nn.Module = net
    if shard is not None:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(net)
    optimizer = adam(net, lr=settings.lr, weight_decay=settings.weight_decay)
    if adam_start is not None:
        load_optimizer(optimizer, adam_start)
    gen = torch.Generator().manual_seed(settings.seed)
    tr_t = torch.from_numpy(tr)
    history: list[dict[str, float]] = []
    best_loss, best_state, stale = float("inf"), _state(net), 0
    ckpt, start = open_checkpoints(settings, x, y, task, shard), 0  # train/deep/checkpoints.py
    if ckpt is not None and (got := ckpt.restore(net, optimizer, gen)) is not None:
        history, best_loss, best_state, stale = got.unpack()
        start = settings.epochs if got.stopped else got.epoch + 1
        for note in got.notes if not (shard and shard[0]) else ():  # once: rank 0
            warnings.warn(note, CheckpointWarning, stacklevel=2)
    best_dir = None if shard and shard[0] else settings.checkpoint_dir  # rank 0 writes
    with cpu_threads(settings.threads), _bar(settings) as advance:
        for epoch in range(start, settings.epochs):
            net.train()
            # the epoch's loss summed where the network runs: one read at the end of the
            # epoch, not one device synchronization per batch
            total = torch.zeros((), dtype=torch.float64, device=device)
            seen = 0
            # the order moved to the device once per epoch, not once per batch
            for idx in _order(tr_t, gen, shard).to(device).split(settings.batch_size):
                optimizer.zero_grad()
                loss = loss_fn(_out(model, xt[idx], task), yt[idx])
                loss.backward()
                optimizer.step()
                total.add_(loss.detach(), alpha=len(idx))
                seen += len(idx)
            row = {"train_loss": float(total) / max(seen, 1)}
            if len(va):
                row.update(_validate(net, xt, yt, va, task, loss_fn, settings.batch_size))
            history.append(row)
            score = row.get("val_loss", row["train_loss"])
            if score < best_loss - 1e-12:
                best_loss, best_state, stale = score, _state(net), 0
                _checkpoint(best_dir, best_state, epoch, row)
            else:
                stale += 1
            if ckpt is not None:  # every epoch: what a restart continues from
                stops = bool(len(va) and settings.patience > 0 and stale >= settings.patience)
                ckpt.save(epoch, net, optimizer, gen, history=history, best_loss=best_loss,
                          best_state=best_state, stale=stale, stopped=stops)  # fmt: skip
            advance(epoch, row)
            if len(va) and settings.patience > 0 and stale >= settings.patience:
                break
    # Adam's state after the last epoch (also when the best epoch's weights are restored)
    trained = Trained(history, optimizer_tensors(optimizer), adam_meta(optimizer, net))
    net.load_state_dict(best_state)
    net.cpu().eval()
    return trained


def adam(net: nn.Module, *, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """Adam over ``net``'s parameters, in torch's fused form where their device and dtype
    have one (CPU and CUDA, float32 and float64): one kernel updates every parameter instead
    of a dozen small operations per tensor, which is most of a small network's step (an MLP
    [64, 32] on 50 features, batch 256: 240 -> 70 microseconds per step on one CPU thread).
    It computes the same update as the default form (to float rounding, ~1e-7)."""
    params = list(net.parameters())
    try:
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, ValueError):  # a device or dtype without the fused kernel
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def _order(rows: torch.Tensor, gen: torch.Generator, shard: tuple[int, int] | None) -> torch.Tensor:
    """This epoch's order of the training rows; for a worker, its every N-th of them (the
    order padded by its start so that every worker takes as many steps)."""
    order = rows[torch.randperm(len(rows), generator=gen)]
    if shard is None:
        return order
    rank, world = shard
    per = -(-len(order) // world)
    padded = torch.cat([order, order[: per * world - len(order)]])
    return padded[rank::world]


def _out(net: nn.Module, xb: torch.Tensor, task: str) -> torch.Tensor:
    out: torch.Tensor = net(xb)
    return out if task == "classification" else out[:, 0]


def _validate(
    net: nn.Module,
    xt: torch.Tensor,
    yt: torch.Tensor,
    va: np.ndarray,
    task: str,
    loss_fn: nn.Module,
    batch_size: int,
) -> dict[str, float]:
    net.eval()
    total, right = 0.0, 0
    with torch.inference_mode():
        for batch in torch.from_numpy(va).split(max(batch_size, 1024)):
            idx = batch.to(xt.device)
            out = _out(net, xt[idx], task)
            total += float(loss_fn(out, yt[idx])) * len(idx)
            if task == "classification":
                right += int((out.argmax(dim=1) == yt[idx]).sum())
    row = {"val_loss": total / len(va)}
    if task == "classification":
        row["val_accuracy"] = right / len(va)
    return row


def _state(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}


def _checkpoint(
    folder: str | None, state: dict[str, torch.Tensor], epoch: int, row: dict[str, float]
) -> None:
    """The best weights so far as safetensors (temporary name, then rename)."""
    if folder is None:
        return
    from safetensors.torch import save

    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path / CHECKPOINT, save(state))
    atomic_write_bytes(path / CHECKPOINT_INFO, json.dumps({"epoch": epoch, **row}).encode())


@contextlib.contextmanager
def _bar(settings: LoopSettings) -> Iterator[Any]:
    """A progress bar over the epochs on stderr (``progress=True``), else nothing."""
    if not settings.progress:
        yield lambda _epoch, _row: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    columns = (
        TextColumn("epochs"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
    )
    with Progress(*columns, console=Console(file=sys.stderr), transient=True) as bar:
        job = bar.add_task("", total=settings.epochs)

        def advance(_epoch: int, row: dict[str, float]) -> None:
            text = " ".join(f"{k}={v:.4f}" for k, v in row.items())
            bar.update(job, advance=1, description=text)

        yield advance
