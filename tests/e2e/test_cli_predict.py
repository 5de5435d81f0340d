"""`loopml predict` streams a file in batches (--batch-size), with a bar only on a terminal."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loopml.registry import load_model
from loopml.workspace import open_workspace

from .conftest import project_file


@pytest.fixture
def trained(tmp_path: Path, cli, cancer_csv: Path) -> Path:  # type: ignore[no-untyped-def]
    ws = tmp_path / "ws"
    assert cli("init", "--workspace", ws).code == 0
    assert cli("data", "ingest", cancer_csv, "--name", "cancer", "-w", ws).code == 0
    res = cli("train", "-f", project_file(tmp_path), "-w", ws)
    assert res.code == 0, res.err
    return ws


def test_predict_streams_in_batches_and_answers_as_the_python_api(  # type: ignore[no-untyped-def]
    tmp_path: Path, cli, trained: Path, cancer_csv: Path
) -> None:
    out = tmp_path / "scored.csv"
    res = cli(
        "predict", "-m", "cancer", "-i", cancer_csv, "-o", out, "--batch-size", "100",
        "-w", trained, "--json",
    )  # fmt: skip
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert doc["rows"] == 569 and doc["batches"] == 6
    assert doc["predictor"] in ("onnx", "native")
    assert "scoring" not in res.err  # no bar off a terminal, none with --json
    scored = pd.read_csv(out)
    frame = pd.read_csv(cancer_csv)
    with open_workspace(trained) as ws:
        expected = load_model(ws, "cancer").predict(frame)
    assert scored["prediction"].tolist() == expected.labels.tolist()
    np.testing.assert_allclose(scored["proba_1"], expected.probabilities[:, 1], atol=1e-6)  # type: ignore[index]
    assert scored["prediction_id"].nunique() == 569
    text = cli("predict", "-m", "cancer", "-i", cancer_csv, "-o", out, "-q", "-w", trained)
    assert text.code == 0, text.err
    assert "scored 569 rows with cancer@1" in text.out and "rows/s" in text.out


def test_a_batch_size_below_one_is_a_usage_error(  # type: ignore[no-untyped-def]
    tmp_path: Path, cli, trained: Path, cancer_csv: Path
) -> None:
    out = tmp_path / "scored.csv"
    res = cli(
        "predict", "-m", "cancer", "-i", cancer_csv, "-o", out, "--batch-size", "0", "-w", trained
    )
    assert res.code == 2
    assert "Traceback" not in res.err
    assert not out.exists()
