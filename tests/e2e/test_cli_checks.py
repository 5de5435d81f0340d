"""Mistakes in a project file are found before any training: exit 2, no run recorded."""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import project_file


def test_a_gate_typo_is_exit_2_before_any_run(tmp_path: Path, cli, cancer_csv: Path) -> None:  # type: ignore[no-untyped-def]
    ws = tmp_path / "ws"
    assert cli("init", "-w", ws).code == 0
    assert cli("data", "ingest", cancer_csv, "--name", "cancer", "-w", ws).code == 0
    res = cli("train", "-f", project_file(tmp_path, gate="cv.rocauc >= 0.9"), "-w", ws)
    assert res.code == 2, res.err
    text = " ".join(res.err.split())
    assert "cv.rocauc" in text and "Did you mean 'cv.roc_auc'?" in text
    assert "evaluation.gate" in text
    assert "fold" not in text  # nothing was trained
    assert json.loads(cli("runs", "list", "-w", ws, "--json").out) == []
