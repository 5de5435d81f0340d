"""Benchmark batch scoring (`loopml predict`) against the raw LightGBM booster's `predict`.

A LightGBM classifier of 100 trees is trained on ``make_classification(20000, 20)`` through
loopml (its feature pipeline and bundle) and registered; ``--rows`` rows (default 1,000,000)
drawn from the same distribution are written to a Parquet file. Then, each in its own fresh
process (so peak memory is the process's own), one after another:

- ``booster``: read the Parquet file (pyarrow) and call ``Booster.predict`` on the float
  matrix: the least scoring these rows can cost, with no validation, no ids, no log and no
  output;
- ``loopml``: ``loopml predict -m NAME -i rows.parquet -o scored.parquet`` in process (the
  command's own code path: opening the workspace, loading the model and scoring; the
  interpreter start and the CLI's imports are in the "with interpreter" line):
  streamed in batches, validated against the signature, predicted through the version's
  predictor, one prediction id per row, every row in the prediction log, the output written.

Prints rows/s, peak RSS (``ru_maxrss`` of the child) and the ratio; the target is loopml at
least 0.5x the booster's rows/s, with a peak memory bounded by the batch size (compare
``--rows 250000`` and ``--rows 1000000``: the booster's grows with the file, loopml's should
not).

    python benchmarks/bench_predict.py [--rows 1000000] [--batch-size 65536] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

MODEL = "bench"
FEATURES = 20
ROW_GROUP = 100_000


def build(workspace: str, rows_path: str, rows: int, trees: int) -> None:
    """Train and register the model; write ``rows`` rows to score."""
    import lightgbm as lgb
    import pandas as pd
    from sklearn.datasets import make_classification

    from loopml.registry import register_model, set_alias
    from loopml.train import fit_bundle
    from loopml.workspace import init

    x, y = make_classification(
        n_samples=20_000 + rows, n_features=FEATURES, n_informative=10, random_state=0
    )
    names = [f"f{i}" for i in range(FEATURES)]
    train = pd.DataFrame(x[:20_000], columns=names)
    train["y"] = y[:20_000]
    est = lgb.LGBMClassifier(n_estimators=trees, verbose=-1, random_state=0)
    bundle, _ = fit_bundle(train, "y", est)
    with init(workspace) as ws:
        mv = register_model(ws, MODEL, bundle)
        set_alias(ws, MODEL, "champion", mv.version)
    # row groups of 100,000 rows: a Parquet file is read a row group at a time
    pd.DataFrame(x[20_000:], columns=names).to_parquet(
        rows_path, index=False, row_group_size=ROW_GROUP
    )


def child_booster(workspace: str, rows_path: str) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from loopml.registry import load_model
    from loopml.workspace import open_workspace

    with open_workspace(workspace) as ws:
        loaded = load_model(ws, MODEL)
    booster = loaded.bundle.estimator  # the lightgbm.Booster the bundle predicts with
    t0 = time.perf_counter()
    table = pq.read_table(rows_path)
    x = np.column_stack([table.column(i).to_numpy() for i in range(table.num_columns)])
    proba = booster.predict(x)
    seconds = time.perf_counter() - t0
    return {"rows": len(proba), "seconds": seconds, "checksum": float(np.sum(proba))}


def child_loopml(workspace: str, rows_path: str, out_path: str, batch_size: int) -> dict[str, Any]:
    from loopml.cli.main import main  # the command's imports, not timed (the wall time has them)

    t0 = time.perf_counter()
    code = main(
        [
            "predict",
            "-m",
            MODEL,
            "-i",
            rows_path,
            "-o",
            out_path,
            "-w",
            workspace,
            "--batch-size",
            str(batch_size),
            "--quiet",
            "--json",
        ]
    )
    seconds = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"loopml predict exited {code}")
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(out_path).metadata
    return {"rows": meta.num_rows, "seconds": seconds}


def run_child(args: list[str]) -> dict[str, Any]:
    """One measurement in a fresh interpreter; its result and its peak RSS."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"child {args[0]} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall"] = wall
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=65_536)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side (median)")
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "booster":
            res = child_booster(*rest)
        else:
            res = child_loopml(rest[0], rest[1], rest[2], int(rest[3]))
        res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        print(json.dumps(res))
        return 0
    with tempfile.TemporaryDirectory(prefix="loopml-bench-predict-") as tmp:
        ws = str(Path(tmp) / "ws")
        rows_path = str(Path(tmp) / "rows.parquet")
        out_path = str(Path(tmp) / "scored.parquet")
        build(ws, rows_path, args.rows, args.trees)
        results: dict[str, list[dict[str, Any]]] = {"booster": [], "loopml": []}
        for _ in range(max(1, args.repeat)):
            results["booster"].append(run_child(["booster", ws, rows_path]))
            results["loopml"].append(
                run_child(["loopml", ws, rows_path, out_path, str(args.batch_size)])
            )
            if results["loopml"][-1]["rows"] != args.rows:
                raise SystemExit(f"loopml wrote {results['loopml'][-1]['rows']} rows")

    def median(kind: str, key: str) -> float:
        return float(np.median([r[key] for r in results[kind]]))

    print(
        f"\nbench_predict: LightGBM, {args.trees} trees, {FEATURES} numeric features, "
        f"{args.rows:,} rows from Parquet (row groups of {ROW_GROUP:,}), batch "
        f"{args.batch_size:,} rows; "
        f"{os.cpu_count()} CPUs; median of {args.repeat}"
    )
    header = f"{'what':<44} {'seconds':>8} {'rows/s':>11} {'peak RSS MB':>12} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    booster_rate = args.rows / median("booster", "seconds")
    lines = [
        ("raw Booster.predict (read + predict)", "booster", "seconds"),
        ("loopml predict (in process: the command)", "loopml", "seconds"),
        ("loopml predict (with interpreter + imports)", "loopml", "wall"),
    ]
    for label, kind, key in lines:
        seconds = median(kind, key)
        rate = args.rows / seconds
        print(
            f"{label:<44} {seconds:>8.2f} {rate:>11,.0f} {median(kind, 'peak_rss_mb'):>12.0f} "
            f"{rate / booster_rate:>5.2f}x"
        )
    ratio = (args.rows / median("loopml", "seconds")) / booster_rate
    print(f"target: loopml >= 0.5x the booster's rows/s: {'met' if ratio >= 0.5 else 'not met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
