"""PyTorch through loopml against PyTorch (and ONNX Runtime) called directly.

Training: a ``make_classification`` frame (default 200,000 x 50) is ingested (not timed),
then ``loopml train`` fits ``loopml.train.deep.MLPClassifier`` (hidden [64, 32], one epoch,
batch 256, Adam 1e-3, no validation part, one torch thread; folds 0, a 0.2 holdout, no
refit), with the feature pipeline (mean imputation and standard scaling: a median imputer,
scikit-learn's, alone costs about as much as the epoch at this size), holdout metrics,
report and registration included. The
peer is a plain PyTorch loop: the same network, seed, optimizer, batches and epoch on the
same training rows (the run's training part, standardized as loopml's pipeline does), as a
float32 tensor. Both are timed in wall seconds and CPU seconds of this process, after an
untimed warm-up run of ``loopml train`` on 500 rows (the modules a first run imports).

Serving: a CNN (1x8x8 digits, 2 epochs) is registered and served by ``create_app`` in this
process; requests go through the ASGI app (httpx's ASGITransport, no sockets) as V2 image
tensors: one image per request, one after another, then 32 concurrent clients of one image
each (the micro-batcher groups them), for ``--seconds`` each. The peers are called directly
on the same images: the torch network (double, what loopml serves) and ONNX Runtime on the
network exported in float32 (ORT has no double Conv; its outputs agree with loopml's to the
tolerance printed). loopml's server runs the version's compiled predictor (the float32 CNN
in ONNX Runtime, checked to 1e-5; its kind is printed) behind the V2 parsing, validation,
micro-batching and JSON answer: the gap to the peers is that per-request path. torch and
ORT run one intra-op thread each (``torch.set_num_threads(1)``, process-wide, so loopml's
server too).

    python benchmarks/bench_torch.py [--rows 200000] [--features 50] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import io
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.datasets import load_digits, make_classification

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


def bench_training(rows: int, features: int) -> None:
    import torch

    import loopml
    from loopml.train.deep.loop import split_rows

    x, y = make_classification(
        n_samples=rows, n_features=features, n_informative=features // 2, random_state=0
    )
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(features)])
    frame["label"] = y
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "loopml.yaml"
        project.write_text(PROJECT)
        with loopml.init(Path(tmp) / "ws") as ws:
            config = loopml.ProjectConfig.from_file(project)
            # a warm-up run on 500 rows (not timed): the modules a first run imports
            loopml.ingest(ws, frame.head(500), "warm")
            loopml.train(ws, dataclasses.replace(config, name="warm", dataset="warm"))
            loopml.ingest(ws, frame, "bench")
            t = clock()
            result = loopml.train(ws, config)
            ours = since(t)
            fit_rows = result.run.metrics["rows"]["train"]
            bundle = loopml.load_model(ws, "bench@1").bundle
            # the run's training rows: every row not in its holdout (same seed, same split)
            from loopml.evaluate.split import holdout_indices
            from loopml.project.evaluation import SplitSpec

            tr, _ = holdout_indices(
                pd.Series(y), spec=SplitSpec(), fraction=0.2, task="classification", seed=0
            )
    assert len(tr) == fit_rows
    xt = x[tr]
    xt = ((xt - xt.mean(axis=0)) / xt.std(axis=0)).astype(np.float32)
    yt = y[tr].astype(np.int64)
    t = clock()
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        net = torch.nn.Sequential(
            torch.nn.Linear(features, 64),
            torch.nn.ReLU(),
            torch.nn.Linear(64, 32),
            torch.nn.ReLU(),
            torch.nn.Linear(32, 2),
        )
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        loss_fn = torch.nn.CrossEntropyLoss()
        xs, ys = torch.from_numpy(xt), torch.from_numpy(yt)
        order = torch.from_numpy(split_rows(len(xs), 0.0, 0)[0])
        gen = torch.Generator().manual_seed(0)
        net.train()
        for batch in order[torch.randperm(len(order), generator=gen)].split(256):
            opt.zero_grad()
            loss = loss_fn(net(xs[batch]), ys[batch])
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(before)
    peer = since(t)
    print(f"\nMLP [64, 32], one epoch, {rows:,} x {features} (holdout 0.2: {fit_rows:,} rows fit)")
    print(f"{'':48} {'wall s':>8} {'CPU s':>8}")
    print(f"{'plain PyTorch loop (same rows, seed, batches)':48} {peer[0]:8.2f} {peer[1]:8.2f}")
    print(f"{'loopml train (pipeline, holdout, registration)':48} {ours[0]:8.2f} {ours[1]:8.2f}")
    print(f"{'ratio (target <= 1.15x)':48} {ours[0] / peer[0]:7.2f}x {ours[1] / peer[1]:7.2f}x")
    print(f"holdout roc_auc {result.run.metrics['holdout']['roc_auc']:.4f}; flavor {bundle.flavor}")


def _cnn(ws: Any) -> tuple[Any, np.ndarray]:
    import loopml
    from loopml.train.deep import CNNClassifier

    frame = load_digits(as_frame=True).frame
    frame.columns = [str(c) for c in frame.columns]
    cnn = CNNClassifier(epochs=2, batch_size=128, random_state=0)
    bundle, _ = loopml.fit_bundle(frame, "target", cnn, features={"numeric": {"scale": "none"}})
    loopml.register_model(ws, "cnn", bundle)
    pixels = frame.drop(columns="target").to_numpy(dtype=np.float32)
    return bundle, pixels.reshape(-1, 1, 8, 8)


def _rate(fn: Any, seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds`` (after one warm-up call)."""
    fn(0)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn(n)
        n += 1
    return n / (time.perf_counter() - t0)


async def _served_rates(app: Any, images: np.ndarray, seconds: float) -> tuple[float, float]:
    import httpx

    def body(i: int) -> dict[str, Any]:
        img = images[i % len(images)]
        tensor = {"name": "image", "shape": [1, 1, 8, 8], "datatype": "FP32"}
        return {"inputs": [{**tensor, "data": img.ravel().tolist()}]}

    url = "/v2/models/cnn/infer"
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            (await client.post(url, json=body(0))).raise_for_status()
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                (await client.post(url, json=body(n))).raise_for_status()
                n += 1
            single = n / (time.perf_counter() - t0)
            done = 0
            stop = time.perf_counter() + seconds

            async def worker(w: int) -> None:
                nonlocal done
                i = w
                while time.perf_counter() < stop:
                    (await client.post(url, json=body(i))).raise_for_status()
                    done += 1
                    i += 32

            t0 = time.perf_counter()
            await asyncio.gather(*(worker(w) for w in range(32)))
            concurrent = done / (time.perf_counter() - t0)
    return single, concurrent


def bench_serving(seconds: float) -> None:
    import onnxruntime as ort
    import torch

    import loopml
    from loopml.serve import create_app

    torch.set_num_threads(1)  # both sides: one intra-op thread (a tiny network, 2 cores)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    with tempfile.TemporaryDirectory() as tmp, loopml.init(Path(tmp) / "ws") as ws:
        bundle, images = _cnn(ws)
        model = bundle.estimator  # TorchModel
        head = model.head()  # what loopml serves: the network in double
        from loopml.registry.flavors.torch_nets import Head

        net32 = Head(  # the float32 network with its softmax, for ORT
            model.net.float().eval(), "classification", 0.0, 1.0
        ).eval()
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                net32,
                (torch.zeros(2, 64),),
                buf,  # type: ignore[arg-type]
                input_names=["x"],
                output_names=["y"],
                dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
                dynamo=False,
            )
        sess = ort.InferenceSession(buf.getvalue(), options, providers=["CPUExecutionProvider"])
        flat32 = images.reshape(len(images), -1)
        ours = bundle.predict_frame(
            pd.DataFrame(flat32.astype(np.float64), columns=bundle.signature.names)
        )
        theirs = sess.run(["y"], {"x": flat32})[0]
        tol = float(np.abs(theirs - ours.probabilities).max())

        def torch_one(i: int) -> None:
            with torch.inference_mode():
                head(torch.from_numpy(flat32[i % len(flat32)][None, :].astype(np.float64)))

        def ort_one(i: int) -> None:
            sess.run(["y"], {"x": flat32[i % len(flat32)][None, :]})

        def torch_32(i: int) -> None:
            j = (i * 32) % (len(flat32) - 32)
            with torch.inference_mode():
                head(torch.from_numpy(flat32[j : j + 32].astype(np.float64)))

        def ort_32(i: int) -> None:
            j = (i * 32) % (len(flat32) - 32)
            sess.run(["y"], {"x": flat32[j : j + 32]})

        rates = {
            "torch1": _rate(torch_one, seconds),
            "ort1": _rate(ort_one, seconds),
            "torch32": 32 * _rate(torch_32, seconds),
            "ort32": 32 * _rate(ort_32, seconds),
        }
        kind = loopml.load_model(ws, "cnn@1").predictor.kind  # what the server predicts with
        app = create_app(ws, models={"cnn": "cnn@1"}, reload_interval=0, log_predictions=False)
        single, concurrent = asyncio.run(_served_rates(app, images, seconds))
    head_line = f"ORT float32 agrees to {tol:.1e}"
    print(f"\nCNN (1x8x8 digits) images per second, {seconds:g} s each; {head_line}")
    print(f"{'':44} {'1 at a time':>12} {'32 at once':>12}")
    table = [
        ("ONNX Runtime called directly (float32)", rates["ort1"], rates["ort32"]),
        ("torch called directly (double)", rates["torch1"], rates["torch32"]),
        (f"loopml server, V2 tensors ({kind})", single, concurrent),
    ]
    for label, one, many in table:
        print(f"{label:44} {one:12.0f} {many:12.0f}")
    print(
        f"{'loopml / ONNX Runtime (target >= 0.67x at 32)':44} {single / rates['ort1']:11.2f}x "
        f"{concurrent / rates['ort32']:11.2f}x"
    )
    print(
        f"{'loopml / torch':44} {single / rates['torch1']:11.2f}x "
        f"{concurrent / rates['torch32']:11.2f}x"
    )
    print("(32 at once: 32 concurrent one-image requests for loopml; one 32-image call for peers)")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=3.0, help="per serving measurement")
    args = parser.parse_args()
    bench_training(args.rows, args.features)
    bench_serving(args.seconds)


if __name__ == "__main__":
    main()
