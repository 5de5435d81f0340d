"""Training a project: cross-validate, fit, evaluate on a holdout, gate, register, promote."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from loopml.errors import ConfigError, InvalidInputError
from loopml.evaluate.cv import cross_validate, holdout_split
from loopml.evaluate.metrics import check_metric, compute_metrics, metric_names
from loopml.features.spec import prepare_frame, resolve_kinds
from loopml.project import ProjectConfig
from loopml.registry.models import register_model, set_alias
from loopml.stores.records import DatasetVersion, ModelVersion, Run
from loopml.train.estimators import flavor_of, make_estimator
from loopml.train.fit import fit_prepared, infer_task
from loopml.utils import new_id, process_owner, utcnow
from loopml.workspace import Workspace

Progress = Callable[[str], None]
#: Most out-of-sample scores a version keeps as its prediction-drift reference.
REFERENCE_MAX_ROWS = 20_000
PACKAGES = ("loopml", "scikit-learn", "numpy", "pandas", "pyarrow", "lightgbm", "skops")


@dataclass(frozen=True)
class TrainResult:
    run: Run
    model_version: ModelVersion | None
    passed: bool
    reason: str
    promoted_alias: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run.to_dict(),
            "model_version": self.model_version.to_dict() if self.model_version else None,
            "passed": self.passed,
            "reason": self.reason,
            "promoted_alias": self.promoted_alias,
        }


def train(ws: Workspace, config: ProjectConfig, *, progress: Progress | None = None) -> TrainResult:
    """Train ``config`` on its dataset and record the run; register and promote on a pass.

    Everything a user can get wrong in the project file (dataset, target and feature
    columns, metric and gate names, model class, params) is checked before any training and
    before the run is recorded, so bad input costs nothing and leaves no run behind
    (ConfigError naming the field, with the closest valid name). A run that fails its gate is
    recorded with the reason and registers no model.
    """
    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    dv = ws.metadata.get_dataset_version(config.dataset, config.dataset_version)
    frame = ws.lake.read_table(dv.path).to_pandas()
    config.check_columns(list(frame.columns), source=f"dataset {dv.name}@{dv.version}")
    x, y, kinds, task = _prepare(config, dv, frame)
    config.check_metrics(metric_names(task))
    estimator = make_estimator(config.model, task, config.source)
    metric = check_metric(task, config.evaluation.metric or _default_metric(task, y))
    flavor = flavor_of(config.model.cls)

    run = Run(
        id=new_id(),
        name=config.name,
        status="running",
        started_at=utcnow(),
        params={"project": config.to_dict(), "estimator": _params(estimator)},
        dataset_name=dv.name,
        dataset_version=dv.version,
        git_commit=_git_commit(Path(config.source).resolve().parent),
        packages=_packages(),
        owner=process_owner(),  # a run whose process dies is then seen as aborted
    )
    ws.metadata.add_run(run)
    say(f"run {run.id[:8]}: {config.name} on {dv.name}@{dv.version} ({len(x)} rows, {task})")
    try:
        ev = config.evaluation
        x_tr, x_ho, y_tr, y_ho = holdout_split(x, y, fraction=ev.holdout, task=task, seed=ev.seed)
        out_of_fold = pd.Series(np.nan, index=x_tr.index, dtype="float64")

        def fit_score(
            xa: pd.DataFrame, ya: pd.Series, xb: pd.DataFrame, yb: pd.Series
        ) -> dict[str, float]:
            bundle = fit_prepared(
                config.features,
                kinds,
                estimator,
                xa,
                ya,
                task=task,
                target=config.target,
                flavor=flavor,
            )
            p = bundle.predict_frame(xb)
            out_of_fold.loc[xb.index] = p.scores  # each training row, by the fold not fit on it
            return compute_metrics(task, yb, p.labels, p.probabilities, p.classes)

        cv: dict[str, dict[str, float]] = {}
        if ev.folds:
            cv = cross_validate(
                x_tr,
                y_tr,
                fit_score,
                n_folds=ev.folds,
                task=task,
                seed=ev.seed,
                on_fold=lambda i: say(f"cross-validation fold {i + 1}/{ev.folds} done"),
            )
        bundle = fit_prepared(
            config.features,
            kinds,
            estimator,
            x_tr,
            y_tr,
            task=task,
            target=config.target,
            flavor=flavor,
        )
        p = bundle.predict_frame(x_ho)
        holdout = compute_metrics(task, y_ho, p.labels, p.probabilities, p.classes)
        say(f"holdout {metric} = {holdout.get(metric, float('nan')):.4f}")
        flat = {**holdout, **{f"cv.{k}": v["mean"] for k, v in cv.items()}}
        flat.update({f"cv.{k}.std": v["std"] for k, v in cv.items()})
        passed, reason = ev.gate.check(flat)
        metrics: dict[str, Any] = {
            "metric": metric,
            "holdout": holdout,
            "cv": cv,
            "rows": {"train": len(x_tr), "holdout": len(x_ho)},
        }
        mv = None
        promoted = None
        if passed:
            metrics["reference_scores"] = _keep_reference_scores(
                ws, config, run.id, out_of_fold if cv else None, p.scores
            )
            mv = register_model(
                ws,
                config.name,
                bundle,
                run_id=run.id,
                metrics=metrics,
                dataset_name=dv.name,
                dataset_version=dv.version,
                trust=config.model.trust,
            )
            say(f"registered {mv.name}@{mv.version} (gate: {reason})")
            if config.alias:
                set_alias(ws, mv.name, config.alias, mv.version)
                promoted = config.alias
                say(f"alias {config.alias} -> {mv.name}@{mv.version}")
        else:
            say(f"gate failed: {reason}; not registered")
        run = replace(
            run,
            status="succeeded" if passed else "gate_failed",
            metrics={**metrics, "gate": {"passed": passed, "reason": reason}},
            duration_s=time.perf_counter() - started,
            error=None if passed else f"gate failed: {reason}",
            model_version=mv.version if mv else None,
        )
        ws.metadata.update_run(run)
        return TrainResult(run, mv, passed, reason, promoted)
    except BaseException as exc:
        ws.metadata.update_run(
            replace(
                run,
                status="failed",
                error=f"{type(exc).__name__}: {exc}",
                duration_s=time.perf_counter() - started,
            )
        )
        raise


def _keep_reference_scores(
    ws: Workspace,
    config: ProjectConfig,
    run_id: str,
    out_of_fold: pd.Series | None,
    holdout: np.ndarray,
) -> dict[str, Any]:
    """Write the model's out-of-sample scores to the lake; what the version records of them.

    These are the reference for prediction drift: what the model scores on rows it was not
    fit on (the out-of-fold scores of every training row when cross-validation ran, and the
    holdout's), not its scores on its own training rows, which a model that fits them
    closely (a forest, boosting) pushes towards 0 and 1. At most :data:`REFERENCE_MAX_ROWS`
    are kept, a uniform sample when there are more.
    """
    parts = [np.asarray(holdout, dtype=np.float64)]
    origins = [np.full(len(holdout), "holdout", dtype=object)]
    source = "holdout"
    if out_of_fold is not None:
        oof = out_of_fold.to_numpy(dtype=np.float64)
        oof = oof[np.isfinite(oof)]
        parts.insert(0, oof)
        origins.insert(0, np.full(len(oof), "out_of_fold", dtype=object))
        source = "out_of_fold+holdout"
    scores = np.concatenate(parts)
    origin = np.concatenate(origins)
    if len(scores) > REFERENCE_MAX_ROWS:
        rng = np.random.default_rng(config.evaluation.seed)
        keep = np.sort(rng.choice(len(scores), REFERENCE_MAX_ROWS, replace=False))
        scores, origin = scores[keep], origin[keep]
    path = f"references/{config.name}/run={run_id}/scores.parquet"
    ws.lake.write_table(
        path, pa.table({"score": pa.array(scores), "origin": pa.array(origin, pa.string())})
    )
    return {"path": path, "source": source, "rows": len(scores)}


def _prepare(
    config: ProjectConfig, dv: DatasetVersion, frame: pd.DataFrame
) -> tuple[pd.DataFrame, pd.Series, dict[str, str], str]:
    source = f"dataset {dv.name}@{dv.version}"
    if config.target not in frame.columns:
        raise InvalidInputError(
            f"target column {config.target!r} is not in {source}",
            where={"dataset": f"{dv.name}@{dv.version}", "column": config.target},
            hint=f"Set data.target to one of: {', '.join(map(str, list(frame.columns)[:30]))}",
        )
    y = frame[config.target]
    if y.isna().any():
        row = int(np.flatnonzero(y.isna().to_numpy())[0])
        raise InvalidInputError(
            f"target column {config.target!r} has {int(y.isna().sum())} missing values",
            where={"dataset": f"{dv.name}@{dv.version}", "column": config.target, "row": row},
            hint="Drop or fill the rows without a label before ingesting",
        )
    task = config.task or infer_task(y)
    if task == "classification" and y.nunique() < 2:
        raise InvalidInputError(
            f"target column {config.target!r} has a single class",
            where={"dataset": f"{dv.name}@{dv.version}", "column": config.target},
            hint="A classifier needs at least two classes in the training data",
        )
    if task == "regression" and not pd.api.types.is_numeric_dtype(y):
        raise ConfigError(
            f"data.task is regression but target {config.target!r} is not numeric",
            where={"field": "data.task", "column": config.target},
            hint="Use task: classification, or a numeric target",
        )
    kinds = resolve_kinds(config.features, frame, config.target, source)
    return prepare_frame(frame, kinds), y.reset_index(drop=True), kinds, task


def _default_metric(task: str, y: pd.Series) -> str:
    return "roc_auc" if task == "classification" else "rmse"


def _params(estimator: Any) -> dict[str, Any]:
    out = {}
    for k, v in estimator.get_params(deep=False).items():
        out[k] = v if isinstance(v, str | int | float | bool | type(None)) else repr(v)
    return out


def _git_commit(folder: Path) -> str | None:
    try:
        res = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() or None if res.returncode == 0 else None


def _packages() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return out
