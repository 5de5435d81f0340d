"""The training loop over several processes with PyTorch DistributedDataParallel.

``workers=N`` (``loopml train --workers N``) starts N processes on this machine
(``torch.multiprocessing``, start method spawn), which meet by torch's environment
rendezvous on 127.0.0.1 at a free port (``MASTER_ADDR``/``MASTER_PORT``; gloo on the CPU,
NCCL when each worker has a GPU). Every epoch all workers shuffle the training rows alike
(by the seed) and each takes every N-th row of the order, in batches of ``batch_size / N``:
DDP averages the gradients, so each step is the step one process takes on the whole batch.
Every worker scores the same validation rows with the same weights, so all of them stop at
the same epoch; worker 0 writes the best weights, Adam's final state (safetensors) and the
history for the parent, which loads them. A fine-tune's parent's Adam state starts every
worker's optimizer. The data travels as ``.npy`` files (``allow_pickle=False``).

With a ``checkpoint_dir`` (the run's own folder under ``loopml train --workers N``), every
epoch ends with the resumable state written by rank 0 (:mod:`loopml.train.deep.checkpoints`),
and every rank restarts from it when it is there. The parent watches the workers: when one
dies (killed, out of memory, an exception) the others are stopped within a few seconds and
the fit raises a LoopmlError (code ``worker_failed``) naming the rank that died first, how,
and the last complete checkpoint; ``loopml train --resume RUN_ID`` continues from it
(:mod:`loopml.train.deep.resume`). Each worker seeds its own random stream (dropout) from
the seed and its rank, so a distributed fit is reproducible too.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from loopml.errors import LoopmlError
from loopml.train.deep.loop import LoopSettings, Trained, train_network

RESULT = "result.safetensors"
ADAM, ADAM_START = "adam.safetensors", "adam-start.safetensors"
HISTORY = "history.json"


def fit_distributed(
    net: nn.Module,
    architecture: dict[str, Any],
    x: np.ndarray,
    y: np.ndarray,
    *,
    task: str,
    settings: LoopSettings,
    workers: int,
) -> list[dict[str, float]]:
    """:func:`train_distributed`'s history (worker 0's)."""
    return train_distributed(
        net, architecture, x, y, task=task, settings=settings, workers=workers
    ).history


def train_distributed(
    net: nn.Module,
    architecture: dict[str, Any],
    x: np.ndarray,
    y: np.ndarray,
    *,
    task: str,
    settings: LoopSettings,
    workers: int,
    adam_start: dict[str, torch.Tensor] | None = None,
) -> Trained:
    """Train ``net`` in place over ``workers`` processes (every worker's Adam starting from
    ``adam_start`` when given); the history and the final Adam state of worker 0."""
    import torch.multiprocessing as mp
    from safetensors.torch import load_file, save_file

    with tempfile.TemporaryDirectory(prefix="loopml-ddp-") as tmp:
        folder = Path(tmp)
        np.save(folder / "x.npy", np.ascontiguousarray(x, dtype=np.float32), allow_pickle=False)
        np.save(folder / "y.npy", y, allow_pickle=False)
        # the initial weights, so that every worker starts where one process would
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()},
            str(folder / "init.safetensors"),
        )
        if adam_start is not None:  # a fine-tune's parent's Adam, for every worker
            save_file(adam_start, str(folder / ADAM_START))
        port = _free_port()
        context = mp.start_processes(
            _worker,
            args=(workers, port, str(folder), architecture, task, settings),
            nprocs=workers,
            join=False,
            start_method="spawn",
        )
        _supervise(context, str(folder), settings.checkpoint_dir)
        net.load_state_dict(load_file(str(folder / RESULT)), strict=True)
        done = json.loads((folder / HISTORY).read_text())
        optimizer = load_file(str(folder / ADAM))
    net.cpu().eval()
    return Trained(done["history"], optimizer, done["optimizer"])


def _worker(rank: int, world: int, port: int, folder: str, *args: Any) -> None:
    """One worker; a failure leaves its traceback in ``error-<rank>.txt`` for the parent."""
    try:
        _train_worker(rank, world, port, folder, *args)
    except Exception:
        import traceback

        (Path(folder) / f"error-{rank}.txt").write_text(traceback.format_exc())
        raise


def _train_worker(
    rank: int,
    world: int,
    port: int,
    folder: str,
    architecture: dict[str, Any],
    task: str,
    settings: LoopSettings,
) -> None:
    from safetensors.torch import load_file, save_file

    from loopml.registry.flavors.torch_nets import build

    os.environ.update(
        {
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "RANK": str(rank),
            "WORLD_SIZE": str(world),
        }
    )
    torch.manual_seed(settings.seed + rank)  # dropout's draws: one stream per worker
    cuda = settings.device != "cpu" and torch.cuda.device_count() >= world
    if cuda:
        torch.cuda.set_device(rank)  # one GPU per worker, for NCCL's collectives
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
    try:
        path = Path(folder)
        x = np.load(path / "x.npy", allow_pickle=False)
        y = np.load(path / "y.npy", allow_pickle=False)
        net = build(architecture)
        net.load_state_dict(load_file(str(path / "init.safetensors")), strict=True)
        device = f"cuda:{rank}" if cuda else "cpu"
        local = replace(
            settings,
            device=device,
            batch_size=max(1, settings.batch_size // world),
            checkpoint_dir=settings.checkpoint_dir,  # every rank restores, rank 0 writes
            progress=settings.progress and rank == 0,
        )
        start = load_file(str(path / ADAM_START)) if (path / ADAM_START).is_file() else None
        trained = train_network(
            net, x, y, task=task, settings=local, shard=(rank, world), adam_start=start
        )
        if rank == 0:
            save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path / RESULT))
            save_file(trained.optimizer, str(path / ADAM))
            done = {"history": trained.history, "optimizer": trained.optimizer_meta}
            (path / HISTORY).write_text(json.dumps(done))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _supervise(context: Any, folder: str, checkpoint_dir: str | None, grace: float = 3.0) -> None:
    """Wait for the workers; when one fails, stop the others and raise an error naming the
    rank that died first (a worker killed by a signal, rather than its peers, which then
    fail on their broken connection) and what a restart continues from."""
    import time
    from multiprocessing.connection import wait

    processes = list(context.processes)
    running = {p.sentinel: rank for rank, p in enumerate(processes)}
    failed: list[int] = []
    while running and not failed:
        for sentinel in wait(list(running)):
            rank = running.pop(sentinel)
            processes[rank].join()
            if processes[rank].exitcode != 0:
                failed.append(rank)
    if not failed:
        return
    deadline = time.monotonic() + grace  # its peers fail on their own, or are stopped
    for p in processes:
        p.join(max(0.0, deadline - time.monotonic()))
    codes = {rank: p.exitcode for rank, p in enumerate(processes)}
    for p in processes:
        if p.is_alive():
            p.terminate()
    for p in processes:
        p.join(10)
        if p.is_alive():
            p.kill()
            p.join()
    killed = [r for r, c in codes.items() if c is not None and c < 0]
    rank = killed[0] if killed else failed[0]
    code = codes[rank] if codes[rank] is not None else processes[rank].exitcode
    raise worker_failure(
        rank,
        processes[rank].pid,
        code,
        _error_text(folder, rank),
        len(processes),
        checkpoint_dir,
    )


def worker_failure(
    rank: int,
    pid: int | None,
    exitcode: int | None,
    error: str | None,
    world: int,
    checkpoint_dir: str | None,
) -> LoopmlError:
    """The error of a distributed fit whose worker of ``rank`` failed."""
    if exitcode is not None and exitcode < 0:
        try:
            how = f"was killed by signal {signal.Signals(-exitcode).name}"
        except ValueError:
            how = f"was killed by signal {-exitcode}"
    elif error:
        last = [line for line in error.strip().splitlines() if line.strip()]
        how = f"failed: {last[-1].strip() if last else error.strip()}"[:300]
    else:
        how = f"exited with code {exitcode}"
    done = _last_checkpoint(checkpoint_dir)
    if done is None:
        hint = "No epoch was complete, so there is no checkpoint: train again"
    else:
        hint = (
            f"The last complete checkpoint is epoch {done[1] + 1} in {done[0]}; continue the "
            "run from it with `loopml train --workers N --resume RUN_ID` (the failed run's id)"
        )
    return LoopmlError(
        f"distributed training failed: worker rank {rank} of {world} (pid {pid}) {how}; the "
        "other workers were stopped",
        where={"rank": rank},
        hint=hint,
        code="worker_failed",
    )


def _error_text(folder: str, rank: int) -> str | None:
    """The traceback a worker that raised left in ``folder`` (``error-<rank>.txt``)."""
    path = Path(folder) / f"error-{rank}.txt"
    try:
        return path.read_text(errors="replace") or None
    except OSError:
        return None


def _last_checkpoint(folder: str | None) -> tuple[str, int] | None:
    """The newest complete epoch checkpoint under ``folder`` (its file, its epoch)."""
    if folder is None:
        return None
    from safetensors import safe_open

    from loopml.train.deep.checkpoints import STATE

    best: tuple[str, int] | None = None
    for path in sorted(Path(folder).glob(f"fit-*/{STATE}"), key=lambda p: p.stat().st_mtime):
        try:
            with safe_open(str(path), framework="pt") as fh:
                epoch = int(json.loads((fh.metadata() or {})["loopml"])["epoch"])
        except Exception:
            continue
        best = (str(path), epoch)
    return best


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
