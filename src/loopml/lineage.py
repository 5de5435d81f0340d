"""Lineage: from a served prediction back to the data it came from.

prediction id -> the logged inputs and output -> model version -> training run -> dataset
version -> source file.
"""

from __future__ import annotations

import re
from typing import Any

import pyarrow.compute as pc

from loopml.errors import InvalidInputError, NotFoundError
from loopml.workspace import Workspace

PREDICTIONS = "predictions/"
_ID = re.compile(r"^[0-9a-f]{32}$")


def _newest_first(path: str) -> tuple[str, str]:
    day = next((p[5:] for p in path.split("/") if p.startswith("date=")), "")
    return day, path.rsplit("/", 1)[-1]


def find_prediction(ws: Workspace, prediction_id: str) -> tuple[dict[str, Any], str]:
    """The logged row of ``prediction_id`` and the lake path of its log file.

    Scans the prediction log newest part first; cost grows with the log until the log is
    compacted and indexed.
    """
    if not isinstance(prediction_id, str) or not _ID.match(prediction_id):
        raise InvalidInputError(
            f"{prediction_id!r} is not a prediction id",
            where={"prediction_id": prediction_id},
            hint="Prediction ids are the 32 hex characters the server answers with",
        )
    parts = [p for p in ws.lake.list(PREDICTIONS) if p.endswith(".parquet")]
    for path in sorted(parts, key=_newest_first, reverse=True):
        table = ws.lake.read_table(path)
        hits = table.filter(pc.equal(table["prediction_id"], prediction_id))
        if hits.num_rows:
            return hits.to_pylist()[0], path
    raise NotFoundError(
        f"prediction {prediction_id} is not in the prediction log",
        where={"prediction_id": prediction_id},
        hint="The log is written in the background about once a second; check the id, "
        "or that the server ran with this workspace",
    )


def trace_prediction(ws: Workspace, prediction_id: str) -> dict[str, Any]:
    """Everything that led to one served prediction, as one JSON-ready document."""
    row, path = find_prediction(ws, prediction_id)
    mv = ws.metadata.get_model_version(str(row["model"]), int(row["version"]))
    run = ws.metadata.get_run(mv.run_id)
    inputs = {
        f["name"]: row.get(f["name"], row.get(f"feature_{f['name']}"))
        for f in mv.signature["inputs"]
    }
    doc: dict[str, Any] = {
        "prediction": {
            "id": prediction_id,
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
