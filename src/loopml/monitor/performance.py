"""Performance from delayed labels: the model's metrics on logged predictions that got feedback.

Feedback (:func:`loopml.feedback.record_feedback`: a true label per prediction id, arriving
whenever the outcome is known) is joined to the prediction log by ``prediction_id``. For each
period of a window (the whole window, or per day or week of *prediction* time) the report
gives the metric on the labelled rows, every other metric
:func:`~loopml.evaluate.metrics.compute_metrics` gives, how many predictions were labelled
(``coverage``: labelled / predicted) and how late the labels came (``delay_p50_s``,
``delay_p90_s``: label received minus prediction time, seconds), and the difference from the
metric the version scored at training time (its holdout).

What the log keeps of a prediction is its label and one score (P(positive) for a binary
classifier, the top class's probability for a multiclass one, the value for a regression), so
a multiclass model is measured on its labels only (accuracy, F1, ...): ``roc_auc`` and
``log_loss`` need every class's probability and are refused with the reason.

A model named without a version (``NAME``) is measured on every version's logged predictions
(the model in production, whichever version answered), against the training metric of its
champion (or latest version); ``NAME@V`` or ``version=`` measures one version.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from loopml.errors import ConfigError, InvalidInputError, NotFoundError
from loopml.evaluate.metrics import LOWER_IS_BETTER, check_metric, compute_metrics
from loopml.monitor.windows import Window, parse_window, select_window
from loopml.names import parse_ref

if TYPE_CHECKING:
    from loopml.stores.records import ModelVersion
    from loopml.workspace import Workspace

BY = ("day", "week")
#: metrics that need every class's probability (not kept in the log for a multiclass model)
NEEDS_PROBABILITIES = frozenset(
    {"roc_auc", "roc_auc_ovr", "roc_auc_ovr_weighted", "pr_auc", "log_loss", "brier"}
)
#: fewest labelled rows for a metric value (fewer: ``value`` is None, ``note`` says why)
MIN_LABELLED = 10
_IDS_AT_ONCE = 20_000  # above this many ids, feedback is read by time, not by id


@dataclass(frozen=True)
class PerformanceRow:
    """One period: the metric on its labelled predictions, coverage and label delay."""

    start: datetime | None  # UTC, inclusive; None: open
    end: datetime | None  # UTC, exclusive; None: open
    n_predictions: int
    n_labelled: int
    coverage: float  # n_labelled / n_predictions
    value: float | None  # the metric; None with too few labels (or one class, for an AUC)
    metrics: dict[str, float] = field(default_factory=dict)
    delay_p50_s: float | None = None
    delay_p90_s: float | None = None
    delta: float | None = None  # value - the training-time value
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("start", "end"):
            value = data[key]
            data[key] = value.isoformat() if value is not None else None
        return data


@dataclass(frozen=True)
class PerformanceReport:
    """The model's metric over a window of its logged predictions, from delayed labels."""

    model: str
    version: int | None  # None: every version's predictions
    task: str
    metric: str
    higher_is_better: bool
    training: float | None  # the metric at training time (holdout), when recorded
    window: str
    overall: PerformanceRow
    rows: list[PerformanceRow]
    by: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def degraded_by(self) -> float | None:
        """How much worse than at training the whole window is (positive: worse)."""
        if self.overall.delta is None:
            return None
        return -self.overall.delta if self.higher_is_better else self.overall.delta

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "task": self.task,
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "training": self.training,
            "window": self.window,
            "by": self.by,
            "degraded_by": self.degraded_by,
            "overall": self.overall.to_dict(),
            "rows": [r.to_dict() for r in self.rows],
            "warnings": list(self.warnings),
        }


def default_metric(task: str, classes: Sequence[Any] | None) -> str:
    """ROC-AUC for a binary classifier, accuracy for a multiclass one, RMSE for a regression."""
    if task == "regression":
        return "rmse"
    return "roc_auc" if classes is not None and len(classes) == 2 else "accuracy"


def performance(
    ws: Workspace,
    model: str,
    *,
    window: str | Window | None = None,
    metric: str | None = None,
    by: Literal["day", "week"] | None = None,
    version: int | None = None,
    now: datetime | None = None,
) -> PerformanceReport:
    """The metric of ``model`` over ``window`` of its prediction log, from the feedback labels.

    ``window`` as :func:`~loopml.monitor.windows.parse_window` reads it (``"last 1000"``,
    ``"1d"``, ``"2026-01-01..2026-02-01"``; None: the whole log); ``metric`` defaults to the one
    the version was trained for (else :func:`default_metric`); ``by`` splits the window per day
    or week of prediction time. Raises :class:`InvalidInputError` for a window with no
    predictions or a dataset window, :class:`ConfigError` for an unknown metric (or one the log
    cannot give), NotFoundError for an unknown model.
    """
    from loopml.monitor.check import read_window
    from loopml.predictions import read_prediction_log
    from loopml.registry.models import CHAMPION, resolve_version
    from loopml.registry.signature import Signature

    name, tag = parse_ref(model, "model")
    if by is not None and by not in BY:
        raise InvalidInputError(
            f"by must be one of {', '.join(BY)}, got {by!r}",
            where={"field": "by"},
            hint="Use --by day or --by week, or leave it out for the whole window",
        )
    pinned = version if version is not None else (int(tag) if tag and tag.isdigit() else None)
    if pinned is not None:
        record = ws.metadata.get_model_version(name, pinned)
    elif tag is not None:
        record = resolve_version(ws, model)
        pinned = record.version
    else:
        try:
            record = resolve_version(ws, name, default_alias=CHAMPION)
        except NotFoundError:
            record = resolve_version(ws, name)
    signature = Signature.from_dict(record.signature)
    task = signature.task
    classes = signature.classes
    chosen = _metric(task, classes, metric, record)
    win = parse_window(window) if isinstance(window, str) else window
    if win is not None and not win.on_log:
        raise InvalidInputError(
            f"window {win.text!r} is a dataset version; performance is measured on the "
            "prediction log",
            where={"window": win.text},
            hint="Use 'last N', a duration such as '7d', or dates 'START..END'",
        )
    since, until = win.bounds(now) if win is not None else (None, None)
    if win is not None:
        log = read_window(ws, name, win, version=pinned, now=now)
    else:
        log = read_prediction_log(ws.lake, name, version=pinned)
    what = f"{name}@{pinned}" if pinned is not None else name
    if log.empty:
        raise InvalidInputError(
            f"the prediction log of {what} holds no predictions"
            + (f" in window {win.text!r}" if win is not None else ""),
            where={"model": name, "window": win.text if win is not None else None},
            hint="Widen the window, or send traffic to 'loopml serve' first",
        )
    if win is not None:
        log = select_window(log, win, now=now)
    log = log[["prediction_id", "timestamp", "prediction", "score"]]
    warnings: list[str] = []
    joined = _join_labels(ws, log, task, classes, warnings)
    positive = signature.extra.get("positive")
    training = _training_value(record, chosen)
    row = _row(joined, task, classes, positive, chosen, training, since, until, len(log))
    rows: list[PerformanceRow] = [row]
    if by is not None:
        rows = []
        stamps = joined["timestamp"].dt.tz_convert(UTC).dt.tz_localize(None)
        periods = stamps.dt.to_period("D" if by == "day" else "W-SUN")
        for period, part in joined.groupby(periods, sort=True):
            start = period.start_time.tz_localize(UTC).to_pydatetime()
            end = (period + 1).start_time.tz_localize(UTC).to_pydatetime()
            rows.append(
                _row(part, task, classes, positive, chosen, training, start, end, len(part))
            )
    if row.n_labelled == 0:
        warnings.append(
            f"no prediction of {what} in this window has a label yet: send outcomes with "
            "'loopml feedback' or POST /v1/feedback"
        )
    return PerformanceReport(
        model=name,
        version=pinned,
        task=task,
        metric=chosen,
        higher_is_better=chosen not in LOWER_IS_BETTER,
        training=training,
        window=win.text if win is not None else "whole log",
        overall=row,
        rows=rows,
        by=by,
        warnings=warnings,
    )


def _metric(
    task: str, classes: Sequence[Any] | None, metric: str | None, record: ModelVersion
) -> str:
    if metric is None:
        trained = record.metrics.get("metric")
        metric = trained if isinstance(trained, str) else default_metric(task, classes)
        multiclass = task == "classification" and (classes is None or len(classes) != 2)
        if multiclass and metric in NEEDS_PROBABILITIES:
            metric = "accuracy"
        return metric
    check_metric(task, metric, field="metric")
    multiclass = task == "classification" and (classes is None or len(classes) != 2)
    if multiclass and metric in NEEDS_PROBABILITIES:
        raise ConfigError(
            f"metric {metric!r} needs every class's probability, which the prediction log "
            f"does not keep for a model with {len(classes or [])} classes",
            where={"field": "metric"},
            hint="Use a metric of the labels: accuracy, f1_macro, balanced_accuracy, ...",
        )
    return metric


def _training_value(record: ModelVersion, metric: str) -> float | None:
    holdout = record.metrics.get("holdout")
    if isinstance(holdout, dict):
        value = holdout.get(metric)
        if isinstance(value, int | float) and math.isfinite(value):
            return float(value)
    return None


def _label_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _join_labels(
    ws: Workspace,
    log: pd.DataFrame,
    task: str,
    classes: Sequence[Any] | None,
    warnings: list[str],
) -> pd.DataFrame:
    """The window's rows with ``label`` (None: not labelled) and ``received_at``."""
    ids = log["prediction_id"].astype(str)
    if len(ids) <= _IDS_AT_ONCE:
        found = ws.metadata.list_feedback(prediction_ids=sorted(set(ids)))
    else:  # labels come after predictions: read by time and join
        start = log["timestamp"].min().to_pydatetime()
        found = ws.metadata.list_feedback(since=start)
    labelled = [f for f in found if f.label is not None]
    fb = pd.DataFrame(
        {
            "prediction_id": [f.prediction_id for f in labelled],
            "label": [f.label for f in labelled],
            "received_at": pd.to_datetime([f.received_at for f in labelled], utc=True),
        }
    )
    # the latest label of an id wins (a correction)
    fb = fb.drop_duplicates("prediction_id", keep="last")
    joined = log.assign(prediction_id=ids).merge(fb, on="prediction_id", how="left")
    has = joined["label"].notna()
    if task == "regression":
        values = pd.to_numeric(joined["label"], errors="coerce")
        bad = has & values.isna()
        joined["label"] = values
    else:
        known = {_label_text(c) for c in classes or []}
        texts = joined["label"].map(lambda v: None if v is None or v != v else _label_text(v))
        bad = has & ~texts.isin(known)
        joined["label"] = texts
    if bad.any():
        shown = ", ".join(sorted({str(v) for v in joined.loc[bad, "label"].head(5)}))
        what = "not numbers" if task == "regression" else f"not classes of the model ({shown})"
        warnings.append(
            f"{int(bad.sum())} labels are {what}: left out of the metrics; check the labels "
            "sent as feedback"
        )
        joined.loc[bad, "label"] = None
    return joined


def _row(
    part: pd.DataFrame,
    task: str,
    classes: Sequence[Any] | None,
    positive: Any,
    metric: str,
    training: float | None,
    start: datetime | None,
    end: datetime | None,
    n_predictions: int,
) -> PerformanceRow:
    has = part["label"].notna().to_numpy()
    n_lab = int(has.sum())
    coverage = n_lab / n_predictions if n_predictions else 0.0
    lab = part.loc[has]
    delay = (lab["received_at"] - lab["timestamp"]).dt.total_seconds().to_numpy()
    p50 = float(np.percentile(delay, 50)) if n_lab else None
    p90 = float(np.percentile(delay, 90)) if n_lab else None
    note: str | None = None
    if n_lab < MIN_LABELLED:
        note = f"{n_lab} labelled predictions; at least {MIN_LABELLED} are needed for a metric"
        return PerformanceRow(
            start, end, n_predictions, n_lab, coverage, None, {}, p50, p90, None, note
        )
    metrics = _metrics(lab, task, classes, positive)
    value = metrics.get(metric)
    if value is None:
        note = f"{metric} is undefined on these labels (a single class)"
    delta = value - training if value is not None and training is not None else None
    return PerformanceRow(
        start, end, n_predictions, n_lab, coverage, value, metrics, p50, p90, delta, note
    )


def _metrics(
    lab: pd.DataFrame, task: str, classes: Sequence[Any] | None, positive: Any
) -> dict[str, float]:
    if task == "regression":
        y = lab["label"].to_numpy(dtype=np.float64)
        return compute_metrics(task, y, lab["score"].to_numpy(dtype=np.float64))
    names = [_label_text(c) for c in classes or []]
    y = lab["label"].to_numpy(dtype=object)
    pred = lab["prediction"].astype(str).to_numpy(dtype=object)
    proba = None
    pos = _label_text(positive) if positive is not None else None
    if len(names) == 2:
        p_pos = lab["score"].to_numpy(dtype=np.float64)
        col = names.index(pos) if pos in names else 1
        proba = np.empty((len(p_pos), 2))
        proba[:, col] = p_pos
        proba[:, 1 - col] = 1.0 - p_pos
    out = compute_metrics(task, y, pred, proba, names, positive=pos)
    if len(names) != 2:
        out = {k: v for k, v in out.items() if k not in NEEDS_PROBABILITIES}
    return out


__all__ = [
    "BY",
    "MIN_LABELLED",
    "PerformanceReport",
    "PerformanceRow",
    "default_metric",
    "performance",
]
