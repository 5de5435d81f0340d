"""Statistics and drift computed on Spark equal the local ones on the same versions."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from loopml.data import get_dataset, ingest, load_dataset, load_table
from loopml.data.stats import compute_stats
from loopml.engines.spark.drift import dataset_drift
from loopml.engines.spark.stats import frame_stats, version_stats
from loopml.monitor.drift import compute_drift
from loopml.project.data import arrow_type
from loopml.workspace import Workspace

pytestmark = pytest.mark.slow


def close(a: Any, b: Any, path: str = "", rel: float = 1e-9) -> None:
    if isinstance(a, dict):
        assert set(a) == set(b), (path, set(a) ^ set(b))
        for key in a:
            close(a[key], b[key], f"{path}.{key}", rel)
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            close(x, y, f"{path}[{i}]", rel)
    elif isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            assert a is b, (path, a, b)
        else:
            assert math.isclose(a, b, rel_tol=rel, abs_tol=1e-12), (path, a, b)
    else:
        assert a == b, (path, a, b)


def data(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    out = pd.DataFrame(
        {
            "amount": rng.gamma(2.0, 10.0, n) + shift,
            "count": rng.integers(0, 40, n),
            "city": rng.choice(["Lyon", "Paris", "Nice", "Brest"], n, p=[0.4, 0.3, 0.2, 0.1]),
            "vip": rng.random(n) < 0.2,
            "day": pd.Timestamp("2024-03-01") + pd.to_timedelta(rng.integers(0, 90, n), "D"),
        }
    )
    out.loc[rng.random(n) < 0.05, "amount"] = np.nan
    out.loc[rng.random(n) < 0.05, "city"] = None
    if shift:
        out.loc[rng.random(n) < 0.3, "city"] = "Rennes"  # unseen in the reference
    return out


@pytest.fixture
def versions(workspace: Workspace, tmp_path: Path) -> Workspace:
    for name, frame in (("ref", data(600, 0)), ("cur", data(500, 1, shift=8.0))):
        path = tmp_path / f"{name}.parquet"
        frame.to_parquet(path, index=False)
        ingest(workspace, path, name)
    return workspace


def test_version_statistics_equal_the_recorded_ones(spark: Any, versions: Workspace) -> None:
    ws = versions
    for ref in ("ref", "cur"):
        recorded = get_dataset(ws, ref).stats
        on_spark = version_stats(ws, ref)
        close(recorded, on_spark)
        # and the table-at-once statistics (no histogram there)
        exact = compute_stats(load_table(ws, ref))
        for column, st in exact.items():
            close(st, {k: v for k, v in on_spark[column].items() if k != "histogram"})


def test_large_columns_use_approximate_quantiles(
    spark: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loopml.engines.spark import stats as spark_stats

    values = np.random.default_rng(3).normal(size=2_000)
    frame = spark.createDataFrame(pd.DataFrame({"v": values}))
    monkeypatch.setattr(spark_stats, "SAMPLE_SIZE", 500)  # 2,000 values count as many here
    st = frame_stats(frame, {"v": arrow_type("double", "v")})["v"]
    assert st["approximate"] == ["p5", "p25", "p50", "p75", "p95"]
    exact = np.quantile(values, [0.05, 0.25, 0.5, 0.75, 0.95])
    ranks = np.searchsorted(np.sort(values), [st[k] for k in ("p5", "p25", "p50", "p75", "p95")])
    assert np.all(np.abs(ranks / len(values) - [0.05, 0.25, 0.5, 0.75, 0.95]) <= 1e-3)
    assert st["p50"] == pytest.approx(exact[2], abs=0.01)
    assert sum(st["histogram"]["counts"]) == 2_000


def test_drift_equals_the_local_report(spark: Any, versions: Workspace) -> None:
    ws = versions
    features = {
        "amount": "numeric",
        "count": "numeric",
        "city": "categorical",
        "vip": "categorical",
    }
    on_spark = dataset_drift(ws, "ref", "cur", features)
    local = compute_drift(load_dataset(ws, "ref"), load_dataset(ws, "cur"), features)
    close(local.to_dict(), on_spark.to_dict(), rel=1e-9)
    assert on_spark.drifted and "amount" in on_spark.drifted_features
    # by default: the numeric, categorical and boolean columns both versions have
    default = dataset_drift(ws, "ref@1", "cur@1")
    assert [f.feature for f in default.features] == ["amount", "count", "city", "vip"]


def test_data_drift_on_spark_equals_the_local_command(
    spark: Any, versions: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from loopml.cli.main import main
    from loopml.monitor.datasets import dataset_drift as local_drift

    ws = versions
    close(
        local_drift(ws, "ref@1", "cur@1").to_dict(),
        dataset_drift(ws, "ref@1", "cur@1").to_dict(),
        rel=1e-9,
    )
    reports = []
    for engine in ("local", "spark"):
        capsys.readouterr()
        args = ["data", "drift", "ref", "cur", "--engine", engine, "-w", str(ws.root), "--json"]
        assert main(args) == 0
        reports.append(json.loads(capsys.readouterr().out))
    close(reports[0], reports[1], rel=1e-9)
