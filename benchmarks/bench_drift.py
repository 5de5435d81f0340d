"""Time ``compute_drift`` on a million rows against a naive baseline measured in the same run.

The naive baseline is what the statistics cost when taken straight from the libraries, feature by
feature: ``scipy.stats.ks_2samp`` plus ``numpy.histogram`` of both sides on reference-quantile
edges (PSI's binning). ``compute_drift`` does more (PSI, KS with its p-value, null counts and the
plot histogram) and must stay close to it. A bare ``numpy.sort`` of both sides, the least an
exact two-sample KS statistic needs, is shown for scale.

    python benchmarks/bench_drift.py [--rows 1000000] [--features 10] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import stats

from loopml.monitor.drift import DriftReport, compute_drift


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    names = [f"x{i}" for i in range(args.features)]
    reference = pd.DataFrame({n: rng.normal(size=args.rows) for n in names})
    # half the features move by half a standard deviation
    current = pd.DataFrame(
        {n: rng.normal(loc=0.5 if i % 2 else 0.0, size=args.rows) for i, n in enumerate(names)}
    )
    features = dict.fromkeys(names, "numeric")

    def ours() -> DriftReport:
        return compute_drift(reference, current, features)

    def naive() -> object:
        out = []
        for n in names:
            ref = reference[n].to_numpy()
            cur = current[n].to_numpy()
            edges = np.quantile(ref, np.linspace(0, 1, 11))
            out.append(
                (stats.ks_2samp(ref, cur), np.histogram(ref, edges), np.histogram(cur, edges))
            )
        return out

    def sort_only() -> object:
        return [(np.sort(reference[n].to_numpy()), np.sort(current[n].to_numpy())) for n in names]

    report = ours()  # warm up, and show what was found
    t_naive = _median_seconds(naive, args.repeats)
    t_ours = _median_seconds(ours, args.repeats)
    t_sort = _median_seconds(sort_only, args.repeats)

    print(
        f"compute_drift: {args.rows:,} reference rows vs {args.rows:,} current rows, "
        f"{args.features} numeric features, median of {args.repeats} runs"
    )
    print(f"drifting features: {', '.join(report.drifted_features) or 'none'}")
    print()
    print(f"{'what':<44} {'seconds':>9} {'vs naive':>9}")
    print("-" * 64)
    rows = [
        ("naive: scipy ks_2samp + numpy.histogram", t_naive),
        ("loopml compute_drift (PSI, KS, plot data)", t_ours),
        ("numpy.sort of both sides only", t_sort),
    ]
    for label, seconds in rows:
        print(f"{label:<44} {seconds:>9.3f} {seconds / t_naive:>8.2f}x")


if __name__ == "__main__":
    main()
