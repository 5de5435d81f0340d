"""CSV ingestion: ``loopml data ingest`` against pyarrow and pandas writing Parquet directly.

Generates a CSV (numeric, integer, categorical and timestamp columns; about 1 GB at the default
10,000,000 rows), then runs each contender in its own process, one after the other on the same
file, and reports rows/s and peak RSS (the child's ``ru_maxrss``):

- ``loopml``: ``loopml data ingest FILE --name bench`` into a fresh workspace (reading in
  16 MiB blocks, validating, hashing, streaming statistics, Parquet parts);
- ``pyarrow``: ``pyarrow.csv.open_csv`` in 16 MiB blocks written by a ``ParquetWriter``;
- ``pandas``: ``pandas.read_csv`` + ``DataFrame.to_parquet`` (the whole table in memory).

    python benchmarks/bench_ingest.py [--rows 10000000 | --gb 5] [--keep FILE] [--skip-pandas]

``--gb`` sizes the input in gigabytes instead of rows (5 GB: about 56M rows); the generated
file lies in a temporary folder (``--dir``, default the system's) and is deleted afterwards,
with both contenders' Parquet output. Give ``--skip-pandas`` for big inputs: pandas holds the
whole table in memory.

Targets (issue 8): loopml at least 600k rows/s with peak memory under 1 GiB. The machine may be
shared: read the ratios as well as the rates.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

_PYARROW = """
import sys
import pyarrow.csv as pacsv, pyarrow.parquet as pq
reader = pacsv.open_csv(sys.argv[1], read_options=pacsv.ReadOptions(block_size=16 << 20))
with pq.ParquetWriter(sys.argv[2], reader.schema) as writer:
    for batch in reader:
        writer.write_batch(batch)
"""

_PANDAS = """
import sys
import pandas as pd
pd.read_csv(sys.argv[1]).to_parquet(sys.argv[2], index=False)
"""


def make_csv(path: Path, rows: int, chunk: int = 1_000_000) -> None:
    """``rows`` rows in chunks (bounded memory): floats, ints, 3 categoricals, a timestamp."""
    rng = np.random.default_rng(0)
    cats = np.array([f"merchant_{i}" for i in range(2_000)], dtype=object)
    countries = np.array(["FR", "DE", "IT", "ES", "NL", "BE", "PL", "SE"], dtype=object)
    start = np.datetime64("2024-01-01T00:00:00", "s")
    with path.open("wb") as fh:
        for first in range(0, rows, chunk):
            n = min(chunk, rows - first)
            table = pa.table(
                {
                    "id": np.arange(first, first + n),
                    "amount": np.round(rng.lognormal(3, 1, n), 2),
                    "score": rng.normal(0, 1, n),
                    "count": rng.integers(0, 1000, n),
                    "merchant": pa.array(rng.choice(cats, n)),
                    "country": pa.array(rng.choice(countries, n)),
                    "channel": pa.array(rng.choice(np.array(["web", "pos", "app"], object), n)),
                    "at": start + rng.integers(0, 365 * 86400, n).astype("timedelta64[s]"),
                    "fraud": rng.random(n) < 0.02,
                }
            )
            options = pacsv.WriteOptions(include_header=first == 0)
            pacsv.write_csv(table, fh, write_options=options)


def measure(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float, float]:
    """``(seconds, peak RSS in GiB, CPU seconds)`` of one child process (its own rusage, from
    wait4: user + system time of the child and its threads)."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - t0
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode:
            err.seek(0)
            tail = err.read().decode(errors="replace")[-2000:]
            sys.exit(f"{argv[:3]} failed ({child.returncode}): {tail}")
    return seconds, usage.ru_maxrss / (1 << 20), usage.ru_utime + usage.ru_stime  # KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    size_of = parser.add_mutually_exclusive_group()
    size_of.add_argument("--rows", type=int, default=10_000_000)
    size_of.add_argument("--gb", type=float, help="the input's size in GB (1e9 bytes)")
    parser.add_argument("--keep", type=Path, help="generate (or reuse) the CSV at this path")
    parser.add_argument("--dir", type=Path, help="where the temporary files go")
    parser.add_argument("--skip-pandas", action="store_true")
    args = parser.parse_args()
    print(f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, load {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        base = Path(tmp)
        csv = args.keep or base / "bench.csv"
        if args.gb is not None and not csv.exists():
            make_csv(base / "sample.csv", 100_000)
            per_row = (base / "sample.csv").stat().st_size / 100_000
            (base / "sample.csv").unlink()
            args.rows = int(args.gb * 1e9 / per_row)
        elif args.keep is not None and csv.exists() and args.gb is not None:
            sys.exit("--gb sizes a generated file; with --keep FILE that exists, give --rows")
        need = args.rows * 90 * 2  # the CSV, then both Parquet outputs (under half of it each)
        free = shutil.disk_usage(base).free
        if not csv.exists() and free < need:
            sys.exit(f"{base} has {free / 1e9:.1f} GB free; {need / 1e9:.1f} GB needed")
        if not csv.exists():
            t0 = time.perf_counter()
            make_csv(csv, args.rows)
            print(f"generated {csv} in {time.perf_counter() - t0:.1f} s", flush=True)
        size = csv.stat().st_size
        print(f"{args.rows:,} rows, {size / 1e6:,.0f} MB", flush=True)
        loopml = [sys.executable, "-m", "loopml.cli.main"]
        ws = base / "ws"
        env = {**os.environ, "LOOPML_HOME": str(ws)}
        subprocess.run([*loopml, "init"], capture_output=True, check=True, env=env)
        runs: list[tuple[str, float, float, float]] = []
        order = [
            ("pyarrow", [sys.executable, "-c", _PYARROW, str(csv), str(base / "pa.parquet")]),
            ("loopml", [*loopml, "data", "ingest", str(csv), "--name", "bench", "--json"]),
        ]
        if not args.skip_pandas:
            order.append(
                ("pandas", [sys.executable, "-c", _PANDAS, str(csv), str(base / "pd.parquet")])
            )
        for label, argv in order:
            seconds, peak, cpu = measure(argv, env if label == "loopml" else None)
            runs.append((label, seconds, peak, cpu))
            print(
                f"{label:8} {seconds:7.1f} s  {args.rows / seconds:>10,.0f} rows/s  "
                f"peak RSS {peak:5.2f} GiB  CPU {cpu:7.1f} s "
                f"({args.rows / cpu:,.0f} rows per CPU second)",
                flush=True,
            )
        times = {label: (s, p, c) for label, s, p, c in runs}
        mine, mem, mine_cpu = times["loopml"]
        for label, (s, p, c) in times.items():
            if label != "loopml":
                print(
                    f"loopml / {label}: {mine / s:.2f}x the time, {mine_cpu / c:.2f}x the CPU "
                    f"time, {mem / p:.2f}x the memory"
                )
        ok = args.rows / mine >= 600_000 and mem < 1.0
        print(f"target (>= 600k rows/s, < 1 GiB): {'met' if ok else 'not met'}")
        print(f"uptime: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} (1 and 5 min load)")


if __name__ == "__main__":
    main()
