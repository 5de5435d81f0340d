"""A small CNN on images, trained from ``loopml.yaml``, registered, served, and sent images
as V2 tensors through ``/v2/models/images/infer``.

python examples/images/run.py [WORKSPACE] [--quick]

The images are Fashion-MNIST (28x28) when the Debian package ``dataset-fashion-mnist`` is
installed (its IDX files, found with ``dpkg -L``), else scikit-learn's 8x8 digits. The last
200 images are kept out of the lake; the rest are ingested as pixel columns and trained on.
The kept images then go to the server as one ``FP32`` tensor ``[200, 1, H, W]``, checked
against the shape the version's CNN declares. ``--quick`` trains on fewer images and epochs
(for the tests). The last line printed is one JSON object with the headline figures.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import loopml
from loopml.serve import create_app

HERE = Path(__file__).parent
KEPT = 200  # images sent over HTTP, never ingested


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzipped): big-endian dims after a magic of 0, 0, type, rank."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise SystemExit(f"{path} is not an IDX file of unsigned bytes")
    rank = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * rank)
    return data.reshape(dims)


def fashion_mnist() -> tuple[np.ndarray, np.ndarray] | None:
    """Fashion-MNIST's training images and labels from the Debian package, if installed."""
    try:
        listed = subprocess.run(
            ["dpkg", "-L", "dataset-fashion-mnist"], capture_output=True, text=True, check=False
        )
    except OSError:
        return None
    if listed.returncode != 0:
        return None
    files = [Path(line) for line in listed.stdout.splitlines() if "idx" in line]
    images = [f for f in files if "train-images" in f.name and f.is_file()]
    labels = [f for f in files if "train-labels" in f.name and f.is_file()]
    if not images or not labels:
        return None
    return read_idx(images[0]).astype(np.float32) / 255.0, read_idx(labels[0]).astype(np.int64)


def load_images(quick: bool) -> tuple[str, np.ndarray, np.ndarray]:
    """(name, images [n, 1, H, W] float32, labels)."""
    found = fashion_mnist()
    if found is not None:
        x, y = found
        n = 6000 if quick else 20000
        return "fashion-mnist", x[:n, None, :, :], y[:n]
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    return "digits", x, digits.target.astype(np.int64)


def main(workspace: str, quick: bool = False) -> dict[str, Any]:
    name, images, labels = load_images(quick)
    n, _, height, width = images.shape
    order = np.random.default_rng(0).permutation(n)
    images, labels = images[order], labels[order]
    columns = [f"p{i}" for i in range(height * width)]
    frame = pd.DataFrame(images[:-KEPT].reshape(n - KEPT, -1), columns=columns)
    frame["label"] = labels[:-KEPT]
    config = loopml.ProjectConfig.from_file(HERE / "loopml.yaml")
    params = {**config.model.params, "height": height, "width": width}
    if quick:
        params["epochs"] = 4
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, params=params))
    with loopml.init(workspace) as ws:
        loopml.ingest(ws, frame, "images")
        result = loopml.train(ws, config)
        if not result.passed:
            raise SystemExit(f"the gate failed: {result.reason}")
        model = loopml.load_model(ws, "images")
        kept, truth = images[-KEPT:], labels[-KEPT:]
        local = model.predict(pd.DataFrame(kept.reshape(KEPT, -1), columns=columns)).labels
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # starlette's notice about httpx
            from starlette.testclient import TestClient
        app = create_app(ws, reload_interval=0, log_predictions=False)
        tensor = {
            "name": "image",
            "shape": [KEPT, 1, height, width],
            "datatype": "FP32",
            "data": kept.ravel().tolist(),
        }
        with TestClient(app, base_url="http://127.0.0.1") as client:
            answer = client.post("/v2/models/images/infer", json={"inputs": [tensor]})
            answer.raise_for_status()
            wrong = client.post(
                "/v2/models/images/infer",
                json={"inputs": [{**tensor, "shape": [KEPT, 1, height * width]}]},
            )
        outputs = {o["name"]: o for o in answer.json()["outputs"]}
        served = np.asarray(outputs["label"]["data"])
        return {
            "dataset": name,
            "image_shape": [1, height, width],
            "version": model.version,
            "accuracy": result.run.metrics["holdout"]["accuracy"],
            "http_accuracy": float((served == truth).mean()),
            "http_matches_python": bool((served == local).all()),
            "wrong_shape_status": wrong.status_code,
            "wrong_shape_field": wrong.json().get("where", {}).get("field"),
            "epochs": len(ws.metadata.list_steps(result.run.id, "epoch.val_loss")),
            "predictor": model.predictor.kind,
            "predictor_reason": model.predictor.reason,
        }


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--quick"]
    ws = args[0] if args else tempfile.mkdtemp(prefix="loopml-images-")
    print(json.dumps(main(ws, quick="--quick" in sys.argv[1:])))
