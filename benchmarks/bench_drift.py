"""Drift monitoring speed: the full drift report, ``loopml monitor drift`` end to end, and a
window read from a large prediction log; Evidently's DataDriftPreset side by side (optional).

1. ``compute_drift`` on N current rows against N reference rows, 20 numeric and 5 categorical
   features, every statistic (PSI, KS, Wasserstein, chi-square, Jensen-Shannon, missing and
   out-of-range rates, bootstrap intervals, plot data), median of ``--repeats``.
2. Evidently 0.7's ``DataDriftPreset`` on the same data, in its own environment
   (``--evidently PYTHON``: a virtualenv with ``evidently`` installed; skipped without it).
3. ``loopml monitor drift`` end to end, in a child process (wall time and its peak RSS): a
   registered model whose dataset is the reference, the current rows from a Parquet file
   (``--data``: the model scores them) and from the prediction log (``--window``: scores
   logged). The first run scores the reference (a version registered without out-of-sample
   scores) and keeps the scores with the version; later runs read them back.
4. A monitoring window read from a prediction log of ``--log-rows`` rows over 10 days.

    python benchmarks/bench_drift.py [--sizes 100000,1000000] [--repeats 3]
        [--log-rows 10000000] [--evidently /tmp/evidently-venv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from loopml.monitor.drift import DriftReport, compute_drift

N_NUMERIC = 20
N_CATEGORICAL = 5
CATEGORIES = [f"c{i}" for i in range(12)]


def make_frame(n: int, seed: int, shifted: bool) -> pd.DataFrame:
    """20 numeric + 5 categorical features; ``shifted`` moves a quarter of them."""
    rng = np.random.default_rng(seed)
    data: dict[str, object] = {}
    for i in range(N_NUMERIC):
        loc = 0.3 if shifted and i % 4 == 0 else 0.0
        data[f"x{i}"] = rng.normal(loc=loc, scale=1.0 + 0.1 * i, size=n)
    base = np.linspace(2.0, 1.0, len(CATEGORIES))
    for j in range(N_CATEGORICAL):
        p = base[::-1] if shifted and j == 0 else base
        data[f"k{j}"] = rng.choice(CATEGORIES, size=n, p=p / p.sum())
    return pd.DataFrame(data)


def kinds() -> dict[str, str]:
    out = {f"x{i}": "numeric" for i in range(N_NUMERIC)}
    out.update({f"k{j}": "categorical" for j in range(N_CATEGORICAL)})
    return out


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall seconds of ``fn`` (see :func:`median_cpu` on a busy machine)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def median_cpu(fn: Callable[[], object], repeats: int) -> float:
    """Median CPU seconds of ``fn`` in this process (all threads): on a shared, loaded machine
    wall time measures the neighbours; CPU time measures the work."""
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


EVIDENTLY_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys, time
    import pandas as pd
    from evidently import Report
    from evidently.presets import DataDriftPreset
    ref = pd.read_parquet(sys.argv[1]); cur = pd.read_parquet(sys.argv[2])
    start, cpu0 = time.perf_counter(), time.process_time()
    snapshot = Report([DataDriftPreset()]).run(cur, ref)
    snapshot.dict()
    seconds = time.perf_counter() - start
    use = resource.getrusage(resource.RUSAGE_SELF)
    cpu = time.process_time() - cpu0
    print(json.dumps({"seconds": seconds, "cpu_s": cpu, "peak_mb": use.ru_maxrss / 1024}))
    """
)

CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    start = time.perf_counter()
    from loopml.cli.main import main
    code = main(sys.argv[1:])
    seconds = time.perf_counter() - start
    use = resource.getrusage(resource.RUSAGE_SELF)
    doc = {"code": code, "seconds": seconds, "cpu_s": use.ru_utime + use.ru_stime,
           "peak_mb": use.ru_maxrss / 1024}
    print(json.dumps(doc), file=sys.stderr)
    """
)


def run_child(args: list[str]) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, *args], capture_output=True, text=True, check=False
    )
    last = proc.stderr.strip().splitlines()[-1]
    try:
        doc: dict[str, float] = json.loads(last)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"loopml {' '.join(args)} failed:\n{proc.stderr[-2000:]}") from exc
    if doc["code"] not in (0, 1):
        raise SystemExit(f"loopml {' '.join(args)} exited {doc['code']}:\n{proc.stderr[-2000:]}")
    return doc


def evidently_seconds(python: str, ref: Path, cur: Path) -> dict[str, float] | None:
    proc = subprocess.run(
        [python, "-c", EVIDENTLY_SCRIPT, str(ref), str(cur)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        print(f"  evidently failed: {proc.stderr.strip().splitlines()[-1:]}")
        return None
    doc: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return doc


def end_to_end(root: Path, reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, object]:
    """A workspace with a registered model on ``reference``; ``loopml monitor drift`` times."""
    from sklearn.linear_model import LogisticRegression

    from loopml.data import ingest
    from loopml.predictions import _Entry, _part_path, build_table
    from loopml.registry import load_model, register_model, set_alias
    from loopml.train import fit_bundle
    from loopml.workspace import init

    ws_dir = root / "ws"
    rng = np.random.default_rng(9)
    labelled = reference.assign(y=(reference["x1"] + rng.normal(size=len(reference)) > 0))
    labelled["y"] = labelled["y"].astype(int)
    with init(ws_dir) as ws:
        dv = ingest(ws, labelled, "bench").dataset
        sample = labelled.sample(min(len(labelled), 20_000), random_state=0)
        bundle, _ = fit_bundle(sample, "y", LogisticRegression(max_iter=200))
        mv = register_model(ws, "bench", bundle, dataset_name=dv.name, dataset_version=dv.version)
        set_alias(ws, "bench", "champion", mv.version)
        model = load_model(ws, "bench")
        p = model.bundle.predict_frame(current)
        ids = [uuid.uuid4().hex for _ in range(len(current))]
        ts = int(datetime.now(UTC).timestamp() * 1e6)
        entry = _Entry("bench", mv.version, ts, current, p.labels, p.scores, ids, 1.0)
        ws.lake.write_table(
            _part_path("bench", datetime.now(UTC).strftime("%Y-%m-%d")), build_table([entry])
        )
    cur_path = root / "current.parquet"
    current.to_parquet(cur_path)
    base = ["monitor", "drift", "-m", "bench", "-w", str(ws_dir), "--json"]
    cold = run_child([*base, "--data", str(cur_path)])
    warm = run_child([*base, "--data", str(cur_path)])
    window = run_child([*base, "--window", f"last {len(current)}"])
    return {"cold": cold, "warm": warm, "window": window}


def log_read(root: Path, rows: int) -> dict[str, float]:
    """Seconds to read windows out of a prediction log of ``rows`` rows over 10 days."""
    import pyarrow as pa

    from loopml.monitor.check import read_window
    from loopml.monitor.windows import Window, parse_window, select_window
    from loopml.predictions import _Entry, _part_path, build_table
    from loopml.workspace import init

    ws_dir = root / "logws"
    days = 10
    per_day = rows // days
    frame = make_frame(per_day, 5, shifted=False)
    labels = np.zeros(per_day, dtype=np.int64)
    scores = np.random.default_rng(1).random(per_day)
    ids = [uuid.uuid4().hex for _ in range(per_day)]
    end = datetime(2026, 11, 11, tzinfo=UTC)
    with init(ws_dir) as ws:
        day0 = end - timedelta(days=days)
        table = build_table(
            [_Entry("logged", 1, int(day0.timestamp() * 1e6), frame, labels, scores, ids, 1.0)]
        )
        ts = table.column("timestamp")
        for d in range(days):
            at = day0 + timedelta(days=d, hours=12)
            shifted = pa.array(
                np.full(per_day, int(at.timestamp() * 1e6), dtype=np.int64), pa.int64()
            ).cast(ts.type)
            part = table.set_column(table.schema.get_field_index("timestamp"), "timestamp", shifted)
            ws.lake.write_table(_part_path("logged", at.strftime("%Y-%m-%d")), part)
        out: dict[str, float] = {}
        for spec in ("1d", "3d", "last 100000"):
            win = parse_window(spec)

            def read(win: Window = win) -> object:
                return select_window(read_window(ws, "logged", win, now=end), win, now=end)

            out[spec] = median_seconds(read, 3)
            out[f"{spec} cpu"] = median_cpu(read, 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--rows", type=int, help="one size only (overrides --sizes)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--log-rows", type=int, default=10_000_000)
    parser.add_argument("--evidently", default=os.environ.get("EVIDENTLY_PYTHON"))
    parser.add_argument("--skip-e2e", action="store_true")
    args = parser.parse_args()
    sizes = [args.rows] if args.rows else [int(s) for s in args.sizes.split(",")]
    log_rows = min(args.log_rows, max(sizes) * 10)

    results = []
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp:
        root = Path(tmp)
        for n in sizes:
            reference = make_frame(n, 0, shifted=False)
            current = make_frame(n, 1, shifted=True)
            report: DriftReport = compute_drift(reference, current, kinds())  # warm up

            def ours(
                reference: pd.DataFrame = reference, current: pd.DataFrame = current
            ) -> object:
                return compute_drift(reference, current, kinds())

            t_ours = median_seconds(ours, args.repeats)
            row: dict[str, object] = {
                "rows": n,
                "compute_drift_s": t_ours,
                "compute_drift_cpu_s": median_cpu(ours, args.repeats),
                "drifted": report.drifted_features,
            }
            if args.evidently and Path(args.evidently).exists():
                ref_p, cur_p = root / f"ref{n}.parquet", root / f"cur{n}.parquet"
                reference.to_parquet(ref_p)
                current.to_parquet(cur_p)
                row["evidently"] = evidently_seconds(args.evidently, ref_p, cur_p)
            if not args.skip_e2e:
                sub = root / f"e2e{n}"
                sub.mkdir()
                row["e2e"] = end_to_end(sub, reference, current)
            results.append(row)
            print(json.dumps(row, default=str), flush=True)
        window = log_read(root, log_rows)

    print()
    print(
        f"drift report: {N_NUMERIC} numeric + {N_CATEGORICAL} categorical features, reference "
        f"and current of the same size, median of {args.repeats}; CPU seconds (wall in brackets)"
    )
    head = f"{'rows':>10} {'compute_drift':>16} {'evidently':>16} {'x (compute)':>11}"
    head += f" {'x (e2e)':>8}"
    head += f" {'e2e cold':>16} {'e2e --data':>16} {'e2e --window':>16} {'peak MB':>8}"
    print(head)

    def cell(doc: object) -> str:
        if not isinstance(doc, dict):
            return "-"
        return f"{doc.get('cpu_s', float('nan')):.2f} ({doc['seconds']:.1f})"

    for r in results:
        ev = r.get("evidently")
        e2e = r.get("e2e") or {}
        assert isinstance(e2e, dict)
        ours = {"cpu_s": r["compute_drift_cpu_s"], "seconds": r["compute_drift_s"]}
        warm = e2e.get("warm")
        faster = compute_x = "-"
        if isinstance(ev, dict):
            compute_x = f"{ev['cpu_s'] / ours['cpu_s']:.0f}x"
            if isinstance(warm, dict):
                faster = f"{ev['cpu_s'] / warm['cpu_s']:.1f}x"
        peak = max((v.get("peak_mb", 0) for v in e2e.values()), default=0)
        print(
            f"{r['rows']:>10,} {cell(ours):>16} {cell(ev):>16} {compute_x:>11} {faster:>8} "
            f"{cell(e2e.get('cold')):>16} {cell(warm):>16} {cell(e2e.get('window')):>16} "
            f"{peak:>8.0f}"
        )
    print()
    print(f"window read from a prediction log of {log_rows:,} rows over 10 days:")
    for spec in ("1d", "3d", "last 100000"):
        print(f"  {spec:>12}: {window[spec]:.3f} s wall, {window[spec + ' cpu']:.3f} s CPU")


if __name__ == "__main__":
    main()
