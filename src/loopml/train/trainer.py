"""Training a project: cross-validate, fit, evaluate on a holdout, gate, register, promote."""

from __future__ import annotations

import itertools
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from loopml.data.ingest import read_version
from loopml.errors import ConfigError, InvalidInputError
from loopml.evaluate.cv import cross_validate
from loopml.evaluate.holdout import holdout_extras
from loopml.evaluate.metrics import check_metric, compute_metrics, metric_names
from loopml.evaluate.slices import flagged_lines
from loopml.evaluate.split import (
    check_split,
    fold_indices,
    holdout_indices,
    split_column,
    without_split_column,
)
from loopml.features.explain import selection_report
from loopml.features.spec import (
    check_selection,
    check_spec,
    numeric_choices,
    prepare_frame,
    resolve_kinds,
)
from loopml.project import ProjectConfig
from loopml.project.imbalance import resolve_positive
from loopml.registry.bundle import ModelBundle
from loopml.registry.models import register_model, set_alias
from loopml.stores.records import DatasetVersion, ModelVersion, Run
from loopml.train.estimators import flavor_of, make_estimator
from loopml.train.evaluation import write_run_report
from loopml.train.fit import fit_prepared, infer_task
from loopml.train.imbalance import (
    apply_class_weight,
    choose_threshold,
    mark_bundle,
    weigh_classes,
)
from loopml.train.incremental import begin_continuation
from loopml.train.promote import (
    champion_record,
    check_champion,
    decide,
    save_holdout_predictions,
)
from loopml.train.weights import check_estimator as check_weight_estimator
from loopml.train.weights import row_weights as row_weights_of
from loopml.train.weights import summary as weight_summary
from loopml.train.weights import without_weight_columns
from loopml.utils import new_id, process_owner, utcnow
from loopml.workspace import Workspace

Progress = Callable[[str], None]
RECOMMENDER = "loopml.train.deep.MFRecommender"  # trained by loopml.train.deep.recommend
#: Most out-of-sample scores a version keeps as its prediction-drift reference.
REFERENCE_MAX_ROWS = 20_000
PACKAGES = (
    *("loopml", "scikit-learn", "numpy", "pandas", "pyarrow", "lightgbm", "skops"),
    *("torch", "safetensors", "tensorflow-cpu", "keras", "tf2onnx"),
)


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


@dataclass(frozen=True)
class TrainEngine:
    """Where a run's folds and fits happen, for an engine above training (Spark): the run,
    its checks, gate, champion check, registration and promotion stay :func:`train`'s.

    ``fit`` takes :func:`~loopml.train.fit.fit_prepared`'s arguments (None: fit in process);
    ``cross_validate(features, kinds, estimator, x, y, splits, task=, target=, flavor=,
    positive=)`` returns ``(metric -> {mean, std, min, max}, each fold's scores)`` (None:
    folds in process). Folds scored elsewhere give no out-of-fold scores, so a decision
    threshold cannot be chosen and the reference scores are the holdout's. The engine fits
    without per-row weights: ``model.class_weight`` must be an estimator parameter.
    """

    name: str
    params: dict[str, Any]
    fit: Callable[..., ModelBundle] | None = None
    cross_validate: (
        Callable[..., tuple[dict[str, dict[str, float]], list[dict[str, float]]]] | None
    ) = None


def train(
    ws: Workspace,
    config: ProjectConfig,
    *,
    progress: Progress | None = None,
    from_version: str | None = None,
    engine: TrainEngine | None = None,
    resume: str | None = None,
) -> TrainResult:
    """Train ``config`` on its dataset and record the run; register and promote on a pass.

    Everything a user can get wrong in the project file (dataset, target and feature
    columns, metric and gate names, model class, params) is checked before any training and
    before the run is recorded, so bad input costs nothing and leaves no run behind
    (ConfigError naming the field, with the closest valid name). A run that fails its gate is
    recorded with the reason and registers no model.

    ``from_version`` (``NAME@VERSION``) continues that version on this dataset version
    instead of training from scratch (:mod:`loopml.train.incremental`). ``engine`` runs the
    folds and fits elsewhere (:class:`TrainEngine`). ``resume`` (a failed run's id) continues
    that run's torch fits from their checkpoints (:mod:`loopml.train.deep.resume`).
    """
    if config.model.cls == RECOMMENDER and engine is None:  # train/deep/recommend.py
        from loopml.train.deep.recommend import train_recommender

        return train_recommender(ws, config, progress=progress, from_version=from_version)
    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    dv = ws.metadata.get_dataset_version(config.dataset, config.dataset_version)
    frame = read_version(ws, dv).to_pandas()
    config.check_columns(list(frame.columns), source=f"dataset {dv.name}@{dv.version}")
    features, split_note = without_split_column(config.features, config.evaluation.split)
    features, weight_note = without_weight_columns(features, config.weight)
    x, y, kinds, task = _prepare(replace(config, features=features), dv, frame)
    config.check_metrics(metric_names(task))
    split_col = split_column(frame, config.evaluation.split)
    check_split(
        config.evaluation.split,
        split_col,
        n_folds=config.evaluation.folds,
        task=task,
        source=f"dataset {dv.name}@{dv.version}",
    )
    # the rows of the holdout and of each fold: a split that cannot be made fails here
    ev = config.evaluation
    tr_idx, ho_idx = holdout_indices(
        y, spec=ev.split, fraction=ev.holdout, task=task, seed=ev.seed, column=split_col
    )
    cv_splits = None
    if ev.folds:
        cv_splits = fold_indices(
            y.iloc[tr_idx],
            spec=ev.split,
            n_folds=ev.folds,
            task=task,
            seed=ev.seed,
            column=None if split_col is None else split_col.iloc[tr_idx].reset_index(drop=True),
        )
    estimator = _seeded(
        make_estimator(config.model, task, config.source),
        config.model.params,
        config.evaluation.seed,
    )
    metric = check_metric(task, config.evaluation.metric or _default_metric(task, y))
    flavor = flavor_of(config.model.cls)
    positive, labels = _check_classes(config, y, task, dv)
    # the estimator's class_weight, or per-row sample weights for its fit
    if engine is None:
        estimator, row_weights = weigh_classes(
            estimator, config.model.class_weight, labels, config.source
        )
    else:
        estimator = apply_class_weight(estimator, config.model.class_weight, labels, config.source)
        row_weights = None
    # incremental mode (train/incremental.py): checked before any run is recorded
    cont = None
    if from_version is not None:
        if row_weights is not None:
            raise ConfigError(
                f"model.class_weight is applied to {config.model.cls} as sample weights, "
                "which continuing a version (--from) does not take",
                where={"file": config.source, "field": "model.class_weight"},
                hint="Leave model.class_weight out to continue the version, or train from "
                "scratch without --from",
            )
        cont = begin_continuation(
            ws, config, from_version, dataset=dv, estimator=estimator, kinds=kinds, y=y, task=task
        )
    # train.weight: one weight per row for the estimator's fit, checked before the run
    sample_weights = None
    if config.weight is not None:
        sample_weights = _declared_weights(config, estimator, frame, dv, engine, from_version)
    fit = partial(fit_prepared, row_weights=row_weights) if cont is None else cont.fit_prepared
    if engine is not None and engine.fit is not None:
        fit = engine.fit
    if sample_weights is not None:
        fit = _weighted(fit, pd.Series(sample_weights, index=x.index))
    # a variance selection that keeps no feature fails here, before the run is recorded
    x_tr, y_tr = take_rows(x, tr_idx), take_rows(y, tr_idx)  # once: a take copies the rows
    check_selection(features, kinds, x_tr, y_tr, task, estimator)
    # a torch estimator's fits write per-epoch checkpoints (train/deep/resume.py, imported
    # only then): those estimators take checkpoint_dir
    checkpoints = resume is not None or "checkpoint_dir" in _all_params(estimator)
    resumed = None
    if resume is not None:
        from loopml.train.deep.resume import check_resume

        resumed = check_resume(ws, config, resume, dataset=(dv.name, dv.version))

    run = Run(
        id=new_id(),
        name=config.name,
        status="running",
        started_at=utcnow(),
        params={
            "project": config.to_dict(),
            "estimator": _params(estimator),
            "features": _resolved_features(config, estimator),
            **({"class_weight": row_weights.to_dict()} if row_weights is not None else {}),
            **(
                {"weight": weight_summary(config.weight, sample_weights)}
                if config.weight is not None and sample_weights is not None
                else {}
            ),
            **({"engine": engine.params} if engine is not None else {}),
        },
        dataset_name=dv.name,
        dataset_version=dv.version,
        git_commit=_git_commit(Path(config.source).resolve().parent),
        packages=_packages(),
        owner=process_owner(),  # a run whose process dies is then seen as aborted
    )
    if cont is not None:
        run = cont.mark(run)  # a child of the parent's run, both datasets in its lineage
    if resumed is not None:
        from loopml.train.deep.resume import mark_resumed

        run = mark_resumed(run, resumed)
    if checkpoints:
        from loopml.train.deep.resume import with_run_checkpoints

        estimator = with_run_checkpoints(ws, estimator, run.id, resumed)  # torch: per epoch
    ws.metadata.add_run(run)
    say(f"run {run.id[:8]}: {config.name} on {dv.name}@{dv.version} ({len(x)} rows, {task})")
    if split_note:
        say(split_note)
    if weight_note:
        say(weight_note)
    try:
        x_ho, y_ho = take_rows(x, ho_idx), take_rows(y, ho_idx)
        out_of_fold = pd.Series(np.nan, index=x_tr.index, dtype="float64")
        fold_step = itertools.count()  # each fold's score is a step of the run

        def fit_score(
            xa: pd.DataFrame, ya: pd.Series, xb: pd.DataFrame, yb: pd.Series
        ) -> dict[str, float]:
            bundle = fit(
                config.features,
                kinds,
                estimator,
                xa,
                ya,
                task=task,
                target=config.target,
                flavor=flavor,
            )
            p = mark_bundle(bundle, positive).predict_frame(xb)
            out_of_fold.loc[xb.index] = p.scores  # each training row, by the fold not fit on it
            scores = compute_metrics(
                task, yb, p.labels, p.probabilities, p.classes, positive=positive
            )
            ws.metadata.log_step(run.id, f"cv.{metric}", next(fold_step), scores.get(metric))
            return scores

        cv: dict[str, dict[str, float]] = {}
        remote_folds = engine is not None and engine.cross_validate is not None
        if ev.folds and remote_folds:
            assert engine is not None and engine.cross_validate is not None and cv_splits
            cv, per_fold = engine.cross_validate(
                config.features,
                kinds,
                estimator,
                x_tr.reset_index(drop=True),
                y_tr.reset_index(drop=True),
                cv_splits,
                task=task,
                target=config.target,
                flavor=flavor,
                positive=positive,
            )
            for i, scores in enumerate(per_fold):
                ws.metadata.log_step(run.id, f"cv.{metric}", i, scores.get(metric))
            say(f"cross-validation: {ev.folds} folds on {engine.name}")
        elif ev.folds:
            cv = cross_validate(
                x_tr,
                y_tr,
                fit_score,
                n_folds=ev.folds,
                task=task,
                seed=ev.seed,
                on_fold=lambda i: say(f"cross-validation fold {i + 1}/{ev.folds} done"),
                splits=cv_splits,
            )
        bundle = fit(
            config.features,
            kinds,
            estimator,
            x_tr,
            y_tr,
            task=task,
            target=config.target,
            flavor=flavor,
        )
        # per-epoch metrics of a network's fit (NetworkFlavor.steps), as steps of the run
        for key, step, value in bundle.flavor_impl.steps(bundle.estimator):
            ws.metadata.log_step(run.id, key, step, value)
        threshold = None
        if ev.threshold is not None:  # chosen out of fold, never on the holdout
            threshold = choose_threshold(
                ev.threshold, (y_tr == positive).to_numpy(), out_of_fold.to_numpy(), config.source
            )
            say(f"decision threshold {threshold['value']:.4f} for {ev.threshold} (out of fold)")
        p = mark_bundle(bundle, positive, threshold).predict_frame(x_ho)
        holdout = compute_metrics(
            task, y_ho, p.labels, p.probabilities, p.classes, positive=positive
        )
        say(f"holdout {metric} = {holdout.get(metric, float('nan')):.4f}")
        flat = {**holdout, **{f"cv.{k}": v["mean"] for k, v in cv.items()}}
        flat.update({f"cv.{k}.std": v["std"] for k, v in cv.items()})
        metrics: dict[str, Any] = {
            "metric": metric,
            "holdout": holdout,
            "cv": cv,
            "rows": {"train": len(x_tr), "holdout": len(x_ho)},
            **holdout_extras(
                task,
                ev,
                y_ho,
                p.labels,
                p.probabilities,
                p.classes,
                metric=metric,
                overall=holdout.get(metric),
                rows=frame.iloc[ho_idx][[s.column for s in ev.slices]] if ev.slices else None,
                positive=positive,
            ),
            "split": ev.split.to_dict(),
            **({"engine": engine.name} if engine is not None else {}),
        }
        for line in flagged_lines(metrics.get("slices") or {"metric": metric, "flagged": []}):
            say(line)
        champion = None
        if config.alias:  # the alias's holder, scored on the same holdout rows
            champion = check_champion(
                ws,
                name=config.name,
                alias=config.alias,
                task=task,
                metric=metric,
                dataset=(dv.name, dv.version),
                raw_rows=lambda: frame.loc[x_ho.index],  # taken only if a champion exists
                y=y_ho,
                new=p,
                positive=positive,
                metrics_fn=lambda yy, pp: compute_metrics(
                    task, yy, pp.labels, pp.probabilities, pp.classes, positive=positive
                ),
                seed=ev.seed,
            )
        passed, reason = ev.gate.check(
            flat,
            champion=None if champion is None else champion.for_gate,
            slices=(metrics.get("slices") or {}).get("columns"),
        )
        metrics["refit"] = ev.refit
        if threshold is not None:
            metrics["threshold"] = threshold
        take_alias, why = False, "gate failed"
        if champion is not None:
            if passed:
                take_alias, why = decide(config.promotion, champion, config.name)
            metrics["champion"] = champion_record(champion, take_alias, why)
            say(f"champion check: {why}")
        selection = selection_report(bundle.features)  # kept and dropped, with scores
        if selection is not None:
            metrics["feature_selection"] = selection
        # reports/runs/<run_id>.html: curves, calibration, confusion, native importances
        metrics["report"] = write_run_report(ws, run.id, config, bundle, y_ho, p, metrics)
        mv = None
        promoted = None
        if passed:
            metrics["reference_scores"] = _keep_reference_scores(
                ws, config, run.id, out_of_fold if cv and not remote_folds else None, p.scores
            )
            metrics["holdout_predictions"] = save_holdout_predictions(
                ws, config.name, run.id, x_ho.index, p
            )
            if ev.refit:  # the holdout metrics stay those of the model fitted without it
                say(f"refitting on all {len(x)} rows")
                bundle = fit(
                    config.features,
                    kinds,
                    estimator,
                    x,
                    y,
                    task=task,
                    target=config.target,
                    flavor=flavor,
                )
                mark_bundle(bundle, positive, threshold)
                if selection is not None:  # the registered model's own selection
                    metrics["feature_selection"] = selection_report(bundle.features)
            metrics["rows"]["fit"] = len(x) if ev.refit else len(x_tr)
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
            if config.alias and champion is not None and take_alias:
                set_alias(
                    ws,
                    mv.name,
                    config.alias,
                    mv.version,
                    expected=champion.version,
                    reason=f"gate passed: {reason}; {why}",
                )
                promoted = config.alias
                say(f"alias {config.alias} -> {mv.name}@{mv.version}")
            elif config.alias and champion is not None:
                say(f"alias {config.alias} stays on {mv.name}@{champion.version}")
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
        if passed and checkpoints:
            from loopml.train.deep.resume import finish as finish_checkpoints

            finish_checkpoints(ws, run.id)
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


def _declared_weights(
    config: ProjectConfig,
    estimator: Any,
    frame: pd.DataFrame,
    dv: DatasetVersion,
    engine: TrainEngine | None,
    from_version: str | None,
) -> np.ndarray:
    """``train.weight`` of every row of ``frame``, checked (ConfigError naming the field or
    the estimator, InvalidInputError naming the column and row)."""
    spec = config.weight
    assert spec is not None
    where = {"file": config.source, "field": spec.field}
    if engine is not None:
        raise ConfigError(
            f"{spec.field} is set but the {engine.name} engine fits without per-row weights",
            where=where,
            hint=f"Train in process (no engine), or leave {spec.field} out",
        )
    if from_version is not None:
        raise ConfigError(
            f"{spec.field} is set, which continuing a version (--from) does not take",
            where=where,
            hint=f"Leave {spec.field} out to continue the version, or train from scratch",
        )
    check_weight_estimator(estimator, spec, config.source)
    return row_weights_of(frame, spec, source=config.source, dataset=f"{dv.name}@{dv.version}")


def _weighted(fit: Callable[..., ModelBundle], weights: pd.Series) -> Callable[..., ModelBundle]:
    """``fit`` given the weights of the rows it fits (looked up by their index)."""

    def weighted_fit(*args: Any, **kwargs: Any) -> ModelBundle:
        x = args[3]
        return fit(*args, sample_weight=weights.loc[x.index].to_numpy(), **kwargs)

    return weighted_fit


def take_rows(data: Any, rows: np.ndarray) -> Any:
    """``data.iloc[rows]`` (a frame or series), without copying the rows where they are
    consecutive and in order (a time split of time-ordered rows): then a slice, which shares
    the values until written (pandas copies on write). The same rows, values and index."""
    n = len(rows)
    if n and int(rows[-1]) - int(rows[0]) == n - 1 and bool(np.all(np.diff(rows) == 1)):
        start = int(rows[0])
        if start >= 0 and start + n <= len(data):
            return data.iloc[start : start + n]
    return data.iloc[rows]


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
    check_spec(config.features, kinds, task)  # every transform fits its column, before any fit
    return prepare_frame(frame, kinds), y.reset_index(drop=True), kinds, task


def _seeded(estimator: Any, params: dict[str, Any], seed: int) -> Any:
    """``estimator`` with ``random_state`` from ``evaluation.seed`` when it takes one and the
    project file did not set it, so the same file, data and seed give the same metrics."""
    if "random_state" in params or "random_state" not in estimator.get_params(deep=False):
        return estimator
    return estimator.set_params(random_state=seed)


def _check_classes(
    config: ProjectConfig, y: pd.Series, task: str, dv: DatasetVersion
) -> tuple[Any, list[Any]]:
    """The positive label (None: regression or multiclass) and the sorted labels, checked
    against ``data.positive``, ``model.class_weight`` and ``evaluation.threshold``."""
    if task != "classification":
        for fieldname, value in (
            ("data.positive", config.positive),
            ("model.class_weight", config.model.class_weight),
            ("evaluation.threshold", config.evaluation.threshold),
        ):
            if value is not None:
                raise ConfigError(
                    f"{fieldname} is set but the task is {task}",
                    where={"file": config.source, "field": fieldname},
                    hint=f"Leave {fieldname} out, or train a classifier (data.task)",
                )
        return None, []
    labels = sorted(y.unique().tolist(), key=lambda v: (str(type(v)), v))
    positive = resolve_positive(
        config.positive, labels, source=config.source, dataset=f"{dv.name}@{dv.version}"
    )
    if config.evaluation.threshold is not None and positive is None:
        raise ConfigError(
            f"evaluation.threshold is for a binary target; {config.target!r} has "
            f"{len(labels)} classes",
            where={"file": config.source, "field": "evaluation.threshold"},
            hint="Leave evaluation.threshold out for a multiclass target",
        )
    return positive, labels


def _default_metric(task: str, y: pd.Series) -> str:
    return "roc_auc" if task == "classification" else "rmse"


def _all_params(estimator: Any) -> dict[str, Any]:
    """The estimator's parameters, as :func:`~loopml.train.deep.resume.with_run_checkpoints`
    reads them."""
    return estimator.get_params() if hasattr(estimator, "get_params") else {}  # type: ignore[no-any-return]


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


def _resolved_features(config: ProjectConfig, estimator: Any) -> dict[str, Any]:
    """The numeric transforms this run used, ``auto`` decided for its estimator."""
    impute, scale = numeric_choices(config.features, estimator)
    return {"numeric": {"impute": impute, "scale": scale}}
