"""Online learning: events per second through ``loopml learn`` against River's own loop.

The same events (River's synthetic rotating ``Hyperplane`` stream, 10 numeric features,
made in memory) go through:

- **River, in memory** (the peer): the test-then-train loop River's users write
  (``evaluate.progressive_val_score`` does the same): ``predict_one``, update an accuracy,
  ``learn_one``, over the events already parsed into dicts; and the bare ``learn_one`` loop;
- **loopml learn**: the events read from a Redis stream (``XREAD``, JSON parsed per event),
  each checked, predicted, scored (prequential accuracy, log-loss, ROC-AUC), learned, a
  checkpoint (state + position, one transaction) every 1,000 events, windowed metrics as run
  steps. The learner is the same ``StandardScaler | LogisticRegression``.

Both run in this process: River's loops just before and just after loopml's (the peer is
the mean of the two, so that a machine that got busier or quieter meanwhile weighs on both
sides), ``--repeat`` times; the median ratio is reported. The machine is shared, so read the
ratio (CPU seconds of this process; Redis's own CPU is not counted, its round trips are).
Target: loopml at least 0.8x River's test-then-train loop; checkpoint p99 under 50 ms.

    python benchmarks/bench_online.py [--events 50000] [--checkpoint-every 1000] [--repeat 1]
                                      [--smoke] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HOST, PORT = "127.0.0.1", 6379


def make_events(n: int) -> list[dict[str, Any]]:
    from river.datasets import synth

    stream = synth.Hyperplane(seed=42, n_features=10, mag_change=0.001, noise_percentage=0.05)
    return [{**{f"x{k}": v for k, v in x.items()}, "y": int(y)} for x, y in stream.take(n)]


def river_model() -> Any:
    from river import linear_model, preprocessing

    return preprocessing.StandardScaler() | linear_model.LogisticRegression()


def river_loops(events: list[dict[str, Any]]) -> dict[str, float]:
    """CPU seconds of River's test-then-train loop and of its bare learn_one loop."""
    from river import metrics

    xs = [{k: v for k, v in e.items() if k != "y"} for e in events]
    ys = [e["y"] for e in events]
    model, accuracy = river_model(), metrics.Accuracy()
    t0 = time.process_time()
    for x, y in zip(xs, ys, strict=True):
        y_pred = model.predict_one(x)
        accuracy.update(y, y_pred)
        model.learn_one(x, y)
    prequential = time.process_time() - t0
    model = river_model()
    t0 = time.process_time()
    for x, y in zip(xs, ys, strict=True):
        model.learn_one(x, y)
    bare = time.process_time() - t0
    return {"prequential": prequential, "learn_one": bare, "accuracy": accuracy.get()}


def loopml_learn(events: list[dict[str, Any]], every: int, root: Path) -> dict[str, Any]:
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
                "learner": "river.linear_model.LogisticRegression",
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


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--checkpoint-every", type=int, default=1000)
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of River, loopml, River; the median ratio"
    )
    parser.add_argument("--smoke", action="store_true", help="3,000 events (a smoke test)")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args()
    n = 3000 if args.smoke else args.events
    events = make_events(n)
    if args.repeat < 1:
        parser.error("--repeat must be 1 or more")
    river_loops(events[: min(n, 2000)])  # warm the imports and caches
    rounds = []
    for _ in range(args.repeat):
        before = river_loops(events)
        with tempfile.TemporaryDirectory() as tmp:
            ours = loopml_learn(events, args.checkpoint_every, Path(tmp))
        after = river_loops(events)
        res = ours["result"]
        if res.events != n:
            print(f"loopml learn consumed {res.events} of {n} events", file=sys.stderr)
            return 1
        peer = {k: (before[k] + after[k]) / 2 for k in ("prequential", "learn_one", "accuracy")}
        rounds.append((peer["prequential"] / ours["cpu"], peer, ours, before, after))
    rounds.sort(key=lambda r: r[0])
    _, peer, ours, before, after = rounds[len(rounds) // 2]
    ratios = [round(r[0], 3) for r in rounds]
    res = ours["result"]
    cps = res.checkpoint_ms
    rate_peer = n / peer["prequential"]
    rate_bare = n / peer["learn_one"]
    rate_ours = n / ours["cpu"]
    acc = (res.metrics.get("cumulative") or {}).get("accuracy")
    print(
        f"events: {n:,} (Hyperplane, 10 features), StandardScaler | LogisticRegression, "
        f"checkpoint every {args.checkpoint_every:,}; events/s per CPU second of this process"
    )
    print("| what | events/s | ratio to River's test-then-train | accuracy |")
    print("| --- | --- | --- | --- |")
    print(
        f"| River predict_one + metric + learn_one, in memory (peer) | {rate_peer:,.0f} | "
        f"1.00 | {peer['accuracy']:.4f} |"
    )
    print(
        f"| River learn_one only, in memory | {rate_bare:,.0f} | {rate_bare / rate_peer:.2f} | - |"
    )
    print(
        f"| loopml learn from Redis, checkpointed | {rate_ours:,.0f} | "
        f"{rate_ours / rate_peer:.2f} | {acc if acc is None else f'{acc:.4f}'} |"
    )
    print(
        f"\nloopml wall: {ours['wall']:.2f} s ({n / ours['wall']:,.0f} events/s); "
        f"{len(cps)} checkpoints: p50 {_pct(cps, 0.5):.1f} ms, p99 {_pct(cps, 0.99):.1f} ms, "
        f"max {max(cps) if cps else float('nan'):.1f} ms"
    )
    print(
        f"River's loop before / after loopml's: {n / before['prequential']:,.0f} / "
        f"{n / after['prequential']:,.0f} events/s; ratios of the {len(rounds)} rounds: {ratios}"
    )
    if args.json:
        print(
            json.dumps(
                {
                    "events": n,
                    "river_events_per_cpu_s": rate_peer,
                    "river_learn_one_events_per_cpu_s": rate_bare,
                    "loopml_events_per_cpu_s": rate_ours,
                    "ratio": rate_ours / rate_peer,
                    "ratios": ratios,
                    "river_before_events_per_cpu_s": n / before["prequential"],
                    "river_after_events_per_cpu_s": n / after["prequential"],
                    "checkpoints": len(cps),
                    "checkpoint_p50_ms": _pct(cps, 0.5),
                    "checkpoint_p99_ms": _pct(cps, 0.99),
                    "median_checkpoint_ms": statistics.median(cps) if cps else None,
                    "checksum": res.checksum,
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
