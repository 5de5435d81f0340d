"""The training loop over several processes with PyTorch DistributedDataParallel.

``workers=N`` (``loopml train --workers N``) starts N processes on this machine
(``torch.multiprocessing``, start method spawn), which meet by torch's environment
rendezvous on 127.0.0.1 at a free port (``MASTER_ADDR``/``MASTER_PORT``; gloo on the CPU,
NCCL when each worker has a GPU). Every epoch all workers shuffle the training rows alike
(by the seed) and each takes every N-th row of the order, in batches of ``batch_size / N``:
DDP averages the gradients, so each step is the step one process takes on the whole batch.
Every worker scores the same validation rows with the same weights, so all of them stop at
the same epoch; worker 0 writes the best weights (safetensors) and the history for the
parent, which loads them. The data travels as ``.npy`` files (``allow_pickle=False``).
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from loopml.train.deep.loop import LoopSettings, fit_network

RESULT = "result.safetensors"
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
    """Train ``net`` in place over ``workers`` processes; the history of worker 0."""
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
        port = _free_port()
        mp.spawn(
            _worker,
            args=(workers, port, str(folder), architecture, task, settings),
            nprocs=workers,
            join=True,
        )
        net.load_state_dict(load_file(str(folder / RESULT)), strict=True)
        history: list[dict[str, float]] = json.loads((folder / HISTORY).read_text())
    net.cpu().eval()
    return history


def _worker(
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
            checkpoint_dir=settings.checkpoint_dir if rank == 0 else None,
            progress=settings.progress and rank == 0,
        )
        history = fit_network(net, x, y, task=task, settings=local, shard=(rank, world))
        if rank == 0:
            save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path / RESULT))
            (path / HISTORY).write_text(json.dumps(history))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
