"""Evaluating a registered version on a dataset version, and the report of each run.

``evaluate_model(ws, "cancer@3")`` scores the version on the rows it was held out on: its
run's holdout, re-created from the split, fraction and seed the run recorded (exact when the
dataset version is the same). ``data="cancer@4"`` (or a DataFrame) scores every row of that
instead. Either way the report has the metrics, ROC and precision-recall curves, calibration,
the confusion matrix, permutation importances (on a bounded, seeded sample) and the model's
own importances, the run's metric per slice, and the champion scored on the same rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from loopml.data.ingest import read_version
from loopml.errors import InvalidInputError, LoopmlError
from loopml.evaluate.diagnostics import (
    PERMUTATION_REPEATS,
    PERMUTATION_ROWS,
    classification_diagnostics,
    native_importances,
    permutation_importances,
    regression_diagnostics,
)
from loopml.evaluate.metrics import LOWER_IS_BETTER, compute_metrics, positive_class
from loopml.evaluate.report import render_evaluation_html
from loopml.names import is_version, parse_ref
from loopml.project import ProjectConfig
from loopml.registry.bundle import ModelBundle, Prediction
from loopml.registry.models import CHAMPION, LoadedModel, load_model
from loopml.stores.records import Run
from loopml.utils import new_id
from loopml.workspace import Workspace

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Evaluation:
    """What ``evaluate_model`` found: the metrics, the report document and where it lies."""

    model: str  # NAME@VERSION
    metrics: dict[str, float]
    rows: int
    split: str
    warnings: list[str]
    report_path: str  # lake-relative path of the HTML report
    doc: dict[str, Any] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "metrics": self.metrics,
            "rows": self.rows,
            "split": self.split,
            "warnings": self.warnings,
            "report_path": self.report_path,
            "champion": self.doc.get("champion"),
        }


def evaluate_model(
    ws: Workspace,
    ref: str,
    data: str | pd.DataFrame | None = None,
    *,
    permutation: bool = True,
    seed: int = 0,
    progress: Progress | None = None,
) -> Evaluation:
    """Score ``NAME@VERSION`` (or ``NAME@ALIAS``; a bare name is its champion) on ``data``.

    ``data`` is ``DATASET[@VERSION]`` (latest when no version), a DataFrame holding the
    target column, or None: the run's holdout re-created from its recorded split and seed,
    else every row of the training dataset with a warning that such scores are optimistic.
    The HTML report is written to the lake (``Evaluation.report_path``).
    """
    say = progress or (lambda _msg: None)
    model = load_model(ws, ref)
    mv = model.record
    run = ws.metadata.get_run(mv.run_id)
    target = str(mv.signature["target"])
    warnings: list[str] = []
    frame, source, split = _rows(ws, model, run, data, warnings)
    if target not in frame.columns:
        raise InvalidInputError(
            f"{source} has no target column {target!r}, so the model cannot be scored on it",
            where={"data": source, "column": target},
            hint=f"Evaluate on data that holds {target!r} (the labels)",
        )
    y = frame[target].reset_index(drop=True)
    if y.isna().any():
        raise InvalidInputError(
            f"target column {target!r} of {source} has {int(y.isna().sum())} missing values",
            where={"data": source, "column": target},
            hint="Drop the rows without a label before evaluating",
        )
    rows = frame.reset_index(drop=True)
    say(f"scoring {mv.name}@{mv.version} on {len(rows)} rows of {source} ({split})")
    doc = _document(model, run, rows, y, positive=_positive(run))
    doc.update(data=source, split=split, warnings=warnings, task=mv.signature["task"])
    metric = str(run.metrics.get("metric") or next(iter(doc["metrics"]), ""))
    if permutation and len(rows):
        say(f"permutation importance on {min(len(rows), PERMUTATION_ROWS)} rows")
        doc["importances"]["permutation"] = _permutation(
            model, rows, y, metric, seed, _positive(run)
        )
        doc["importances"]["permutation_note"] = (
            f"drop in {metric} when one input column is shuffled; "
            f"{min(len(rows), PERMUTATION_ROWS)} rows, {PERMUTATION_REPEATS} repeats, seed {seed}"
        )
    champion = ws.metadata.get_aliases(mv.name).get(CHAMPION)
    if champion is not None and champion != mv.version:
        say(f"scoring the champion {mv.name}@{champion} on the same rows")
        try:
            theirs = load_model(ws, f"{mv.name}@{champion}")
            other = _document(
                theirs, ws.metadata.get_run(theirs.record.run_id), rows, y, positive=_positive(run)
            )
            doc["champion"] = {
                "model": f"{mv.name}@{champion}",
                "metrics": other["metrics"],
                "diagnostics": other["diagnostics"],
            }
        except LoopmlError as exc:
            warnings.append(f"the champion {mv.name}@{champion} could not be scored: {exc}")
    doc["title"] = f"{mv.name}@{mv.version} on {source}"
    path = f"reports/evaluations/{mv.name}/v={mv.version}/{new_id()}.html"
    ws.lake.write_bytes(path, render_evaluation_html(doc).encode())
    doc["report_path"] = path
    return Evaluation(
        f"{mv.name}@{mv.version}", doc["metrics"], len(rows), split, warnings, path, doc
    )


def _positive(run: Run) -> Any:
    data = run.params.get("project", {}).get("data", {})
    return data.get("positive") if isinstance(data, Mapping) else None


def _rows(
    ws: Workspace,
    model: LoadedModel,
    run: Run,
    data: str | pd.DataFrame | None,
    warnings: list[str],
) -> tuple[pd.DataFrame, str, str]:
    """The rows to score, where they come from and how they were chosen."""
    mv = model.record
    if isinstance(data, pd.DataFrame):
        return data, "the given frame", "every row"
    if data is not None:
        name, tag = parse_ref(data, "dataset")
        if tag is not None and not is_version(tag):
            raise InvalidInputError(
                f"dataset reference {data!r} must be DATASET or DATASET@VERSION",
                where={"data": data},
                hint="Give a version number after @, e.g. cancer@2",
            )
        dv = ws.metadata.get_dataset_version(name, None if tag is None else int(tag))
        frame = read_version(ws, dv).to_pandas()
        if (dv.name, dv.version) == (mv.dataset_name, mv.dataset_version):
            warnings.append(
                f"{dv.name}@{dv.version} is the version the model was trained on: its rows "
                "include training rows, so these scores are optimistic (omit --data to score "
                "the run's holdout)"
            )
        return frame, f"{dv.name}@{dv.version}", "every row"
    if mv.dataset_name is None or mv.dataset_version is None:
        raise InvalidInputError(
            f"{mv.name}@{mv.version} records no training dataset to evaluate on",
            where={"model": f"{mv.name}@{mv.version}"},
            hint="Name the data to evaluate on with --data DATASET[@VERSION]",
        )
    dv = ws.metadata.get_dataset_version(mv.dataset_name, mv.dataset_version)
    frame = read_version(ws, dv).to_pandas()
    source = f"{dv.name}@{dv.version}"
    try:
        holdout, split = _holdout(run, frame, str(mv.signature["target"]), mv.signature["task"])
    except (LoopmlError, KeyError, TypeError, ValueError) as exc:
        warnings.append(
            f"the run's holdout could not be re-created ({exc}); scoring every row of the "
            "training data, so these scores are optimistic"
        )
        return frame, source, "every row (training data)"
    if _refit_on_all(run):
        warnings.append(
            "the registered model was refit on all training data after evaluation, so the "
            "holdout rows are among its training rows and these scores are optimistic"
        )
    expected = run.metrics.get("rows", {}).get("holdout")
    if expected is not None and expected != len(holdout):
        warnings.append(f"the re-created holdout has {len(holdout)} rows, the run's {expected}")
    return frame.iloc[holdout], source, split


def _holdout(run: Run, frame: pd.DataFrame, target: str, task: str) -> tuple[np.ndarray, str]:
    """Positional indices of the run's holdout, re-created as the trainer made it."""
    from loopml.evaluate.split import holdout_indices

    config = ProjectConfig.from_dict(run.params["project"], source=f"run {run.id}")
    ev = config.evaluation
    spec = ev.split
    y = frame[target].reset_index(drop=True)
    column = None if spec.column is None else frame[spec.column].reset_index(drop=True)
    _, holdout = holdout_indices(
        y, spec=spec, fraction=ev.holdout, task=task, seed=ev.seed, column=column
    )
    return holdout, f"the run's holdout ({spec.kind}, {ev.holdout:g} of the rows, seed {ev.seed})"


def _refit_on_all(run: Run) -> bool:
    refit = run.metrics.get("refit")
    if isinstance(refit, Mapping):
        refit = refit.get("on_all", refit.get("refit"))
    return refit is True or refit == "all"


def _document(
    model: LoadedModel, run: Run, rows: pd.DataFrame, y: pd.Series, *, positive: Any
) -> dict[str, Any]:
    p = model.predict(rows, source="evaluation data")
    parts = report_parts(model.signature.task, model.bundle, y, p, positive=positive)
    return {
        "model": f"{model.name}@{model.version}",
        "run_id": run.id,
        "rows": len(rows),
        **parts,
        "slices": _slices(model, run, rows, y, p, parts["metrics"], positive),
    }


def _slices(
    model: LoadedModel,
    run: Run,
    rows: pd.DataFrame,
    y: pd.Series,
    p: Prediction,
    metrics: Mapping[str, Any],
    positive: Any,
) -> dict[str, Any] | None:
    """The run's declared slices, measured on these rows (None when it declared none or
    the rows lack a slice column)."""
    from loopml.evaluate.slices import slice_metrics

    try:
        config = ProjectConfig.from_dict(run.params["project"], source=f"run {run.id}")
    except (LoopmlError, KeyError, TypeError, ValueError):
        return None
    specs = config.evaluation.slices
    if not specs or any(s.column not in rows.columns for s in specs) or not len(rows):
        return None
    metric = str(run.metrics.get("metric") or next(iter(metrics), ""))
    task = model.signature.task
    pos = positive
    if task == "classification" and p.classes is not None and len(p.classes) == 2:
        pos = positive_class(p.classes, positive)
    return slice_metrics(
        task,
        rows[[s.column for s in specs]].reset_index(drop=True),
        np.asarray(y),
        p.labels,
        p.probabilities,
        p.classes,
        specs=specs,
        metric=metric,
        positive=pos,
        overall=metrics.get(metric),
    )


def report_parts(
    task: str,
    bundle: ModelBundle,
    y: Any,
    p: Prediction,
    *,
    positive: Any = None,
    metrics: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Metrics, diagnostics and native importances of one set of predictions (cheap: no
    refitting, no permutation). ``metrics``: those of ``p`` when already computed."""
    y_arr = np.asarray(y)
    if task == "classification" and p.classes is not None:
        pos = positive_class(p.classes, positive) if len(p.classes) == 2 else positive
        if metrics is None:
            metrics = compute_metrics(
                task, y_arr, p.labels, p.probabilities, p.classes, positive=pos
            )
        diagnostics = classification_diagnostics(
            y_arr, p.labels, p.probabilities, p.classes, pos if pos is not None else p.classes[-1]
        )
    else:
        if metrics is None:
            metrics = compute_metrics(task, y_arr, p.labels)
        diagnostics = regression_diagnostics(y_arr, p.labels)
    try:
        names = [str(n) for n in bundle.features.get_feature_names_out()]
    except Exception:  # a feature pipeline without output names: importances by position
        names = []
    return {
        "metrics": metrics,
        "diagnostics": diagnostics,
        "importances": {"native": native_importances(bundle.estimator, names)},
    }


def _permutation(
    model: LoadedModel, rows: pd.DataFrame, y: pd.Series, metric: str, seed: int, positive: Any
) -> list[dict[str, Any]]:
    task = model.signature.task
    inputs = rows[[f.name for f in model.signature.inputs]]
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0

    def score(x: pd.DataFrame, yy: np.ndarray) -> float:
        p = model.predict(x, source="evaluation data")
        pos = positive_class(p.classes, positive) if p.classes and len(p.classes) == 2 else None
        got = compute_metrics(task, yy, p.labels, p.probabilities, p.classes, positive=pos)
        value = got.get(metric, got.get("accuracy", got.get("r2", math.nan)))
        return sign * float(value)

    return permutation_importances(inputs, y, score, seed=seed)


def write_run_report(
    ws: Workspace,
    run_id: str,
    config: ProjectConfig,
    bundle: ModelBundle,
    y: Any,
    p: Prediction,
    metrics: Mapping[str, Any],
) -> str:
    """The report of a training run on its holdout (metrics, curves, calibration, confusion,
    native importances, the run's slices; no permutation importance, to keep training
    cheap), written to ``reports/runs/<run_id>.html`` in the lake; returns that path."""
    task = bundle.signature.task
    doc = {
        "title": f"run {run_id[:12]} of {config.name} (holdout)",
        "model": config.name,
        "run_id": run_id,
        "rows": len(p.labels),
        "split": "the run's holdout",
        "task": task,
        **report_parts(
            task, bundle, y, p, positive=config.positive, metrics=metrics.get("holdout")
        ),
        "slices": metrics.get("slices"),
        "feature_selection": metrics.get("feature_selection"),
    }
    path = f"reports/runs/{run_id}.html"
    ws.lake.write_bytes(path, render_evaluation_html(doc).encode())
    return path
