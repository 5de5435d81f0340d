"""Benchmark the model server against a naive baseline measured in the same run.

The naive baseline (not a floor: it runs scikit-learn per request) is a bare Starlette endpoint
that parses the body with orjson and runs the same model (fitted feature pipeline + estimator
``predict_proba``) on the one row, in the event loop, with nothing else: no validation, no ids,
no batching, no log, no metrics. loopml does its whole job: validation against the signature,
micro-batching in a worker thread, prediction ids, metrics, the prediction log and hot-reload
polling.

Each server runs in its own process on 127.0.0.1 (a free port); the clients are a few
httpx clients, each in its own process with one keep-alive connection, sending single-row
requests one after another, bounded in count and time.

    python benchmarks/bench_serve.py [--requests 1500] [--clients 1,4,16] [--trees 100]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

MODEL = "cancer"


# -- the servers (run in child processes) ---------------------------------------------------


def build_workspace(path: str, trees: int) -> list[bytes]:
    """Register a random forest on the breast cancer data; return request bodies."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier

    from loopml.features import FeatureSpec, build_transformer, prepare_frame, resolve_kinds
    from loopml.registry import ModelBundle, Signature, register_model, set_alias
    from loopml.workspace import init

    df = load_breast_cancer(as_frame=True).frame
    spec = FeatureSpec.from_config({})
    kinds = resolve_kinds(spec, df, "target")
    x = prepare_frame(df, kinds)
    ct = build_transformer(spec, kinds).fit(x)
    est = RandomForestClassifier(n_estimators=trees, random_state=0).fit(
        ct.transform(x), df["target"]
    )
    sig = Signature.from_frame(
        x, kinds, target="target", task="classification", classes=list(est.classes_)
    )
    with init(path) as ws:
        mv = register_model(ws, MODEL, ModelBundle(ct, est, sig, "sklearn"))
        set_alias(ws, MODEL, "champion", mv.version)
    rows = x.head(200).to_dict("records")
    return [orjson.dumps({"instances": [r]}) for r in rows]


def naive_app(workspace: str) -> Any:
    """The bare endpoint: orjson parse, the model's pipeline and predict_proba, orjson dump."""
    import pandas as pd
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from loopml.registry import load_model
    from loopml.workspace import open_workspace

    with open_workspace(workspace) as ws:
        loaded = load_model(ws, MODEL)
    names = loaded.signature.names
    features, estimator = loaded.bundle.features, loaded.bundle.estimator
    classes = [str(c) for c in loaded.signature.classes or []]

    async def predict(request: Request) -> Response:
        row = orjson.loads(await request.body())["instances"][0]
        frame = pd.DataFrame([[row[n] for n in names]], columns=names)
        proba = estimator.predict_proba(features.transform(frame))[0].tolist()
        return Response(
            orjson.dumps({"probabilities": dict(zip(classes, proba, strict=True))}),
            media_type="application/json",
        )

    async def ready(request: Request) -> Response:
        return Response(b"{}", media_type="application/json")

    return Starlette(
        routes=[
            Route(f"/v1/models/{MODEL}:predict", predict, methods=["POST"]),
            Route("/v2/health/ready", ready),
        ]
    )


def serve(kind: str, workspace: str, max_wait_ms: float) -> None:
    """Child process: bind a free port, print it, serve until terminated."""
    import uvicorn

    if kind == "naive":
        app = naive_app(workspace)
        ws = None
    else:
        from loopml.serve import create_app
        from loopml.workspace import open_workspace

        ws = open_workspace(workspace)
        app = create_app(ws, max_wait_ms=max_wait_ms)
    # A TCP socket that says so: asyncio then sets TCP_NODELAY on each connection.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])
    if ws is not None:
        ws.close()


# -- the clients ----------------------------------------------------------------------------


def _client(url: str, bodies: list[bytes], n: int, seconds: float, go: Any, out: Any) -> None:
    """One client process: a keep-alive httpx.Client sending ``n`` requests in sequence."""
    latencies: list[float] = []
    errors = 0
    headers = {"content-type": "application/json"}
    with httpx.Client(timeout=30.0) as client:
        client.get(url.split("/v1/")[0] + "/v2/health/ready")  # open the connection
        go.wait()
        deadline = time.perf_counter() + seconds
        for i in range(n):
            if time.perf_counter() > deadline:
                break
            t0 = time.perf_counter()
            r = client.post(url, content=bodies[i % len(bodies)], headers=headers)
            latencies.append(time.perf_counter() - t0)
            errors += r.status_code != 200
    out.put((latencies, errors))


def _load(
    url: str, bodies: list[bytes], clients: int, total: int, seconds: float
) -> tuple[list[float], float, int]:
    """``clients`` processes (so client work does not share a GIL), ``total`` requests."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    go = ctx.Event()
    per = max(1, total // clients)
    procs = [
        ctx.Process(target=_client, args=(url, bodies[k:] + bodies[:k], per, seconds, go, out))
        for k in range(clients)
    ]
    for p in procs:
        p.start()
    time.sleep(0.5 + 0.1 * clients)  # let every client connect before the clock starts
    start = time.perf_counter()
    go.set()
    results = [out.get(timeout=seconds + 60) for _ in procs]
    elapsed = time.perf_counter() - start
    for p in procs:
        p.join(10)
    latencies = [x for lat, _ in results for x in lat]
    return latencies, elapsed, sum(e for _, e in results)


def _batches(url: str) -> tuple[float, float]:
    """(predict calls, rows) so far, from loopml's /metrics; zeros for the naive baseline."""
    resp = httpx.get(f"{url}/metrics", timeout=5)
    if resp.status_code != 200:
        return 0.0, 0.0
    calls = rows = 0.0
    for line in resp.text.splitlines():
        if line.startswith("loopml_batch_size_count{"):
            calls += float(line.rsplit(" ", 1)[1])
        elif line.startswith("loopml_batch_size_sum{"):
            rows += float(line.rsplit(" ", 1)[1])
    return calls, rows


def measure(
    url: str, bodies: list[bytes], clients: int, total: int, seconds: float
) -> dict[str, float]:
    endpoint = f"{url}/v1/models/{MODEL}:predict"
    _load(endpoint, bodies, clients, min(100, total), seconds)  # warm up
    calls0, rows0 = _batches(url)
    lat, elapsed, errors = _load(endpoint, bodies, clients, total, seconds)
    calls1, rows1 = _batches(url)
    arr = np.array(lat) * 1000.0
    return {
        "requests": float(len(lat)),
        "rps": len(lat) / elapsed,
        "p50": float(np.percentile(arr, 50)),
        "p99": float(np.percentile(arr, 99)),
        "errors": float(errors),
        "batch": (rows1 - rows0) / (calls1 - calls0) if calls1 > calls0 else 1.0,
    }


def start_child(kind: str, workspace: str, max_wait_ms: float) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve",
            kind,
            "--workspace",
            workspace,
            "--max-wait-ms",
            str(max_wait_ms),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"{kind} server did not start: {line!r}")
    url = f"http://127.0.0.1:{int(line.split()[1])}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{kind} server was not ready in 60 s")


def stop_child(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", choices=["naive", "loopml"], help=argparse.SUPPRESS)
    parser.add_argument("--workspace", help=argparse.SUPPRESS)
    parser.add_argument(
        "--max-wait-ms", type=float, default=2.0, help="loopml's batching window (default 2)"
    )
    parser.add_argument("--requests", type=int, default=1500, help="per measurement")
    parser.add_argument("--seconds", type=float, default=20.0, help="time cap per measurement")
    parser.add_argument("--clients", default="1,4,16", help="concurrent connections, e.g. 1,8")
    parser.add_argument("--trees", type=int, default=100)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.workspace, args.max_wait_ms)
        return
    clients = [int(c) for c in args.clients.split(",")]
    with tempfile.TemporaryDirectory(prefix="loopml-bench-") as tmp:
        workspace = str(Path(tmp) / "ws")
        bodies = build_workspace(workspace, args.trees)
        results: dict[tuple[str, int], dict[str, float]] = {}
        for kind in ("naive", "loopml"):
            proc, url = start_child(kind, workspace, args.max_wait_ms)
            try:
                for c in clients:
                    results[(kind, c)] = measure(url, bodies, c, args.requests, args.seconds)
            finally:
                stop_child(proc)
    print(
        f"\nbench_serve: random forest of {args.trees} trees, 30 numeric features, single-row "
        f"requests; {os.cpu_count()} CPUs; server and clients on 127.0.0.1"
    )
    header = (
        f"{'server':<8} {'clients':>7} {'requests':>8} {'req/s':>8} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'errors':>6} {'rows/call':>9} {'vs naive':>8}"
    )
    print(header)
    print("-" * len(header))
    for c in clients:
        for kind in ("naive", "loopml"):
            r = results[(kind, c)]
            naive = results[("naive", c)]["rps"]
            print(
                f"{kind:<8} {c:>7} {int(r['requests']):>8} {r['rps']:>8.0f} "
                f"{r['p50']:>8.2f} {r['p99']:>8.2f} {int(r['errors']):>6} "
                f"{r['batch']:>9.1f} {r['rps'] / naive:>7.2f}x"
            )


if __name__ == "__main__":
    main()
