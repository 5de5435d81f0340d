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
from typing import Any

import numpy as np
import orjson
import pandas as pd

from loopml.errors import InvalidInputError, NotFoundError
from loopml.monitor.drift import (
    DRIFT,
    INSUFFICIENT,
    KINDS,
    MIN_ROWS,
    NO_DRIFT,
    DriftReport,
    compute_drift,
)
from loopml.monitor.report import render_html
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
        return (
            f"drift: {len(names)} of {n} feature{'s' if n != 1 else ''}{said}; "
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
    since: datetime | None = None,
    until: datetime | None = None,
    psi_threshold: float = 0.2,
    alpha: float = 0.05,
    drift_share: float = 0.3,
    min_rows: int = MIN_ROWS,
) -> DriftCheck:
    """Compare recent inputs of ``model_ref`` with its training data and write a report.

    ``data`` (a frame or a CSV/Parquet/JSONL file) is the current sample; without it, the
    model's prediction log (optionally between ``since`` and ``until``) is. Features are
    tested as the signature types them (datetime features are not tested); the model's scores
    are tested against its out-of-sample scores. With fewer than ``min_rows`` rows nothing is
    decided: the verdict is "insufficient data" and a warning says the minimum.
    """
    model = load_model(ws, model_ref)
    warnings: list[str] = []
    kinds = _tested_kinds(model, warnings)
    names = list(kinds)
    reference = _training_features(ws, model)
    if data is None:
        current, current_scores, where = _from_log(ws, model, since, until)
    else:
        current, current_scores, where = _from_data(model, data, warnings)
    ref_scores, scores_desc = _reference_scores(ws, model, reference, warnings)
    options: dict[str, Any] = {
        "psi_threshold": psi_threshold,
        "alpha": alpha,
        "drift_share": drift_share,
        "min_rows": min_rows,
    }
    # compute_drift reads only the features' columns, and names any that is missing
    feature_report = compute_drift(reference[names], current, kinds, **options)
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
        ws.lake.url(f"{base}.html"),
        ws.lake.url(f"{base}.json"),
        scores_desc,
        warnings,
    )
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


def _tested_kinds(model: LoadedModel, warnings: list[str]) -> dict[str, str]:
    kinds = model.signature.kinds()
    skipped = [n for n, k in kinds.items() if k not in KINDS]
    if skipped:
        warnings.append(
            f"not tested for drift: {', '.join(skipped)} (times move on by nature; their "
            "values are kept in the log)"
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


def _from_data(
    model: LoadedModel, data: pd.DataFrame | str | Path, warnings: list[str]
) -> tuple[pd.DataFrame, np.ndarray, str]:
    if isinstance(data, pd.DataFrame):
        frame, where = data, "data frame"
    else:
        from loopml.data import source_for

        frame, where = source_for(str(data)).read().to_pandas(), str(data)
    # never refuse a value training never had: monitoring is where it must show up
    checked = model.signature.check_frame(frame, source=where, unknown="flag")
    if checked.any_flagged:
        n = int(checked.flagged.sum())
        fields = sorted({*checked.unseen, *checked.nulls})
        warnings.append(
            f"{n} row{'s' if n != 1 else ''} of {where} hold values training never had (a "
            f"category never seen, or a missing value where training had none) in "
            f"{', '.join(fields)}: counted (unseen categories in their own bucket) and scored "
            "as the model handles unknown values"
        )
    scores = model.bundle.predict_frame(checked.frame).scores
    return checked.frame, np.asarray(scores, dtype=np.float64), where


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
    scores = model.bundle.predict_frame(reference).scores
    return np.asarray(scores, dtype=np.float64), (
        f"the model scoring its own training rows ({len(reference)} rows)"
    )


def _training_features(ws: Workspace, model: LoadedModel) -> pd.DataFrame:
    rec = model.record
    if rec.dataset_name is None or rec.dataset_version is None:
        raise InvalidInputError(
            f"model {rec.name}@{rec.version} records no training dataset",
            where={"model": rec.name, "version": rec.version},
            hint="Drift needs the training data as reference; retrain with loopml train",
        )
    dv = ws.metadata.get_dataset_version(rec.dataset_name, rec.dataset_version)
    frame = ws.lake.read_table(dv.path).to_pandas()
    # the dataset also holds the holdout, which may have values the fitted rows did not
    checked = model.signature.check_frame(
        frame, source=f"dataset {dv.name}@{dv.version}", unknown="flag"
    )
    return checked.frame
