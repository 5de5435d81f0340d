"""A user's own network, trained by loopml by import path (``model.params.module``).

Put this folder on ``PYTHONPATH`` and name ``mynets.ResidualMLP`` in ``loopml.yaml``; the
version records ``trust: [mynets.ResidualMLP]``, without which no loopml loads it back.
"""

from __future__ import annotations

import torch
from torch import nn


class ResidualMLP(nn.Module):
    """A linear layer in, ``blocks`` residual blocks, a linear layer out."""

    def __init__(self, n_in: int, n_out: int, width: int = 32, blocks: int = 2) -> None:
        super().__init__()
        self.inp = nn.Linear(n_in, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width))
            for _ in range(blocks)
        )
        self.out = nn.Linear(width, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.inp(x))
        for block in self.blocks:
            h = torch.relu(h + block(h))
        out: torch.Tensor = self.out(h)
        return out


class ThreeOutputs(nn.Module):
    """Answers three values whatever the task: a network that does not fit a binary task."""

    def __init__(self, n_in: int) -> None:
        super().__init__()
        self.lin = nn.Linear(n_in, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.lin(x)
        return out
