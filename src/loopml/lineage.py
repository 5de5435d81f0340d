"""Lineage: from a prediction back to the data it came from.

prediction id -> the logged inputs and output (served, or scored in batch from a file) ->
model version -> training run -> dataset version -> source file.
"""

from __future__ import annotations

from typing import Any

from loopml.predictions import find_prediction, logged_inputs
from loopml.workspace import Workspace


def trace_prediction(ws: Workspace, prediction_id: str) -> dict[str, Any]:
    """Everything that led to one prediction, as one JSON-ready document.

    ``prediction_id`` is the id the server or ``loopml predict`` handed out, or a unique
    prefix of it (4+ hex digits, as git takes abbreviated commits).
    """
    row, path = find_prediction(ws.lake, prediction_id)
    mv = ws.metadata.get_model_version(str(row["model"]), int(row["version"]))
    run = ws.metadata.get_run(mv.run_id)
    inputs = logged_inputs(row, [f["name"] for f in mv.signature["inputs"]])
    doc: dict[str, Any] = {
        "prediction": {
            "id": row["prediction_id"],
            "source": row["source"],
            "input_file": row["input_file"],
            "timestamp": row["timestamp"].isoformat(),
            "prediction": row["prediction"],
            "score": row["score"],
            "latency_ms": row["latency_ms"],
            "inputs": inputs,
            "log_file": ws.lake.url(path),
        },
        "model": {
            "name": mv.name,
            "version": mv.version,
            "artifact_sha256": mv.artifact_sha256,
            "artifact_url": ws.artifacts.url(mv.artifact_sha256),
            "created_at": mv.created_at.isoformat(),
        },
        "run": {
            "id": run.id,
            "status": run.status,
            "started_at": run.started_at.isoformat(),
            "git_commit": run.git_commit,
            "metrics": {"metric": run.metrics.get("metric"), "holdout": run.metrics.get("holdout")},
        },
        "dataset": None,
    }
    if mv.dataset_name is not None and mv.dataset_version is not None:
        dv = ws.metadata.get_dataset_version(mv.dataset_name, mv.dataset_version)
        doc["dataset"] = {
            "name": dv.name,
            "version": dv.version,
            "sha256": dv.sha256,
            "rows": dv.num_rows,
            "url": ws.lake.url(dv.path),
            "source": dv.source,
        }
    return doc
