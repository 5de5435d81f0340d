"""Per-epoch checkpoints keep the CUDA random state of a fit on a CUDA device, and restore it
there; a checkpoint with CUDA states resumes on a machine without CUDA, saying so.

There is no GPU where these tests run: the CUDA functions are torch's own where CUDA is
absent, and replaced by recording stand-ins to follow the path a CUDA fit takes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("safetensors")

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from sklearn.datasets import load_digits

from loopml.train.deep import MLPClassifier
from loopml.train.deep.checkpoints import (
    CheckpointWarning,
    EpochCheckpoints,
    cuda_device,
)
from loopml.train.deep.loop import LoopSettings

PARAMS = {"hidden": [16], "batch_size": 32, "patience": 0, "random_state": 0, "dropout": 0.2}
#: what torch.cuda.get_rng_state answers: the Philox generator's seed and offset, as bytes
CUDA_STATE_BYTES = 16


def _digits() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_digits(return_X_y=True)
    return (x[:400] / 16.0).astype(np.float32), y[:400]


def _read(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads((fh.metadata() or {})["loopml"])
    return load_file(str(path)), meta


def _settings(folder: Path, device: str) -> LoopSettings:
    return LoopSettings(
        epochs=3, lr=1e-3, batch_size=32, patience=0, validation_fraction=0.1,
        weight_decay=0.0, seed=0, device=device, checkpoint_dir=str(folder), progress=False,
    )  # fmt: skip


def _checkpoints(folder: Path, x: np.ndarray, y: np.ndarray, device: str) -> EpochCheckpoints:
    settings = _settings(folder, device)
    return EpochCheckpoints(folder, x, y, task="classification", settings=settings)


def _copy(net: Any) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


class FakeCuda:
    """torch.cuda's random-state functions as one CUDA device would answer them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.state = torch.arange(CUDA_STATE_BYTES, dtype=torch.uint8)
        self.set: list[tuple[torch.Tensor, Any]] = []
        self.seeds: list[int] = []
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "get_rng_state", self.get_rng_state)
        monkeypatch.setattr(torch.cuda, "set_rng_state", self.set_rng_state)
        monkeypatch.setattr(torch.cuda, "manual_seed", self.seeds.append)

    def get_rng_state(self, device: Any = "cuda") -> torch.Tensor:
        assert torch.device(device) == torch.device("cuda", 0)
        return self.state.clone()

    def set_rng_state(self, state: torch.Tensor, device: Any = "cuda") -> None:
        self.set.append((state.clone(), torch.device(device)))


def test_the_cuda_device_of_a_fit() -> None:
    assert cuda_device("cpu") is None
    if not torch.cuda.is_available():  # as here: nothing is CUDA, nothing is initialized
        assert cuda_device("auto") is None and cuda_device("cuda") is None
        assert not torch.cuda.is_initialized()


def test_a_cpu_fit_keeps_no_cuda_state(tmp_path: Path) -> None:
    x, y = _digits()
    MLPClassifier(epochs=1, checkpoint_dir=str(tmp_path), **PARAMS).fit(x, y)
    (path,) = tmp_path.glob("fit-*/state.safetensors")
    tensors, meta = _read(path)
    assert "rng.0" in tensors and not [k for k in tensors if k.startswith("cuda.")]
    assert "cuda" not in meta


def test_a_checkpoint_with_cuda_states_resumes_on_the_cpu_saying_so(tmp_path: Path) -> None:
    x, y = _digits()
    whole = MLPClassifier(epochs=3, **PARAMS).fit(x, y)
    MLPClassifier(epochs=2, checkpoint_dir=str(tmp_path), **PARAMS).fit(x, y)
    (path,) = tmp_path.glob("fit-*/state.safetensors")
    # the file as a fit on a GPU writes it: the same state, plus its CUDA random state
    tensors, meta = _read(path)
    tensors["cuda.0"] = torch.arange(CUDA_STATE_BYTES, dtype=torch.uint8)
    save_file(tensors, str(path), metadata={"loopml": json.dumps({**meta, "cuda": "cuda:0"})})
    resumed = MLPClassifier(epochs=3, checkpoint_dir=str(tmp_path), **PARAMS)
    with pytest.warns(CheckpointWarning, match="CUDA random states") as caught:
        resumed.fit(x, y)
    (warned,) = [w for w in caught if issubclass(w.category, CheckpointWarning)]
    assert str(path) in str(warned.message) and "CPU random state" in str(warned.message)
    # everything else was restored: the CPU fit reaches the uninterrupted one
    assert resumed.history_ == whole.history_
    np.testing.assert_array_equal(resumed.predict_proba(x), whole.predict_proba(x))


def test_a_cuda_fit_saves_and_restores_its_cuda_random_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cuda = FakeCuda(monkeypatch)
    x, y = _digits()
    net = torch.nn.Linear(64, 10)
    optimizer = torch.optim.Adam(net.parameters())
    gen = torch.Generator().manual_seed(0)
    ckpt = EpochCheckpoints(
        tmp_path, x, y, task="classification", settings=_settings(tmp_path, "cuda")
    )
    assert ckpt.cuda == torch.device("cuda", 0)
    ckpt.save(0, net, optimizer, gen, history=[{"train_loss": 1.0}], best_loss=1.0,
              best_state=_copy(net), stale=0, stopped=False)  # fmt: skip
    tensors, meta = _read(ckpt.path)
    assert torch.equal(tensors["cuda.0"], cuda.state) and meta["cuda"] == "cuda:0"
    assert torch.equal(tensors["rng.0"], torch.get_rng_state())
    got = ckpt.restore(net, optimizer, gen)
    assert got is not None and got.notes == []
    ((state, device),) = cuda.set
    assert torch.equal(state, cuda.state) and device == torch.device("cuda", 0)
    assert cuda.seeds == []


def test_a_cpu_checkpoint_resumed_on_cuda_seeds_the_device_saying_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    x, y = _digits()
    net = torch.nn.Linear(64, 10)
    optimizer = torch.optim.Adam(net.parameters())
    gen = torch.Generator().manual_seed(0)
    on_cpu = EpochCheckpoints(
        tmp_path, x, y, task="classification", settings=_settings(tmp_path, "cpu")
    )
    on_cpu.save(1, net, optimizer, gen, history=[{"train_loss": 1.0}] * 2, best_loss=1.0,
                best_state=_copy(net), stale=0, stopped=False)  # fmt: skip
    cuda = FakeCuda(monkeypatch)
    on_gpu = EpochCheckpoints(
        tmp_path, x, y, task="classification", settings=_settings(tmp_path, "auto")
    )
    assert on_gpu.path == on_cpu.path  # the same fit: the device is not part of its key
    got = on_gpu.restore(net, optimizer, gen)  # the training loop warns its notes
    assert got is not None and got.epoch == 1 and len(got.notes) == 1
    assert "written by a fit on the CPU" in got.notes[0]
    assert cuda.set == [] and cuda.seeds == [0 + 7919 * 2]
