"""Every id the CLI prints can be given back to it, whole or as a unique prefix."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from loopml.testing import _run
from loopml.workspace import open_workspace

from .conftest import project_file


@pytest.fixture
def trained(tmp_path: Path, cli, cancer_csv: Path) -> tuple[Path, str]:  # type: ignore[no-untyped-def]
    """A workspace with the cancer model trained, and what ``train`` printed on stderr."""
    ws = tmp_path / "ws"
    assert cli("init", "--workspace", ws).code == 0
    assert cli("data", "ingest", cancer_csv, "--name", "cancer", "-w", ws).code == 0
    res = cli("train", "-f", project_file(tmp_path), "-w", ws)
    assert res.code == 0, res.err
    return ws, res.err


def test_a_batch_prediction_traces_back_to_its_input_file(  # type: ignore[no-untyped-def]
    tmp_path: Path, cli, trained: tuple[Path, str]
) -> None:
    ws, _ = trained
    rows = load_breast_cancer(as_frame=True).frame.drop(columns=["target"]).head(20)
    path = tmp_path / "rows.csv"
    rows.to_csv(path, index=False)
    out = tmp_path / "scored.csv"
    res = cli("predict", "-m", "cancer", "-i", path, "-o", out, "-w", ws)
    assert res.code == 0, res.err
    assert "loopml trace" in res.out  # says how to follow an id back
    pid = str(pd.read_csv(out)["prediction_id"].iloc[3])
    res = cli("trace", pid[:12], "-w", ws, "--json")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert doc["prediction"]["id"] == pid
    assert doc["prediction"]["source"] == "batch"
    assert doc["prediction"]["input_file"] == str(path.resolve())
    assert doc["prediction"]["inputs"]["mean radius"] == rows["mean radius"].iloc[3]
    text = cli("trace", pid[:12], "-w", ws)
    assert text.code == 0, text.err
    assert f"prediction {pid}" in text.out
    assert f"scored in batch from {path.resolve()}" in text.out.replace("\n", "")


def test_runs_show_takes_the_short_id_train_prints(cli, trained: tuple[Path, str]) -> None:  # type: ignore[no-untyped-def]
    ws, printed = trained
    short = re.search(r"run ([0-9a-f]{8}):", printed)
    assert short, printed
    res = cli("runs", "show", short.group(1), "-w", ws, "--json")
    assert res.code == 0, res.err
    run = json.loads(res.out)
    assert run["id"].startswith(short.group(1)) and len(run["id"]) == 32
    assert cli("runs", "show", run["id"].upper(), "-w", ws).code == 0


def test_ambiguous_and_unknown_run_prefixes(cli, trained: tuple[Path, str]) -> None:  # type: ignore[no-untyped-def]
    ws, _ = trained
    twins = ["beef" + "0" * 28, "beef" + "1" * 28]
    with open_workspace(ws) as w:
        for run_id in twins:
            w.metadata.add_run(replace(_run("cancer"), id=run_id))
    res = cli("runs", "show", "beef", "-w", ws)
    assert res.code == 2
    assert "ambiguous" in res.err and "bug" not in res.err
    assert all(t in res.err.replace("\n", "") for t in twins)
    assert json.loads(cli("runs", "show", "beef1", "-w", ws, "--json").out)["id"] == twins[1]
    res = cli("runs", "show", "dead0000", "-w", ws)
    assert res.code == 2 and "no run id starts with 'dead0000'" in res.err
    res = cli("runs", "show", "abc", "-w", ws)
    assert res.code == 2 and "at least 4" in res.err
