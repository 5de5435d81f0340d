"""Benchmark batch scoring on Spark: loopml on local[2] vs loopml's local `predict` vs a
hand-written pandas UDF calling the LightGBM booster, in the same run.

A LightGBM classifier of 100 trees is trained through loopml on 8 numeric features and
registered; ``--rows`` rows (default 10,000,000; several sizes may be given) from the same
distribution are written to one Parquet file (row groups of 250,000 rows). Then, for each
size, in this one process:

- ``loopml local``: :func:`loopml.serve.scoring.predict_file`, what ``loopml predict`` runs
  (streamed in batches, validated, compiled predictor, ids), without the prediction log (the
  Spark job writes none either), output to one Parquet file;
- ``loopml spark``: :func:`loopml.engines.spark.score.score_version` on ``local[2]``: the
  version loaded on the executors from the artifact store, validated and predicted as
  locally, ids, Parquet parts written by the tasks, the commit marker;
- ``hand UDF``: ``mapInPandas`` with the booster (its model string in the closure) predicting
  the float matrix of each batch (``num_threads=1``), the rows and the probability written
  with ``DataFrame.write.parquet``: what a user would write by hand, with no validation, no
  ids, no marker.

Prints rows/s (wall), the peak RSS of the driver's Python process and of the JVM (which holds
the local executors), sampled every 20 ms during each run, and loopml spark's rows/s over the
hand UDF's. The targets: loopml spark within 1.2x of the hand UDF (ratio >= 0.83), and the
driver's memory flat in the row count (compare two sizes).

    python benchmarks/bench_spark.py [--rows 10000000 [...]] [--trees 100] [--smoke]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

FEATURES = 8
ROW_GROUP = 250_000
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss(pid: int) -> int:
    """Resident bytes of process ``pid`` (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * PAGE
    except (OSError, ValueError, IndexError):
        return 0


def _jvm_pid() -> int | None:
    """The java child of this process: Spark's driver JVM (local executors inside it)."""
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/comm") as fh:
                comm = fh.read().strip()
        except OSError:
            continue
        if int(fields[1]) == me and comm == "java":
            return int(entry)
    return None


class Peak:
    """Samples the peak RSS of the driver's Python process and of the JVM while running."""

    def __init__(self, jvm: int | None) -> None:
        self.jvm = jvm
        self.python = 0
        self.java = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            self.python = max(self.python, _rss(me))
            if self.jvm is not None:
                self.java = max(self.java, _rss(self.jvm))
            self._stop.wait(0.02)

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def build(ws: Any, folder: Path, trees: int) -> Callable[[int], Path]:
    """Register the model; return a function writing ``n`` rows to score (cached)."""
    import lightgbm as lgb
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from loopml.registry import register_model, set_alias
    from loopml.train import fit_bundle

    rng = np.random.default_rng(0)
    x = rng.normal(size=(20_000, FEATURES))
    y = (x[:, 0] + x[:, 1] * x[:, 2] + rng.normal(0, 0.5, len(x)) > 0).astype(int)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(FEATURES)])
    frame["y"] = y
    model = lgb.LGBMClassifier(n_estimators=trees, num_leaves=31, verbose=-1)
    bundle, _ = fit_bundle(frame, "y", model)
    mv = register_model(ws, "bench", bundle)
    set_alias(ws, "bench", "champion", mv.version)

    def rows(n: int) -> Path:
        path = folder / f"rows-{n}.parquet"
        if path.exists():
            return path
        gen = np.random.default_rng(n)
        schema = pa.schema([(f"f{i}", pa.float64()) for i in range(FEATURES)])
        with pq.ParquetWriter(path, schema) as writer:
            for start in range(0, n, ROW_GROUP):
                block = gen.normal(size=(min(ROW_GROUP, n - start), FEATURES))
                writer.write_table(
                    pa.table({f"f{i}": block[:, i] for i in range(FEATURES)}, schema=schema),
                    row_group_size=ROW_GROUP,
                )
        return path

    return rows


def hand_udf(spark: Any, booster_text: str, source: Path, out: Path) -> None:
    """What a user writes by hand: the booster in a pandas UDF, the result written by Spark."""
    names = [f"f{i}" for i in range(FEATURES)]

    def predict(batches: Iterator[Any]) -> Iterator[Any]:
        import lightgbm as lgb

        booster = lgb.Booster(model_str=booster_text)
        for frame in batches:
            frame["proba"] = booster.predict(frame[names].to_numpy(), num_threads=1)
            yield frame

    schema = ", ".join(f"{n} double" for n in names) + ", proba double"
    frame = spark.read.parquet(source.as_uri())
    frame.mapInPandas(predict, schema).write.mode("overwrite").parquet(out.as_uri())


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000_000])
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--smoke", action="store_true", help="tiny: 20,000 rows, 10 trees")
    args = parser.parse_args()
    if args.smoke:
        args.rows, args.trees = [20_000], 10
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # executors: this interpreter

    from loopml.engines.spark.score import score_version
    from loopml.engines.spark.session import spark_session, stop_sessions
    from loopml.registry import load_model
    from loopml.serve.scoring import predict_file
    from loopml.workspace import init

    tmp = Path(tempfile.mkdtemp(prefix="loopml-bench-spark-"))
    results: list[dict[str, Any]] = []
    try:
        ws = init(tmp / "ws")
        rows_for = build(ws, tmp, args.trees)
        model = load_model(ws, "bench")
        booster_text = model.bundle.estimator.model_to_string()
        spark = spark_session(ws.settings, master=args.master)
        jvm = _jvm_pid()
        warm = rows_for(10_000)  # JIT, Python workers, the first job's costs: not measured
        score_version(ws, "bench", str(warm), output=tmp / "warm", spark=spark)
        hand_udf(spark, booster_text, warm, tmp / "warm-hand")
        for n in args.rows:
            source = rows_for(n)
            runs: list[tuple[str, Callable[[], object]]] = [
                (
                    "loopml local",
                    lambda s=source: predict_file(ws, "bench", s, tmp / "local.parquet", log=False),
                ),
                (
                    "loopml spark",
                    lambda s=source: score_version(
                        ws, "bench", str(s), output=tmp / "spark-out", spark=spark
                    ),
                ),
                ("hand UDF", lambda s=source: hand_udf(spark, booster_text, s, tmp / "hand-out")),
            ]
            for name, run in runs:
                with Peak(jvm) as peak:
                    t0 = time.perf_counter()
                    run()
                    seconds = time.perf_counter() - t0
                results.append(
                    {
                        "rows": n,
                        "method": name,
                        "seconds": seconds,
                        "rows_s": n / seconds,
                        "python_mb": peak.python / 2**20,
                        "jvm_mb": peak.java / 2**20,
                    }
                )
            for path in ("local.parquet", "spark-out", "hand-out"):
                target = tmp / path
                if target.is_dir():
                    shutil.rmtree(target)
                else:
                    target.unlink(missing_ok=True)
        ws.close()
    finally:
        stop_sessions()
        shutil.rmtree(tmp, ignore_errors=True)
    header = (
        f"{'rows':>11} {'method':<13} {'seconds':>8} {'rows/s':>11} "
        f"{'driver py MB':>12} {'JVM MB':>8} {'vs hand UDF':>11}"
    )
    print(f"batch scoring, LightGBM {args.trees} trees, {FEATURES} features, {args.master}")
    print(header)
    print("-" * len(header))
    for r in results:
        hand = next(x for x in results if x["rows"] == r["rows"] and x["method"] == "hand UDF")
        print(
            f"{r['rows']:>11,} {r['method']:<13} {r['seconds']:>8.2f} {r['rows_s']:>11,.0f} "
            f"{r['python_mb']:>12.0f} {r['jvm_mb']:>8.0f} {r['rows_s'] / hand['rows_s']:>10.2f}x"
        )
    worst = min(
        r["rows_s"]
        / next(x for x in results if x["rows"] == r["rows"] and x["method"] == "hand UDF")["rows_s"]
        for r in results
        if r["method"] == "loopml spark"
    )
    print(
        "target: loopml spark within 1.2x of the hand UDF (>= 0.83x): "
        f"{'met' if worst >= 1 / 1.2 else 'not met'} ({worst:.2f}x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
