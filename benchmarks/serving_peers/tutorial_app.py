"""The FastAPI app of the tutorials: a joblib model, a pydantic body, one predict per request.

    BENCH_MODEL=model.joblib BENCH_FEATURES=20 uvicorn benchmarks.serving_peers.tutorial_app:app

``POST /predict`` with ``{"f0": 0.1, ..., "f19": -2.3}`` answers ``{"probabilities": [...]}``.
This is what most "deploy your model with FastAPI" guides write; it is a peer, not a floor.
"""

from __future__ import annotations

import os

import joblib
import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel, create_model

N_FEATURES = int(os.environ.get("BENCH_FEATURES", "20"))
NAMES = [f"f{i}" for i in range(N_FEATURES)]

# the guides spell the fields out one by one; for 20 numeric features this is the same model
Features: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "Features", **{name: (float, ...) for name in NAMES}
)

model = joblib.load(os.environ["BENCH_MODEL"])
app = FastAPI()


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/predict")
def predict(features: Features) -> dict[str, list[float]]:  # type: ignore[valid-type]
    row = np.array([[getattr(features, name) for name in NAMES]])
    proba = model.predict_proba(row)[0]
    return {"probabilities": proba.tolist()}
