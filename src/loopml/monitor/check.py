"""Drift checks of a served model: recent inputs against the data it was trained on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from loopml.errors import InvalidInputError
from loopml.monitor.drift import DriftReport, compute_drift
from loopml.monitor.report import render_html
from loopml.registry.models import LoadedModel, load_model
from loopml.utils import utcnow
from loopml.workspace import Workspace

PREDICTION = "prediction_score"


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

    @property
    def drifted(self) -> bool:
        return self.features.drifted or self.prediction.drifted

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "drifted": self.drifted,
            "reference": self.reference,
            "current": self.current,
            "report_url": self.report_url,
            "json_url": self.json_url,
            "features": self.features.to_dict(),
            "prediction": self.prediction.to_dict(),
        }


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
) -> DriftCheck:
    """Compare recent inputs of ``model_ref`` with its training data and write a report.

    ``data`` (a frame or a CSV/Parquet/JSONL file) is the current sample; without it, the
    model's prediction log (optionally between ``since`` and ``until``) is. Features are
    tested as the signature types them; the model's scores on both sides are tested too.
    """
    model = load_model(ws, model_ref)
    names = model.signature.names
    reference = _training_features(ws, model)
    if data is None:
        from loopml.predictions import feature_column, read_prediction_log

        current = read_prediction_log(
            ws.lake, model.name, since=since, until=until, version=model.version
        )
        where = f"prediction log of {model.name}@{model.version}"
        if since or until:
            where += f" from {since or '-'} to {until or '-'}"
        if current.empty:
            raise InvalidInputError(
                f"the {where} is empty",
                where={"model": model.name, "version": model.version},
                hint="Send traffic to 'loopml serve' first, or pass --data FILE",
            )
        current_scores = current["score"].astype("float64")
        current = current[[feature_column(n) for n in names]].set_axis(names, axis=1)
    else:
        if isinstance(data, pd.DataFrame):
            frame, where = data, "data frame"
        else:
            from loopml.data import source_for

            frame, where = source_for(str(data)).read().to_pandas(), str(data)
        current = model.signature.validate_frame(frame, source=where)
        current_scores = pd.Series(model.bundle.predict_frame(current).scores)
    ref_scores = pd.Series(model.bundle.predict_frame(reference).scores)
    kinds = model.signature.kinds()
    feature_report = compute_drift(
        reference,
        current,
        kinds,
        psi_threshold=psi_threshold,
        alpha=alpha,
        drift_share=drift_share,
    )
    prediction_report = compute_drift(
        pd.DataFrame({PREDICTION: ref_scores.to_numpy()}),
        pd.DataFrame({PREDICTION: current_scores.to_numpy()}),
        {PREDICTION: "numeric"},
        psi_threshold=psi_threshold,
        alpha=alpha,
        drift_share=drift_share,
    )
    ref_desc = f"training data {model.record.dataset_name}@{model.record.dataset_version}"
    stamp = utcnow().strftime("%Y%m%dT%H%M%S%fZ")
    base = f"reports/drift/{model.name}/{stamp}"
    context = {
        "model": f"{model.name}@{model.version}",
        "reference": f"{ref_desc} ({len(reference)} rows)",
        "current": f"{where} ({len(current)} rows)",
        "prediction drift": "yes" if prediction_report.drifted else "no",
        "created": utcnow().isoformat(timespec="seconds"),
    }
    html = render_html(
        feature_report,
        title=f"Drift report: {model.name}@{model.version}",
        context=context,
        extra=prediction_report.features,
    )
    report_url = ws.lake.write_bytes(f"{base}.html", html.encode())
    check = DriftCheck(
        model.name,
        model.version,
        feature_report,
        prediction_report,
        context["reference"],
        context["current"],
        report_url,
        ws.lake.url(f"{base}.json"),
    )
    ws.lake.write_bytes(f"{base}.json", orjson.dumps(check.to_dict(), default=str))
    return check


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
    return model.signature.validate_frame(frame, source=f"dataset {dv.name}@{dv.version}")
