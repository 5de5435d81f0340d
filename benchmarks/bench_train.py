"""Training LightGBM through ``loopml train`` against calling LightGBM directly.

One run: a 200,000 x 50 ``make_classification`` frame is ingested (not timed), then
``loopml train`` fits ``lightgbm.LGBMClassifier`` with 100 trees (cross-validation off:
``folds: 0``; a 0.2 holdout; no refit on all rows, so both sides fit the same rows), with
tracking, the run's report and registration included. The peer fits ``LGBMClassifier`` with
the very parameters the run recorded on the same training rows (the rows minus the run's
holdout), as a float matrix. Then where loopml's extra time goes, phase by phase (measured by
wrapping loopml's own functions for this run only), and the wall time of
``loopml train --help`` in a fresh process (median of 5).

Both sides are timed in wall seconds and in CPU seconds of this process (user + system,
every thread): on a shared machine the wall times are noise, the CPU seconds much less so.
LightGBM is imported before either side is timed (the direct fit's import is never timed).
``--threads N`` gives both sides ``n_jobs: N`` (LightGBM's default otherwise: one thread per
core); ``--threads 1`` makes the CPU seconds of the fits comparable run to run.

    python benchmarks/bench_train.py [--rows 200000] [--features 50] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.datasets import make_classification

PROJECT = """
name: bench
data: {dataset: bench, target: label}
model: {class: lightgbm.LGBMClassifier, params: {n_estimators: 100%s}}
evaluation: {metric: roc_auc, folds: 0, holdout: 0.2, seed: 0, refit: false}
registry: {alias: champion}
"""

#: (phase, object, attribute) wrapped to time loopml's own steps; order is the table's
PHASES: list[tuple[str, str, str]] = [
    ("read the lake", "lake", "read_table"),
    ("prepare_frame (columns as validation reads them)", "trainer", "prepare_frame"),
    ("fit features + model (fit_prepared)", "trainer", "fit_prepared"),
    ("  of which: fit model (LightGBM)", "flavor", "fit"),
    ("predict holdout (predict_frame)", "bundle", "predict_frame"),
    ("metrics (compute_metrics)", "trainer", "compute_metrics"),
    ("holdout extras (bootstrap CI, slices, confusion)", "trainer", "holdout_extras"),
    ("run report (HTML)", "trainer", "write_run_report"),
    ("reference scores (to the lake)", "trainer", "_keep_reference_scores"),
    ("register (register_model)", "trainer", "register_model"),
    ("  of which: serialize bundle (to_bytes)", "bundle", "to_bytes"),
    ("  of which: reload check (from_bytes)", "bundle", "from_bytes"),
]
TOP_LEVEL = [p for p, _, _ in PHASES if not p.startswith(" ")]


def _wrap(
    owner: Any, attr: str, phase: str, spent: dict[str, float], cpu: dict[str, float]
) -> Callable[[], None]:
    original = owner.__dict__[attr] if attr in owner.__dict__ else getattr(owner, attr)
    raw = original.__func__ if isinstance(original, classmethod | staticmethod) else original
    depth = {"n": 0}

    def timed(*args: Any, **kwargs: Any) -> Any:
        depth["n"] += 1
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            return raw(*args, **kwargs)
        finally:
            depth["n"] -= 1
            if depth["n"] == 0:
                spent[phase] += time.perf_counter() - t0
                cpu[phase] += time.process_time() - c0

    setattr(owner, attr, type(original)(timed) if isinstance(original, classmethod) else timed)
    return lambda: setattr(owner, attr, original)


Timed = tuple[float, float]  # (wall seconds, CPU seconds)


def train_with_phases(
    ws_path: Path, project: Path
) -> tuple[Timed, dict[str, float], dict[str, float], str]:
    from loopml.cli.main import main
    from loopml.registry.bundle import ModelBundle
    from loopml.registry.flavors import get_flavor
    from loopml.train import trainer
    from loopml.workspace import open_workspace

    with open_workspace(ws_path) as ws:
        lake_cls = type(ws.lake)
    owners = {
        "lake": lake_cls,
        "trainer": trainer,
        "flavor": type(get_flavor("lightgbm")),
        "bundle": ModelBundle,
    }
    spent: dict[str, float] = defaultdict(float)
    cpu: dict[str, float] = defaultdict(float)
    undo = [_wrap(owners[o], a, p, spent, cpu) for p, o, a in PHASES]
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        code = main(["-w", str(ws_path), "train", "-f", str(project)])
        total = (time.perf_counter() - t0, time.process_time() - c0)
    finally:
        for u in reversed(undo):
            u()
    if code != 0:
        raise SystemExit(f"loopml train exited {code}")
    with open_workspace(ws_path) as ws:
        run_id = ws.metadata.list_runs("bench", limit=1)[0].id
    return total, dict(spent), dict(cpu), run_id


def raw_fit(ws_path: Path, run_id: str, frame: pd.DataFrame) -> Timed:
    """LightGBM on the run's training rows with the run's own estimator parameters."""
    import lightgbm

    from loopml.evaluate.split import holdout_indices
    from loopml.project import ProjectConfig
    from loopml.workspace import open_workspace

    with open_workspace(ws_path) as ws:
        run = ws.metadata.get_run(run_id)
    ev = ProjectConfig.from_dict(run.params["project"]).evaluation
    y = frame["label"]
    train, _ = holdout_indices(
        y, spec=ev.split, fraction=ev.holdout, task="classification", seed=ev.seed
    )
    x = frame.drop(columns="label").to_numpy(dtype=np.float64)[train]
    params = dict(run.params["estimator"])  # LightGBM's are plain values (no reprs)
    t0, c0 = time.perf_counter(), time.process_time()
    lightgbm.LGBMClassifier(**params).fit(x, y.to_numpy()[train])
    return time.perf_counter() - t0, time.process_time() - c0


def help_seconds(runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "loopml", "train", "--help"], capture_output=True, check=True
        )
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument(
        "--threads", type=int, default=None, help="n_jobs for LightGBM on both sides"
    )
    args = parser.parse_args()

    # imported before either side is timed: the direct fit is timed without its import,
    # so loopml's side (whose first LightGBM estimator imports it) is too
    import lightgbm  # noqa: F401

    from loopml.cli.main import main as loopml

    x, y = make_classification(
        n_samples=args.rows, n_features=args.features, n_informative=20, random_state=0
    )
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(args.features)])
    frame["label"] = y
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = root / "bench.parquet"
        frame.to_parquet(data, index=False)
        ws = root / "ws"
        project = root / "loopml.yaml"
        project.write_text(PROJECT % ("" if args.threads is None else f", n_jobs: {args.threads}"))
        assert loopml(["init", "-w", str(ws)]) == 0
        assert loopml(["data", "ingest", str(data), "--name", "bench", "-w", str(ws)]) == 0
        total, spent, cpu, run_id = train_with_phases(ws, project)
        raw = raw_fit(ws, run_id, frame)
    helped = help_seconds()

    threads = "LightGBM's default threads" if args.threads is None else f"{args.threads} thread(s)"
    print(f"\nLightGBM, 100 trees, {args.rows:,} x {args.features}, holdout 0.2, no CV, {threads}")
    print(f"{'':52} {'wall s':>8} {'CPU s':>8}")
    print(f"{'LightGBM directly (same rows, same params)':52} {raw[0]:8.2f} {raw[1]:8.2f}")
    print(f"{'loopml train (tracking, report, registration)':52} {total[0]:8.2f} {total[1]:8.2f}")
    print(f"{'ratio':52} {total[0] / raw[0]:7.2f}x {total[1] / raw[1]:7.2f}x")
    print("\nwhere loopml train's time goes")
    for phase, _, _ in PHASES:
        print(f"{phase:52} {spent.get(phase, 0.0):8.2f} {cpu.get(phase, 0.0):8.2f}")
    rest = [
        t - sum(d.get(p, 0.0) for p in TOP_LEVEL) for t, d in zip(total, (spent, cpu), strict=True)
    ]
    print(
        f"{'the rest (CLI, opening the workspace, run records)':52} {rest[0]:8.2f} {rest[1]:8.2f}"
    )
    print(f"\nloopml train --help, fresh process, median of 5: {helped:.2f} s")


if __name__ == "__main__":
    main()
