"""Batch scoring: a CSV or Parquet file in, the same rows with predictions out.

Every scored row is written to the prediction log (``source`` ``batch``, with the input file)
before the output is, so each id in the output can be traced with ``loopml trace``.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from loopml.errors import InvalidInputError
from loopml.predictions import write_predictions
from loopml.registry.bundle import Prediction
from loopml.registry.models import LoadedModel, load_model
from loopml.utils import atomic_write_bytes, new_id
from loopml.workspace import Workspace

OUTPUT_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


@dataclass(frozen=True)
class ScoringResult:
    model: str
    version: int
    rows: int
    output: str
    log_files: tuple[str, ...] = ()  # lake paths of the prediction log parts written
    flagged: int = 0  # rows scored with a value training never had (see unknown_fields)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "rows": self.rows,
            "output": self.output,
            "log_files": list(self.log_files),
            "flagged": self.flagged,
        }


def prediction_frame(model: LoadedModel, frame: pd.DataFrame, p: Prediction) -> pd.DataFrame:
    """``frame`` plus prediction columns: prediction, proba_<class>..., model_version, id, and
    ``unknown_fields``: the fields of the row holding a value training never had
    (comma-separated; empty for a row without)."""
    out = frame.copy()
    out["prediction"] = p.labels
    if p.probabilities is not None and p.classes is not None:
        for j, cls in enumerate(p.classes):
            out[f"proba_{cls}"] = p.probabilities[:, j]
    out["model_version"] = model.version
    out["prediction_id"] = [new_id() for _ in range(len(out))]
    flags = p.unknown_fields
    out["unknown_fields"] = (
        [",".join(f) or None for f in flags] if flags is not None else [None] * len(out)
    )
    return out


def predict_file(
    ws: Workspace,
    model_ref: str,
    input_path: str | Path,
    output_path: str | Path,
    *,
    log: bool = True,
    unknown: str | None = None,
) -> ScoringResult:
    """Score every row of ``input_path`` with ``model_ref`` (bare name: its champion).

    With ``log`` (the default) the rows are written to the prediction log as ``batch`` rows
    naming the input file, synchronously, before the output file is written. ``unknown``
    (``flag`` or ``error``; default: the model's policy, else ``flag``) says whether a row
    with a category never seen or a new missing value is scored and flagged or refuses the
    file.
    """
    from loopml.data import source_for

    out_path = Path(output_path)
    kind = OUTPUT_FORMATS.get(out_path.suffix.lower())
    if kind is None:
        raise InvalidInputError(
            f"cannot write predictions to {str(out_path)!r}",
            where={"file": str(out_path)},
            hint="Name an output ending in .csv or .parquet",
        )
    model = load_model(ws, model_ref)
    started = time.perf_counter()
    frame = source_for(str(input_path)).read().to_pandas()
    checked = model.signature.check_frame(frame, source=str(input_path), unknown=unknown)
    features = checked.frame
    p = model.bundle.predict_frame(features)
    if checked.any_flagged:
        p = replace(p, unknown_fields=checked.unknown_fields())
    result = prediction_frame(model, frame, p)
    log_files: list[str] = []
    if log:
        log_files = write_predictions(
            ws.lake,
            model.name,
            model.version,
            features,
            p,
            result["prediction_id"].tolist(),
            latency_ms=(time.perf_counter() - started) * 1000.0,
            input_file=_where(input_path),
        )
    table = pa.Table.from_pandas(result, preserve_index=False)
    buf = io.BytesIO()
    if kind == "csv":
        pacsv.write_csv(table, buf)
    else:
        pq.write_table(table, buf)
    atomic_write_bytes(out_path, buf.getvalue())
    flagged = int(checked.flagged.sum())
    return ScoringResult(
        model.name, model.version, len(result), str(out_path), tuple(log_files), flagged
    )


def _where(path: str | Path) -> str:
    """The input as the log records it: a URL as given, a local file by its absolute path."""
    text = str(path)
    return text if "://" in text else str(Path(text).resolve())
