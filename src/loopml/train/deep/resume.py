"""A run's checkpoint folder, and ``loopml train --resume RUN_ID``.

A torch estimator trained by a run with ``workers > 1`` (or resumed) writes its per-epoch
state (:mod:`loopml.train.deep.checkpoints`) to ``<workspace>/checkpoints/<run id>/`` unless
``model.params.checkpoint_dir`` names another folder. When a worker dies the run fails
(nothing is registered) and the error names the rank and the last complete epoch. Then
``loopml train --workers N --resume RUN_ID`` (``loopml.train(ws, config, resume=RUN_ID)``)
records a new run, the failed one's child (``params.resumed_from``), with a copy of the
failed run's checkpoints in its own folder: each fit whose rows match one of them (the
folds, the final fit, a refit) continues after its last complete epoch, with the weights,
the optimizer's state and the random states (the CPU's, and the CUDA device's for a fit on
one) restored, so it reaches the model the
uninterrupted run would have. The project must be the one the failed run trained (only
``model.params.workers`` may differ); a run that succeeded is not resumed. A run that passes
its gate removes its checkpoint folder (the model is registered); a failed run keeps it.

What a resume cannot restore as it was is said, by each fit as it restores its checkpoint
(a :class:`~loopml.train.deep.checkpoints.CheckpointWarning` from the worker of rank 0), and
recorded in the resumed run (``params.resume_notes``): checkpoints written by another number
of workers (dropout's random streams are seeded afresh), a GPU fit's checkpoint resumed on
the CPU, or a CPU fit's on a GPU. Everything else that could differ (``lr``,
``batch_size``...) is refused before the run is recorded.

This is the explicit form of torch elastic's "restart from the last checkpoint": a restart is
something the user asks for, by run id, so a crash is never silently papered over and a
resumed run says which run and which epochs it continues.

This module does not import torch.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.errors import ConfigError, InvalidInputError

if TYPE_CHECKING:
    from loopml.project import ProjectConfig
    from loopml.stores.records import Run
    from loopml.workspace import Workspace

FOLDER = "checkpoints"
RESUMABLE = ("failed", "aborted")
WHERE = {"option": "--resume"}
#: the run's params key of what a resume does not restore as it was (:func:`mark_resumed`)
NOTES = "resume_notes"


def run_folder(ws: Workspace, run_id: str) -> Path:
    """The run's checkpoint folder."""
    return Path(ws.root) / FOLDER / run_id


def check_resume(
    ws: Workspace, config: ProjectConfig, run_id: str, *, dataset: tuple[str, int]
) -> Run:
    """The failed run ``run_id`` that ``config`` may continue on ``dataset`` (name,
    version); InvalidInputError naming ``--resume`` (or ConfigError naming the field)
    otherwise. Runs before any run is recorded."""
    from loopml.errors import NotFoundError

    try:
        old = ws.metadata.get_run(run_id)
    except NotFoundError as exc:
        raise InvalidInputError(
            f"--resume {run_id}: no such run",
            where=WHERE,
            hint="Give the id of the failed run (loopml runs list)",
        ) from exc
    if old.status not in RESUMABLE:
        raise InvalidInputError(
            f"--resume {run_id}: the run is {old.status}; only a failed or aborted run is resumed",
            where=WHERE,
            hint="Train again without --resume",
        )
    if not _has_params(config, "checkpoint_dir"):
        raise InvalidInputError(
            f"--resume is for PyTorch models; model.class is {config.model.cls}",
            where=WHERE,
            hint="Leave --resume out, or train a loopml.train.deep estimator",
        )
    if (old.dataset_name, old.dataset_version) != dataset:
        raise InvalidInputError(
            f"--resume {run_id}: the run trained on {old.dataset_name}@{old.dataset_version}, "
            f"this one would train on {dataset[0]}@{dataset[1]}",
            where=WHERE,
            hint=f"Pin data.dataset to {old.dataset_name}@{old.dataset_version} to resume, or "
            "train from the start without --resume",
        )
    before = _comparable(old.params.get("project") or {})
    now = _comparable(config.to_dict())
    if before != now:
        field = _first_difference(before, now)
        raise ConfigError(
            f"--resume {run_id}: the project differs from the one the run trained, at "
            f"{field}; a resumed run must train the same project",
            where={"file": config.source, "field": field, **WHERE},
            hint="Put the project back as it was (loopml runs show RUN_ID shows it), or "
            "train from the start without --resume",
        )
    folder = _checkpoint_dir(old, ws)
    if not folder.is_dir() or not any(folder.glob("fit-*/state.safetensors")):
        raise InvalidInputError(
            f"--resume {run_id}: the run left no checkpoint in {folder} (no epoch of it was "
            "complete)",
            where=WHERE,
            hint="Train again without --resume",
        )
    params = config.model.params
    notes = resume_notes(
        folder, workers=int(params.get("workers") or 1), device=str(params.get("device", "auto"))
    )
    return replace(old, params={**old.params, NOTES: notes})  # for mark_resumed, not stored


def with_run_checkpoints(
    ws: Workspace, estimator: Any, run_id: str, resume: Run | None = None
) -> Any:
    """``estimator`` writing its per-epoch state to the run's folder (workers > 1 or a
    resume, when ``model.params.checkpoint_dir`` names none), with ``resume``'s
    checkpoints copied in. Any other estimator is returned as it is."""
    params = estimator.get_params() if hasattr(estimator, "get_params") else {}
    if "checkpoint_dir" not in params:
        return estimator
    if resume is None and int(params.get("workers") or 1) <= 1:
        return estimator
    folder = params["checkpoint_dir"]
    if folder is None:
        folder = str(run_folder(ws, run_id))
        estimator.set_params(checkpoint_dir=folder)
    if resume is not None:
        source = _checkpoint_dir(resume, ws)
        if source.resolve() != Path(folder).resolve():
            shutil.copytree(source, folder, dirs_exist_ok=True)
    return estimator


def mark_resumed(run: Run, old: Run) -> Run:
    """``run`` recorded as the child of the failed run it continues, with what the resume
    does not restore as it was (``params.resume_notes``, from :func:`check_resume`: another
    number of workers, a GPU checkpoint resumed on the CPU...; the fits warn the same)."""
    notes = [str(n) for n in old.params.get(NOTES) or []]
    return replace(
        run,
        parent_id=old.id,
        params={**run.params, "resumed_from": old.id, **({NOTES: notes} if notes else {})},
        tags={**run.tags, "resumed_from": old.id},
    )


def resume_notes(folder: Path, *, workers: int, device: str) -> list[str]:
    """What resuming the checkpoints in ``folder`` with ``workers`` processes on ``device``
    (``model.params``) does not restore as it was, one sentence per checkpoint and cause,
    as the fits say it (:meth:`loopml.train.deep.checkpoints.EpochCheckpoints.restore`)."""
    notes: list[str] = []
    on_cuda: bool | None = None
    for path in sorted(folder.glob("fit-*/state.safetensors")):
        meta = checkpoint_meta(path)
        if meta is None:  # unreadable: the fit says so when it restores it
            continue
        was = int(meta.get("world") or 1)
        if was != workers:
            notes.append(world_note(path, was, workers))
            continue  # every random state is seeded afresh (the CUDA ones too)
        if on_cuda is None:
            on_cuda = _trains_on_cuda(device)
        if meta.get("cuda") and not on_cuda:
            notes.append(cuda_state_note(path, _cpu_reason()))
        elif not meta.get("cuda") and on_cuda:
            notes.append(cpu_state_note(path, "the CUDA device"))
    return notes


def checkpoint_meta(path: Path) -> dict[str, Any] | None:
    """loopml's metadata of a checkpoint (``state.safetensors``), read from the file's
    header alone (8 bytes of length, then JSON), without torch; None when unreadable."""
    import json
    import struct

    try:
        with open(path, "rb") as fh:
            (size,) = struct.unpack("<Q", fh.read(8))
            if size > 100_000_000:
                return None
            header = json.loads(fh.read(size))
        meta = json.loads((header.get("__metadata__") or {}).get("loopml", "{}"))
    except (OSError, ValueError, struct.error, AttributeError):
        return None
    return meta if isinstance(meta, dict) else None


def world_note(path: Path | str, was: int, now: int) -> str:
    """The note of a checkpoint written by ``was`` workers, resumed by ``now``."""
    return (
        f"checkpoint {path} was written by {_workers(was)}; this fit resumes it with "
        f"{_workers(now)}: the weights, Adam's state and the shuffle order are restored, "
        "dropout's random draws are seeded afresh, so the epochs after it differ from an "
        "uninterrupted run's"
    )


def cuda_state_note(path: Path | str, where: str) -> str:
    """The note of a GPU fit's checkpoint resumed on the CPU (``where``: why)."""
    return (
        f"checkpoint {path} holds the CUDA random states of a fit on a GPU; this fit "
        f"resumes it without them ({where}): dropout's draws go on from the CPU random "
        "state, so the epochs after it differ from an uninterrupted fit on the GPU"
    )


def cpu_state_note(path: Path | str, device: str) -> str:
    """The note of a CPU fit's checkpoint resumed on a CUDA ``device``."""
    return (
        f"checkpoint {path} was written by a fit on the CPU; this fit resumes it on "
        f"{device} with the device's random generator seeded afresh"
    )


def _workers(n: int) -> str:
    return "1 process" if n == 1 else f"{n} workers"


def _trains_on_cuda(device: str) -> bool:
    if device == "cpu":
        return False
    from loopml.train.deep.checkpoints import cuda_device  # torch: this run trains with it

    return cuda_device(device) is not None


def _cpu_reason() -> str:
    import torch

    return "it runs on the CPU" if torch.cuda.is_available() else "this machine has no CUDA"


def finish(ws: Workspace, run_id: str) -> None:
    """Remove the run's own checkpoint folder (its model is registered)."""
    shutil.rmtree(run_folder(ws, run_id), ignore_errors=True)


def _checkpoint_dir(run: Run, ws: Workspace) -> Path:
    given = ((run.params.get("estimator") or {}) or {}).get("checkpoint_dir")
    return Path(given) if given else run_folder(ws, run.id)


def _has_params(config: ProjectConfig, name: str) -> bool:
    import inspect

    from loopml.train.estimators import estimator_class

    try:
        cls = estimator_class(config.model, config.source)
    except Exception:
        return False
    return name in inspect.signature(cls).parameters


def _comparable(project: dict[str, Any]) -> dict[str, Any]:
    """The project as recorded, without what a restart may change (the workers)."""
    import json

    plain: dict[str, Any] = json.loads(json.dumps(project, default=str))
    model = dict(plain.get("model") or {})
    model["params"] = {k: v for k, v in (model.get("params") or {}).items() if k != "workers"}
    data = dict(plain.get("data") or {})
    data["dataset"] = str(data.get("dataset", "")).split("@")[0]  # the version: checked apart
    return {**plain, "model": model, "data": data}


def _first_difference(a: Any, b: Any, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else key)
    return path or "the project"
