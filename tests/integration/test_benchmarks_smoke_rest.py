"""The second half of the benchmark smoke tests (``test_benchmarks_smoke.py`` runs the first):
every other benchmark runs to its table at tiny sizes, in a file of its own so that xdist can
run the halves side by side."""

from __future__ import annotations

import pytest

from tests.integration.benchmarks_smoke import REST, run_benchmark


@pytest.mark.slow
@pytest.mark.parametrize("script", REST)
def test_the_benchmark_runs_at_tiny_sizes(script: str) -> None:
    run_benchmark(script)
