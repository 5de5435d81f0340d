"""Batch scoring: a CSV or Parquet file in, the same rows with predictions out."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from loopml.errors import InvalidInputError
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "rows": self.rows,
            "output": self.output,
        }


def prediction_frame(model: LoadedModel, frame: pd.DataFrame, p: Prediction) -> pd.DataFrame:
    """``frame`` plus prediction columns: prediction, proba_<class>..., model_version, id."""
    out = frame.copy()
    out["prediction"] = p.labels
    if p.probabilities is not None and p.classes is not None:
        for j, cls in enumerate(p.classes):
            out[f"proba_{cls}"] = p.probabilities[:, j]
    out["model_version"] = model.version
    out["prediction_id"] = [new_id() for _ in range(len(out))]
    return out


def predict_file(
    ws: Workspace, model_ref: str, input_path: str | Path, output_path: str | Path
) -> ScoringResult:
    """Score every row of ``input_path`` with ``model_ref`` (bare name: its champion)."""
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
    frame = source_for(str(input_path)).read().to_pandas()
    p = model.predict(frame, source=str(input_path))
    result = prediction_frame(model, frame, p)
    table = pa.Table.from_pandas(result, preserve_index=False)
    buf = io.BytesIO()
    if kind == "csv":
        pacsv.write_csv(table, buf)
    else:
        pq.write_table(table, buf)
    atomic_write_bytes(out_path, buf.getvalue())
    return ScoringResult(model.name, model.version, len(result), str(out_path))
