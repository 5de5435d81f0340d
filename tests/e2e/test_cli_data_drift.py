"""``loopml data drift REF CUR``: the drift report between two dataset versions."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from .conftest import Result


@pytest.fixture
def ws(tmp_path: Path, cli: Callable[..., Result]) -> Path:
    path = tmp_path / "ws"
    assert cli("init", "-w", path).code == 0
    rng = np.random.default_rng(0)
    for name, shift, cities in (("ref", 0.0, ["a", "b", "c"]), ("cur", 1.5, ["a", "c", "c"])):
        frame = pd.DataFrame(
            {
                "amount": rng.normal(shift, 1.0, 2_000),
                "count": rng.integers(0, 5, 2_000),
                "city": rng.choice(cities, 2_000),
                "when": pd.date_range("2024-01-01", periods=2_000, freq="h"),
            }
        )
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
        assert cli("data", "ingest", tmp_path / f"{name}.csv", "-n", name, "-w", path).code == 0
    return path


def test_drift_between_two_versions(cli: Callable[..., Result], ws: Path) -> None:
    res = cli("data", "drift", "ref", "cur@1", "-w", ws, "--json")
    assert res.code == 0, res.err
    report = json.loads(res.out)
    assert [f["feature"] for f in report["features"]] == ["amount", "count", "city"]
    drifted = {f["feature"] for f in report["features"] if f["drifted"]}
    assert drifted == {"amount", "city"}  # the shifted mean and the changed mix; count is not
    shown = cli("data", "drift", "ref", "cur", "-w", ws)
    assert shown.code == 0 and "2 of 3 features drifted" in shown.out
    one = json.loads(
        cli("data", "drift", "ref", "cur", "--features", "count", "-w", ws, "--json").out
    )
    assert [f["feature"] for f in one["features"]] == ["count"] and not one["drifted"]


def test_bad_features_and_unknown_engine_are_usage_errors(
    cli: Callable[..., Result], ws: Path
) -> None:
    bad = cli("data", "drift", "ref", "cur", "--features", "nope", "-w", ws)
    assert bad.code == 2 and "--features" in bad.err and "amount" in bad.err
    engine = cli("data", "drift", "ref", "cur", "--engine", "dask", "-w", ws)
    assert engine.code == 2 and "unknown engine" in engine.err
    missing = cli("data", "drift", "ref", "nothing", "-w", ws)
    assert missing.code == 2 and "nothing" in missing.err
