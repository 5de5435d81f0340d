"""Training on Spark: XGBoost through ``xgboost.spark``, cross-validation folds as Spark tasks.

Where a well-kept library distributes the fit, loopml uses it and brings the result home:

- :func:`fit_xgboost` fits the project's feature pipeline on the driver (as
  :func:`loopml.train.fit_prepared` does), ships the encoded rows to Spark and trains the
  booster with ``xgboost.spark`` (``SparkXGBClassifier``/``SparkXGBRegressor``, one XGBoost
  worker per Spark task, ``num_workers``). The booster it returns is put into an ordinary
  loopml bundle of the ``xgboost`` flavor: registered, checked, compiled and served like any
  other version, and it predicts what the Spark model predicts.
- :func:`cross_validate` fans the folds of a cross-validation out over the executors, one
  fold per task (``sc.parallelize(folds).map(fit_score)``): each task fits and scores its
  fold and returns the scores only (a dict of numbers), never a model. With the same folds
  and seed, the result is the local :func:`loopml.evaluate.cv.cross_validate`'s.
- :func:`train_on_spark` is the periodic retraining job (``loopml train --engine spark``):
  the newest version of the project's dataset, its holdout and folds made as the local
  trainer makes them, the folds on the executors, the final fit distributed for XGBoost
  (on the driver for the other flavors), the gate, registration and promotion as locally.

What stays on the driver: the rows (read from the lake as the local trainer reads them), the
feature pipeline's fit, the holdout metrics, the registry. So the data must fit in the
driver's memory; the boosting and the folds are what is spread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from loopml.errors import ConfigError, StoreError
from loopml.settings import Settings
from loopml.workspace import Workspace

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from loopml.project import FeatureSpec, ProjectConfig
    from loopml.registry.bundle import ModelBundle
    from loopml.train.trainer import TrainResult

Progress = Callable[[str], None]
FitScore = Callable[[pd.DataFrame, pd.Series, pd.DataFrame, pd.Series], dict[str, float]]
#: the model classes :func:`fit_xgboost` distributes, and the xgboost.spark class for each
XGBOOST_CLASSES = {
    "xgboost.XGBClassifier": "SparkXGBClassifier",
    "xgboost.XGBRegressor": "SparkXGBRegressor",
    "xgboost.sklearn.XGBClassifier": "SparkXGBClassifier",
    "xgboost.sklearn.XGBRegressor": "SparkXGBRegressor",
}
#: XGBClassifier parameters that xgboost.spark sets itself or does not take
_NOT_FOR_SPARK = ("n_jobs", "nthread", "callbacks", "early_stopping_rounds", "eval_metric")


def _spark_error(what: str, exc: BaseException) -> StoreError:
    from loopml.engines.spark.score import _first_line

    return StoreError(
        f"{what} failed on Spark: {_first_line(exc)}",
        where={"setting": "spark_master"},
        hint="Nothing was registered; see the executor logs, fix the cause and run the job "
        "again (executors need loopml and the model's library installed)",
    )


# -- XGBoost --------------------------------------------------------------------------------


def xgboost_params(estimator: Any) -> dict[str, Any]:
    """The scikit-learn parameters of an XGBoost estimator that xgboost.spark takes (the
    ones set, not XGBoost's defaults)."""
    params = estimator.get_params(deep=False)
    defaults = type(estimator)().get_params(deep=False)
    return {
        k: v
        for k, v in params.items()
        if k not in _NOT_FOR_SPARK and v is not None and not (k in defaults and defaults[k] == v)
    }


def fit_xgboost(
    spark: SparkSession,
    spec: FeatureSpec,
    kinds: dict[str, str],
    estimator: Any,
    x: pd.DataFrame,
    y: pd.Series,
    *,
    task: str,
    target: str,
    num_workers: int = 2,
) -> tuple[ModelBundle, Any]:
    """Fit ``spec``'s feature pipeline on the driver and the XGBoost booster on Spark.

    Returns the bundle (``xgboost`` flavor, ready for :func:`loopml.register_model`) and the
    fitted xgboost.spark model. Classes are fit as the xgboost flavor fits them: the index
    of each label in the sorted classes, which the signature keeps.
    """
    from xgboost import spark as xgb_spark

    from loopml.features.spec import build_transformer, fit_features
    from loopml.registry.bundle import ModelBundle
    from loopml.registry.flavors import get_flavor
    from loopml.registry.flavors.xgboost import _check_objective
    from loopml.registry.signature import Signature
    from loopml.train.fit import sample_rows

    cls_name = "SparkXGBRegressor" if task == "regression" else "SparkXGBClassifier"
    features = build_transformer(spec, kinds, estimator, task=task)
    encoded = np.asarray(fit_features(features, x, y), dtype=np.float64)
    classes: list[Any] | None = None
    if task == "regression":
        label = np.asarray(y, dtype=np.float64)
    else:
        found, codes = np.unique(np.asarray(y), return_inverse=True)
        classes, label = found.tolist(), codes.astype(np.float64)
    names = [f"f{i}" for i in range(encoded.shape[1])]
    rows = pd.DataFrame(encoded, columns=names)
    rows["label"] = label
    # one slice per XGBoost worker, so that each gets rows (xgboost.spark repartitions too)
    frame = spark.createDataFrame(rows).repartition(num_workers)
    params = xgboost_params(estimator)
    try:
        model = getattr(xgb_spark, cls_name)(
            features_col=names, label_col="label", num_workers=num_workers, **params
        ).fit(frame)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"model.params do not fit xgboost.spark.{cls_name}: {exc}",
            where={"field": "model.params"},
            hint="Give XGBoost's scikit-learn parameters (n_estimators, max_depth, "
            "learning_rate, ...); n_jobs and callbacks are set by xgboost.spark",
        ) from exc
    except Exception as exc:  # Py4J / barrier-stage failures
        raise _spark_error("the XGBoost fit", exc) from exc
    booster = model.get_booster()
    if task != "regression":
        _check_objective(booster)
    signature = Signature.from_frame(
        x, kinds, target=target, task=task, classes=classes, unknown=spec.unknown
    )
    flavor = get_flavor("xgboost")
    bundle = ModelBundle(features, booster, signature, flavor.name, sample=sample_rows(x))
    return bundle, model


def spark_model_predictions(model: Any, spark: SparkSession, encoded: np.ndarray) -> np.ndarray:
    """What an xgboost.spark model predicts for encoded rows: class probabilities (one
    column per class) or values, in the rows' order."""
    names = [f"f{i}" for i in range(encoded.shape[1])]
    rows = pd.DataFrame(np.asarray(encoded, dtype=np.float64), columns=names)
    rows["__row"] = np.arange(len(rows))
    out = model.transform(spark.createDataFrame(rows)).orderBy("__row")
    if "probability" in out.columns:
        return np.asarray([list(r["probability"]) for r in out.select("probability").collect()])
    return np.asarray([r["prediction"] for r in out.select("prediction").collect()])


# -- cross-validation -----------------------------------------------------------------------


def cross_validate(
    spark: SparkSession,
    x: pd.DataFrame,
    y: pd.Series,
    fit_score: FitScore,
    *,
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
) -> tuple[dict[str, dict[str, float]], list[dict[str, float]]]:
    """Run ``fit_score(x_train, y_train, x_test, y_test)`` for each fold as a Spark task;
    ``(metric -> {mean, std, min, max}, the scores of each fold)``, as
    :func:`loopml.evaluate.cv.cross_validate` summarises them.

    ``fit_score`` travels to the executors with the task (cloudpickle, as every Spark
    function does) and must return plain numbers; the rows go once per executor as a
    broadcast.
    """
    sc = spark.sparkContext
    data = sc.broadcast((x, y))
    folds = [(i, np.asarray(tr), np.asarray(te)) for i, (tr, te) in enumerate(splits)]

    def run_fold(fold: tuple[int, np.ndarray, np.ndarray]) -> tuple[int, dict[str, float]]:
        i, tr, te = fold
        xs, ys = data.value
        scores = fit_score(xs.iloc[tr], ys.iloc[tr], xs.iloc[te], ys.iloc[te])
        return i, {str(k): float(v) for k, v in scores.items()}

    try:
        done = sc.parallelize(folds, max(1, len(folds))).map(run_fold).collect()
    except Exception as exc:
        raise _spark_error("cross-validation", exc) from exc
    finally:
        data.unpersist()
    per_fold = [scores for _, scores in sorted(done, key=lambda item: item[0])]
    return summarise(per_fold), per_fold


def summarise(per_fold: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """metric -> {mean, std (ddof 1), min, max} over the folds, as the local CV reports."""
    names = sorted(set().union(*per_fold)) if per_fold else []
    out = {}
    for name in names:
        values = np.array([f[name] for f in per_fold if name in f], dtype=np.float64)
        out[name] = {
            "mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "min": float(values.min()),
            "max": float(values.max()),
        }
    return out


def fold_scorer(
    spec: FeatureSpec,
    kinds: dict[str, str],
    estimator: Any,
    *,
    task: str,
    target: str,
    flavor: str,
    positive: Any,
) -> FitScore:
    """The local trainer's fold: fit a bundle on the fold's training rows, score its test
    rows with every metric of the task."""
    from loopml.evaluate.metrics import compute_metrics
    from loopml.train.fit import fit_prepared
    from loopml.train.imbalance import mark_bundle

    def fit_score(
        xa: pd.DataFrame, ya: pd.Series, xb: pd.DataFrame, yb: pd.Series
    ) -> dict[str, float]:
        bundle = fit_prepared(
            spec, kinds, estimator, xa, ya, task=task, target=target, flavor=flavor
        )
        p = mark_bundle(bundle, positive).predict_frame(xb)
        return compute_metrics(task, yb, p.labels, p.probabilities, p.classes, positive=positive)

    return fit_score


# -- the retraining job ---------------------------------------------------------------------


def train_on_spark(
    ws: Workspace,
    config: ProjectConfig,
    *,
    settings: Settings | None = None,
    master: str | None = None,
    spark: SparkSession | None = None,
    num_workers: int = 2,
    progress: Progress | None = None,
) -> TrainResult:
    """Train ``config`` on the newest version of its dataset (or the pinned one) on Spark;
    record the run; register and promote on a pass, as :func:`loopml.train.train` does.

    The folds run as Spark tasks; an XGBoost model's final fit runs on ``num_workers``
    XGBoost workers through xgboost.spark; other flavors fit on the driver. The gate,
    the champion check and promotion are the local trainer's.
    """
    from loopml.data.ingest import read_version
    from loopml.engines.spark.session import spark_session
    from loopml.evaluate.holdout import holdout_extras
    from loopml.evaluate.metrics import check_metric, compute_metrics, metric_names
    from loopml.evaluate.split import (
        check_split,
        fold_indices,
        holdout_indices,
        split_column,
        without_split_column,
    )
    from loopml.registry.models import register_model, set_alias
    from loopml.stores.records import Run
    from loopml.train.estimators import flavor_of, make_estimator
    from loopml.train.evaluation import write_run_report
    from loopml.train.fit import fit_prepared
    from loopml.train.imbalance import apply_class_weight, mark_bundle
    from loopml.train.promote import (
        champion_record,
        check_champion,
        decide,
        save_holdout_predictions,
    )
    from loopml.train.trainer import (
        TrainResult,
        _check_classes,
        _default_metric,
        _git_commit,
        _keep_reference_scores,
        _packages,
        _params,
        _prepare,
        _seeded,
    )
    from loopml.utils import new_id, process_owner, utcnow

    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    settings = settings or ws.settings
    ev = config.evaluation
    if ev.threshold is not None or ev.slices:
        raise ConfigError(
            "evaluation.threshold and evaluation.slices are not run by the Spark trainer",
            where={"file": config.source, "field": "evaluation"},
            hint="Leave them out for --engine spark, or train with --engine local",
        )
    dv = ws.metadata.get_dataset_version(config.dataset, config.dataset_version)
    frame = read_version(ws, dv).to_pandas()
    config.check_columns(list(frame.columns), source=f"dataset {dv.name}@{dv.version}")
    features, _note = without_split_column(config.features, ev.split)
    x, y, kinds, task = _prepare(replace(config, features=features), dv, frame)
    config.check_metrics(metric_names(task))
    split_col = split_column(frame, ev.split)
    check_split(ev.split, split_col, n_folds=ev.folds, task=task, source=f"dataset {dv.name}")
    tr_idx, ho_idx = holdout_indices(
        y, spec=ev.split, fraction=ev.holdout, task=task, seed=ev.seed, column=split_col
    )
    estimator = _seeded(
        make_estimator(config.model, task, config.source), config.model.params, ev.seed
    )
    metric = check_metric(task, ev.metric or _default_metric(task, y))
    flavor = flavor_of(config.model.cls)
    positive, labels = _check_classes(config, y, task, dv)
    estimator = apply_class_weight(estimator, config.model.class_weight, labels, config.source)
    distributed = config.model.cls in XGBOOST_CLASSES
    session = spark or spark_session(settings, master=master)
    run = Run(
        id=new_id(),
        name=config.name,
        status="running",
        started_at=utcnow(),
        params={
            "project": config.to_dict(),
            "estimator": _params(estimator),
            "engine": {
                "name": "spark",
                "master": session.sparkContext.master,
                "xgboost_workers": num_workers if distributed else None,
            },
        },
        dataset_name=dv.name,
        dataset_version=dv.version,
        git_commit=_git_commit(Path(config.source).resolve().parent),
        packages=_packages(),
        owner=process_owner(),
    )
    ws.metadata.add_run(run)
    say(f"run {run.id[:8]}: {config.name} on {dv.name}@{dv.version} ({len(x)} rows, {task}, Spark)")
    try:
        x_tr, x_ho, y_tr, y_ho = x.iloc[tr_idx], x.iloc[ho_idx], y.iloc[tr_idx], y.iloc[ho_idx]
        cv: dict[str, dict[str, float]] = {}
        if ev.folds:
            splits = fold_indices(
                y_tr,
                spec=ev.split,
                n_folds=ev.folds,
                task=task,
                seed=ev.seed,
                column=None if split_col is None else split_col.iloc[tr_idx].reset_index(drop=True),
            )
            scorer = fold_scorer(
                config.features,
                kinds,
                estimator,
                task=task,
                target=config.target,
                flavor=flavor,
                positive=positive,
            )
            cv, per_fold = cross_validate(
                session,
                x_tr.reset_index(drop=True),
                y_tr.reset_index(drop=True),
                scorer,
                splits=splits,
            )
            for i, scores in enumerate(per_fold):
                ws.metadata.log_step(run.id, f"cv.{metric}", i, scores.get(metric))
            say(f"cross-validation: {ev.folds} folds as Spark tasks")

        def fit(xa: pd.DataFrame, ya: pd.Series) -> ModelBundle:
            if distributed:
                bundle, _model = fit_xgboost(
                    session,
                    config.features,
                    kinds,
                    estimator,
                    xa,
                    ya,
                    task=task,
                    target=config.target,
                    num_workers=num_workers,
                )
                return bundle
            return fit_prepared(
                config.features,
                kinds,
                estimator,
                xa,
                ya,
                task=task,
                target=config.target,
                flavor=flavor,
            )

        bundle = fit(x_tr, y_tr)
        p = mark_bundle(bundle, positive).predict_frame(x_ho)
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
                rows=None,
                positive=positive,
            ),
            "split": ev.split.to_dict(),
            "engine": "spark",
        }
        champion = None
        if config.alias:
            champion = check_champion(
                ws,
                name=config.name,
                alias=config.alias,
                task=task,
                metric=metric,
                dataset=(dv.name, dv.version),
                raw_rows=frame.loc[x_ho.index],
                y=y_ho,
                new=p,
                positive=positive,
                metrics_fn=lambda yy, pp: compute_metrics(
                    task, yy, pp.labels, pp.probabilities, pp.classes, positive=positive
                ),
                seed=ev.seed,
            )
        passed, reason = ev.gate.check(
            flat, champion=None if champion is None else champion.for_gate, slices=None
        )
        metrics["refit"] = ev.refit
        take_alias, why = False, "gate failed"
        if champion is not None:
            if passed:
                take_alias, why = decide(config.promotion, champion, config.name)
            metrics["champion"] = champion_record(champion, take_alias, why)
            say(f"champion check: {why}")
        metrics["report"] = write_run_report(ws, run.id, config, bundle, y_ho, p, metrics)
        mv = None
        promoted = None
        if passed:
            metrics["reference_scores"] = _keep_reference_scores(ws, config, run.id, None, p.scores)
            metrics["holdout_predictions"] = save_holdout_predictions(
                ws, config.name, run.id, x_ho.index, p
            )
            if ev.refit:
                say(f"refitting on all {len(x)} rows")
                bundle = mark_bundle(fit(x, y), positive)
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


__all__ = [
    "XGBOOST_CLASSES",
    "cross_validate",
    "fit_xgboost",
    "fold_scorer",
    "spark_model_predictions",
    "summarise",
    "train_on_spark",
    "xgboost_params",
]
