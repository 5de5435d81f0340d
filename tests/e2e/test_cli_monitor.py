"""What ``loopml monitor drift`` says: which features, the predictions, too-small windows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sklearn.datasets import load_breast_cancer

from .conftest import project_file


@pytest.fixture
def trained(tmp_path: Path, cli, cancer_csv: Path) -> Path:  # type: ignore[no-untyped-def]
    ws = tmp_path / "ws"
    assert cli("init", "--workspace", ws).code == 0
    assert cli("data", "ingest", cancer_csv, "--name", "cancer", "-w", ws).code == 0
    res = cli("train", "-f", project_file(tmp_path), "-w", ws)
    assert res.code == 0, res.err
    return ws


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_drift_says_which_features_and_whether_the_predictions(  # type: ignore[no-untyped-def]
    tmp_path: Path, cli, trained: Path
) -> None:
    features = load_breast_cancer(as_frame=True).frame.drop(columns=["target"])
    shifted = features.sample(150, random_state=4).copy()
    shifted[["mean radius", "mean texture"]] *= 1.6
    path = tmp_path / "shifted.csv"
    shifted.to_csv(path, index=False)
    res = cli("monitor", "drift", "-m", "cancer", "--data", path, "-w", trained, "--json")
    doc = json.loads(res.out)
    names = doc["drifted_features"]
    assert {"mean radius", "mean texture"} <= set(names)
    pred = "yes" if doc["predictions_drifted"] else "no"
    listed = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    want = f"drift: {len(names)} of 30 features ({listed}); predictions: {pred}"
    assert doc["summary"] == want
    assert doc["verdict"] in ("drift", "no drift")
    text = cli("monitor", "drift", "-m", "cancer", "--data", path, "-w", trained)
    assert text.code == res.code
    assert want in _flat(text.out)
    assert f"verdict: {doc['verdict']}" in _flat(text.out)
    html = Path(doc["report_url"].removeprefix("file://")).read_text()
    assert want in _flat(html)


def test_a_window_too_small_is_a_warning_and_exit_0(tmp_path: Path, cli, trained: Path) -> None:  # type: ignore[no-untyped-def]
    features = load_breast_cancer(as_frame=True).frame.drop(columns=["target"])
    path = tmp_path / "few.csv"
    (features.sample(12, random_state=0) * 2).to_csv(path, index=False)  # far off, 12 rows
    res = cli("monitor", "drift", "-m", "cancer", "--data", path, "-w", trained)
    assert res.code == 0, res.out + res.err
    assert "verdict: insufficient data" in _flat(res.out)
    err = _flat(res.err)
    assert "warning" in err and "12 rows" in err and "at least 30" in err
    doc = json.loads(
        cli("monitor", "drift", "-m", "cancer", "--data", path, "-w", trained, "--json").out
    )
    assert doc["verdict"] == "insufficient data" and doc["drifted"] is False
    decided = cli(
        "monitor", "drift", "-m", "cancer", "--data", path, "--min-rows", "10", "-w", trained
    )
    assert decided.code == 1


def test_the_cli_default_minimum_is_the_library_one() -> None:
    from loopml.cli.monitor import MIN_ROWS as CLI_MIN_ROWS
    from loopml.monitor.drift import MIN_ROWS

    assert CLI_MIN_ROWS == MIN_ROWS
