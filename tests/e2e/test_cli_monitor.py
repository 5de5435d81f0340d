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


# -- performance from delayed labels, reports, alerts: the whole path through the CLI ---------


@pytest.fixture
def labelled(tmp_path: Path, cli, trained: Path) -> Path:  # type: ignore[no-untyped-def]
    """Every row of the cancer data scored with 'loopml predict', 400 labelled by feedback."""
    import pandas as pd

    frame = load_breast_cancer(as_frame=True).frame
    inputs = tmp_path / "rows.csv"
    frame.drop(columns=["target"]).to_csv(inputs, index=False)
    scored = tmp_path / "scored.csv"
    res = cli("predict", "-m", "cancer", "-i", inputs, "-o", scored, "-w", trained)
    assert res.code == 0, res.err
    ids = pd.read_csv(scored)["prediction_id"]
    fb = pd.DataFrame({"prediction_id": ids[:400], "label": frame["target"][:400]})
    fb.to_csv(tmp_path / "labels.csv", index=False)
    res = cli("feedback", tmp_path / "labels.csv", "-w", trained)
    assert res.code == 0, res.err
    return trained


def test_performance_reports_metric_coverage_and_delay(  # type: ignore[no-untyped-def]
    cli, labelled: Path
) -> None:
    res = cli("monitor", "performance", "cancer", "--window", "1d", "-w", labelled, "--json")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    overall = doc["overall"]
    assert doc["metric"] == "roc_auc" and doc["training"] is not None
    assert (overall["n_predictions"], overall["n_labelled"]) == (569, 400)
    assert overall["value"] > 0.95 and overall["delay_p50_s"] >= 0
    text = cli("monitor", "performance", "cancer", "--by", "day", "-w", labelled)
    assert text.code == 0
    assert "70.3%" in text.out and "at training (holdout)" in text.out
    bad = cli("monitor", "performance", "cancer", "--metric", "auc", "-w", labelled)
    assert bad.code == 2 and "unknown classification metric 'auc'" in _flat(bad.err)
    assert "Traceback" not in bad.err
    by = cli("monitor", "performance", "cancer", "--by", "month", "-w", labelled)
    assert by.code == 2


def test_check_raises_alerts_from_the_project_file_and_report_writes_a_page(  # type: ignore[no-untyped-def]
    tmp_path: Path, cli, labelled: Path
) -> None:
    project = tmp_path / "loopml.yaml"
    project.write_text(
        project.read_text()
        + "monitor:\n"
        + "  alerts:\n"
        + "    - {when: metric, metric: roc_auc, below: 0.999}\n"
        + "    - {when: drift, features: 1}\n"
    )
    dry = cli("monitor", "check", "cancer", "-f", project, "-w", labelled, "--dry-run")
    assert dry.code == 1 and "ALERT metric:roc_auc<0.999" in _flat(dry.out)
    assert "dry run: nothing recorded or sent" in _flat(dry.out)
    res = cli("monitor", "check", "cancer", "-f", project, "-w", labelled, "--json")
    doc = json.loads(res.out)
    assert res.code == 1 and [a["rule"] for a in doc["alerts"]] == ["metric:roc_auc<0.999"]
    assert doc["skipped"] == [] and doc["drift"]["verdict"] == "no drift"
    page = cli("monitor", "report", "cancer", "--window", "7d", "-w", labelled, "--json")
    assert page.code == 0, page.err
    rep = json.loads(page.out)
    assert len(rep["periods"]) == 1 and rep["metric_values"][0] > 0.95
    html = Path(rep["report_url"].removeprefix("file://")).read_text()
    assert "<svg" in html and "<script" not in html
    drift = cli(
        "monitor",
        "drift",
        "-m",
        "cancer",
        "--window",
        "last 100",
        "-f",
        project,
        "-w",
        labelled,
        "--json",
    )
    assert drift.code == 0 and json.loads(drift.out)["features"]["n_current_rows"] == 100
    both = cli(
        "monitor",
        "drift",
        "-m",
        "cancer",
        "--window",
        "1d",
        "--since",
        "2026-01-01",
        "-w",
        labelled,
    )
    assert both.code == 2 and "Traceback" not in both.err
