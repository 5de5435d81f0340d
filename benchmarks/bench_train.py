"""Training LightGBM through ``loopml train`` against calling LightGBM directly.

One run: a 200,000 x 50 ``make_classification`` frame is ingested (not timed), then
``loopml train`` fits ``lightgbm.LGBMClassifier`` with 100 trees (cross-validation off:
``folds: 0``; a 0.2 holdout; no refit on all rows, so both sides fit the same rows), with
tracking, the run's report, bootstrap intervals and registration included.

The floor is a plain script, run in its own process: it reads the dataset version's Parquet
files with pyarrow, fits ``lightgbm.train`` with the very parameters the run recorded on the
run's training rows (as a float matrix), predicts the run's holdout rows and computes the
run's metric (ROC-AUC, by ranks in numpy) -- the least a user calling LightGBM directly does
to get the number ``loopml train`` reports. Its AUC must equal the run's holdout AUC (the
same model on the same rows); the benchmark fails otherwise.

Two comparisons, both sides measured in the same run:

* **fresh processes**: ``python -m loopml train`` against ``python floor.py``, each a new
  process with its own imports, as a user runs them (CPU: user + system of the child and
  anything it waited for);
* **work only**: ``loopml train`` called in this process (every module it needs already
  imported by ``init`` and ``ingest``) against the floor script's own timing of its work
  after its imports.

Then where loopml's extra time goes, phase by phase (measured by wrapping loopml's own
functions for the in-process run only), and the wall time of ``loopml train --help`` in a
fresh process (median of 5). On a shared machine the wall times are noise; the CPU seconds
much less so. ``--threads N`` gives both sides ``n_jobs: N`` (LightGBM's default otherwise:
one thread per core, which on a loaded machine spins and makes the CPU seconds noise);
``--threads 1`` makes the CPU seconds comparable run to run.

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


#: The floor: what a user calling LightGBM directly writes to get the run's holdout AUC.
FLOOR = r"""
import json, sys, time
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pyarrow.parquet as pq

def auc(y, s):
    # Mann-Whitney: average ranks of tied scores, as scikit-learn's roc_auc_score counts ties
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    starts = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]])
    ends = np.r_[starts[1:], len(s)]
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    pos = y == 1
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return (ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)

folder, split, params_file, target = sys.argv[1:5]
t = {}
c0 = time.process_time(); w0 = time.perf_counter()
table = pq.read_table(sorted(Path(folder).glob("part-*.parquet")))
features = [c for c in table.column_names if c != target]
x = table.select(features).to_pandas().to_numpy(dtype=np.float64)
y = table[target].to_numpy()
t["read"] = time.process_time() - c0
rows = np.load(split)
train, holdout = rows["train"], rows["holdout"]
params = json.loads(Path(params_file).read_text())
rounds = params.pop("n_estimators")
c = time.process_time()
booster = lgb.train(params, lgb.Dataset(x[train], y[train]), num_boost_round=rounds)
t["fit"] = time.process_time() - c
c = time.process_time()
scores = booster.predict(x[holdout])
t["predict"] = time.process_time() - c
c = time.process_time()
value = float(auc(y[holdout], scores))
t["metric"] = time.process_time() - c
t["work_cpu"] = time.process_time() - c0
t["work_wall"] = time.perf_counter() - w0
print(json.dumps({"auc": value, **t}))
"""


def floor_inputs(ws_path: Path, run_id: str, root: Path) -> tuple[list[str], float]:
    """The floor script's arguments (the run's rows and LightGBM parameters), and the run's
    holdout AUC."""
    import json

    from loopml.data.ingest import read_version
    from loopml.evaluate.split import holdout_indices
    from loopml.project import ProjectConfig
    from loopml.workspace import open_workspace

    with open_workspace(ws_path) as ws:
        run = ws.metadata.get_run(run_id)
        dv = ws.metadata.get_dataset_version(run.dataset_name, run.dataset_version)
        y = read_version(ws, dv).column("label").to_pandas()
    ev = ProjectConfig.from_dict(run.params["project"]).evaluation
    train, holdout = holdout_indices(
        y, spec=ev.split, fraction=ev.holdout, task="classification", seed=ev.seed
    )
    np.savez(root / "split.npz", train=train, holdout=holdout)
    # LGBMClassifier's parameters, as its fit hands them to lightgbm.train (aliases kept)
    params = {k: v for k, v in run.params["estimator"].items() if v is not None}
    for k in ("importance_type", "class_weight"):
        params.pop(k, None)
    params.setdefault("objective", "binary")
    (root / "params.json").write_text(json.dumps(params))
    (root / "floor.py").write_text(FLOOR)
    folder = ws_path / "lake" / dv.path
    args = [str(root / "floor.py"), str(folder), str(root / "split.npz")]
    return [*args, str(root / "params.json"), "label"], float(run.metrics["holdout"]["roc_auc"])


def in_child(argv: list[str]) -> tuple[Timed, str]:
    """Wall and CPU seconds (user + system, with what it waited for) of one fresh process."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, *argv], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{argv[0]} exited {done.returncode}:\n{done.stderr[-2000:]}")
    spent = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return (wall, spent), done.stdout


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
        import json
        import shutil

        root = Path(tmp)
        data = root / "bench.parquet"
        frame.to_parquet(data, index=False)
        ws = root / "ws"
        project = root / "loopml.yaml"
        project.write_text(PROJECT % ("" if args.threads is None else f", n_jobs: {args.threads}"))
        assert loopml(["init", "-w", str(ws)]) == 0
        assert loopml(["data", "ingest", str(data), "--name", "bench", "-w", str(ws)]) == 0
        fresh_ws = root / "ws-fresh"  # the same workspace, for the fresh-process run
        shutil.copytree(ws, fresh_ws)
        total, spent, cpu, run_id = train_with_phases(ws, project)
        floor_argv, run_auc = floor_inputs(ws, run_id, root)
        floor, out = in_child(floor_argv)
        floor_work = json.loads(out.strip().splitlines()[-1])
        fresh, _ = in_child(["-m", "loopml", "-w", str(fresh_ws), "train", "-f", str(project)])
    if abs(floor_work["auc"] - run_auc) > 1e-9:
        raise SystemExit(
            f"the floor's holdout AUC {floor_work['auc']!r} is not the run's {run_auc!r}: "
            "the two sides did not fit the same model on the same rows"
        )
    helped = help_seconds()

    threads = "LightGBM's default threads" if args.threads is None else f"{args.threads} thread(s)"
    print(f"\nLightGBM, 100 trees, {args.rows:,} x {args.features}, holdout 0.2, no CV, {threads}")
    print(f"holdout roc_auc: floor {floor_work['auc']:.12f}, loopml {run_auc:.12f} (equal)")
    print(f"\n{'fresh processes (imports included)':52} {'wall s':>8} {'CPU s':>8}")
    print(f"{'floor: read, lightgbm.train, predict, AUC':52} {floor[0]:8.2f} {floor[1]:8.2f}")
    print(f"{'python -m loopml train':52} {fresh[0]:8.2f} {fresh[1]:8.2f}")
    print(f"{'ratio':52} {fresh[0] / floor[0]:7.2f}x {fresh[1] / floor[1]:7.2f}x")
    fw = (floor_work["work_wall"], floor_work["work_cpu"])
    print(f"\n{'work only (imports already done)':52} {'wall s':>8} {'CPU s':>8}")
    print(f"{'floor: read, lightgbm.train, predict, AUC':52} {fw[0]:8.2f} {fw[1]:8.2f}")
    for part in ("read", "fit", "predict", "metric"):
        print(f"{'  of which: ' + part:52} {'':8} {floor_work[part]:8.2f}")
    print(f"{'loopml train (tracking, report, registration)':52} {total[0]:8.2f} {total[1]:8.2f}")
    print(f"{'ratio':52} {total[0] / fw[0]:7.2f}x {total[1] / fw[1]:7.2f}x")
    print(
        f"{'ratio to the fit alone (the old floor)':52} {'':8} {total[1] / floor_work['fit']:7.2f}x"
    )
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
