"""Training a recommender from the project file: ``loopml train`` with
``model.class: loopml.train.deep.MFRecommender``.

```yaml
name: movies
data: {dataset: ratings, target: rating}      # the rating (or any column, for implicit data)
model:
  class: loopml.train.deep.MFRecommender
  params: {user: user_id, item: item_id, min_rating: 4, dim: 64, epochs: 20, lr: 0.005, k: 10}
evaluation:
  split: {kind: time, column: timestamp}      # each user's latest rows are held out
  holdout: 0.2
  metric: ndcg_at_10
  gate: "ndcg_at_10 >= 0.1"
```

The split is time-ordered within each user's history (each user's latest ``holdout``
fraction is held out: with one global cut, few held-out users were seen in training). The
holdout metrics are the ranking metrics at ``k`` (``precision_at_10``, ``recall_at_10``,
``ndcg_at_10``, ``map_at_10``, ``coverage_at_10``) of the model and of the most-popular
baseline (``popular_...``), on the held-out users seen in training, recommending items they
did not see in training. A run that passes its gate is refitted on every row
(``evaluation.refit``) and registered: the bundle's signature takes the user and item
columns (``:predict`` scores pairs), ``:recommend`` answers top-k lists
(:mod:`loopml.serve.recommend`); the weights are safetensors, the ids JSON.

``--from NAME@VERSION`` fine-tunes that recommender on the new data (its embeddings kept,
new users and items added), recorded as its child with both dataset versions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pandas as pd

from loopml.data.ingest import read_version
from loopml.errors import ConfigError
from loopml.kinds import CATEGORICAL, NUMERIC
from loopml.project import ProjectConfig
from loopml.registry.bundle import ModelBundle
from loopml.registry.flavors.torch_recommender import ESTIMATOR, Recommender
from loopml.registry.models import load_model, register_model, resolve_version, set_alias
from loopml.registry.signature import Signature
from loopml.stores.records import Run
from loopml.train.deep.ranking import ranking_metrics, time_split
from loopml.train.deep.recommender import MFRecommender, most_popular
from loopml.utils import new_id, process_owner, utcnow
from loopml.workspace import Workspace

if TYPE_CHECKING:
    from loopml.train.trainer import TrainResult

FLAVOR = "recommender"
MEASURES = ("precision", "recall", "ndcg", "map", "coverage")


def is_recommender(class_path: str) -> bool:
    return class_path == ESTIMATOR


def metric_names(k: int) -> list[str]:
    """The holdout metrics of a recommender run at ``k``: the model's and the baseline's."""
    own = [f"{m}_at_{k}" for m in MEASURES]
    return [*own, *(f"popular_{m}" for m in own)]


def train_recommender(
    ws: Workspace,
    config: ProjectConfig,
    *,
    progress: Callable[[str], None] | None = None,
    from_version: str | None = None,
) -> TrainResult:
    """Train, evaluate, gate and register the recommender of ``config`` (a
    :class:`~loopml.train.trainer.TrainResult`). Everything the project file can get wrong
    is refused before a run is recorded."""
    from loopml.train.trainer import TrainResult as Result
    from loopml.train.trainer import _git_commit, _packages

    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    source = config.source
    dv = ws.metadata.get_dataset_version(config.dataset, config.dataset_version)
    frame = read_version(ws, dv).to_pandas()
    where_ds = f"dataset {dv.name}@{dv.version}"
    config.check_columns(list(frame.columns), source=where_ds)
    est = _estimator(config)
    for key in ("user", "item"):
        column = getattr(est, key)
        if not column:
            raise ConfigError(
                f"model.params.{key} is not set",
                where={"file": source, "field": f"model.params.{key}"},
                hint=f"Name the column of {where_ds} holding the {key} ids",
            )
        if column not in frame.columns:
            raise ConfigError(
                f"model.params.{key} {column!r} is not a column of {where_ds}",
                where={"file": source, "field": f"model.params.{key}"},
                hint=f"Columns: {', '.join(map(str, list(frame.columns)[:30]))}",
            )
    k = int(est.k)
    if k < 1:
        raise ConfigError(
            f"model.params.k is {k}",
            where={"file": source, "field": "model.params.k"},
            hint="The ranking metrics' cut-off must be at least 1, e.g. k: 10",
        )
    ev = config.evaluation
    if ev.split.kind != "time" or not ev.split.column:
        raise ConfigError(
            f"a recommender is evaluated on a time-ordered split, not {ev.split.kind!r}",
            where={"file": source, "field": "evaluation.split"},
            hint="Write split: {kind: time, column: TIMESTAMP_COLUMN}",
        )
    names = metric_names(k)
    config.check_metrics(names)
    metric = ev.metric or f"ndcg_at_{k}"
    parent = _parent(ws, config, from_version, est) if from_version is not None else None
    ratings = config.target
    if est.min_rating is not None and not pd.api.types.is_numeric_dtype(frame[ratings]):
        raise ConfigError(
            f"model.params.min_rating is set but data.target {ratings!r} is not numeric",
            where={"file": source, "field": "model.params.min_rating"},
            hint="Leave min_rating out for implicit data (every row is an interaction)",
        )
    train_part, test_part = time_split(frame, ev.split.column, ev.holdout, by=est.user)
    run = Run(
        id=new_id(),
        name=config.name,
        status="running",
        started_at=utcnow(),
        params={"project": config.to_dict(), "estimator": est.get_params()},
        dataset_name=dv.name,
        dataset_version=dv.version,
        git_commit=_git_commit(_folder(source)),
        packages=_packages(),
        owner=process_owner(),
    )
    if parent is not None:
        run = _mark(run, parent[0], f"{dv.name}@{dv.version}")
    ws.metadata.add_run(run)
    say(
        f"run {run.id[:8]}: {config.name} on {dv.name}@{dv.version} "
        f"({len(frame)} rows, recommender)"
    )
    try:
        init = None if parent is None else parent[1]
        model = est.fit(train_part, ratings, init=init)
        for step, row in enumerate(model.history):
            for key, value in row.items():
                ws.metadata.log_step(run.id, f"epoch.{key}", step, value)
        relevant_rows = test_part
        if est.min_rating is not None:
            relevant_rows = test_part[test_part[ratings] >= est.min_rating]
        n_items = frame[est.item].nunique()
        own = _evaluate(model, relevant_rows, est, k, n_items)
        baseline = _evaluate(
            most_popular(train_part, est.user, est.item), relevant_rows, est, k, n_items
        )
        holdout = {f"{m}_at_{k}": own[m] for m in MEASURES}
        holdout.update({f"popular_{m}_at_{k}": baseline[m] for m in MEASURES})
        say(
            f"holdout {metric} = {holdout.get(metric, float('nan')):.4f} "
            f"(most popular: ndcg_at_{k} = {holdout[f'popular_ndcg_at_{k}']:.4f})"
        )
        passed, reason = ev.gate.check(holdout)
        metrics: dict[str, Any] = {
            "metric": metric,
            "holdout": holdout,
            "cv": {},
            "rows": {"train": len(train_part), "holdout": len(test_part)},
            "users": {"evaluated": int(own["users"])},
            "split": {**ev.split.to_dict(), "by": est.user},
            "refit": ev.refit,
        }
        mv = None
        promoted = None
        if passed:
            if ev.refit:
                say(f"refitting on all {len(frame)} rows")
                model = est.fit(frame, ratings, init=init)
            metrics["rows"]["fit"] = len(frame) if ev.refit else len(train_part)
            bundle = _bundle(model, frame if ev.refit else train_part, est, ratings)
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
                set_alias(ws, mv.name, config.alias, mv.version, reason=f"gate passed: {reason}")
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
        return Result(run, mv, passed, reason, promoted)
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


def _estimator(config: ProjectConfig) -> MFRecommender:
    params = dict(config.model.params)
    params.setdefault("random_state", config.evaluation.seed)
    known = MFRecommender().get_params()
    for key in params:
        if key not in known:
            raise ConfigError(
                f"model.params do not fit {ESTIMATOR}: it takes no parameter {key!r}",
                where={"file": config.source, "field": f"model.params.{key}"},
                hint=f"MFRecommender takes: {', '.join(known)}",
            )
    return MFRecommender(**params)


def _evaluate(
    model: Recommender, test: pd.DataFrame, est: MFRecommender, k: int, n_items: int
) -> dict[str, float]:
    relevant = {u: set(g[est.item]) for u, g in test.groupby(est.user) if model.knows(u)}
    recs = model.recommend_many(list(relevant), k)
    return ranking_metrics({r.user: r.items for r in recs}, relevant, k, n_items)


def _bundle(
    model: Recommender, frame: pd.DataFrame, est: MFRecommender, target: str
) -> ModelBundle:
    """The version's bundle: the user and item columns passed through (a SimpleImputer,
    which changes nothing: the signature refuses a missing id), the recommender."""
    from sklearn.impute import SimpleImputer

    from loopml.train.fit import sample_rows

    columns = [est.user, est.item]
    x = frame[columns].reset_index(drop=True)
    kinds = {
        c: NUMERIC
        if pd.api.types.is_numeric_dtype(x[c]) and not pd.api.types.is_bool_dtype(x[c])
        else CATEGORICAL
        for c in columns
    }
    if any(kind == NUMERIC for kind in kinds.values()):
        x = x.astype({c: "float64" for c, kind in kinds.items() if kind == NUMERIC})
    features = SimpleImputer(strategy="most_frequent").fit(x)
    sig = Signature.from_frame(x, kinds, target=target, task="regression")
    return ModelBundle(features, model, sig, FLAVOR, sample=sample_rows(x))


def _parent(
    ws: Workspace, config: ProjectConfig, ref: str, est: MFRecommender
) -> tuple[Any, Recommender]:
    """The version to fine-tune, checked: a recommender on the same id columns and dim."""
    record = resolve_version(ws, ref)
    name = f"{record.name}@{record.version}"
    bundle = load_model(ws, name).bundle
    where = {"file": config.source, "field": "model.class", "option": "--from"}
    if bundle.flavor != FLAVOR:
        raise ConfigError(
            f"{name} is a {bundle.flavor} model; model.class {ESTIMATOR} cannot continue it",
            where=where,
            hint="Continue a recommender version, or train from scratch without --from",
        )
    if bundle.signature.names != [est.user, est.item]:
        raise ConfigError(
            f"{name} takes the columns {bundle.signature.names}, not "
            f"{[est.user, est.item]} (model.params.user, model.params.item)",
            where={**where, "field": "model.params.user"},
            hint="Name the parent's id columns, or train from scratch",
        )
    model: Recommender = bundle.estimator
    if model.dim != int(est.dim):
        raise ConfigError(
            f"{name} has embeddings of dim {model.dim}; model.params.dim is {est.dim}",
            where={**where, "field": "model.params.dim"},
            hint=f"Set dim: {model.dim} to continue it (the checkpoint's architecture), or "
            "train from scratch",
        )
    return (record, name), model


def _mark(run: Run, parent: tuple[Any, str], dataset: str) -> Run:
    record, name = parent
    parent_ds = (
        None if record.dataset_name is None else f"{record.dataset_name}@{record.dataset_version}"
    )
    lineage = {"continued_from": name, "parent_dataset": parent_ds, "dataset": dataset}
    tags = {k: v for k, v in lineage.items() if v is not None}
    return replace(
        run, parent_id=record.run_id, params={**run.params, **lineage}, tags={**run.tags, **tags}
    )


def _folder(source: str) -> Any:
    from pathlib import Path

    return Path(source).resolve().parent


__all__ = ["is_recommender", "metric_names", "train_recommender"]
