"""The floor: a bare ASGI endpoint running the model compiled to ONNX Runtime.

    BENCH_ONNX=model.onnx uvicorn benchmarks.serving_peers.onnx_floor:app --loop uvloop \
        --http httptools

``POST /predict`` with ``{"instances": [{"f0": 0.1, ...}]}`` (loopml's V1 body) answers
``{"probabilities": [[...], ...]}``. No framework, no validation beyond what parsing needs,
no ids, no log, no metrics, no batching: one ``InferenceSession.run`` per request on one
thread. It is the least a JSON-over-HTTP prediction of this model costs in Python, which is
what loopml's server is measured against.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson

_options = ort.SessionOptions()
_options.intra_op_num_threads = 1
_options.inter_op_num_threads = 1
session = ort.InferenceSession(
    os.environ["BENCH_ONNX"], _options, providers=["CPUExecutionProvider"]
)
_input = session.get_inputs()[0]
INPUT = _input.name
DTYPE = np.float64 if _input.type == "tensor(double)" else np.float32
N_FEATURES = int(os.environ.get("BENCH_FEATURES", "20"))
NAMES = [f"f{i}" for i in range(N_FEATURES)]
OUTPUT = [o.name for o in session.get_outputs()][-1]  # the probabilities (zipmap off)
JSON = [(b"content-type", b"application/json")]


async def _body(receive: Any) -> bytes:
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


async def _send(send: Any, status: int, payload: bytes) -> None:
    headers = [*JSON, (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if scope["path"] == "/health":
        await _send(send, 200, b'{"status":"ok"}')
        return
    try:
        rows = orjson.loads(await _body(receive))["instances"]
        x = np.array([[row[name] for name in NAMES] for row in rows], dtype=DTYPE)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        await _send(send, 400, orjson.dumps({"error": str(exc)}))
        return
    proba = session.run([OUTPUT], {INPUT: x})[0]
    await _send(send, 200, orjson.dumps({"probabilities": proba.tolist()}))
