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

from collections.abc import Callable, Sequence
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

    from loopml.features.spec import build_transformer, fit_features, open_categories
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
        x,
        kinds,
        target=target,
        task=task,
        classes=classes,
        unknown=spec.unknown,
        open_categories=open_categories(spec, kinds),
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
    record the run; register and promote on a pass: :func:`loopml.train.train` with its
    folds and fits sent to Spark (:class:`~loopml.train.trainer.TrainEngine`).

    The folds run as Spark tasks; an XGBoost model's final fit runs on ``num_workers``
    XGBoost workers through xgboost.spark; other flavors fit on the driver. The gate,
    the champion check and promotion are the local trainer's.
    """
    from loopml.engines.spark.session import spark_session
    from loopml.train.trainer import TrainEngine, train

    ev = config.evaluation
    if ev.threshold is not None or ev.slices:
        raise ConfigError(
            "evaluation.threshold and evaluation.slices are not run by the Spark trainer",
            where={"file": config.source, "field": "evaluation"},
            hint="Leave them out for --engine spark, or train with --engine local",
        )
    session = spark or spark_session(settings or ws.settings, master=master)
    distributed = config.model.cls in XGBOOST_CLASSES

    def folds(
        spec: FeatureSpec,
        kinds: dict[str, str],
        estimator: Any,
        x: pd.DataFrame,
        y: pd.Series,
        splits: Sequence[tuple[np.ndarray, np.ndarray]],
        *,
        task: str,
        target: str,
        flavor: str,
        positive: Any,
    ) -> tuple[dict[str, dict[str, float]], list[dict[str, float]]]:
        scorer = fold_scorer(
            spec, kinds, estimator, task=task, target=target, flavor=flavor, positive=positive
        )
        return cross_validate(session, x, y, scorer, splits=splits)

    def fit(
        spec: FeatureSpec,
        kinds: dict[str, str],
        estimator: Any,
        x: pd.DataFrame,
        y: pd.Series,
        *,
        task: str,
        target: str,
        flavor: str,
    ) -> ModelBundle:
        bundle, _model = fit_xgboost(
            session,
            spec,
            kinds,
            estimator,
            x,
            y,
            task=task,
            target=target,
            num_workers=num_workers,
        )
        return bundle

    engine = TrainEngine(
        name="spark",
        params={
            "name": "spark",
            "master": session.sparkContext.master,
            "xgboost_workers": num_workers if distributed else None,
        },
        fit=fit if distributed else None,
        cross_validate=folds,
    )
    return train(ws, config, progress=progress, engine=engine)


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
