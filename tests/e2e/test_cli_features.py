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
