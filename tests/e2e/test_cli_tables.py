"""Tables stay readable in an 80-column terminal; ``data show`` shows kinds and top categories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sklearn.datasets import load_breast_cancer

from loopml.cli import common

from .conftest import project_file


@pytest.fixture(autouse=True)
def _eighty_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    """As under COLUMNS=80 (the console reads the variable when it is created)."""
    monkeypatch.setattr(common.out, "width", 80)


@pytest.fixture
def trained(tmp_path: Path, cli) -> Path:  # type: ignore[no-untyped-def]
    frame = load_breast_cancer(as_frame=True).frame
    frame["diagnosis"] = frame["target"].map({0: "malignant", 1: "benign"})
    path = tmp_path / "cancer.csv"
    frame.to_csv(path, index=False)
    ws = tmp_path / "ws"
    assert cli("init", "--workspace", ws).code == 0
    assert cli("data", "ingest", path, "--name", "cancer", "-w", ws).code == 0
    pf = project_file(tmp_path)
    pf.write_text(
        pf.read_text().replace("numeric: {impute", "exclude: [diagnosis], numeric: {impute")
    )
    res = cli("train", "-f", pf, "-w", ws)
    assert res.code == 0, res.err
    return ws


def _fits(text: str) -> list[str]:
    """The lines of ``text``, each at most 80 wide, with table borders blanked out."""
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80, "\n".join(lines)
    return [line.translate({ord(c): " " for c in "│┃"}).strip() for line in lines]


def test_listings_fit_80_columns_without_folded_cells(cli, trained: Path) -> None:  # type: ignore[no-untyped-def]
    run_id = json.loads(cli("runs", "list", "-w", trained, "--json").out)[0]["id"]
    lines = _fits(cli("runs", "list", "-w", trained).out)
    row = next(line for line in lines if run_id[:12] in line)
    assert run_id not in row  # shortened to a prefix that 'runs show' takes
    for cell in ("cancer", "succeeded", "cancer@1", "roc_auc"):
        assert cell in row.split(), row
    assert cli("runs", "show", run_id[:12], "-w", trained).code == 0
    lines = _fits(cli("models", "list", "-w", trained).out)
    assert any({"cancer", "champion", "roc_auc"} <= set(line.split()) for line in lines)
    lines = _fits(cli("data", "list", "-w", trained).out)
    assert any({"cancer", "569", "32"} <= set(line.split()) for line in lines)
    shown = cli("models", "show", "cancer", "-w", trained).out
    _fits(shown.split("signature", 1)[1])  # the tables (the lines above hold long paths)


def test_data_show_has_kinds_and_top_categories(cli, trained: Path) -> None:  # type: ignore[no-untyped-def]
    shown = cli("data", "show", "cancer", "-w", trained).out
    lines = _fits(shown[shown.index("column") :])  # the table (the lines above hold paths)
    diagnosis = next(line for line in lines if line.startswith("diagnosis"))
    assert "categorical" in diagnosis
    assert "benign 63%" in diagnosis and "malignant 37%" in diagnosis
    radius = next(line for line in lines if line.startswith("mean radius"))
    assert "numeric" in radius and "6.98 .. 28.1 (mean 14.1)" in radius
    area = next(line for line in lines if line.startswith("worst area"))
    assert "185 .. 4,254 (mean 881)" in area
    # every column name is whole on its line, not folded
    for name in load_breast_cancer().feature_names:
        assert any(line.startswith(str(name)) for line in lines), name


def test_drift_table_fits_80_columns(tmp_path: Path, cli, trained: Path) -> None:  # type: ignore[no-untyped-def]
    features = load_breast_cancer(as_frame=True).frame.drop(columns=["target"])
    path = tmp_path / "fresh.csv"
    features.sample(100, random_state=1).to_csv(path, index=False)
    res = cli("monitor", "drift", "-m", "cancer", "--data", path, "-w", trained)
    lines = _fits(res.out[res.out.index("feature") : res.out.index("verdict:")])
    for name in load_breast_cancer().feature_names:
        assert any(line.startswith(str(name)) for line in lines), name
