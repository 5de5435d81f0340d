"""What the benchmark smoke tests share: each benchmark's tiny sizes (``run_all.QUICK``), the
run of one script, and which file runs which scripts.

The scripts are spread over two test files, ``test_benchmarks_smoke.py`` (:data:`FIRST`) and
``test_benchmarks_smoke_rest.py`` (every other one), so that ``pytest-xdist --dist loadfile``,
which gives a whole file to one worker, can run the two halves side by side: together they
take minutes, which in one file set the floor of the whole suite. A benchmark added to the
folder lands in the second half by itself.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _quick() -> dict[str, list[str]]:
    spec = importlib.util.spec_from_file_location("run_all", BENCH / "run_all.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.QUICK  # type: ignore[no-any-return]


QUICK = _quick()

#: scripts another test already runs at these sizes, with checks of its own; not run twice
ELSEWHERE = {"bench_online.py": "test_bench_online_smoke.py"}  # it needs Redis, or skips

#: the first half, about half of the wall time as measured (2 to 2.5 minutes each on two
#: busy cores): the JVMs of bench_spark and the nine child processes of bench_features are
#: its largest; bench_train, bench_torch, bench_serving and bench_predict the other's
FIRST = (
    "bench_drift.py",
    "bench_features.py",
    "bench_ingest.py",
    "bench_ingest_sql.py",
    "bench_spark.py",
)

REST = tuple(sorted(set(QUICK) - set(FIRST) - set(ELSEWHERE)))


def run_benchmark(script: str) -> None:
    """Run ``script`` at its tiny sizes: it exits 0, prints its table, raises nothing."""
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
