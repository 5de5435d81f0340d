"""Online learning: events per second through ``loopml learn`` against River's own loop.

Three cases, each a synthetic River stream of 10 numeric features made in memory, each
learned by ``StandardScaler | <learner>``:

- ``binary``: the rotating ``Hyperplane``, ``LogisticRegression`` (accuracy, log-loss,
  ROC-AUC scored);
- ``multiclass``: ``RandomRBF`` with 4 classes, ``SoftmaxRegression`` (accuracy, log-loss);
- ``regression``: ``Friedman``, ``LinearRegression`` (MAE, RMSE).

The same events of a case go through:

- **River, in memory** (the peer): the test-then-train loop River's users write
  (``evaluate.progressive_val_score`` does the same): ``predict_one``, update a metric
  (accuracy, or MAE), ``learn_one``, over the events already parsed into dicts; and the bare
  ``learn_one`` loop;
- **loopml learn**: the events read from a Redis stream (``XREAD``, JSON parsed per event),
  each checked, predicted, scored (the prequential metrics above, cumulative and windowed),
  learned, a checkpoint (state + position, one transaction) every 1,000 events, windowed
  metrics as run steps.

Both run in this process: River's loops just before and just after loopml's (the peer is
the mean of the two, so that a machine that got busier or quieter meanwhile weighs on both
sides), ``--repeat`` times per case; each case's median ratio is reported, and the median
over every round of every case. The machine is shared, so read the ratio (CPU seconds of
this process; Redis's own CPU is not counted, its round trips are).
Target: loopml at least 0.8x River's test-then-train loop; checkpoint p99 under 50 ms.

    python benchmarks/bench_online.py [--events 50000] [--checkpoint-every 1000] [--repeat 1]
                                      [--case binary,multiclass,regression] [--smoke] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOST, PORT = "127.0.0.1", 6379


@dataclass(frozen=True)
class Case:
    name: str
    learner: str  # import path, for loopml's project
    task: str
    about: str  # the stream, for the table

    def events(self, n: int) -> list[dict[str, Any]]:
        from river.datasets import synth

        stream: Any
        if self.name == "binary":
            stream = synth.Hyperplane(
                seed=42, n_features=10, mag_change=0.001, noise_percentage=0.05
            )
            cast: Any = int
        elif self.name == "multiclass":
            stream = synth.RandomRBF(seed_model=42, seed_sample=42, n_classes=4, n_features=10)
            cast = int
        else:
            stream = synth.Friedman(seed=42)
            cast = float
        return [{**{f"x{k}": v for k, v in x.items()}, "y": cast(y)} for x, y in stream.take(n)]

    def model(self) -> Any:
        import importlib

        from river import preprocessing

        module, _, attr = self.learner.rpartition(".")
        return preprocessing.StandardScaler() | getattr(importlib.import_module(module), attr)()

    def metric(self) -> Any:
        from river import metrics

        return metrics.Accuracy() if self.task == "classification" else metrics.MAE()


CASES = {
    "binary": Case(
        "binary", "river.linear_model.LogisticRegression", "classification", "Hyperplane"
    ),
    "multiclass": Case(
        "multiclass",
        "river.linear_model.SoftmaxRegression",
        "classification",
        "RandomRBF, 4 classes",
    ),
    "regression": Case(
        "regression", "river.linear_model.LinearRegression", "regression", "Friedman"
    ),
}


def river_loops(case: Case, events: list[dict[str, Any]]) -> dict[str, float]:
    """CPU seconds of River's test-then-train loop and of its bare learn_one loop."""
    xs = [{k: v for k, v in e.items() if k != "y"} for e in events]
    ys = [e["y"] for e in events]
    model, metric = case.model(), case.metric()
    t0 = time.process_time()
    for x, y in zip(xs, ys, strict=True):
        y_pred = model.predict_one(x)
        metric.update(y, y_pred)
        model.learn_one(x, y)
    prequential = time.process_time() - t0
    model = case.model()
    t0 = time.process_time()
    for x, y in zip(xs, ys, strict=True):
        model.learn_one(x, y)
    bare = time.process_time() - t0
    return {"prequential": prequential, "learn_one": bare, "metric": metric.get()}


def loopml_learn(
    case: Case, events: list[dict[str, Any]], every: int, root: Path
) -> dict[str, Any]:
    import redis

    from loopml.project.online import parse_online
    from loopml.train.online.learn import learn
    from loopml.workspace import init

    client = redis.Redis(host=HOST, port=PORT, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise SystemExit(f"needs Redis on {HOST}:{PORT}: {exc}") from exc
    name = f"loopml-bench-online-{uuid.uuid4().hex[:8]}"
    try:
        pipe = client.pipeline(transaction=False)
        for i, event in enumerate(events):
            pipe.xadd(name, {"data": json.dumps(event)})
            if i % 5000 == 4999:
                pipe.execute()
        pipe.execute()
        spec = parse_online(
            {
                "stream": f"redis://{HOST}:{PORT}/0?stream={name}",
                "target": "y",
                "task": case.task,
                "learner": case.learner,
                "preprocessing": ["river.preprocessing.StandardScaler"],
                "checkpoint_every": every,
                "checkpoint_seconds": 3600,
                "alias": None,
            },
            "bench_online.py",
            name="bench",
        )
        ws = init(root / "ws")
        try:
            t0, c0 = time.perf_counter(), time.process_time()
            res = learn(ws, spec, max_events=len(events))
            cpu, wall = time.process_time() - c0, time.perf_counter() - t0
        finally:
            ws.close()
    finally:
        client.delete(name)
        client.close()
    return {"cpu": cpu, "wall": wall, "result": res}


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_case(case: Case, n: int, every: int, repeat: int) -> dict[str, Any]:
    """``repeat`` rounds of River, loopml, River on ``n`` events of ``case``; the median."""
    events = case.events(n)
    river_loops(case, events[: min(n, 2000)])  # warm the imports and caches
    rounds = []
    for _ in range(repeat):
        before = river_loops(case, events)
        with tempfile.TemporaryDirectory() as tmp:
            ours = loopml_learn(case, events, every, Path(tmp))
        after = river_loops(case, events)
        res = ours["result"]
        if res.events != n:
            raise SystemExit(f"{case.name}: loopml learn consumed {res.events} of {n} events")
        peer = {k: (before[k] + after[k]) / 2 for k in ("prequential", "learn_one", "metric")}
        rounds.append((peer["prequential"] / ours["cpu"], peer, ours, before, after))
    ratios = [round(r[0], 3) for r in rounds]
    rounds.sort(key=lambda r: r[0])
    _, peer, ours, before, after = rounds[len(rounds) // 2]
    res = ours["result"]
    cps = res.checkpoint_ms
    cumulative = res.metrics.get("cumulative") or {}
    ours_metric = cumulative.get("accuracy" if case.task == "classification" else "mae")
    return {
        "case": case.name,
        "events": n,
        "river_events_per_cpu_s": n / peer["prequential"],
        "river_learn_one_events_per_cpu_s": n / peer["learn_one"],
        "loopml_events_per_cpu_s": n / ours["cpu"],
        "ratio": peer["prequential"] / ours["cpu"],
        "ratios": ratios,
        "river_metric": peer["metric"],
        "loopml_metric": ours_metric,
        "river_before_events_per_cpu_s": n / before["prequential"],
        "river_after_events_per_cpu_s": n / after["prequential"],
        "wall_s": ours["wall"],
        "checkpoints": len(cps),
        "checkpoint_p50_ms": _pct(cps, 0.5),
        "checkpoint_p99_ms": _pct(cps, 0.99),
        "median_checkpoint_ms": statistics.median(cps) if cps else None,
        "checkpoint_max_ms": max(cps) if cps else None,
        "checksum": res.checksum,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--checkpoint-every", type=int, default=1000)
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of River, loopml, River; the median ratio"
    )
    parser.add_argument(
        "--case",
        default=",".join(CASES),
        help=f"comma-separated cases, of: {', '.join(CASES)} (default: all)",
    )
    parser.add_argument("--smoke", action="store_true", help="3,000 events (a smoke test)")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be 1 or more")
    names = [c.strip() for c in args.case.split(",") if c.strip()]
    unknown = [c for c in names if c not in CASES]
    if unknown or not names:
        parser.error(f"--case {args.case!r}: known cases are {', '.join(CASES)}")
    n = 3000 if args.smoke else args.events
    results = [run_case(CASES[c], n, args.checkpoint_every, args.repeat) for c in names]
    print(
        f"events: {n:,} per case (10 features), StandardScaler | learner, checkpoint every "
        f"{args.checkpoint_every:,}; events/s per CPU second of this process; median of "
        f"{args.repeat} round(s)"
    )
    print(
        "| case | River test-then-train (peer) | River learn_one only | loopml learn from "
        "Redis, checkpointed | ratio | ratios of the rounds | metric River / loopml | "
        "checkpoint p50 / p99 ms |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        case = CASES[r["case"]]
        metric = "accuracy" if case.task == "classification" else "MAE"
        ours = r["loopml_metric"]
        print(
            f"| {case.name} ({case.about}, {case.learner.rsplit('.', 1)[-1]}) | "
            f"{r['river_events_per_cpu_s']:,.0f} | {r['river_learn_one_events_per_cpu_s']:,.0f} | "
            f"{r['loopml_events_per_cpu_s']:,.0f} | {r['ratio']:.2f} | {r['ratios']} | "
            f"{metric} {r['river_metric']:.4f} / {ours if ours is None else f'{ours:.4f}'} | "
            f"{r['checkpoint_p50_ms']:.1f} / {r['checkpoint_p99_ms']:.1f} |"
        )
    every_round = [x for r in results for x in r["ratios"]]
    median = statistics.median(every_round)
    print(
        f"\nmedian ratio over every round of every case: {median:.3f} ({len(every_round)} rounds)"
    )
    if args.json:
        first = results[0]
        print(
            json.dumps(
                {
                    **first,  # the first case's figures at the top, as before the cases
                    "median_ratio": median,
                    "cases": {r["case"]: r for r in results},
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
