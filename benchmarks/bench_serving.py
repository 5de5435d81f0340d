"""Benchmark `loopml serve` against the tutorial FastAPI app and the ONNX Runtime floor.

One run, the same trained models: a RandomForest of 100 trees and a LightGBM of 100 trees on
``make_classification(20000, 20)``. Servers, each in its own process pinned to one core, with
``OMP_NUM_THREADS=1``:

(a) ``loopml``: ``loopml serve`` (a subprocess) on the registered models, doing its whole job:
    validation against the signature, routing, micro-batching, ids, durable logging of every
    prediction, metrics;
(b) ``tutorial``: the FastAPI app of the guides (joblib model, pydantic body, one
    ``predict_proba`` per request, uvicorn), ``benchmarks/serving_peers/tutorial_app.py``;
(c) ``floor``: a bare ASGI endpoint on ONNX Runtime (the models converted with skl2onnx and
    onnxmltools, orjson, uvicorn with uvloop and httptools, one run per request),
    ``benchmarks/serving_peers/onnx_floor.py``;
(d) with ``--peer-python PYTHON`` (a separate virtual environment holding mlflow and BentoML,
    never a dependency of loopml: ``python -m venv /tmp/peers-venv && /tmp/peers-venv/bin/pip
    install mlflow bentoml scikit-learn==X lightgbm==Y``, the versions of loopml's own
    environment so that the joblib models load): ``mlflow`` (``mlflow models serve`` on the
    model saved by ``benchmarks/serving_peers/mlflow_model.py``) and ``bentoml`` (BentoML with
    adaptive batching, ``benchmarks/serving_peers/bento_service.py``). Without it they are
    skipped with a note.

The load generator runs in this process on another core: asyncio streams with keep-alive
connections sending single-row JSON requests, closed loop (each connection waits for its
answer before sending again), bounded by seconds and by a request count, at concurrency 1 and
32. For each server it prints req/s, p50/p99 latency, the server's CPU per request (utime +
stime from /proc/<pid>/stat over the measurement: robust to a noisy machine, where req/s is
not) and the ratios to the floor. Before measuring, every server's probabilities for a few
hundred rows are checked against the native model's (``predict_proba``) to 1e-6.

    python benchmarks/bench_serving.py [--seconds 10] [--concurrency 1,32] [--quick]
        [--peer-python /tmp/peers-venv/bin/python]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
N_FEATURES = 20
NAMES = [f"f{i}" for i in range(N_FEATURES)]
MODELS = ("forest", "lgbm")
CHECK_ROWS = 200
TOLERANCE = 1e-6
PEERS = ("mlflow", "bentoml")  # run by --peer-python, never loopml's own environment
KINDS = ("floor", "loopml", "tutorial", *PEERS)


# -- the models -----------------------------------------------------------------------------


@dataclass
class Trained:
    name: str
    estimator: Any  # the scikit-learn API model: what the tutorial app loads
    joblib_path: str
    onnx_path: str
    x_check: np.ndarray  # rows every server answers before it is measured
    expected: np.ndarray  # the native model's probabilities for them


def train_models(root: Path, samples: int, trees: int, workspace: str) -> list[Trained]:
    """Fit both models once, register them in a loopml workspace, save them for the peers."""
    import joblib
    import lightgbm as lgb
    import pandas as pd
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    from loopml.features import FeatureSpec, build_transformer, prepare_frame, resolve_kinds
    from loopml.registry import ModelBundle, Signature, register_model, set_alias
    from loopml.registry.flavors import flavor_for
    from loopml.train.fit import sample_rows
    from loopml.workspace import init

    x, y = make_classification(n_samples=samples, n_features=N_FEATURES, random_state=0)
    df = pd.DataFrame(x, columns=NAMES)
    df["target"] = y
    spec = FeatureSpec.from_config({})
    kinds = resolve_kinds(spec, df, "target")
    frame = prepare_frame(df, kinds)
    out: list[Trained] = []
    estimators = {
        "forest": RandomForestClassifier(n_estimators=trees, random_state=0, n_jobs=-1),
        "lgbm": lgb.LGBMClassifier(n_estimators=trees, random_state=0, verbose=-1),
    }
    rng = np.random.default_rng(1)
    x_check = rng.normal(size=(CHECK_ROWS, N_FEATURES)) * x.std(axis=0) + x.mean(axis=0)
    with init(workspace) as ws:
        for name, est in estimators.items():
            ct = build_transformer(spec, kinds, est).fit(frame)
            xt = ct.transform(frame)
            if not np.array_equal(np.asarray(xt, dtype=np.float64), x):
                raise SystemExit(
                    f"loopml's feature pipeline for {name} changes the numbers; the peers, "
                    "which take the raw features, would not serve the same model"
                )
            impl = flavor_for(est)
            _, classes = impl.fit(est, xt, y, "classification")  # fits ``est`` in place
            sig = Signature.from_frame(
                frame, kinds, target="target", task="classification", classes=classes
            )
            bundle = ModelBundle(ct, est, sig, impl.name, sample=sample_rows(frame))
            mv = register_model(ws, name, bundle)
            # a second version of the same model: the hot swap measurement moves to it
            register_model(ws, name, bundle)
            set_alias(ws, name, "champion", mv.version)
            if hasattr(est, "n_jobs"):
                est.set_params(n_jobs=1)  # one core per server
            joblib_path = str(root / f"{name}.joblib")
            joblib.dump(est, joblib_path)
            onnx_path = str(root / f"{name}.onnx")
            Path(onnx_path).write_bytes(to_onnx(est))
            expected = est.predict_proba(x_check)
            out.append(Trained(name, est, joblib_path, onnx_path, x_check, expected))
    return out


def to_onnx(est: Any) -> bytes:
    """The estimator as ONNX, probabilities as a plain tensor (no ZipMap)."""
    if type(est).__module__.startswith("lightgbm"):
        import onnxmltools
        from onnxmltools.convert.common.data_types import FloatTensorType

        model = onnxmltools.convert_lightgbm(
            est,
            initial_types=[("input", FloatTensorType([None, N_FEATURES]))],
            zipmap=False,
            target_opset=15,
        )
    else:
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import DoubleTensorType

        model = convert_sklearn(
            est,
            initial_types=[("input", DoubleTensorType([None, N_FEATURES]))],
            options={id(est): {"zipmap": False}},
            target_opset={"": 17, "ai.onnx.ml": 3},
        )
    return bytes(model.SerializeToString())


# -- the servers ----------------------------------------------------------------------------


@dataclass
class Server:
    kind: str
    model: str
    path: str  # the predict route
    body: Callable[[np.ndarray], bytes]  # one row -> the request body
    proba: Callable[[dict[str, Any]], list[float]]  # the answer -> P(class 0), P(class 1)
    proc: subprocess.Popen[bytes]
    port: int
    log: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pin(core: int | None) -> Callable[[], None] | None:
    if core is None:
        return None

    def pin() -> None:
        os.sched_setaffinity(0, {core})

    return pin


def _row(x: np.ndarray) -> dict[str, float]:
    return {name: float(v) for name, v in zip(NAMES, x.tolist(), strict=True)}


def _peer_bin(peer_python: str | None, tool: str) -> str:
    if not peer_python:
        raise RuntimeError(f"the {tool} peer needs --peer-python")
    return str(Path(peer_python).parent / tool)


def start(
    kind: str,
    model: Trained,
    workspace: str,
    core: int | None,
    logs: Path,
    peer_python: str | None = None,
) -> Server:
    port = _free_port()
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "BENCH_FEATURES": str(N_FEATURES),
        "BENCH_MODEL": model.joblib_path,
        "BENCH_ONNX": model.onnx_path,
    }
    uvicorn = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port)]
    quiet = ["--log-level", "warning", "--no-access-log"]
    health = "/health"
    if kind in PEERS and peer_python:  # they start their own tools (uvicorn) from PATH
        env["PATH"] = str(Path(peer_python).parent) + os.pathsep + env.get("PATH", "")
    if kind == "loopml":
        cmd = [sys.executable, "-m", "loopml", "serve", "-w", workspace, "--port", str(port)]
        cmd += ["-m", model.name]
        health = "/v2/health/ready"
        path = f"/v1/models/{model.name}:predict"

        def body(x: np.ndarray) -> bytes:
            return orjson.dumps({"instances": [_row(x)]})

        def proba(doc: dict[str, Any]) -> list[float]:
            p = doc["predictions"][0]["probabilities"]
            return [float(p["0"]), float(p["1"])]

    elif kind == "tutorial":
        cmd = [*uvicorn, *quiet, "benchmarks.serving_peers.tutorial_app:app"]
        path = "/predict"

        def body(x: np.ndarray) -> bytes:
            return orjson.dumps(_row(x))

        def proba(doc: dict[str, Any]) -> list[float]:
            return [float(v) for v in doc["probabilities"]]

    elif kind == "mlflow":
        saved = logs / f"mlflow-{model.name}"
        if not saved.exists():
            made = subprocess.run(
                [
                    str(peer_python),
                    str(HERE / "serving_peers" / "mlflow_model.py"),
                    model.joblib_path,
                    str(saved),
                ],
                check=False,
                env={**env, "PYTHONPATH": ""},
                capture_output=True,
                text=True,
            )
            if made.returncode != 0:
                raise RuntimeError(f"mlflow_model.py failed:\n{made.stderr[-2000:]}")
        cmd = [_peer_bin(peer_python, "mlflow"), "models", "serve", "-m", str(saved)]
        cmd += ["-h", "127.0.0.1", "-p", str(port), "--env-manager", "local", "-w", "1"]
        health = "/ping"
        path = "/invocations"

        def body(x: np.ndarray) -> bytes:
            return orjson.dumps({"dataframe_split": {"columns": NAMES, "data": [x.tolist()]}})

        def proba(doc: dict[str, Any]) -> list[float]:
            return [float(v) for v in doc["predictions"][0]]

    elif kind == "bentoml":
        env["BENTOML_HOME"] = str(logs / "bentoml-home")
        env["BENTOML_DO_NOT_TRACK"] = "True"
        cmd = [_peer_bin(peer_python, "bentoml"), "serve"]
        cmd += ["benchmarks.serving_peers.bento_service:Model", "--host", "127.0.0.1"]
        cmd += ["--port", str(port)]
        health = "/readyz"
        path = "/predict"

        def body(x: np.ndarray) -> bytes:
            return orjson.dumps({"instances": [x.tolist()]})

        def proba(doc: Any) -> list[float]:
            return [float(v) for v in doc[0]]

    else:
        cmd = [*uvicorn, *quiet, "--loop", "uvloop", "--http", "httptools"]
        cmd += ["benchmarks.serving_peers.onnx_floor:app"]
        path = "/predict"

        def body(x: np.ndarray) -> bytes:
            return orjson.dumps({"instances": [_row(x)]})

        def proba(doc: dict[str, Any]) -> list[float]:
            return [float(v) for v in doc["probabilities"][0]]

    log = logs / f"{kind}-{model.name}.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            preexec_fn=_pin(core),
            # the peers start server processes of their own: one group, stopped together
            start_new_session=kind in PEERS,
        )
    server = Server(kind, model.name, path, body, proba, proc, port, log)
    wait = 300 if kind in PEERS else 120  # the peers start slowly on a busy machine
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{kind} server exited {proc.returncode}:\n{log.read_text()[-2000:]}"
            )
        try:
            if httpx.get(f"http://127.0.0.1:{port}{health}", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    stop(server)
    raise RuntimeError(f"{kind} server was not ready in {wait} s:\n{log.read_text()[-2000:]}")


def stop(server: Server) -> None:
    group = server.kind in PEERS  # its own session: signal the processes it started too

    def signal_it(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(server.proc.pid, sig)
            else:
                server.proc.send_signal(sig)

    signal_it(signal.SIGTERM)
    try:
        server.proc.wait(20)
    except subprocess.TimeoutExpired:
        signal_it(signal.SIGKILL)
        server.proc.wait(5)
    if group:  # what is left of the group once its leader is gone
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.proc.pid, signal.SIGKILL)


def check(server: Server, model: Trained) -> float:
    """The largest difference between the server's probabilities and the native model's."""
    worst = 0.0
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=30) as client:
        for x, want in zip(model.x_check, model.expected, strict=True):
            resp = client.post(
                server.path, content=server.body(x), headers={"content-type": "application/json"}
            )
            if resp.status_code != 200:
                raise RuntimeError(f"{server.kind} answered {resp.status_code}: {resp.text}")
            got = np.array(server.proba(resp.json()))
            worst = max(worst, float(np.abs(got - want).max()))
    return worst


def cpu_seconds(pid: int) -> float:
    """utime + stime so far of a process and its children (``--workers`` processes), in
    seconds (fields 14 and 15 of proc(5)'s stat; the parent is field 4)."""
    stats: dict[int, tuple[int, int]] = {}  # pid -> (parent, ticks)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        stats[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    tree = {pid}
    grew = True
    while grew:
        more = {p for p, (parent, _) in stats.items() if parent in tree} - tree
        grew = bool(more)
        tree |= more
    ticks = sum(stats[p][1] for p in tree if p in stats)
    return ticks / os.sysconf("SC_CLK_TCK")


# -- the load generator ---------------------------------------------------------------------


@dataclass
class Load:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    sent: int = 0


async def _response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = None
    for line in lines[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length is None:
        raise RuntimeError("a response without Content-Length")
    await reader.readexactly(length)
    return status


async def _connection(
    port: int, requests: list[bytes], start: int, load: Load, budget: int, deadline: float
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    i = start
    try:
        while load.sent < budget and time.perf_counter() < deadline:
            load.sent += 1
            request = requests[i % len(requests)]
            i += 1
            t0 = time.perf_counter()
            writer.write(request)
            status = await _response(reader)
            load.latencies.append(time.perf_counter() - t0)
            if status != 200:
                load.errors += 1
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def drive(
    server: Server, bodies: list[bytes], concurrency: int, seconds: float, budget: int
) -> tuple[Load, float]:
    """Closed-loop load at ``concurrency``; (what happened, elapsed seconds)."""
    requests = [
        (
            f"POST {server.path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(b)}\r\n\r\n"
        ).encode()
        + b
        for b in bodies
    ]
    load = Load()

    async def main() -> float:
        deadline = time.perf_counter() + seconds
        t0 = time.perf_counter()
        await asyncio.gather(
            *(
                _connection(server.port, requests, k * 7, load, budget, deadline)
                for k in range(concurrency)
            )
        )
        return time.perf_counter() - t0

    try:
        import uvloop

        elapsed = uvloop.run(main())
    except ImportError:
        elapsed = asyncio.run(main())
    return load, elapsed


def measure(
    server: Server, bodies: list[bytes], concurrency: int, seconds: float, budget: int
) -> dict[str, float]:
    drive(server, bodies, concurrency, min(1.0, seconds / 4), max(50, budget // 20))  # warm up
    cpu0 = cpu_seconds(server.proc.pid)
    load, elapsed = drive(server, bodies, concurrency, seconds, budget)
    cpu = cpu_seconds(server.proc.pid) - cpu0
    lat = np.array(load.latencies) * 1000.0
    n = len(lat)
    return {
        "requests": float(n),
        "rps": n / elapsed,
        "p50": float(np.percentile(lat, 50)) if n else float("nan"),
        "p99": float(np.percentile(lat, 99)) if n else float("nan"),
        "cpu_ms": cpu * 1000.0 / n if n else float("nan"),
        "errors": float(load.errors),
    }


# -- memory during a hot swap ----------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (VmRSS of proc(5)'s status), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def descendants(pid: int) -> list[int]:
    """The processes ``pid`` started, and theirs (proc(5)'s task/*/children)."""
    out: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                kids = [int(k) for k in task.read_text().split()]
            except OSError:  # the task ended
                continue
            out.extend(kids)
            todo.extend(kids)
    return out


def children_rss_bytes(pid: int) -> int:
    total = 0
    for child in descendants(pid):
        try:
            total += rss_bytes(child)
        except OSError:  # it ended meanwhile
            pass
    return total


def swap_memory(server: Server, model: Trained, workspace: str, bodies: list[bytes]) -> dict:
    """Move the model's champion alias to its other version under light load (4
    connections), sampling the server's RSS every 5 ms: before, peak during, after (once the
    new version answers and the old one is unloaded), and the requests that failed.

    The alias is moved from Python without compiling (``set_alias``), so the server meets a
    version it has never seen compiled: it compiles it in a separate process
    (:mod:`loopml.registry.compile_worker`), whose peak RSS is reported apart
    (``child_peak_mb``); the latency of the requests answered meanwhile is reported too."""
    import threading

    from loopml.registry import set_alias
    from loopml.workspace import open_workspace

    def version() -> str:
        r = httpx.post(
            f"http://127.0.0.1:{server.port}{server.path}",
            content=bodies[0],
            headers={"content-type": "application/json"},
            timeout=10,
        )
        return r.headers.get("x-loopml-version", "")

    current = version()
    target = 2 if current == "1" else 1
    samples: list[int] = []
    child_samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(rss_bytes(server.proc.pid))
            child_samples.append(children_rss_bytes(server.proc.pid))
            time.sleep(0.005)

    load = Load()
    result: dict[str, float] = {}
    sampler = threading.Thread(target=sample, daemon=True)
    before = rss_bytes(server.proc.pid)
    sampler.start()
    driving = threading.Event()

    def load_until_stopped() -> None:
        while not driving.is_set():
            drive_into(server, bodies, 4, 0.5, load)

    driver = threading.Thread(target=load_until_stopped, daemon=True)
    driver.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    with open_workspace(workspace) as ws:
        set_alias(ws, model.name, "champion", target)
    while version() != str(target) and time.monotonic() - t0 < 300:
        time.sleep(0.05)
    result["swap_s"] = time.monotonic() - t0
    time.sleep(1.5)  # the old version finishes its last requests and is dropped
    driving.set()
    stop.set()
    sampler.join()
    driver.join()
    after = rss_bytes(server.proc.pid)
    result.update(
        before_mb=before / 2**20,
        peak_mb=max(samples, default=before) / 2**20,
        child_peak_mb=max(child_samples, default=0) / 2**20,
        after_mb=after / 2**20,
        p50_ms=float(np.percentile(load.latencies, 50)) * 1000 if load.latencies else 0.0,
        p99_ms=float(np.percentile(load.latencies, 99)) * 1000 if load.latencies else 0.0,
        max_ms=max(load.latencies, default=0.0) * 1000,
        errors=float(load.errors),
        requests=float(len(load.latencies)),
    )
    return result


def drive_into(
    server: Server, bodies: list[bytes], concurrency: int, seconds: float, load: Load
) -> None:
    """:func:`drive` accumulating into ``load`` (for a thread)."""
    got, _ = drive(server, bodies, concurrency, seconds, 10**9)
    load.latencies.extend(got.latencies)
    load.errors += got.errors


# -- the run --------------------------------------------------------------------------------


def cores() -> tuple[int | None, int | None]:
    """(the servers' core, the load generator's core), or Nones where pinning is not possible."""
    try:
        available = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return None, None
    if len(available) < 2:
        return None, None
    return available[0], available[1]


def peers_available(peer_python: str | None) -> tuple[list[str], list[str]]:
    """(the peers ``peer_python`` can run, a note for each one it cannot)."""
    found: list[str] = []
    notes: list[str] = []
    for kind, what in (("mlflow", "mlflow models serve"), ("bentoml", "BentoML")):
        if not peer_python:
            notes.append(
                f"{what}: skipped (give --peer-python, a separate venv with {kind} installed)"
            )
            continue
        probe = subprocess.run(
            [peer_python, "-c", f"import {kind}"], capture_output=True, check=False
        )
        if probe.returncode == 0 and Path(_peer_bin(peer_python, kind)).exists():
            found.append(kind)
        else:
            notes.append(f"{what}: skipped ({kind} is not installed for {peer_python})")
    return found, notes


@contextlib.contextmanager
def pinned(core: int | None) -> Iterator[None]:
    if core is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    parser.add_argument("--requests", type=int, default=100_000, help="cap per measurement")
    parser.add_argument("--concurrency", default="1,32")
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument(
        "--servers",
        default=None,
        help="comma-separated: floor, loopml, tutorial, mlflow, bentoml [default: floor,loopml,"
        "tutorial, and mlflow,bentoml with --peer-python]",
    )
    parser.add_argument(
        "--peer-python",
        default=None,
        help="the Python of a separate venv holding mlflow and BentoML (never required)",
    )
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes, for the smoke test (seconds)"
    )
    parser.add_argument(
        "--no-swap", action="store_true", help="skip measuring memory during a hot swap"
    )
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.requests, args.samples, args.trees = 0.5, 300, 2000, 5
        args.concurrency = "1,4"
    concurrency = [int(c) for c in args.concurrency.split(",")]
    peers, peer_notes = peers_available(args.peer_python)
    kinds = args.servers.split(",") if args.servers else ["floor", "loopml", "tutorial", *peers]
    for kind in kinds:
        if kind not in KINDS:
            parser.error(f"--servers: unknown server {kind!r}; use {', '.join(KINDS)}")
    skipped = [k for k in kinds if k in PEERS and k not in peers]
    kinds = [k for k in kinds if k not in skipped]
    server_core, load_core = cores()
    results: dict[tuple[str, str, int], dict[str, float]] = {}
    diffs: dict[tuple[str, str], float] = {}
    swaps: dict[str, dict[str, float]] = {}
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="loopml-bench-serving-") as tmp:
        root = Path(tmp)
        workspace = str(root / "ws")
        models = [
            m
            for m in train_models(root, args.samples, args.trees, workspace)
            if m.name in args.models.split(",")
        ]
        for model in models:
            bodies_by_kind: dict[str, list[bytes]] = {}
            rows = model.x_check
            for kind in kinds:
                try:
                    server = start(kind, model, workspace, server_core, root, args.peer_python)
                except (RuntimeError, OSError) as exc:
                    if kind not in PEERS:
                        raise
                    # an optional peer that does not start is a note, not a failed run
                    peer_notes.append(f"{kind} {model.name}: did not start ({exc})"[:600])
                    continue
                try:
                    diffs[(kind, model.name)] = check(server, model)
                    if diffs[(kind, model.name)] > TOLERANCE:
                        failed.append(f"{kind} {model.name}: probabilities differ")
                    bodies = bodies_by_kind.setdefault(kind, [server.body(x) for x in rows])
                    with pinned(load_core):
                        for c in concurrency:
                            results[(kind, model.name, c)] = measure(
                                server, bodies, c, args.seconds, args.requests
                            )
                        if kind == "loopml" and not args.no_swap:
                            swaps[model.name] = swap_memory(server, model, workspace, bodies)
                finally:
                    stop(server)
    print_table(results, diffs, models, kinds, concurrency, server_core, load_core, args)
    for name, swap in swaps.items():
        print(
            f"hot swap {name}: RSS before {swap['before_mb']:.0f} MiB, peak during "
            f"{swap['peak_mb']:.0f} MiB (+{swap['peak_mb'] - swap['before_mb']:.0f}), after "
            f"{swap['after_mb']:.0f} MiB; compiling process peak {swap['child_peak_mb']:.0f} MiB; "
            f"new version answering after {swap['swap_s']:.2f} s; "
            f"{int(swap['errors'])} failed of {int(swap['requests'])} requests during it "
            f"(p50 {swap['p50_ms']:.1f} ms, p99 {swap['p99_ms']:.1f} ms, "
            f"max {swap['max_ms']:.0f} ms)"
        )
        if swap["errors"]:
            failed.append(f"hot swap {name}: {int(swap['errors'])} failed requests")
    for note in peer_notes:
        print(f"note: {note}")
    if failed:
        print("FAILED: " + "; ".join(failed))
        return 1
    return 0


def print_table(
    results: dict[tuple[str, str, int], dict[str, float]],
    diffs: dict[tuple[str, str], float],
    models: list[Trained],
    kinds: list[str],
    concurrency: list[int],
    server_core: int | None,
    load_core: int | None,
    args: argparse.Namespace,
) -> None:
    pin = (
        f"server on core {server_core}, load generator on core {load_core}"
        if server_core is not None
        else "not pinned (fewer than 2 cores)"
    )
    print(
        f"\nbench_serving: RandomForest and LightGBM of {args.trees} trees on "
        f"make_classification({args.samples}, {N_FEATURES}); single-row JSON requests, "
        f"closed loop, {args.seconds:g} s per measurement; {os.cpu_count()} CPUs, {pin}"
    )
    header = (
        f"{'model':<7} {'server':<9} {'conc':>4} {'requests':>8} {'req/s':>8} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'CPU ms/req':>10} {'busy':>5} {'vs floor':>8} {'CPU vs floor':>12} "
        f"{'errors':>6} {'max |dp|':>9}"
    )
    print(header)
    print("-" * len(header))
    for model in models:
        for c in concurrency:
            floor = results.get(("floor", model.name, c))
            for kind in kinds:
                r = results.get((kind, model.name, c))
                if r is None:
                    continue
                vs = r["rps"] / floor["rps"] if floor else float("nan")
                cpu_vs = (
                    r["cpu_ms"] / floor["cpu_ms"] if floor and floor["cpu_ms"] else float("nan")
                )
                # the share of one core the server used: below 100 % at 32 connections, it
                # waited for the load generator (client and server taking turns)
                busy = r["rps"] * r["cpu_ms"] / 1000.0
                print(
                    f"{model.name:<7} {kind:<9} {c:>4} {int(r['requests']):>8} {r['rps']:>8.0f} "
                    f"{r['p50']:>7.2f} {r['p99']:>7.2f} {r['cpu_ms']:>10.3f} {busy:>5.0%} "
                    f"{vs:>7.2f}x {cpu_vs:>11.2f}x {int(r['errors']):>6} "
                    f"{diffs[(kind, model.name)]:>9.1e}"
                )
    top = max(concurrency)
    for model in models:
        lo = results.get(("loopml", model.name, top))
        for peer in ("tutorial", *PEERS):
            other = results.get((peer, model.name, top))
            if lo and other and other["rps"]:
                print(
                    f"{model.name}: loopml at concurrency {top} answers "
                    f"{lo['rps'] / other['rps']:.1f}x {peer}'s req/s"
                )
    for model in models:
        lo = results.get(("loopml", model.name, top))
        fl = results.get(("floor", model.name, top))
        one = results.get(("loopml", model.name, min(concurrency)))
        if lo and fl:
            ratio = lo["rps"] / fl["rps"]
            print(
                f"target {model.name}: loopml at concurrency {top} >= 0.67x the floor: "
                f"{ratio:.2f}x ({'met' if ratio >= 0.67 else 'not met'})"
            )
        if one:
            print(
                f"target {model.name}: loopml p50 at concurrency {min(concurrency)} < 1 ms: "
                f"{one['p50']:.2f} ms ({'met' if one['p50'] < 1.0 else 'not met'})"
            )


if __name__ == "__main__":
    sys.exit(main())
