"""PyTorch through loopml against PyTorch (and ONNX Runtime) used directly, in the same run.

Training. A ``make_classification`` frame (default 200,000 x 50) is ingested (not timed),
then ``loopml.train`` (what ``loopml train`` runs) fits ``loopml.train.deep.MLPClassifier``
(hidden [64, 32], one epoch, batch 256, Adam 1e-3, no validation part, one torch thread;
folds 0, a 0.2 holdout, no refit), after an untimed warm-up run on 500 rows (the modules a
first run imports). Two comparisons, each in wall and CPU seconds of this process:

* end to end: ``loopml train`` (reading the dataset version, the feature pipeline of mean
  imputation and standard scaling, the epoch, holdout metrics, report, registration) against
  a plain PyTorch script doing the same job on the same Parquet files: read them with
  pandas, the same stratified holdout rows, mean imputation and standardization with NumPy
  in float32, in place (the training rows' statistics), the epoch on a tensor of that
  array, holdout probabilities and ROC AUC (scikit-learn's ``roc_auc_score``);
* the training loop only: loopml's loop (:func:`loopml.train.deep.loop.fit_network`, timed
  inside that run by wrapping it) against a plain loop: the same network, seed, Adam,
  batches (slices of a random permutation of the rows) and epoch, on the same training rows
  as a float32 tensor.

Each is run ``--repeats`` times (the two whole jobs in alternating order), and the medians
are compared: on a shared machine one round's CPU seconds move by a fifth.

Serving. A CNN (1x8x8 digits, 2 epochs) is registered and ``loopml serve`` runs it in a
subprocess on 127.0.0.1 (its whole job: V2 parsing and validation against the signature,
micro-batching, ids, the prediction log), pinned to one core with ``OMP_NUM_THREADS=1``;
the load generator of ``bench_serving.py`` (keep-alive connections, closed loop) runs in
this process on the other core. Requests are V2 ``/v2/models/cnn/infer`` bodies with one
``FP32`` tensor: one image ``[1, 1, 8, 8]``, or a batch ``[32, 1, 8, 8]``, at concurrency 1
and 32. Peers, on the same images:

* ``floor``: a bare ASGI endpoint (:func:`floor_app` below: orjson, one
  ``InferenceSession.run`` per request, uvicorn with uvloop and httptools, same core and
  threads) around the float32 network in ONNX Runtime, the fairest HTTP floor, as in
  ``bench_serving.py``;
* ONNX Runtime called directly in this process (no HTTP at all), one image per call and 32
  per call: an upper bound no HTTP server reaches on one-image requests.

The server's CPU per request is read from /proc (robust to a busy machine, where req/s is
not).

    python benchmarks/bench_torch.py [--rows 200000] [--features 50] [--seconds 3]
        [--parts train,serve] [--repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

PROJECT = """
name: bench
data: {dataset: bench, target: label}
features: {numeric: {impute: mean, scale: standard}}
model:
  class: loopml.train.deep.MLPClassifier
  params: {hidden: [64, 32], epochs: 1, batch_size: 256, lr: 0.001, validation_fraction: 0.0,
           patience: 0, threads: 1, random_state: 0}
evaluation: {metric: roc_auc, folds: 0, holdout: 0.2, seed: 0, refit: false, bootstrap: 0}
"""


def clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def since(t: tuple[float, float]) -> tuple[float, float]:
    return time.perf_counter() - t[0], time.process_time() - t[1]


@contextlib.contextmanager
def timed_loop(acc: list[tuple[float, float]]) -> Iterator[None]:
    """Wrap :func:`loopml.train.deep.loop.fit_network` (the estimators import it at each fit)
    so that each call's (wall, CPU) seconds land in ``acc``."""
    import importlib

    loop = importlib.import_module("loopml.train.deep.loop")
    inner = loop.fit_network

    def fit_network(*args: Any, **kwargs: Any) -> Any:
        t = clock()
        try:
            return inner(*args, **kwargs)
        finally:
            acc.append(since(t))

    loop.fit_network = fit_network
    try:
        yield
    finally:
        loop.fit_network = inner


def _net(features: int) -> Any:
    import torch

    return torch.nn.Sequential(
        torch.nn.Linear(features, 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 32),
        torch.nn.ReLU(),
        torch.nn.Linear(32, 2),
    )


def plain_loop(xt: np.ndarray, yt: np.ndarray, features: int) -> Any:
    """One epoch of the plain PyTorch loop on float32 ``xt`` and class codes ``yt``."""
    import torch

    torch.manual_seed(0)
    net = _net(features)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    xs, ys = torch.from_numpy(xt), torch.from_numpy(yt)
    gen = torch.Generator().manual_seed(0)
    net.train()
    for batch in torch.randperm(len(xs), generator=gen).split(256):
        opt.zero_grad()
        loss = loss_fn(net(xs[batch]), ys[batch])
        loss.backward()
        opt.step()
    return net.eval()


def plain_script(files: list[Path], features: int) -> float:
    """The whole job as a plain PyTorch script: read, split, impute, scale, train, score.
    Returns the holdout ROC AUC."""
    import pandas as pd
    import torch
    from sklearn.metrics import roc_auc_score

    from loopml.evaluate.split import holdout_indices
    from loopml.project.evaluation import SplitSpec

    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    y = frame["label"].to_numpy()
    x = frame[[f"f{i}" for i in range(features)]].to_numpy(dtype=np.float32)
    # the same stratified split as loopml's (a plain script would call train_test_split)
    tr, ho = holdout_indices(
        pd.Series(y), spec=SplitSpec(), fraction=0.2, task="classification", seed=0
    )

    def scaled(part: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
        missing = np.isnan(part)
        if missing.any():  # mean imputation, in place
            part[missing] = np.take(mean, np.nonzero(missing)[1])
        part -= mean
        part /= std
        return part

    xtr = x[tr]
    mean = np.nanmean(xtr, axis=0, dtype=np.float64).astype(np.float32)
    std = np.nanstd(xtr, axis=0, dtype=np.float64).astype(np.float32)
    std[std == 0] = 1.0
    net = plain_loop(scaled(xtr, mean, std), y[tr].astype(np.int64), features)
    with torch.inference_mode():
        xho = torch.from_numpy(scaled(x[ho], mean, std))
        proba = torch.softmax(net(xho), dim=1)[:, 1].numpy()
    return float(roc_auc_score(y[ho], proba))


def _ratio(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    return a[0] / b[0] if b[0] else float("nan"), a[1] / b[1] if b[1] else float("nan")


def _median(pairs: list[tuple[float, float]]) -> tuple[float, float]:
    return float(np.median([w for w, _ in pairs])), float(np.median([c for _, c in pairs]))


def bench_training(rows: int, features: int, repeats: int = 3) -> dict[str, float]:
    """``repeats`` rounds of ``loopml train`` and the plain script, in alternating order
    (the plain script first in odd rounds), then the loops; medians of each, and the
    ratio of the medians (each round's end-to-end CPU ratio is printed too)."""
    import pandas as pd
    import torch
    from sklearn.datasets import make_classification

    import loopml
    from loopml.evaluate.split import holdout_indices
    from loopml.project.evaluation import SplitSpec

    x, y = make_classification(
        n_samples=rows, n_features=features, n_informative=features // 2, random_state=0
    )
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(features)])
    frame["label"] = y
    loops: list[tuple[float, float]] = []
    ours_runs: list[tuple[float, float]] = []
    peer_runs: list[tuple[float, float]] = []
    before = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "loopml.yaml"
        project.write_text(PROJECT)
        with loopml.init(Path(tmp) / "ws") as ws:
            config = loopml.ProjectConfig.from_file(project)
            # a warm-up run on 500 rows (not timed): the modules a first run imports
            loopml.ingest(ws, frame.head(500), "warm")
            loopml.train(ws, dataclasses.replace(config, name="warm", dataset="warm"))
            loopml.ingest(ws, frame, "bench")
            files = sorted((Path(tmp) / "ws").rglob("datasets/bench/**/*.parquet"))
            if not files:
                raise SystemExit("no Parquet file of dataset bench in the workspace's lake")

            def ours() -> Any:
                # a new model name each round: its first version, with no champion to
                # compare against (the plain script has none)
                run = dataclasses.replace(config, name=f"bench{len(ours_runs)}")
                t = clock()
                with timed_loop(loops):
                    result = loopml.train(ws, run)
                ours_runs.append(since(t))
                return result

            def peer() -> float:
                torch.set_num_threads(1)  # the peer's one thread, as loopml's params say
                try:
                    t = clock()
                    auc = plain_script(files, features)
                    peer_runs.append(since(t))
                    return auc
                finally:
                    torch.set_num_threads(before)

            for i in range(repeats):
                if i % 2:
                    peer_auc = peer()
                    result = ours()
                else:
                    result = ours()
                    peer_auc = peer()
            fit_rows = result.run.metrics["rows"]["train"]
            ours_auc = result.run.metrics["holdout"]["roc_auc"]
            flavor = loopml.load_model(ws, "bench0@1").bundle.flavor
    # the loop alone, on the run's training rows (same seed, same split), standardized
    tr, _ = holdout_indices(
        pd.Series(y), spec=SplitSpec(), fraction=0.2, task="classification", seed=0
    )
    if len(tr) != fit_rows:
        raise SystemExit(f"the run fit {fit_rows} rows, the peer's split has {len(tr)}")
    xt = x[tr]
    xt = ((xt - xt.mean(axis=0)) / xt.std(axis=0)).astype(np.float32)
    yt = y[tr].astype(np.int64)
    peer_loops: list[tuple[float, float]] = []
    torch.set_num_threads(1)
    try:
        for _ in range(repeats):
            t = clock()
            plain_loop(xt, yt, features)
            peer_loops.append(since(t))
    finally:
        torch.set_num_threads(before)
    ours_e2e, peer_e2e = _median(ours_runs), _median(peer_runs)
    ours_loop, peer_loop = _median(loops), _median(peer_loops)
    print(
        f"\nMLP [64, 32], one epoch, {rows:,} x {features} (holdout 0.2: {fit_rows:,} rows fit); "
        f"medians of {repeats} alternating rounds"
    )
    print(f"{'':58} {'wall s':>8} {'CPU s':>8}")
    lines = [
        ("plain PyTorch script (read, split, scale, train, AUC)", peer_e2e, " "),
        ("loopml train (whole run: + report, registration)", ours_e2e, " "),
        ("  loopml / plain, end to end (target <= 1.15x)", _ratio(ours_e2e, peer_e2e), "x"),
        ("plain PyTorch loop (same rows, seed, batches)", peer_loop, " "),
        ("loopml's training loop inside that run", ours_loop, " "),
        ("  loopml / plain, training loop only", _ratio(ours_loop, peer_loop), "x"),
    ]
    for label, (wall, cpu), unit in lines:
        print(f"{label:58} {wall:7.2f}{unit} {cpu:7.2f}{unit}")
    rounds = ", ".join(f"{o[1] / p[1]:.2f}x" for o, p in zip(ours_runs, peer_runs, strict=True))
    print(f"each round, loopml / plain CPU: {rounds}")
    print(f"holdout roc_auc: loopml {ours_auc:.4f} ({flavor}), plain script {peer_auc:.4f}")
    (e2e_wall, e2e_cpu) = _ratio(ours_e2e, peer_e2e)
    (loop_wall, loop_cpu) = _ratio(ours_loop, peer_loop)
    return {"e2e_cpu": e2e_cpu, "e2e_wall": e2e_wall, "loop_cpu": loop_cpu, "loop_wall": loop_wall}


# -- serving --------------------------------------------------------------------------------


def _cnn(ws: Any) -> tuple[Any, np.ndarray]:
    from sklearn.datasets import load_digits

    import loopml
    from loopml.registry import set_alias
    from loopml.train.deep import CNNClassifier

    frame = load_digits(as_frame=True).frame
    frame.columns = [str(c) for c in frame.columns]
    cnn = CNNClassifier(epochs=2, batch_size=128, random_state=0)
    bundle, _ = loopml.fit_bundle(frame, "target", cnn, features={"numeric": {"scale": "none"}})
    mv = loopml.register_model(ws, "cnn", bundle)
    set_alias(ws, "cnn", "champion", mv.version)
    pixels = frame.drop(columns="target").to_numpy(dtype=np.float32)
    return bundle, pixels.reshape(-1, 1, 8, 8)


def _onnx32(bundle: Any) -> bytes:
    """The served network in float32 with its softmax, as ONNX, input ``[n, 1, 8, 8]``."""
    import torch

    from loopml.registry.flavors.torch_nets import Head

    model = bundle.estimator  # TorchModel
    head = Head(model.net.float().eval(), "classification", 0.0, 1.0).eval()

    class Images(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = head

        def forward(self, x: Any) -> Any:
            return self.head(x.reshape(x.shape[0], -1))

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Images().eval(),
            (torch.zeros(2, 1, 8, 8),),
            buf,  # type: ignore[arg-type]
            input_names=["image"],
            output_names=["probabilities"],
            dynamic_axes={"image": {0: "n"}, "probabilities": {0: "n"}},
            dynamo=False,
        )
    return buf.getvalue()


def _rate(fn: Callable[[int], Any], seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds`` (after one warm-up call)."""
    fn(0)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn(n)
        n += 1
    return n / (time.perf_counter() - t0)


def _v2_body(images: np.ndarray) -> bytes:
    import orjson

    shape = [len(images), 1, 8, 8]
    tensor = {"name": "image", "shape": shape, "datatype": "FP32"}
    return orjson.dumps({"inputs": [{**tensor, "data": images.ravel().tolist()}]})


def _start(kind: str, workspace: str, onnx_path: str, core: int | None, logs: Path, bs: Any) -> Any:
    """``loopml serve`` or the floor, as a subprocess on ``core``; a bench_serving Server."""
    import subprocess

    import httpx

    with contextlib.closing(__import__("socket").socket()) as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "BENCH_ONNX": onnx_path,
    }
    path = "/v2/models/cnn/infer"
    if kind == "loopml":
        cmd = [sys.executable, "-m", "loopml", "serve", "-w", workspace, "--port", str(port)]
        cmd += ["-m", "cnn"]
        health = "/v2/health/ready"
    else:
        cmd = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port)]
        cmd += ["--log-level", "warning", "--no-access-log", "--loop", "uvloop"]
        cmd += ["--http", "httptools", "benchmarks.bench_torch:floor_app"]
        health = "/v2/health/ready"

    def proba(doc: dict[str, Any]) -> list[float]:
        out = {o["name"]: o for o in doc["outputs"]}["probabilities"]
        return [float(v) for v in out["data"]]

    log = logs / f"{kind}.log"

    def pin() -> None:
        if core is not None:
            os.sched_setaffinity(0, {core})

    with log.open("wb") as fh:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT, preexec_fn=pin
        )
    server = bs.Server(kind, "cnn", path, _v2_body, proba, proc, port, log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} exited {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{health}", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    bs.stop(server)
    raise RuntimeError(f"{kind} was not ready in 120 s:\n{log.read_text()[-2000:]}")


def _served_proba(server: Any, images: np.ndarray) -> np.ndarray:
    import httpx

    url = f"http://127.0.0.1:{server.port}{server.path}"
    resp = httpx.post(
        url, content=_v2_body(images), headers={"content-type": "application/json"}, timeout=30
    )
    if resp.status_code != 200:
        raise RuntimeError(f"{server.kind} answered {resp.status_code}: {resp.text[:500]}")
    return np.asarray(server.proba(resp.json())).reshape(len(images), -1)


def _bench_serving_module() -> Any:
    sys.path.insert(0, str(HERE))
    try:
        import bench_serving
    finally:
        sys.path.remove(str(HERE))
    return bench_serving


def bench_serving(seconds: float) -> dict[str, float]:
    import onnxruntime as ort
    import torch

    import loopml

    bs = _bench_serving_module()
    torch.set_num_threads(1)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    server_core, load_core = bs.cores()
    results: dict[tuple[str, str, int], dict[str, float]] = {}
    diffs: dict[str, float] = {}
    shapes = (("1 image", 1), ("32 images", 32))
    with tempfile.TemporaryDirectory(prefix="loopml-bench-torch-") as tmp:
        root = Path(tmp)
        workspace = str(root / "ws")
        with loopml.init(workspace) as ws:
            bundle, images = _cnn(ws)
            kind = loopml.load_model(ws, "cnn@1").predictor.kind
        onnx_path = root / "cnn32.onnx"
        onnx_path.write_bytes(_onnx32(bundle))
        sess = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        n = len(images) - 32
        native = bundle.predict_frame(
            __import__("pandas").DataFrame(
                images.reshape(len(images), -1).astype(np.float64), columns=bundle.signature.names
            )
        ).probabilities
        with bs.pinned(load_core):
            direct = {
                1: _rate(lambda i: sess.run(None, {"image": images[i % n : i % n + 1]}), seconds),
                32: 32
                * _rate(lambda i: sess.run(None, {"image": images[i % n : i % n + 32]}), seconds),
            }
        bodies = {
            size: [_v2_body(images[i : i + size]) for i in range(0, n, 7)][:200]
            for _, size in shapes
        }
        for server_kind in ("floor", "loopml"):
            server = _start(server_kind, workspace, str(onnx_path), server_core, root, bs)
            try:
                got = _served_proba(server, images[:64])
                diffs[server_kind] = float(np.abs(got - native[:64]).max())
                with bs.pinned(load_core):
                    for _, size in shapes:
                        for c in (1, 32):
                            results[(server_kind, str(size), c)] = bs.measure(
                                server, bodies[size], c, seconds, 10**9
                            )
            finally:
                bs.stop(server)
    pin = (
        f"servers on core {server_core}, load generator on core {load_core}"
        if server_core is not None
        else "not pinned (fewer than 2 cores)"
    )
    print(
        f"\nCNN (1x8x8 digits, {kind}) over V2 /infer, FP32 tensors; {seconds:g} s per "
        f"measurement; {pin}"
    )
    print(
        f"ONNX Runtime called directly (no HTTP): {direct[1]:,.0f} images/s one per call, "
        f"{direct[32]:,.0f} images/s 32 per call"
    )
    head = (
        f"{'request':<10} {'server':<7} {'conc':>4} {'req/s':>8} {'images/s':>9} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'CPU ms/req':>10} {'vs floor':>8} {'CPU vs floor':>12} "
        f"{'vs ORT direct':>13} {'max |dp|':>9}"
    )
    print(head)
    print("-" * len(head))
    out: dict[str, float] = {}
    for label, size in shapes:
        for c in (1, 32):
            floor = results[("floor", str(size), c)]
            for server_kind in ("floor", "loopml"):
                r = results[(server_kind, str(size), c)]
                img = r["rps"] * size
                vs = r["rps"] / floor["rps"]
                cpu_vs = r["cpu_ms"] / floor["cpu_ms"]
                ort_vs = img / direct[size]
                if r["errors"]:
                    raise SystemExit(f"{server_kind}: {int(r['errors'])} failed requests")
                print(
                    f"{label:<10} {server_kind:<7} {c:>4} {r['rps']:>8.0f} {img:>9.0f} "
                    f"{r['p50']:>7.2f} {r['p99']:>7.2f} {r['cpu_ms']:>10.3f} {vs:>7.2f}x "
                    f"{cpu_vs:>11.2f}x {ort_vs:>12.2f}x {diffs[server_kind]:>9.1e}"
                )
                if server_kind == "loopml":
                    out[f"{size}@{c}"] = vs
    one32 = results[("loopml", "1", 32)]
    many = results[("loopml", "32", 32)]
    many_cpu = many["cpu_ms"] / results[("floor", "32", 32)]["cpu_ms"]
    print(
        f"target: loopml at concurrency 32 (32 images per request) >= 0.67x: "
        f"{out['32@32']:.2f}x the HTTP floor ({'met' if out['32@32'] >= 0.67 else 'not met'}); "
        f"CPU per request {many_cpu:.2f}x the floor's (about 1.49x or less is 0.67x on one core)"
    )
    print(
        f"target: loopml at concurrency 32 (one image per request) >= 0.67x: "
        f"{out['1@32']:.2f}x the HTTP floor ({'met' if out['1@32'] >= 0.67 else 'not met'}), "
        f"{one32['rps'] / direct[1]:.2f}x ORT called directly one image per call, "
        f"{one32['rps'] / direct[32]:.2f}x ORT on 32 images per call"
    )
    return out


# -- the floor server (run by uvicorn in its own process) -------------------------------------


class _Floor:
    session: Any = None
    input = ""


async def _read(receive: Any) -> bytes:
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


async def _answer(send: Any, status: int, payload: bytes) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def floor_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The least a V2 ``/infer`` of this network over JSON costs in Python: orjson, the
    tensor as a float32 array of its shape, one ``InferenceSession.run``, the probabilities
    and labels as V2 outputs. No validation beyond what parsing needs, no ids, no log, no
    batching (``BENCH_ONNX`` names the model)."""
    import orjson

    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                import onnxruntime as ort

                options = ort.SessionOptions()
                options.intra_op_num_threads = 1
                options.inter_op_num_threads = 1
                _Floor.session = ort.InferenceSession(
                    os.environ["BENCH_ONNX"], options, providers=["CPUExecutionProvider"]
                )
                _Floor.input = _Floor.session.get_inputs()[0].name
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if scope["path"] == "/v2/health/ready":
        await _answer(send, 200, b'{"ready":true}')
        return
    try:
        tensor = orjson.loads(await _read(receive))["inputs"][0]
        x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as exc:
        await _answer(send, 400, orjson.dumps({"error": str(exc)}))
        return
    proba = _Floor.session.run(None, {_Floor.input: x})[0]
    doc = {
        "model_name": "cnn",
        "outputs": [
            {
                "name": "label",
                "shape": [len(x)],
                "datatype": "INT64",
                "data": proba.argmax(axis=1).tolist(),
            },
            {
                "name": "probabilities",
                "shape": list(proba.shape),
                "datatype": "FP32",
                "data": proba.ravel().tolist(),
            },
        ],
    }
    await _answer(send, 200, orjson.dumps(doc))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=3.0, help="per serving measurement")
    parser.add_argument("--parts", default="train,serve", help="train, serve or both")
    parser.add_argument("--repeats", type=int, default=3, help="training rounds (medians)")
    args = parser.parse_args()
    parts = args.parts.split(",")
    if "train" in parts:
        bench_training(args.rows, args.features, max(1, args.repeats))
    if "serve" in parts:
        bench_serving(args.seconds)


if __name__ == "__main__":
    main()
