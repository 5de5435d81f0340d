"""Column statistics at ingest: loopml's compute_stats against pandas' describe.

The peer is what a user would write by hand: ``DataFrame.describe(percentiles=...)`` plus
``nunique`` and ``isna().sum()`` on the same 1,000,000 x 10 table (numeric, integer, string and
boolean columns). Median of 5 runs; the machine is shared, so read the ratio.

    python benchmarks/bench_stats.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from loopml.data import compute_stats


def make_table(n: int) -> pa.Table:
    rng = np.random.default_rng(0)
    cols: dict[str, object] = {}
    for i in range(4):
        cols[f"f{i}"] = rng.normal(i, 1 + i, n)
    cols["i0"] = rng.integers(0, 10_000, n)
    cols["i1"] = rng.integers(-5, 5, n)
    cols["s0"] = rng.choice(np.array([f"cat{i}" for i in range(50)], dtype=object), n)
    cols["s1"] = rng.choice(np.array(["red", "green", "blue"], dtype=object), n)
    cols["s2"] = rng.choice(np.array([f"city{i}" for i in range(500)], dtype=object), n)
    cols["b0"] = rng.random(n) < 0.4
    return pa.table(cols)


def median_time(fn: Callable[[], object], runs: int = 5) -> float:
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    table = make_table(args.rows)
    frame = table.to_pandas()

    def peer() -> object:
        desc = frame.describe(percentiles=[0.05, 0.25, 0.5, 0.75, 0.95], include="all")
        return desc, frame.nunique(), frame.isna().sum()

    ours = median_time(lambda: compute_stats(table))
    theirs = median_time(peer)
    print(f"rows: {args.rows:,} x {table.num_columns} columns, median of 5 runs")
    print("| what | seconds | ratio to pandas |")
    print("| --- | --- | --- |")
    print(f"| pandas describe + nunique + isna (peer) | {theirs:.3f} | 1.00 |")
    print(f"| loopml compute_stats | {ours:.3f} | {ours / theirs:.2f} |")


if __name__ == "__main__":
    main()
