"""Instructions per request (valgrind's callgrind) of `loopml serve` and of the ONNX floor.

Wall-clock numbers on a busy machine move with the load; instruction counts do not. This
trains ``benchmarks/bench_serving.py``'s models into a temporary directory (LightGBM of 100
trees on ``make_classification(20000, 20)``), then, for each server, starts it under

    valgrind --tool=callgrind --instr-atstart=no --separate-threads=yes

drives it with ``bench_serving``'s load generator (single-row V1 requests, keep-alive, closed
loop; the server pinned to one core, the generator to another), warms it up, switches counting
on with ``callgrind_control -i on`` for exactly ``--requests`` requests, off again, dumps, and
prints the instructions (Ir) per request of each thread and the ratio of loopml's main thread
to the floor's whole process.

Two harnesses (``--harness``):

* ``server``: the real servers over sockets (``loopml serve``, and
  ``benchmarks/serving_peers/onnx_floor.py`` under uvicorn with uvloop and httptools);
* ``inproc``: the same ASGI apps called in one process by an in-memory ASGI driver,
  ``--concurrency`` concurrent requests (no uvicorn, no sockets: what the app itself costs).

Under callgrind every model call looks ~50 times slower, which would send loopml's ONNX calls
to the batcher's worker thread; the measured loopml raises the batcher's inline threshold
(``MicroBatcher(inline_below_s=...)``) so that calls run inline, as they do without valgrind.
loopml's background threads (the log's compactor, the reload loop) are driven by wall-clock
timers, and callgrind stretches wall time 30-200 times, so their counts per request depend on
the machine's load: compare the main thread.

    python benchmarks/serving_peers/callgrind.py [--requests 3000] [--concurrency 32]
        [--harness server,inproc] [--servers floor,loopml] [--keep DIR]

Needs valgrind (``callgrind_control`` comes with it); without it, it says so and exits 2.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

VALGRIND = [
    "valgrind",
    "--tool=callgrind",
    "--instr-atstart=no",
    "--separate-threads=yes",
]
INLINE_UNDER_CALLGRIND_S = 10.0  # the batcher's inline threshold while measured
READY_S = 900.0  # starting Python and loopml under valgrind takes minutes on a busy machine


# -- inside the measured process --------------------------------------------------------------


def _inline_under_callgrind() -> None:
    from loopml.serve.batching import MicroBatcher

    defaults = MicroBatcher.__init__.__kwdefaults__
    assert defaults is not None and "inline_below_s" in defaults, "MicroBatcher changed"
    defaults["inline_below_s"] = INLINE_UNDER_CALLGRIND_S


def _child_serve(argv: list[str]) -> None:
    """``loopml serve ARGV`` with calls kept inline under callgrind."""
    _inline_under_callgrind()
    from loopml.cli.main import run

    sys.argv = ["loopml", "serve", *argv]
    run()


def _callgrind_control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True)


def _child_inproc(kind: str, workspace: str, model: str, n: int, conc: int, bodies: str) -> None:
    """The ASGI app of ``kind`` driven in this process; counting on for ``n`` requests."""
    import orjson
    import uvloop

    rows = orjson.loads(Path(bodies).read_bytes())
    payloads = [orjson.dumps({"instances": [row]}) for row in rows]
    app: Any
    if kind == "loopml":
        _inline_under_callgrind()
        from loopml.serve import create_app
        from loopml.workspace import open_workspace

        app = create_app(
            open_workspace(workspace), models={model: f"{model}@champion"}, tune_gc=True
        )
        path = f"/v1/models/{model}:predict"
    else:
        from benchmarks.serving_peers.onnx_floor import app

        path = "/predict"

    def scope(body: bytes) -> dict[str, Any]:
        return {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"127.0.0.1:8000"),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 8000),
        }

    async def one(body: bytes) -> int:
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return messages.pop() if messages else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(scope(body), receive, send)
        return int(sent[0]["status"])

    async def worker(k: int, count: int, statuses: list[int]) -> None:
        for i in range(count):
            statuses.append(await one(payloads[(k * 7 + i) % len(payloads)]))

    async def main() -> None:
        lifespan: tuple[asyncio.Queue[Any], asyncio.Queue[Any], asyncio.Future[Any]] | None
        lifespan = None
        if kind == "loopml":
            q_in: asyncio.Queue[Any] = asyncio.Queue()
            q_out: asyncio.Queue[Any] = asyncio.Queue()
            await q_in.put({"type": "lifespan.startup"})
            task = asyncio.ensure_future(
                app(
                    {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                    q_in.get,
                    q_out.put,
                )
            )
            started = await q_out.get()
            assert started["type"] == "lifespan.startup.complete", started
            lifespan = (q_in, q_out, task)
        statuses: list[int] = []
        await asyncio.gather(*(worker(k, 200, statuses) for k in range(conc)))  # warm-up
        assert set(statuses) == {200}, set(statuses)
        statuses.clear()
        per = max(1, n // conc)
        _callgrind_control("-z", str(os.getpid()))
        _callgrind_control("-i", "on", str(os.getpid()))
        await asyncio.gather(*(worker(k, per, statuses) for k in range(conc)))
        _callgrind_control("-i", "off", str(os.getpid()))
        _callgrind_control("-d", str(os.getpid()))
        assert set(statuses) == {200}, set(statuses)
        print(f"requests {len(statuses)}", flush=True)
        if lifespan is not None:
            await lifespan[0].put({"type": "lifespan.shutdown"})
            await lifespan[1].get()
            await lifespan[2]

    uvloop.run(main())


# -- the driver --------------------------------------------------------------------------------


def _ir_per_thread(out: Path) -> dict[int, int]:
    """{callgrind's thread number: Ir} of the dump taken after the measured requests
    (``cg.PID.1-TID``: dump 1 of each thread; the files at exit hold what came after)."""
    counts: dict[int, int] = {}
    for f in sorted(out.glob("cg.*.1-*")):
        thread = int(f.name.rsplit("-", 1)[1])
        # ``totals:`` (what callgrind_annotate's PROGRAM TOTALS shows): the file's
        # ``summary:`` reads 0 after ``callgrind_control -z``
        for line in f.read_text(errors="replace").splitlines():
            if line.startswith("totals:"):
                counts[thread] = int(line.split()[1])
    if not any(counts.values()):
        raise RuntimeError(f"no callgrind counts in {out}: {sorted(p.name for p in out.iterdir())}")
    return counts


def _env(model: Any) -> dict[str, str]:
    from benchmarks import bench_serving as b

    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "BENCH_FEATURES": str(b.N_FEATURES),
        "BENCH_ONNX": model.onnx_path,
    }


def measure_server(
    kind: str, model: Any, workspace: str, n: int, conc: int, out: Path
) -> tuple[dict[int, int], int, float | None]:
    """(Ir per thread, requests measured, requests per model call) of ``kind``'s server."""
    import httpx
    import orjson
    from benchmarks import bench_serving as b

    server_core, load_core = b.cores()
    port = b._free_port()
    if kind == "loopml":
        cmd = [sys.executable, __file__, "_serve", "-w", workspace, "--port", str(port)]
        cmd += ["-m", model.name]
        health, path = "/v2/health/ready", f"/v1/models/{model.name}:predict"
    else:
        cmd = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port)]
        cmd += ["--log-level", "warning", "--no-access-log", "--loop", "uvloop"]
        cmd += ["--http", "httptools", "benchmarks.serving_peers.onnx_floor:app"]
        health, path = "/health", "/predict"
    out.mkdir(parents=True)
    cmd = [*VALGRIND, f"--callgrind-out-file={out}/cg.%p", *cmd]
    log = out / "server.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=_env(model),
            stdout=fh,
            stderr=subprocess.STDOUT,
            preexec_fn=b._pin(server_core),
        )
    try:
        deadline = time.monotonic() + READY_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{kind} exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind} not ready in {READY_S:.0f} s")
            try:
                if httpx.get(f"http://127.0.0.1:{port}{health}", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        server = b.Server(kind, model.name, path, lambda x: b"", lambda d: [], proc, port, log)
        bodies = [orjson.dumps({"instances": [b._row(r)]}) for r in model.x_check]
        with b.pinned(load_core):
            warm, _ = b.drive(server, bodies, conc, 600, max(300, n // 5))
            if warm.errors or not warm.latencies:
                raise RuntimeError(f"{kind}: {warm.errors} errors in the warm-up")
            _callgrind_control("-z", str(proc.pid))
            _callgrind_control("-i", "on", str(proc.pid))
            load, _ = b.drive(server, bodies, conc, 3600, n)
            _callgrind_control("-i", "off", str(proc.pid))
            _callgrind_control("-d", str(proc.pid))
        if load.errors:
            raise RuntimeError(f"{kind}: {load.errors} errors among the measured requests")
        per_call = None
        if kind == "loopml":
            from loopml.serve.metrics import parse_exposition

            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=120).text
            m = parse_exposition(text)
            rows = sum(v for k, v in m.items() if k.startswith("loopml_batch_requests_sum"))
            calls = sum(v for k, v in m.items() if k.startswith("loopml_batch_requests_count"))
            per_call = rows / calls if calls else None
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(300)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
    return _ir_per_thread(out), len(load.latencies), per_call


def measure_inproc(
    kind: str, model: Any, workspace: str, n: int, conc: int, out: Path
) -> tuple[dict[int, int], int, float | None]:
    """(Ir per thread, requests measured, None) of ``kind``'s ASGI app driven in process."""
    import orjson
    from benchmarks import bench_serving as b

    server_core, _ = b.cores()
    out.mkdir(parents=True)
    rows = out / "rows.json"
    rows.write_bytes(orjson.dumps([b._row(r) for r in model.x_check]))
    cmd = [*VALGRIND, f"--callgrind-out-file={out}/cg.%p", sys.executable, __file__, "_inproc"]
    cmd += [kind, workspace, model.name, str(n), str(conc), str(rows)]
    done = subprocess.run(
        cmd,
        cwd=ROOT,
        env=_env(model),
        capture_output=True,
        text=True,
        preexec_fn=b._pin(server_core),
        check=False,
    )
    (out / "inproc.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"in-process {kind} exited {done.returncode}:\n{done.stderr[-3000:]}")
    measured = [ln for ln in done.stdout.splitlines() if ln.startswith("requests ")]
    return _ir_per_thread(out), int(measured[-1].split()[1]), None


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="measured, per server")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--harness", default="server,inproc", help="server, inproc or both")
    parser.add_argument("--servers", default="floor,loopml")
    parser.add_argument("--model", default="lgbm", choices=["lgbm", "forest"])
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--keep", default=None, help="keep the callgrind files under this folder")
    args = parser.parse_args()
    harnesses = args.harness.split(",")
    kinds = args.servers.split(",")
    if set(harnesses) - {"server", "inproc"} or set(kinds) - {"floor", "loopml"}:
        parser.error("--harness takes server,inproc; --servers takes floor,loopml")
    missing = [t for t in ("valgrind", "callgrind_control") if shutil.which(t) is None]
    if missing:
        print(
            f"callgrind.py: {' and '.join(missing)} not found on PATH; this measurement needs "
            "valgrind (e.g. `apt-get install valgrind`). Nothing was measured.",
            file=sys.stderr,
        )
        return 2

    from benchmarks import bench_serving as b

    results: dict[tuple[str, str], tuple[dict[int, int], int, float | None]] = {}
    with tempfile.TemporaryDirectory(prefix="loopml-callgrind-") as tmp:
        root = Path(tmp)
        keep = Path(args.keep) if args.keep else root / "cg"
        workspace = str(root / "ws")
        models = b.train_models(root, args.samples, args.trees, workspace)
        model = next(m for m in models if m.name == args.model)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for harness in harnesses:
            run = measure_server if harness == "server" else measure_inproc
            for kind in kinds:
                out = keep / f"{stamp}-{harness}-{kind}"
                results[(harness, kind)] = run(
                    kind, model, workspace, args.requests, args.concurrency, out
                )
        print_table(results, args)
        if args.keep:
            print(f"callgrind files: {keep}")
    return 0


def print_table(
    results: dict[tuple[str, str], tuple[dict[int, int], int, float | None]],
    args: argparse.Namespace,
) -> None:
    print(
        f"\ncallgrind, instructions (Ir) per request: model {args.model}, "
        f"{args.samples} samples, {args.trees} trees, concurrency {args.concurrency}"
    )
    print("\n| harness | server | requests | thread | Ir/request |")
    print("| --- | --- | --- | --- | --- |")
    for (harness, kind), (counts, n, per_call) in results.items():
        for thread, ir in sorted(counts.items()):
            if ir == 0:
                continue
            name = "1 (main)" if thread == 1 else str(thread)
            print(f"| {harness} | {kind} | {n} | {name} | {ir / n:,.0f} |")
        total = sum(counts.values())
        print(f"| {harness} | {kind} | {n} | all | {total / n:,.0f} |")
        if per_call is not None:
            print(
                f"| {harness} | {kind} | | requests per model call (whole run) | {per_call:.1f} |"
            )
    print()
    for harness in dict.fromkeys(h for h, _ in results):
        floor = results.get((harness, "floor"))
        loopml = results.get((harness, "loopml"))
        if floor is None or loopml is None:
            continue
        floor_all = sum(floor[0].values()) / floor[1]
        main_thread = loopml[0].get(1, 0) / loopml[1]
        loopml_all = sum(loopml[0].values()) / loopml[1]
        print(
            f"{harness}: loopml main thread / floor whole process {main_thread / floor_all:.2f}x"
            f" (loopml all threads {loopml_all / floor_all:.2f}x; background threads are "
            "timer-driven, see the docstring)"
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_serve":
        _child_serve(sys.argv[2:])
    elif len(sys.argv) > 1 and sys.argv[1] == "_inproc":
        kind, ws, name, n, conc, bodies = sys.argv[2:8]
        _child_inproc(kind, ws, name, int(n), int(conc), bodies)
    else:
        sys.exit(main())
