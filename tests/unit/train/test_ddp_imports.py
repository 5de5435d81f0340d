"""What each DDP worker process imports: torch and the loop, not scikit-learn, pandas, scipy.

``loopml train --workers N`` spawns N fresh interpreters; each imports the worker's module
chain (``loopml.train.deep.ddp`` and its packages) and pays for every library in it, on every
start (issue 12: about 2.5 CPU seconds of scikit-learn, scipy and pandas per worker, pulled
in by the package's estimators, which a worker never uses).
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("safetensors")

#: libraries a worker has no use for
HEAVY = ("sklearn", "pandas", "scipy", "pyarrow")

#: a network that writes, on every forward pass, the modules its process has imported
PROBE = """
import json, os, sys
import torch
from torch import nn


class Probe(nn.Module):
    def __init__(self, n_in, n_out, out):
        super().__init__()
        self.out = out
        self.layer = nn.Linear(n_in, n_out)

    def forward(self, x):
        rank = os.environ.get("RANK", "single")
        with open(os.path.join(self.out, f"modules-{rank}.json"), "w") as fh:
            json.dump(sorted(sys.modules), fh)
        return self.layer(x)
"""


def _heavy(modules: list[str] | set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


def test_the_worker_module_imports_no_heavy_library() -> None:
    code = (
        "import json, sys, loopml.train.deep.ddp, loopml.registry.flavors.torch_nets; "
        "print(json.dumps(sorted(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    modules = json.loads(done.stdout.strip().splitlines()[-1])
    assert "torch" in modules
    assert _heavy(modules) == []


def test_the_package_still_exports_its_estimators() -> None:
    from loopml.train.deep import MFRecommender, MLPClassifier
    from loopml.train.deep.estimators import MLPClassifier as Direct

    deep = importlib.import_module("loopml.train.deep")  # `loopml.train` is also a function
    assert MLPClassifier is Direct
    assert MFRecommender.__module__ == "loopml.train.deep.recommender"
    assert set(deep.__all__) <= set(dir(deep))
    with pytest.raises(AttributeError):
        _ = deep.NoSuchNetwork


@pytest.mark.slow
def test_spawned_ddp_workers_import_no_heavy_library(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loopml.train.deep.ddp import fit_distributed
    from loopml.train.deep.loop import LoopSettings

    code_dir = tmp_path / "code"
    code_dir.mkdir()
    (code_dir / "ddp_import_probe.py").write_text(PROBE)
    monkeypatch.syspath_prepend(str(code_dir))  # the spawned workers inherit sys.path
    out = tmp_path / "out"
    out.mkdir()
    from loopml.registry.flavors.torch_nets import build

    architecture = {
        "class": "ddp_import_probe.Probe",
        "args": {"n_in": 3, "n_out": 2, "out": str(out)},
    }
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    settings = LoopSettings(
        epochs=2,
        lr=0.01,
        batch_size=16,
        patience=0,
        validation_fraction=0.25,
        weight_decay=0.0,
        seed=0,
        device="cpu",
        checkpoint_dir=str(tmp_path / "ckpt"),  # the checkpoint path runs too
        progress=False,
    )
    history = fit_distributed(
        build(architecture),
        architecture,
        x,
        y,
        task="classification",
        settings=settings,
        workers=2,
    )
    assert len(history) == 2
    for rank in (0, 1):
        modules = json.loads((out / f"modules-{rank}.json").read_text())
        assert "torch.distributed" in modules  # it is a worker of the group
        assert _heavy(modules) == [], f"worker {rank} imported {_heavy(modules)[:10]}"
