"""A small CNN on scikit-learn's digits, trained from loopml.yaml, registered, served.

python examples/deep/images/run.py [WORKSPACE]

The last line printed is one JSON object with the headline figures.
"""

from __future__ import annotations

import json
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_digits

import loopml
from loopml.serve import create_app

HERE = Path(__file__).parent


def main(workspace: str) -> dict[str, Any]:
    frame = load_digits(as_frame=True).frame
    with loopml.init(workspace) as ws:
        loopml.ingest(ws, frame, "digits")
        result = loopml.train(ws, loopml.ProjectConfig.from_file(HERE / "loopml.yaml"))
        model = loopml.load_model(ws, "digits")
        images = frame.drop(columns=["target"]).tail(32)
        local = model.predict(images)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # starlette's notice about httpx
            from starlette.testclient import TestClient
        app = create_app(ws, reload_interval=0, log_predictions=False)
        with TestClient(app, base_url="http://127.0.0.1") as client:
            body = {"instances": images.to_dict(orient="records")}
            answer = client.post("/v1/models/digits:predict", json=body).json()
        served = np.array([p["prediction"] for p in answer["predictions"]])
        return {
            "version": model.version,
            "accuracy": result.run.metrics["holdout"]["accuracy"],
            "epochs": len(ws.metadata.list_steps(result.run.id, "epoch.val_loss")),
            "http_matches_python": bool((served == local.labels).all()),
            "predictor": model.predictor.kind,
            "predictor_reason": model.predictor.reason,
        }


if __name__ == "__main__":
    ws = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="loopml-images-")
    print(json.dumps(main(ws)))
