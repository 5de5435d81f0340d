"""The server core: ``ModelServer.infer`` (what V1, V2 and gRPC all go through), the version
header on every answer, and per model+version metrics."""

from __future__ import annotations

import asyncio
import threading
import warnings
from typing import Any

import numpy as np
import orjson
import pytest

from loopml.errors import InvalidInputError, NotFoundError
from loopml.registry import load_model, register_model, set_alias
from loopml.serve import create_app
from loopml.serve.app import InferResult
from loopml.serve.http import OverloadedError
from loopml.serve.metrics import parse_exposition
from loopml.workspace import Workspace

from .test_serve_app import cancer_bundle, pets_bundle, records

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

JSON = {"content-type": "application/json"}


def two_versions(ws: Workspace) -> Any:
    first, x = cancer_bundle(seed=0)
    second, _ = cancer_bundle(seed=1)
    register_model(ws, "cancer", first)
    mv = register_model(ws, "cancer", second)
    set_alias(ws, "cancer", "champion", mv.version)
    return x


def test_infer_takes_records_and_numpy_columns(workspace: Workspace) -> None:
    x = two_versions(workspace)
    app = create_app(workspace, reload_interval=0, log_predictions=False)
    server = app.state.server
    rows = records(x, 5)
    columns = {name: x[name].to_numpy()[:5] for name in x.columns}  # what gRPC hands over

    async def main() -> tuple[InferResult, InferResult]:
        async with server.lifespan(app):
            a = await server.infer("cancer", None, rows, endpoint="test", key="k1")
            b = await server.infer("cancer", None, columns, endpoint="grpc")
            with pytest.raises(NotFoundError):
                await server.infer("nope", None, rows, endpoint="test")
            with pytest.raises(InvalidInputError, match="mean radius"):
                await server.infer(
                    "cancer", None, {**columns, "mean radius": ["x"] * 5}, endpoint="t"
                )
            return a, b

    a, b = asyncio.run(main())
    assert a.runtime.version == b.runtime.version == 2
    assert len(a.ids) == len(set(a.ids)) == 5
    assert a.unknown_fields is None
    np.testing.assert_array_equal(a.prediction.labels, b.prediction.labels)
    expected = load_model(workspace, "cancer@2").predict(x.iloc[:5])
    assert a.prediction.labels.tolist() == expected.labels.tolist()
    assert a.prediction.probabilities is not None and expected.probabilities is not None
    np.testing.assert_allclose(a.prediction.probabilities, expected.probabilities, atol=1e-6)
    text = server.metrics.render()
    assert (
        'loopml_requests_total{model="cancer",version="2",endpoint="grpc",status="200"} 1' in text
    )
    assert (
        'loopml_request_errors_total{model="cancer",version="2",endpoint="t",code="invalid_input"}'
        in text
    )


def test_infer_refuses_past_the_queue(workspace: Workspace) -> None:
    x = two_versions(workspace)
    app = create_app(
        workspace, reload_interval=0, log_predictions=False, queue_rows=3, retry_after=7
    )
    server = app.state.server

    async def main() -> list[Any]:
        async with server.lifespan(app):
            runtime = server.models.runtime("cancer")
            predict = runtime.batcher._predict
            gate = threading.Event()

            def held(columns: Any) -> Any:  # a model call that lasts until released
                gate.wait(10)
                return predict(columns)

            runtime.batcher._predict = held
            runtime.batcher._inline = False  # in a worker thread, so the loop runs on
            first = asyncio.ensure_future(server.infer("cancer", None, records(x, 3), endpoint="t"))
            await asyncio.sleep(0.05)  # admitted: 3 rows queued, the model call held
            assert runtime.batcher.queued_rows == 3
            try:
                await server.infer("cancer", None, records(x, 1), endpoint="t")
            except OverloadedError as exc:
                second: Any = exc
            else:  # pragma: no cover - the assertion below fails
                second = None
            gate.set()
            return [await first, second]

    first, second = asyncio.run(main())
    assert isinstance(first, InferResult)
    assert isinstance(second, OverloadedError)
    assert second.http_status == 503 and second.retry_after == 7
    assert second.where == {"model": "cancer", "version": "2"}
    samples = parse_exposition(server.metrics.render())
    assert samples['loopml_requests_rejected_total{model="cancer",version="2"}'] == 1


def test_every_answer_names_its_version_and_metrics_are_per_version(
    workspace: Workspace,
) -> None:
    x = two_versions(workspace)
    pets, pets_x = pets_bundle("classification")
    mv = register_model(workspace, "pets", pets)
    set_alias(workspace, "pets", "champion", mv.version)
    app = create_app(
        workspace,
        models={"cancer": ["cancer@champion", "cancer@1"], "pets": "pets"},
        reload_interval=0,
        log_predictions=False,
    )
    body = orjson.dumps({"instances": records(x, 2)})
    names = list(x.columns)
    v2 = {
        "inputs": [
            {
                "name": "x",
                "shape": [2, len(names)],
                "datatype": "FP64",
                "data": x.iloc[:2].to_numpy().tolist(),
            }
        ]
    }
    with TestClient(app, base_url="http://127.0.0.1") as client:
        r1 = client.post("/v1/models/cancer:predict", content=body, headers=JSON)
        r2 = client.post("/v1/models/cancer@1:predict", content=body, headers=JSON)
        r3 = client.post(
            "/v2/models/cancer/versions/1/infer", content=orjson.dumps(v2), headers=JSON
        )
        r4 = client.post("/v2/models/cancer/infer", content=orjson.dumps(v2), headers=JSON)
        pets_rows = records(pets_x, 3)
        r5 = client.post(
            "/v1/models/pets:predict", content=orjson.dumps({"instances": pets_rows}), headers=JSON
        )
        bad = client.post(
            "/v1/models/cancer@1:predict",
            content=orjson.dumps({"instances": [{**records(x, 1)[0], "mean radius": "big"}]}),
            headers=JSON,
        )
        samples = parse_exposition(client.get("/metrics").text)
    for resp, version in ((r1, 2), (r2, 1), (r3, 1), (r4, 2), (r5, 1)):
        assert resp.status_code == 200, resp.text
        assert resp.headers["x-loopml-version"] == str(version)
        data = resp.json()
        assert data.get("version", data.get("model_version")) in (version, str(version))
    # V1 records and a V2 [N, F] tensor give the same answers
    assert [p["prediction"] for p in r2.json()["predictions"]] == r3.json()["outputs"][0]["data"]
    assert bad.status_code == 422
    for version in ("1", "2"):
        labels = f'model="cancer",version="{version}",endpoint="v1_predict"'
        key = f"loopml_request_duration_seconds_count{{{labels}}}"
        assert samples[key] >= 1
        assert samples[f'loopml_queue_rows{{model="cancer",version="{version}"}}'] == 0
    assert (
        samples[
            'loopml_requests_total{model="cancer",version="1",endpoint="v2_infer",status="200"}'
        ]
        == 1
    )
    assert (
        samples[
            'loopml_request_errors_total{model="cancer",version="1",endpoint="v1_predict",code="invalid_input"}'
        ]
        == 1
    )
    assert samples['loopml_batch_size_count{model="cancer"}'] >= 4
