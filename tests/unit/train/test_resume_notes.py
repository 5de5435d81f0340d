"""What a resume does not restore as it was (another number of workers, CUDA states) is
warned by the training loop, once, and recorded in the resumed run (``resume_notes``)."""

from __future__ import annotations

import importlib
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("safetensors")

from safetensors import safe_open
from safetensors.torch import load_file, save_file
from sklearn.datasets import load_breast_cancer, load_digits

import loopml
from loopml.data import ingest
from loopml.project import ProjectConfig
from loopml.train.deep import MLPClassifier
from loopml.train.deep.checkpoints import CheckpointWarning
from loopml.train.deep.resume import checkpoint_meta
from loopml.workspace import Workspace

PARAMS = {"hidden": [16], "batch_size": 32, "patience": 0, "random_state": 0}


def _as_written_by(path: Path, world: int) -> None:
    """The file as a fit of ``world`` workers writes it (the same state otherwise: a
    worker's share of the batch is recorded as the whole batch)."""
    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads((fh.metadata() or {})["loopml"])
    tensors = load_file(str(path))
    for rank in range(1, world):
        tensors[f"rng.{rank}"] = tensors["rng.0"].clone()
    save_file(tensors, str(path), metadata={"loopml": json.dumps({**meta, "world": world})})


def test_a_checkpoint_of_another_worker_count_is_resumed_saying_so(tmp_path: Path) -> None:
    x, y = load_digits(return_X_y=True)
    x, y = (x[:300] / 16.0).astype(np.float32), y[:300]
    whole = MLPClassifier(epochs=3, **PARAMS).fit(x, y)
    MLPClassifier(epochs=2, checkpoint_dir=str(tmp_path), **PARAMS).fit(x, y)
    (path,) = tmp_path.glob("fit-*/state.safetensors")
    _as_written_by(path, 2)
    assert (checkpoint_meta(path) or {}).get("world") == 2  # read without torch
    resumed = MLPClassifier(epochs=3, checkpoint_dir=str(tmp_path), **PARAMS)
    with pytest.warns(CheckpointWarning) as caught:
        resumed.fit(x, y)
    (warned,) = [w for w in caught if issubclass(w.category, CheckpointWarning)]
    text = str(warned.message)
    assert str(path) in text and "written by 2 workers" in text and "1 process" in text
    # no dropout: nothing drew from the random state seeded afresh, the fit is the same
    assert resumed.history_ == whole.history_


def test_a_resumed_run_records_and_warns_what_it_does_not_restore(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = load_breast_cancer(as_frame=True).frame.sample(n=150, random_state=1)
    ingest(workspace, frame.reset_index(drop=True), "cancer")
    folder = tmp_path / "ckpt"
    params = {**PARAMS, "hidden": [8], "epochs": 2, "checkpoint_dir": str(folder)}
    config = ProjectConfig.from_dict(
        {
            "name": "cancer",
            "data": {"dataset": "cancer", "target": "target", "positive": 1},
            "model": {"class": "loopml.train.deep.MLPClassifier", "params": params},
            "evaluation": {"metric": "roc_auc", "folds": 0, "gate": "roc_auc >= 0"},
        }
    )

    def crash(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("the process died after the fit")

    with monkeypatch.context() as patch:  # the run fails after its fit's checkpoints
        patch.setattr(importlib.import_module("loopml.train.trainer"), "write_run_report", crash)
        with pytest.raises(RuntimeError, match="died"):
            loopml.train(workspace, config)
    (failed,) = workspace.metadata.list_runs("cancer")
    assert failed.status == "failed"
    (path,) = folder.glob("fit-*/state.safetensors")
    _as_written_by(path, 2)  # as a run of --workers 2 leaves it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = loopml.train(workspace, config, resume=failed.id)
    assert res.passed, res.reason
    shown = [str(w.message) for w in caught if issubclass(w.category, CheckpointWarning)]
    assert len(shown) == 1 and "written by 2 workers" in shown[0]
    run = workspace.metadata.get_run(res.run.id)
    assert run.params["resumed_from"] == failed.id
    (note,) = run.params["resume_notes"]
    assert "written by 2 workers" in note and "1 process" in note
    assert "resume_notes" not in workspace.metadata.get_run(failed.id).params  # unchanged
