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

This is the explicit form of torch elastic's "restart from the last checkpoint": a restart is
something the user asks for, by run id, so a crash is never silently papered over and a
resumed run says which run and which epochs it continues.

This module does not import torch.
"""

from __future__ import annotations

import shutil
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
    return old


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
    """``run`` recorded as the child of the failed run it continues."""
    from dataclasses import replace

    return replace(
        run,
        parent_id=old.id,
        params={**run.params, "resumed_from": old.id},
        tags={**run.tags, "resumed_from": old.id},
    )


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
