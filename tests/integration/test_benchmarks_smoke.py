"""Every benchmark runs to its table at tiny sizes (the numbers are not checked: a benchmark
is measured, not asserted; this only keeps the scripts working). This file runs the first
half of the scripts; ``test_benchmarks_smoke_rest.py`` the others (see
:mod:`tests.integration.benchmarks_smoke`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.benchmarks_smoke import (
    BENCH,
    ELSEWHERE,
    FIRST,
    QUICK,
    REST,
    run_benchmark,
)


def test_every_benchmark_has_tiny_sizes() -> None:
    assert sorted(p.name for p in BENCH.glob("bench_*.py")) == sorted(QUICK)


def test_every_benchmark_is_run_by_one_smoke_test() -> None:
    assert set(FIRST) <= set(QUICK), set(FIRST) - set(QUICK)
    assert sorted([*FIRST, *REST, *ELSEWHERE]) == sorted(QUICK)  # each once, none left out
    here = Path(__file__).parent
    for script, test_file in ELSEWHERE.items():  # the other test runs this very script
        text = (here / test_file).read_text()
        assert f'"{script}"' in text and "--smoke" in text, (script, test_file)
        assert QUICK[script] == ["--smoke"], QUICK[script]


@pytest.mark.slow
@pytest.mark.parametrize("script", FIRST)
def test_the_benchmark_runs_at_tiny_sizes(script: str) -> None:
    run_benchmark(script)
