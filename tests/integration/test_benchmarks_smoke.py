"""Every benchmark runs to its table at tiny sizes (the numbers are not checked: a benchmark
is measured, not asserted; this only keeps the scripts working)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _quick() -> dict[str, list[str]]:
    spec = importlib.util.spec_from_file_location("run_all", BENCH / "run_all.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.QUICK  # type: ignore[no-any-return]


QUICK = _quick()


def test_every_benchmark_has_tiny_sizes() -> None:
    assert sorted(p.name for p in BENCH.glob("bench_*.py")) == sorted(QUICK)


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(QUICK))
def test_the_benchmark_runs_at_tiny_sizes(script: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), *QUICK[script]],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.strip(), proc.stderr[-2000:]  # its table
    assert "Traceback" not in proc.stderr
