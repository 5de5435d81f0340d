"""Training with every column included on a real export: a key, a date and free text."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer

from .conftest import project_file


def export(path: Path) -> pd.DataFrame:
    """Breast-cancer data as a hospital would export it: an id, a visit date, a note."""
    df = load_breast_cancer(as_frame=True).frame
    rng = np.random.default_rng(0)
    df.insert(0, "id", np.arange(1, len(df) + 1))
    visit = pd.Timestamp("2018-01-01") + pd.to_timedelta(rng.integers(0, 900, len(df)), "D")
    df["visit"] = visit.strftime("%Y-%m-%d")
    df["note"] = [
        f"seen by doctor {i % 13} in room {i}, follow up in {i % 5} weeks" for i in range(len(df))
    ]
    df.to_csv(path, index=False)
    return df


def test_include_all_leaves_out_the_key_and_the_note_and_reads_the_date(
    tmp_path: Path, cli
) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "export.csv"
    df = export(data)
    ws = tmp_path / "ws"
    assert cli("init", "--workspace", ws).code == 0
    assert cli("data", "ingest", data, "--name", "cancer", "-w", ws).code == 0
    res = cli("train", "-f", project_file(tmp_path), "-w", ws)
    assert res.code == 0, res.err
    warnings = [line for line in res.err.splitlines() if "warning:" in line]
    assert any("'id'" in w and "identifier" in w for w in warnings), res.err
    assert any("'note'" in w and "free text" in w for w in warnings), res.err
    assert len(warnings) == 2, res.err

    shown = json.loads(cli("models", "show", "cancer", "-w", ws, "--json").out)
    kinds = {f["name"]: f["kind"] for f in shown["signature"]["inputs"]}
    assert "id" not in kinds and "note" not in kinds
    assert kinds["visit"] == "datetime"
    assert len(kinds) == 31

    # the model takes its own training file
    out = tmp_path / "scored.csv"
    res = cli("predict", "-m", "cancer", "-i", data, "-o", out, "-w", ws)
    assert res.code == 0, res.err
    scored = pd.read_csv(out)
    assert len(scored) == len(df) and scored["unknown_fields"].isna().all()

    # dates after training are fine, written as dates or as timestamps
    later = tmp_path / "later.csv"
    df.assign(visit="2031-07-04T09:30:00Z", id=df["id"] + 10_000).iloc[:20].to_csv(
        later, index=False
    )
    res = cli("predict", "-m", "cancer", "-i", later, "-o", tmp_path / "later.parquet", "-w", ws)
    assert res.code == 0, res.err
    assert len(pd.read_parquet(tmp_path / "later.parquet")) == 20

    # a value training never had (a gap in a column that had none) is scored and flagged in
    # batch, or refuses the file with --unknown error
    gap = tmp_path / "gap.csv"
    df.assign(**{"mean radius": [np.nan] + [1.0] * (len(df) - 1)}).to_csv(gap, index=False)
    res = cli("predict", "-m", "cancer", "-i", gap, "-o", tmp_path / "gap.parquet", "-w", ws)
    assert res.code == 0, res.err
    assert "1 rows hold values training never had" in res.out
    flags = pd.read_parquet(tmp_path / "gap.parquet")["unknown_fields"]
    assert flags.iloc[0] == "mean radius" and flags.iloc[1:].isna().all()
    res = cli(
        "predict",
        "-m",
        "cancer",
        "-i",
        gap,
        "-o",
        tmp_path / "x.csv",
        "--unknown",
        "error",
        "-w",
        ws,
    )
    assert res.code == 2 and "mean radius" in res.err

    # drift of the training file against itself is no finding and no error
    res = cli("monitor", "drift", "--model", "cancer", "--data", data, "-w", ws)
    assert res.code == 0, res.out + res.err


SELECTED = """
name: cancer
data: {dataset: cancer, target: target}
features:
  numeric: {impute: median, scale: robust, power: yeo-johnson}
  columns: {mean radius: {clip: [0.01, 0.99]}}
  selection: {method: mutual_info, k: 8}
model: {class: sklearn.linear_model.LogisticRegression, params: {max_iter: 2000}}
evaluation: {metric: roc_auc, folds: 3, holdout: 0.2, seed: 0, gate: "roc_auc >= 0.9"}
registry: {alias: champion}
"""


def test_selection_is_recorded_shown_drawn_and_explained(
    tmp_path: Path, cli, cancer_csv: Path
) -> None:  # type: ignore[no-untyped-def]
    ws = tmp_path / "ws"
    assert cli("init", "--workspace", ws).code == 0
    assert cli("data", "ingest", cancer_csv, "--name", "cancer", "-w", ws).code == 0
    project = tmp_path / "loopml.yaml"
    project.write_text(SELECTED)
    res = cli("train", "-f", project, "-w", ws, "--json")
    assert res.code == 0, res.err
    run_id = json.loads(res.out)["run"]["id"]
    shown = cli("runs", "show", run_id, "-w", ws)
    assert shown.code == 0, shown.err
    assert "feature selection (mutual_info): 8 kept, 22 dropped" in shown.out
    doc = json.loads(cli("runs", "show", run_id, "-w", ws, "--json").out)
    selection = doc["metrics"]["feature_selection"]
    assert len(selection["kept"]) == 8 and len(selection["scores"]) == 30
    model = cli("models", "show", "cancer@1", "-w", ws)
    assert model.code == 0 and "8 kept, 22 dropped" in model.out
    report = Path(doc["metrics"]["report"])
    html = (ws / "lake" / report).read_text() if not report.is_absolute() else report.read_text()
    assert "Feature selection (mutual_info): 8 kept, 22 dropped" in html
    explained = cli("features", "explain", "cancer@1", "-w", ws, "--json")
    assert explained.code == 0, explained.err
    info = json.loads(explained.out)
    rows = {r["column"]: r for r in info["columns"]}
    assert len(rows) == 30
    assert "QuantileClipper" in rows["mean radius"]["transforms"][0]
    assert all(r["kind"] == "numeric" and r["kind_source"] == "inferred" for r in rows.values())
    assert sum(len(r["outputs"]) for r in rows.values()) == 8
    assert set(info["selection"]["kept"]) == {o for r in rows.values() for o in r["outputs"]}
    assert info["onnx"]["converts"] is True
    table = cli("features", "explain", "cancer@1", "-w", ws)
    assert table.code == 0 and "30 inputs -> 8 features" in table.out


def test_a_transform_on_the_wrong_kind_stops_before_training(
    tmp_path: Path, cli, cancer_csv: Path
) -> None:  # type: ignore[no-untyped-def]
    ws = tmp_path / "ws"
    assert cli("init", "--workspace", ws).code == 0
    assert cli("data", "ingest", cancer_csv, "--name", "cancer", "-w", ws).code == 0
    project = tmp_path / "loopml.yaml"
    project.write_text(SELECTED.replace("{clip: [0.01, 0.99]}", "{encode: target}"))
    res = cli("train", "-f", project, "-w", ws)
    assert res.code != 0
    assert "features.columns.mean radius.encode" in res.err
    assert "categorical transform" in res.err and "Traceback" not in res.err
    assert json.loads(cli("runs", "list", "-w", ws, "--json").out) == []  # nothing trained


def test_explain_of_an_unknown_version_is_an_error(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    ws = tmp_path / "ws"
    assert cli("init", "--workspace", ws).code == 0
    res = cli("features", "explain", "nope@1", "-w", ws)
    assert res.code != 0 and "Traceback" not in res.err and "nope" in res.err
