"""Drift checks of a model: recent inputs and scores against what it was trained and tested on.

Features are compared with the training dataset. The model's scores are compared with its
*out-of-sample* scores, kept with the version at training (``metrics["reference_scores"]``:
the out-of-fold scores of the training rows when cross-validation ran, and the holdout's): a
model scores the rows it was fit on more confidently than new ones, so its own training rows
would make every new window look drifted. A version without them (registered from Python, or
by an older loopml) falls back to scoring its training rows, and the check says so.

A file with a category never seen in training, or a missing value where training had none, is
still checked: such values are counted (an unseen category in its own bucket) and the rows
scored as the model's unknown-value handling does, and the check says how many rows held them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa

from loopml.data.ingest import read_version
from loopml.errors import ConfigError, InvalidInputError, NotFoundError
from loopml.monitor.drift import (
    DRIFT,
    INSUFFICIENT,
    KINDS,
    NO_DRIFT,
    DriftReport,
    compute_drift,
)
from loopml.monitor.report import render_html
from loopml.monitor.tensors import tensor_inputs
from loopml.monitor.thresholds import DriftThresholds
from loopml.monitor.windows import LAST, Window, parse_window, select_window
from loopml.registry.models import LoadedModel, load_model
from loopml.utils import utcnow
from loopml.workspace import Workspace

PREDICTION = "prediction_score"
NAMES_SHOWN = 5  # drifting features named in the summary line
_SOURCES = {"out_of_fold+holdout": "out-of-fold and holdout", "holdout": "holdout"}


@dataclass(frozen=True)
class DriftCheck:
    """The outcome of one drift check, with where its report lies."""

    model: str
    version: int
    features: DriftReport
    prediction: DriftReport
    reference: str
    current: str
    report_url: str
    json_url: str
    reference_scores: str = ""  # what the model's scores were compared with
    warnings: list[str] = field(default_factory=list)

    @property
    def drifted(self) -> bool:
        return self.features.drifted or self.prediction.drifted

    @property
    def verdict(self) -> str:
        """``drift``, ``no drift``, or ``insufficient data`` when the window is too small."""
        if self.drifted:
            return DRIFT
        return INSUFFICIENT if self.features.insufficient else NO_DRIFT

    @property
    def summary(self) -> str:
        """One line: which features drift and whether the predictions do.

        ``drift: 2 of 30 features (mean radius, mean texture); predictions: no``
        """
        if self.verdict == INSUFFICIENT:
            return f"insufficient data: {self.features.insufficient}"
        names = self.features.drifted_features
        listed = ", ".join(names[:NAMES_SHOWN])
        if len(names) > NAMES_SHOWN:
            listed += f" and {len(names) - NAMES_SHOWN} more"
        said = f" ({listed})" if names else ""
        n = len(self.features.features)
        images = "".join(
            f"; tensor {t.name}: {'drift' if t.drifted else 'no drift'}"
            for t in self.features.tensors
        )
        return (
            f"drift: {len(names)} of {n} feature{'s' if n != 1 else ''}{said}{images}; "
            f"predictions: {_yes_no(self.prediction)}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "verdict": self.verdict,
            "drifted": self.drifted,
            "summary": self.summary,
            "drifted_features": self.features.drifted_features,
            "predictions_drifted": self.prediction.drifted,
            "warnings": list(self.warnings),
            "reference": self.reference,
            "reference_scores": self.reference_scores,
            "current": self.current,
            "report_url": self.report_url,
            "json_url": self.json_url,
            "features": self.features.to_dict(),
            "prediction": self.prediction.to_dict(),
        }


def _yes_no(report: DriftReport) -> str:
    if report.insufficient is not None:
        return "not decided (too few scores)"
    return "yes" if report.drifted else "no"


def check_drift(
    ws: Workspace,
    model_ref: str,
    *,
    data: pd.DataFrame | str | Path | None = None,
    window: Window | str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    thresholds: DriftThresholds | None = None,
    psi_threshold: float | None = None,
    alpha: float | None = None,
    drift_share: float | None = None,
    min_rows: int | None = None,
    now: datetime | None = None,
    write_report: bool = True,
) -> DriftCheck:
    """Compare recent inputs of ``model_ref`` with its training data and write a report.

    The current sample is ``data`` (a frame or a CSV/Parquet/JSONL file), or a ``window``
    (``"last 1000"``, ``"1h"``, ``"2026-01-01..2026-02-01"`` of the prediction log, or a dataset
    version ``"NAME@V"``; see :mod:`loopml.monitor.windows`), or else the model's prediction
    log between ``since`` and ``until``. Features are tested as the signature types them
    (datetime features are not tested); the model's scores are tested against its
    out-of-sample scores. ``thresholds`` (``monitor.drift`` of ``loopml.yaml``, see
    :func:`~loopml.monitor.thresholds.thresholds_from_config`) decide each feature;
    ``psi_threshold``, ``alpha``, ``drift_share`` and ``min_rows``, when given, override them.
    With fewer than ``min_rows`` rows nothing is decided: the verdict is "insufficient data"
    and a warning says the minimum.
    """
    model: Any = _LazyModel(ws, model_ref)  # the estimator is loaded only to score rows
    win_given = parse_window(window) if isinstance(window, str) else window
    if data is not None or (win_given is not None and not win_given.on_log):
        model.load()  # rows will be scored: an unsafe or damaged bundle is refused first
    limits = thresholds if thresholds is not None else DriftThresholds()
    warnings: list[str] = []
    kinds = _tested_kinds(model, warnings)
    names = list(kinds)
    reference = _training_features(ws, model)
    win = win_given
    if win is not None and (since is not None or until is not None):
        raise InvalidInputError(
            "pass either a window or since/until, not both",
            where={"model": model.name, "window": win.text},
            hint="Write the dates as a window instead: '2026-01-01..2026-02-01'",
        )
    if data is not None and win is not None:
        raise InvalidInputError(
            "pass either data or a window, not both",
            where={"model": model.name},
            hint="--data FILE compares a file; --window compares logged predictions",
        )
    if win is not None and not win.on_log:
        assert win.dataset is not None and win.version is not None
        dv = ws.metadata.get_dataset_version(win.dataset, win.version)
        current, current_scores, where = _from_data(
            model, read_version(ws, dv), warnings, where=f"dataset {dv.name}@{dv.version}"
        )
    elif win is not None:
        current, current_scores, where = _from_window(ws, model, win, now)
    elif data is None:
        current, current_scores, where = _from_log(ws, model, since, until)
    else:
        current, current_scores, where = _from_data(model, data, warnings)
    ref_scores, scores_desc = _reference_scores(ws, model, reference, warnings)
    options: dict[str, Any] = {
        "psi_threshold": psi_threshold,
        "alpha": alpha,
        "drift_share": drift_share,
        "min_rows": min_rows,
        "thresholds": limits,
    }
    # compute_drift reads only the features' columns, and names any that is missing
    images = tensor_inputs(model.signature)  # a CNN's image, also compared as whole images
    feature_report = compute_drift(reference[names], current, kinds, tensors=images, **options)
    prediction_report = compute_drift(
        pd.DataFrame({PREDICTION: ref_scores}),
        pd.DataFrame({PREDICTION: current_scores}),
        {PREDICTION: "numeric"},
        **options,
    )
    page_warnings = list(warnings)  # the page's verdict line already says a window is too small
    if feature_report.insufficient is not None:
        warnings.append(f"insufficient data: {feature_report.insufficient}")
    elif prediction_report.insufficient is not None:
        warnings.append(f"predictions not decided: {prediction_report.insufficient}")
        page_warnings.append(warnings[-1])
    ref_desc = f"training data {model.record.dataset_name}@{model.record.dataset_version}"
    stamp = utcnow().strftime("%Y%m%dT%H%M%S%fZ")
    base = f"reports/drift/{model.name}/{stamp}"
    check = DriftCheck(
        model.name,
        model.version,
        feature_report,
        prediction_report,
        f"{ref_desc} ({len(reference)} rows)",
        f"{where} ({len(current)} rows)",
        ws.lake.url(f"{base}.html") if write_report else "",
        ws.lake.url(f"{base}.json") if write_report else "",
        scores_desc,
        warnings,
    )
    if not write_report:
        return check
    context = {
        "model": f"{model.name}@{model.version}",
        "reference": check.reference,
        "reference scores": check.reference_scores,
        "current": check.current,
        "prediction drift": _yes_no(prediction_report),
        "created": utcnow().isoformat(timespec="seconds"),
    }
    html = render_html(
        feature_report,
        title=f"Drift report: {model.name}@{model.version}",
        context=context,
        extra=prediction_report.features,
        summary=None if check.verdict == INSUFFICIENT else check.summary,
        warnings=page_warnings,
    )
    ws.lake.write_bytes(f"{base}.html", html.encode())
    ws.lake.write_bytes(f"{base}.json", orjson.dumps(check.to_dict(), default=str))
    return check


class _LazyModel:
    """A version as a drift check needs it: its record and signature at once, the bundle
    (artifact read, sha256 checked, estimator loaded) only when rows must be scored. A check
    of a log window, whose scores are logged, with the reference's scores kept, never loads
    the estimator (nor imports its library)."""

    def __init__(self, ws: Workspace, ref: str) -> None:
        from loopml.registry.models import CHAMPION, resolve_version
        from loopml.registry.signature import Signature

        self._ws = ws
        self.record = resolve_version(ws, ref, default_alias=CHAMPION)
        self.name, self.version = self.record.name, self.record.version
        self.signature = Signature.from_dict(self.record.signature)
        self._loaded: LoadedModel | None = None

    def load(self) -> LoadedModel:
        """The version loaded (once): artifact read, sha256 and format checked."""
        if self._loaded is None:
            self._loaded = load_model(self._ws, f"{self.name}@{self.version}")
        return self._loaded

    @property
    def bundle(self) -> Any:
        return self.load().bundle


def _from_window(
    ws: Workspace, model: LoadedModel, win: Window, now: datetime | None
) -> tuple[pd.DataFrame, np.ndarray, str]:
    from loopml.predictions import feature_column

    log = read_window(ws, model.name, win, version=model.version, now=now)
    where = f"prediction log of {model.name}@{model.version}, window {win.text}"
    if log.empty:
        raise InvalidInputError(
            f"the {where} holds no predictions",
            where={"model": model.name, "version": model.version, "window": win.text},
            hint="Widen the window, send traffic to 'loopml serve' (or score a file with "
            "'loopml predict') first, or pass --data FILE",
        )
    log = select_window(log, win, now=now)
    names = [n for n in model.signature.names if feature_column(n) in log.columns]
    current = log[[feature_column(n) for n in names]].set_axis(names, axis=1)
    return current, log["score"].to_numpy(dtype=np.float64), where


@dataclass(frozen=True)
class MonitorReport:
    """Where :func:`monitor_report` wrote its page, and what it plotted."""

    model: str
    version: int
    url: str
    periods: list[str]
    drift_share: list[float | None]
    metric: str | None
    metric_values: list[float | None]


def monitor_report(
    ws: Workspace,
    model_ref: str,
    *,
    window: Window | str = "30d",
    by: Literal["day", "week"] = "day",
    thresholds: DriftThresholds | None = None,
    metric: str | None = None,
    now: datetime | None = None,
) -> MonitorReport:
    """One HTML page over a window of the log: drift per period, the metric per period (from
    delayed labels) against training, and every feature's histogram, reference against the
    whole window. Inline SVG and CSS only. Written to ``reports/monitor/<model>/<time>.html``.
    """
    from loopml.monitor.performance import performance
    from loopml.monitor.report import render_monitor_html
    from loopml.predictions import feature_column

    if by not in ("day", "week"):
        raise InvalidInputError(
            f"by must be day or week, got {by!r}",
            where={"field": "by"},
            hint="Use --by day or --by week",
        )
    win = parse_window(window) if isinstance(window, str) else window
    model = load_model(ws, model_ref)
    limits = thresholds if thresholds is not None else DriftThresholds()
    warnings: list[str] = []
    kinds = _tested_kinds(model, warnings)
    names = list(kinds)
    reference = _training_features(ws, model)
    ref_scores, _ = _reference_scores(ws, model, reference, warnings)
    whole = check_drift(ws, model_ref, window=win, thresholds=limits, now=now, write_report=False)
    log = select_window(
        read_window(ws, model.name, win, version=model.version, now=now), win, now=now
    )
    cols = [n for n in names if feature_column(n) in log.columns]
    stamps = log["timestamp"].dt.tz_convert("UTC").dt.tz_localize(None)
    groups = log.groupby(stamps.dt.to_period("D" if by == "day" else "W-SUN"), sort=True)
    periods: list[str] = []
    reports: list[DriftReport | None] = []
    pred_psi: list[float | None] = []
    ref_frame = reference[names]
    ref_pred = pd.DataFrame({PREDICTION: ref_scores})
    for period, part in groups:
        periods.append(period.start_time.strftime("%Y-%m-%d"))
        current = part[[feature_column(n) for n in cols]].set_axis(cols, axis=1)
        rep = compute_drift(
            ref_frame, current, kinds, thresholds=limits, tensors=tensor_inputs(model.signature)
        )
        reports.append(rep)
        pr = compute_drift(
            ref_pred,
            pd.DataFrame({PREDICTION: part["score"].to_numpy(dtype=np.float64)}),
            {PREDICTION: "numeric"},
            thresholds=limits,
        )
        pred_psi.append(pr.features[0].psi)
    metric_name: str | None = None
    values: list[float | None] = [None] * len(periods)
    training = None
    try:
        perf = performance(
            ws, model.name, window=win, by=by, metric=metric, version=model.version, now=now
        )
    except ConfigError:
        raise  # an unknown metric: the caller's mistake, not a gap in the data
    except InvalidInputError as exc:
        warnings.append(f"performance not measured: {exc}")
    else:
        metric_name, training = perf.metric, perf.training
        by_start = {r.start.strftime("%Y-%m-%d"): r.value for r in perf.rows if r.start}
        values = [by_start.get(p) for p in periods]
        warnings.extend(perf.warnings)
    context = {
        "model": f"{model.name}@{model.version}",
        "window": f"{win.text} ({len(log)} predictions, {len(periods)} {by}s)",
        "reference": whole.reference,
        "reference scores": whole.reference_scores,
        "drift now": whole.summary,
        "created": utcnow().isoformat(timespec="seconds"),
    }
    html = render_monitor_html(
        title=f"Monitoring: {model.name}@{model.version}",
        context=context,
        current=whole.features,
        prediction=whole.prediction.features,
        periods=periods,
        drift_over_time=reports,
        prediction_over_time=pred_psi,
        metric=metric_name,
        metric_over_time=values,
        metric_training=training,
        warnings=warnings,
    )
    stamp = utcnow().strftime("%Y%m%dT%H%M%S%fZ")
    path = f"reports/monitor/{model.name}/{stamp}.html"
    ws.lake.write_bytes(path, html.encode())
    shares: list[float | None] = [
        None if r is None or r.insufficient else r.share_drifted for r in reports
    ]
    return MonitorReport(
        model.name, model.version, ws.lake.url(path), periods, shares, metric_name, values
    )


def read_window(
    ws: Workspace,
    model: str,
    win: Window,
    *,
    version: int | None = None,
    now: datetime | None = None,
) -> pd.DataFrame:
    """The logged predictions of ``model`` a log window covers (``last N``: only the newest
    day partitions needed; a time window: only the partitions in range), oldest first. Not
    yet cut to the window: pass the result to :func:`~loopml.monitor.windows.select_window`."""
    from loopml.predictions import read_last_predictions, read_prediction_log

    if win.kind == LAST:
        assert win.count is not None
        return read_last_predictions(ws.lake, model, win.count, version=version)
    since, until = win.bounds(now)
    return read_prediction_log(ws.lake, model, since=since, until=until, version=version)


#: Why a feature of a kind drift is not tested for is left out, as the warning says it.
SKIP_REASONS = {
    "datetime": "times move on by nature",
    "text": "free text has no distribution of values to compare; declare derived numeric "
    "features (length, counts) to watch it",
}


def _tested_kinds(model: LoadedModel, warnings: list[str]) -> dict[str, str]:
    kinds = model.signature.kinds()
    skipped: dict[str, list[str]] = {}
    for n, k in kinds.items():
        if k not in KINDS:
            skipped.setdefault(k, []).append(n)
    for kind, names in skipped.items():
        why = SKIP_REASONS.get(kind, f"no drift test for kind {kind!r}")
        warnings.append(
            f"not tested for drift: {', '.join(names)} ({why}; their values are kept in the log)"
        )
    return {n: k for n, k in kinds.items() if k in KINDS}


def _from_log(
    ws: Workspace, model: LoadedModel, since: datetime | None, until: datetime | None
) -> tuple[pd.DataFrame, np.ndarray, str]:
    from loopml.predictions import feature_column, read_prediction_log

    log = read_prediction_log(ws.lake, model.name, since=since, until=until, version=model.version)
    where = f"prediction log of {model.name}@{model.version}"
    if since or until:
        where += f" from {since or '-'} to {until or '-'}"
    if log.empty:
        raise InvalidInputError(
            f"the {where} is empty",
            where={"model": model.name, "version": model.version},
            hint="Send traffic to 'loopml serve' (or score a file with 'loopml predict') "
            "first, or pass --data FILE",
        )
    names = [n for n in model.signature.names if feature_column(n) in log.columns]
    current = log[[feature_column(n) for n in names]].set_axis(names, axis=1)
    return current, log["score"].to_numpy(dtype=np.float64), where


#: rows checked and scored at a time when the current data is read for a drift check
SCORE_BATCH_ROWS = 131_072


def _pieces(data: pd.DataFrame | pa.Table | str | Path) -> tuple[Any, str]:
    """The current rows in bounded pieces (frames or Arrow batches) and where they come from:
    a file is read batch by batch, never whole, so only the checked features stay in memory."""
    if isinstance(data, pd.DataFrame):
        n = len(data)
        step = SCORE_BATCH_ROWS
        return (data.iloc[i : i + step] for i in range(0, max(n, 1), step)), "data frame"
    if isinstance(data, pa.Table):
        return _table_pieces(data), "table"
    from loopml.data import source_for

    source = source_for(str(data))
    if getattr(source, "format", None) == "parquet":  # typed by its schema: batches agree
        source.batch_rows = SCORE_BATCH_ROWS  # type: ignore[attr-defined]
        return source.batches(), str(data)
    # text formats infer their types from the whole file: read it whole, score it in pieces
    return _table_pieces(source.read()), str(data)


def _scores(model: LoadedModel, frame: pd.DataFrame) -> np.ndarray:
    """The model's scores of ``frame``, :data:`SCORE_BATCH_ROWS` rows at a time (the model's
    design matrix of a whole 1M-row frame alone is about 1 GB)."""
    step = SCORE_BATCH_ROWS
    parts = [
        np.asarray(
            model.bundle.predict_frame(frame.iloc[i : i + step].reset_index(drop=True)).scores,
            dtype=np.float64,
        )
        for i in range(0, len(frame), step)
    ]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float64)


def _table_pieces(table: pa.Table) -> Any:
    batches = table.to_batches(max_chunksize=SCORE_BATCH_ROWS)
    return iter(batches or [table.slice(0, 0)])


def _from_data(
    model: LoadedModel,
    data: pd.DataFrame | pa.Table | str | Path,
    warnings: list[str],
    *,
    where: str | None = None,
) -> tuple[pd.DataFrame, np.ndarray, str]:
    """The signature's features of ``data`` (checked as the model checks them) and the model's
    scores of them, a bounded piece at a time: the whole input, its pandas copy and the
    model's design matrix are never all in memory at once (1M rows x 25 columns read from a
    Parquet file peaked at 2.2 GB when read whole). A problem names its row in the input."""
    pieces, source = _pieces(data)
    where = where or source
    frames: list[pd.DataFrame] = []
    scores: list[np.ndarray] = []
    offset, n_flagged, fields = 0, 0, set[str]()
    for piece in pieces:
        frame = (
            piece.reset_index(drop=True) if isinstance(piece, pd.DataFrame) else piece.to_pandas()
        )
        del piece
        try:
            # never refuse a value training never had: monitoring is where it must show up
            checked = model.signature.check_frame(frame, source=where, unknown="flag")
        except InvalidInputError as exc:
            if isinstance(exc.where.get("row"), int):
                exc.where["row"] += offset  # the row in the whole input, not in its piece
            raise
        if checked.any_flagged:
            n_flagged += int(checked.flagged.sum())
            fields.update(checked.unseen, checked.nulls)
        scores.append(_scores(model, checked.frame))
        frames.append(checked.frame)
        offset += len(frame)
        del frame, checked
    if n_flagged:
        warnings.append(
            f"{n_flagged} row{'s' if n_flagged != 1 else ''} of {where} hold values training "
            f"never had (a category never seen, or a missing value where training had none) in "
            f"{', '.join(sorted(fields))}: counted (unseen categories in their own bucket) and "
            "scored as the model handles unknown values"
        )
    current = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    frames.clear()
    return current, np.concatenate(scores) if scores else np.zeros(0), where


def _reference_scores(
    ws: Workspace, model: LoadedModel, reference: pd.DataFrame, warnings: list[str]
) -> tuple[np.ndarray, str]:
    """The version's out-of-sample scores, or (with a warning) its scores of the training rows."""
    kept = model.record.metrics.get("reference_scores")
    what = f"{model.name}@{model.version}"
    if isinstance(kept, Mapping) and isinstance(kept.get("path"), str):
        try:
            table = ws.lake.read_table(kept["path"])
        except NotFoundError:
            reason = f"its out-of-sample scores ({ws.lake.url(kept['path'])}) are gone"
        else:
            scores = table.column("score").to_numpy()
            source = _SOURCES.get(str(kept.get("source")), str(kept.get("source")))
            return scores, f"out-of-sample scores kept at training ({source}, {len(scores)} rows)"
    else:
        reason = "it keeps no out-of-sample scores (registered without 'loopml train', or by "
        reason += "an older loopml)"
    warnings.append(
        f"{what}: {reason}, so its scores are compared with the model scoring its own training "
        "rows, which overstates prediction drift for a model that fits its training rows "
        "closely (a forest, boosting); retrain with 'loopml train' to keep them"
    )
    desc = f"the model scoring its own training rows ({len(reference)} rows)"
    path = reference_cache_path(model)
    try:  # scored once per version (and bundle): the scores never change for it
        cached = ws.lake.read_table(path)
    except NotFoundError:
        pass
    else:
        if cached.num_rows == len(reference) and "score" in cached.column_names:
            return cached.column("score").to_numpy().astype(np.float64), f"{desc}, cached"
    scores = _scores(model, reference)
    ws.lake.write_table(path, pa.table({"score": pa.array(scores)}))
    return scores, desc


def reference_cache_path(model: LoadedModel) -> str:
    """Where the scores of a version's training rows are kept once computed: keyed by the
    version and its bundle's sha256, so a re-registered bundle never reads stale scores."""
    rec = model.record
    return f"monitor/reference/{rec.name}/{rec.version}-{rec.artifact_sha256[:16]}.parquet"


def _training_features(ws: Workspace, model: LoadedModel) -> pd.DataFrame:
    rec = model.record
    if rec.dataset_name is None or rec.dataset_version is None:
        raise InvalidInputError(
            f"model {rec.name}@{rec.version} records no training dataset",
            where={"model": rec.name, "version": rec.version},
            hint="Drift needs the training data as reference; retrain with loopml train",
        )
    dv = ws.metadata.get_dataset_version(rec.dataset_name, rec.dataset_version)
    frame = read_version(ws, dv).to_pandas()
    # the dataset also holds the holdout, which may have values the fitted rows did not
    checked = model.signature.check_frame(
        frame, source=f"dataset {dv.name}@{dv.version}", unknown="flag"
    )
    return checked.frame
