"""A BentoML service with adaptive batching around the benchmark's joblib model.

Run with the peers' Python (BentoML is not a dependency of loopml)::

    BENCH_MODEL=model.joblib bentoml serve benchmarks.serving_peers.bento_service:Model

``POST /predict`` with ``{"instances": [[x0, ..., x19]]}`` answers ``[[p0, p1]]``; concurrent
requests are batched by BentoML's adaptive batcher (up to 64 rows, its default latency
bound: a tight ``max_latency_ms`` makes it refuse requests with 503 under load).
"""

from __future__ import annotations

import os

import bentoml
import joblib
import numpy as np


@bentoml.service(workers=1)
class Model:
    def __init__(self) -> None:
        self.model = joblib.load(os.environ["BENCH_MODEL"])

    @bentoml.api(batchable=True, max_batch_size=64)
    def predict(self, instances: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict_proba(instances))
