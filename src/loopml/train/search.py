"""Hyperparameter search with Optuna: trials as child runs, one study shared by processes.

The study lives with the workspace's metadata: in PostgreSQL, in a schema of its own
(``loopml_optuna``, or ``<schema>_optuna`` when the URI chooses a schema) of the same
database; with SQLite, in a file next to the metadata file (``loopml.optuna.db``). Optuna
keeps its schema version in an Alembic table of the same name as loopml's, so the two
cannot share one schema. Several processes (or machines, through PostgreSQL) running the same
search load the same study and stop when it holds ``search.trials`` trials between them.

Each trial is scored by cross-validation on the training part of the data (the holdout stays
out of the search, so the final evaluation is honest), reports every fold's score so that a
pruner can stop it early, and is recorded as a child run of the process's search run. The
best trial's params are then trained through :func:`loopml.train.train` like any run.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from loopml.data.ingest import read_version
from loopml.errors import ConfigError, InvalidInputError
from loopml.evaluate.cv import Fold, cross_validate
from loopml.evaluate.metrics import LOWER_IS_BETTER, compute_metrics, metric_names
from loopml.evaluate.split import (
    check_split,
    fold_indices,
    holdout_indices,
    split_column,
    without_split_column,
)
from loopml.features.spec import check_selection
from loopml.project import FeatureSpec, ProjectConfig
from loopml.project.search import ParamSpace, SearchSpec
from loopml.project.suggest import did_you_mean
from loopml.stores.records import Run
from loopml.train.estimators import _check_param_names, estimator_class, flavor_of, make_estimator
from loopml.train.fit import fit_prepared
from loopml.train.imbalance import RowWeights, mark_bundle, weigh_classes
from loopml.train.study import TrialSeededSampler, heartbeat, study_storage
from loopml.train.trainer import (
    Progress,
    TrainResult,
    _check_classes,
    _default_metric,
    _git_commit,
    _packages,
    _params,
    _prepare,
    _seeded,
    train,
)
from loopml.utils import new_id, process_owner, utcnow
from loopml.workspace import Workspace

if TYPE_CHECKING:
    import optuna

SKIPPED = "loopml_skipped"  # user attribute of a trial created past the target, then dropped
RUN_ATTR = "loopml_run"  # user attribute: the id of the trial's child run
POLL_S = 0.5  # how often the process that trains the best looks at trials still running


@dataclass(frozen=True)
class TrialEvent:
    """What the progress bar shows after each trial this process ran."""

    number: int
    state: str  # "complete", "pruned" or "failed"
    score: float | None
    done: int  # finished trials in the study, from every process
    target: int
    best: float | None


@dataclass(frozen=True)
class SearchResult:
    """A finished search: the study's best trial, and that trial's params trained."""

    study: str
    metric: str
    direction: str  # "maximize" or "minimize"
    best_params: dict[str, Any]
    best_score: float
    best_trial: int
    trials: int  # finished trials in the study (complete + pruned), from every process
    run: Run  # this process's search run
    # the best params trained on the whole training data; None in a process that did not run
    # the study's last trial (the process that did trains them, once every trial is over)
    result: TrainResult | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": self.study,
            "metric": self.metric,
            "direction": self.direction,
            "best_params": self.best_params,
            "best_score": self.best_score,
            "best_trial": self.best_trial,
            "trials": self.trials,
            "run": self.run.to_dict(),
            "result": self.result.to_dict() if self.result else None,
        }


def search(
    ws: Workspace,
    config: ProjectConfig,
    *,
    trials: int | None = None,
    progress: Progress | None = None,
    on_trial: Callable[[TrialEvent], None] | None = None,
) -> SearchResult:
    """Run the project's ``search:`` until its study holds ``trials`` trials, then train the best.

    ``trials`` overrides ``search.trials``: the number of trials of the whole study, so a
    second process (or a re-run) adds only what is missing. Every mistake in the section
    (empty space, a parameter the estimator does not take, a range it refuses, a metric of
    another task) is a ConfigError before any run is recorded.
    """
    optuna = _import_optuna()
    say = progress or (lambda _msg: None)
    spec = config.search
    if spec is None:
        raise ConfigError(
            "the project file has no search section",
            where={"file": config.source, "field": "search"},
            hint="Add search: {trials: 20, space: {max_depth: {int: [2, 12]}}}",
        )
    if config.weight is not None:  # trials fit unweighted: refuse rather than mislead
        raise ConfigError(
            f"{config.weight.field} is set, which the search's trials do not take yet",
            where={"file": config.source, "field": config.weight.field},
            hint="Search without train.weight, then train the best parameters with it",
        )
    target = spec.trials if trials is None else trials
    if isinstance(target, bool) or not isinstance(target, int) or target < 1:
        raise InvalidInputError(
            f"trials must be 1 or more, got {target!r}",
            where={"field": "trials"},
            hint="Pass --trials 20, or set search.trials",
        )
    started = time.perf_counter()
    dv = ws.metadata.get_dataset_version(config.dataset, config.dataset_version)
    frame = read_version(ws, dv).to_pandas()
    config.check_columns(list(frame.columns), source=f"dataset {dv.name}@{dv.version}")
    # the rows, features, split and classes exactly as loopml.train.train prepares them
    ev = config.evaluation
    features, _note = without_split_column(config.features, ev.split)
    x, y, kinds, task = _prepare(replace(config, features=features), dv, frame)
    config.check_metrics(metric_names(task))
    n_folds = spec.folds or ev.folds or 5
    split_col = split_column(frame, ev.split)
    source = f"dataset {dv.name}@{dv.version}"
    check_split(ev.split, split_col, n_folds=n_folds, task=task, source=source)
    positive, labels = _check_classes(config, y, task, dv)
    metric = _search_metric(config, spec, task, y)
    check_space(config, spec, task)
    direction = "minimize" if metric in LOWER_IS_BETTER else "maximize"
    # trials see the training rows only: the holdout judges the final run, not the search
    tr_idx, _ho_idx = holdout_indices(
        y, spec=ev.split, fraction=ev.holdout, task=task, seed=ev.seed, column=split_col
    )
    data = _Data(
        features=features,
        kinds=kinds,
        task=task,
        positive=positive,
        labels=labels,
        x=x.iloc[tr_idx],
        y=y.iloc[tr_idx],
        splits=fold_indices(
            y.iloc[tr_idx],
            spec=ev.split,
            n_folds=n_folds,
            task=task,
            seed=ev.seed,
            column=None if split_col is None else split_col.iloc[tr_idx],
        ),
    )
    # a variance selection that keeps no feature fails here, before the study and the run
    check_selection(
        features, kinds, data.x, data.y, task, make_estimator(config.model, task, config.source)
    )
    name = spec.study or f"{config.name}-{dv.name}-v{dv.version}-{spec.space_hash()}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=study_storage(ws),
        study_name=name,
        direction=direction,
        sampler=TrialSeededSampler(config.evaluation.seed),
        pruner=optuna.pruners.MedianPruner()
        if spec.pruner == "median"
        else optuna.pruners.NopPruner(),
        load_if_exists=True,
    )
    if study.direction.name.lower() != direction:
        raise ConfigError(
            f"study {name!r} exists and {study.direction.name.lower()}s, but search.metric "
            f"{metric!r} is to {direction}",
            where={"file": config.source, "field": "search.study"},
            hint="Name a new study with search.study",
        )
    parent = Run(
        id=new_id(),
        name=config.name,
        status="running",
        started_at=utcnow(),
        params={"project": config.to_dict(), "search": {**spec.to_dict(), "trials": target}},
        dataset_name=dv.name,
        dataset_version=dv.version,
        git_commit=_git_commit(Path(config.source).resolve().parent),
        packages=_packages(),
        owner=process_owner(),
        tags={"kind": "search"},
    )
    ws.metadata.add_run(parent)
    say(f"search {parent.id[:8]}: study {name}, {target} trials of {metric} ({direction})")
    try:
        objective = _Objective(ws, config, parent, data, metric)
        mine: list[int] = []
        while len(_counted(study)) < target:
            trial = study.ask()
            if len(_counted(study, below=trial.number)) >= target:
                trial.set_user_attr(SKIPPED, True)  # another process took the last slot
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                break
            state, score = objective.run(study, trial)
            mine.append(trial.number)
            if on_trial is not None:
                on_trial(
                    TrialEvent(
                        trial.number, state, score, len(_finished(study)), target, _best(study)
                    )
                )
        ran = len(mine)
        counted = _counted(study)
        last = max((t.number for t in counted), default=-1)
        trains = not mine or last in mine  # one process trains the best: the last trial's
        if trains:
            _wait_for_running(ws, study, say)
        finished = _finished(study)
        complete = [t for t in finished if t.state == optuna.trial.TrialState.COMPLETE]
        if not complete and not trains:  # the others' trials are still running
            say(f"trial #{last} runs in another process, which trains the best when all are over")
            parent = replace(
                parent,
                status="succeeded",
                metrics={"metric": metric, "direction": direction, "final_run": None},
                duration_s=time.perf_counter() - started,
            )
            ws.metadata.update_run(parent)
            return SearchResult(
                name, metric, direction, {}, math.nan, -1, len(finished), parent, None
            )
        if not complete:
            raise InvalidInputError(
                f"no trial of study {name!r} completed (all {len(finished)} were pruned)",
                where={"study": name},
                hint="Set search.pruner: none, or widen search.trials",
            )
        best = study.best_trial
        best_score = float(best.value) if best.value is not None else math.nan
        say(f"best trial #{best.number}: {metric} = {best_score:.4f} with {best.params}")
        summary: dict[str, Any] = {
            "metric": metric,
            "direction": direction,
            "best_score": best_score,
            "best_trial": best.number,
            "best_params": best.params,
            "trials": {
                "study": len(finished),
                "complete": len(complete),
                "pruned": len(finished) - len(complete),
                "this_process": ran,
            },
        }
        if not trains:
            say(f"trial #{last} runs in another process, which trains the best when all are over")
            parent = replace(
                parent,
                status="succeeded",
                metrics={**summary, "final_run": None},
                duration_s=time.perf_counter() - started,
            )
            ws.metadata.update_run(parent)
            return SearchResult(
                name, metric, direction, dict(best.params), best_score, best.number,
                len(finished), parent, None,
            )  # fmt: skip
        final_config = replace(
            config, model=replace(config.model, params={**config.model.params, **best.params})
        )
        result = train(ws, final_config, progress=say)
        final = replace(
            result.run,
            parent_id=parent.id,
            tags={**result.run.tags, "kind": "search_best"},
            params={
                **result.run.params,
                "search": {
                    "study": name,
                    "trial": best.number,
                    "params": best.params,
                    "score": best_score,
                    "metric": metric,
                },
            },
        )
        ws.metadata.update_run(final)
        result = replace(result, run=final)
        parent = replace(
            parent,
            status="succeeded",
            metrics={**summary, "final_run": final.id},
            duration_s=time.perf_counter() - started,
            model_version=result.model_version.version if result.model_version else None,
        )
        ws.metadata.update_run(parent)
        return SearchResult(
            name, metric, direction, dict(best.params), best_score, best.number,
            len(finished), parent, result,
        )  # fmt: skip
    except BaseException as exc:
        ws.metadata.update_run(
            replace(
                parent,
                status="failed",
                error=f"{type(exc).__name__}: {exc}",
                duration_s=time.perf_counter() - started,
            )
        )
        raise


def check_space(config: ProjectConfig, spec: SearchSpec, task: str) -> None:
    """ConfigError for a space parameter the estimator does not take, or an edge of a range
    (a choice) it refuses, naming ``search.space.<param>``; runs before any work."""
    cls = estimator_class(config.model, config.source)
    for p in spec.space:
        fieldname = f"search.space.{p.name}"
        try:
            _check_param_names(cls, {p.name: None}, config.model, config.source)
        except ConfigError as exc:
            raise ConfigError(
                f"{fieldname}: {config.model.cls} takes no parameter {p.name!r}",
                where={"file": config.source, "field": fieldname},
                hint=exc.hint,
            ) from exc
        for value in p.edges():
            model = replace(config.model, params={**config.model.params, p.name: value})
            try:
                make_estimator(model, task, config.source)
            except ConfigError as exc:
                raise ConfigError(
                    f"{fieldname}: {config.model.cls} refuses {p.name}={value!r}: {exc.message}",
                    where={"file": config.source, "field": f"{fieldname}.{p.kind}"},
                    hint="Narrow the range (or the choices) to values the estimator takes",
                ) from exc


@dataclass(frozen=True)
class _Data:
    """The training rows of a search, prepared once, and their cross-validation folds."""

    features: FeatureSpec  # less the split column, as the trainer fits them
    kinds: dict[str, str]
    task: str
    positive: Any
    labels: list[Any]
    x: pd.DataFrame
    y: pd.Series
    splits: list[Fold]


class _Objective:
    """Scores one trial by cross-validation and records it as a child run."""

    def __init__(
        self, ws: Workspace, config: ProjectConfig, parent: Run, data: _Data, metric: str
    ) -> None:
        self.ws, self.config, self.parent, self.data, self.metric = ws, config, parent, data, metric
        self.flavor = flavor_of(config.model.cls)
        self.space = config.search.space if config.search else ()

    def run(self, study: optuna.Study, trial: optuna.Trial) -> tuple[str, float | None]:
        import optuna

        try:
            params = {p.name: _suggest(trial, p) for p in self.space}
            estimator, row_weights = self._estimator(params)
        except BaseException:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)  # never left running
            raise
        config, data = self.config, self.data
        started = time.perf_counter()
        run = Run(
            id=new_id(),
            name=config.name,
            status="running",
            started_at=utcnow(),
            params={
                "study": study.study_name,
                "trial": trial.number,
                "params": params,
                "estimator": _params(estimator),
            },
            dataset_name=self.parent.dataset_name,
            dataset_version=self.parent.dataset_version,
            git_commit=self.parent.git_commit,
            packages=self.parent.packages,
            owner=process_owner(),
            parent_id=self.parent.id,
            tags={"kind": "trial", "trial": str(trial.number)},
        )
        fold_scores: list[float] = []

        def fit_score(
            xa: pd.DataFrame, ya: pd.Series, xb: pd.DataFrame, yb: pd.Series
        ) -> dict[str, float]:
            bundle = fit_prepared(
                data.features,
                data.kinds,
                estimator,
                xa,
                ya,
                task=data.task,
                target=config.target,
                flavor=self.flavor,
                row_weights=row_weights,
            )
            p = mark_bundle(bundle, data.positive).predict_frame(xb)
            m = compute_metrics(
                data.task, yb, p.labels, p.probabilities, p.classes, positive=data.positive
            )
            score = float(m.get(self.metric, math.nan))
            fold_scores.append(score)
            trial.report(score, step=len(fold_scores) - 1)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after fold {len(fold_scores)}: {score:.4f}")
            return m

        metrics: dict[str, Any] = {"metric": self.metric, "folds": fold_scores}
        try:
            self.ws.metadata.add_run(run)
            trial.set_user_attr(RUN_ATTR, run.id)
            with heartbeat(study, trial):  # a process that dies stops beating
                cv = cross_validate(
                    data.x, data.y, fit_score, n_folds=len(data.splits), task=data.task,
                    seed=config.evaluation.seed, splits=data.splits,
                )  # fmt: skip
        except optuna.TrialPruned as exc:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            self._end(run, "pruned", metrics, started, str(exc))
            return "pruned", fold_scores[-1] if fold_scores else None
        except BaseException as exc:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            self._end(run, "failed", metrics, started, f"{type(exc).__name__}: {exc}")
            raise
        score = cv.get(self.metric, {}).get("mean", math.nan)
        metrics.update({"score": score, "cv": cv})
        if not np.isfinite(score):
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            self._end(run, "failed", metrics, started, f"{self.metric} is not finite")
            return "failed", None
        study.tell(trial, score)
        self._end(run, "succeeded", metrics, started, None)
        return "complete", float(score)

    def _estimator(self, params: dict[str, Any]) -> tuple[Any, RowWeights | None]:
        """The estimator of a trial, as the trainer makes it (seeded, class weights), and the
        per-row weights to fit it with when its class weights are applied that way."""
        config = self.config
        model = replace(config.model, params={**config.model.params, **params})
        estimator = _seeded(
            make_estimator(model, self.data.task, config.source),
            model.params,
            config.evaluation.seed,
        )
        return weigh_classes(estimator, config.model.class_weight, self.data.labels, config.source)

    def _end(
        self, run: Run, status: str, metrics: dict[str, Any], started: float, error: str | None
    ) -> None:
        self.ws.metadata.update_run(
            replace(
                run,
                status=status,
                metrics=metrics,
                error=error,
                duration_s=time.perf_counter() - started,
            )
        )


def _import_optuna() -> Any:
    try:
        import optuna
    except ImportError as exc:
        raise ConfigError(
            "a hyperparameter search needs Optuna, which is not installed",
            where={"field": "search"},
            hint="pip install 'loopml[search]'",
        ) from exc
    return optuna


def _suggest(trial: optuna.Trial, p: ParamSpace) -> Any:
    if p.kind == "choice":
        return trial.suggest_categorical(p.name, list(p.choices))
    if p.kind == "int":
        return trial.suggest_int(
            p.name, int(p.low or 0), int(p.high or 0), step=int(p.step or 1), log=p.log
        )
    return trial.suggest_float(
        p.name, float(p.low or 0), float(p.high or 0), step=p.step, log=p.log
    )


def _search_metric(config: ProjectConfig, spec: SearchSpec, task: str, y: pd.Series) -> str:
    names = metric_names(task)
    metric = spec.metric or config.evaluation.metric or _default_metric(task, y)
    if metric not in names:
        raise ConfigError(
            f"search.metric {metric!r} is not a metric of this task ({task})",
            where={"file": config.source, "field": "search.metric"},
            hint=f"{did_you_mean(metric, names)}Choose one of: {', '.join(names)}",
        )
    return metric


def _wait_for_running(ws: Workspace, study: optuna.Study, say: Progress) -> None:
    """Until no trial of the study runs; a trial whose process died is marked failed: on
    this machine as soon as its child run is seen aborted
    (:meth:`loopml.stores.base.MetadataStore.get_run`), on any machine once its heartbeat is
    ``GRACE_S`` old."""
    import optuna

    told = False
    while True:
        with warnings.catch_warnings():  # "experimental" since Optuna 2.9, unchanged since
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        if not running:
            return
        if not told:
            say(f"waiting for {len(running)} trial(s) running in other processes")
            told = True
        for t in running:
            run_id = t.user_attrs.get(RUN_ATTR)
            if run_id and ws.metadata.get_run(run_id).status == "aborted":
                study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        time.sleep(POLL_S)


def _finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return study.get_trials(deepcopy=False, states=states)


def _counted(study: optuna.Study, below: int | None = None) -> list[optuna.trial.FrozenTrial]:
    """The trials that count towards the target: finished, or running in some process."""
    import optuna

    states = (
        optuna.trial.TrialState.COMPLETE,
        optuna.trial.TrialState.PRUNED,
        optuna.trial.TrialState.RUNNING,
        optuna.trial.TrialState.WAITING,
    )
    found = study.get_trials(deepcopy=False, states=states)
    return [t for t in found if below is None or t.number < below]


def _best(study: optuna.Study) -> float | None:
    try:
        value = study.best_value
    except ValueError:  # no trial completed yet
        return None
    return float(value)
