"""Bounds on a request: numbers a model can take, rows, body size, and what errors echo."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from loopml.serve import create_app
from loopml.workspace import Workspace

from .test_serve_app import assert_error, cancer_bundle, pets_bundle, predict, records, register

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's notice about httpx in its TestClient
    from starlette.testclient import TestClient


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from loopml.workspace import init

    ws = init(tmp_path_factory.mktemp("limits") / "ws")
    cancer, x = cancer_bundle()
    pets, pets_x = pets_bundle("classification")
    register(ws, "cancer", cancer)
    register(ws, "pets", pets)
    app = create_app(ws, reload_interval=0, log_predictions=False, max_rows=20)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield {"client": client, "x": x, "pets_x": pets_x, "app": app}
    ws.close()


def tensor_body(rows: list[dict[str, Any]]) -> dict[str, Any]:
    names = list(rows[0])
    return {
        "inputs": [
            {
                "name": "x",
                "shape": [len(rows), len(names)],
                "datatype": "FP64",
                "data": [[r[n] for n in names] for r in rows],
            }
        ]
    }


@pytest.mark.parametrize("value", [1e39, -1e39, 3.5e38, 1e308, -1.7976931348623157e308])
def test_numbers_beyond_float32_are_422_naming_row_and_field(
    limited: dict[str, Any], value: float
) -> None:
    client = limited["client"]
    rows = records(limited["x"], 3)
    rows[2]["mean texture"] = value
    body = assert_error(
        predict(client, "cancer", {"instances": rows}),
        422,
        "invalid_input",
        row=2,
        field="mean texture",
    )
    assert "float32" in body["message"]
    v2 = client.post("/v2/models/cancer/infer", json=tensor_body(rows))
    assert_error(v2, 422, "invalid_input", row=2, field="mean texture")
    named = {
        "inputs": [
            {"name": n, "shape": [3], "datatype": "FP64", "data": [r[n] for r in rows]}
            for n in rows[0]
        ]
    }
    v2 = client.post("/v2/models/cancer/infer", json=named)
    assert_error(v2, 422, "invalid_input", row=2, field="mean texture")


def test_a_big_number_in_a_mixed_model(limited: dict[str, Any]) -> None:
    rows = records(limited["pets_x"], 2)
    rows[1]["size"] = 1e300
    assert_error(
        predict(limited["client"], "pets", {"instances": rows}),
        422,
        "invalid_input",
        row=1,
        field="size",
    )


def test_float32_max_itself_is_served(limited: dict[str, Any]) -> None:
    rows = records(limited["x"], 1)
    rows[0]["mean texture"] = 3.4e38
    assert predict(limited["client"], "cancer", {"instances": rows}).status_code == 200


def test_rows_per_request_are_bounded(limited: dict[str, Any]) -> None:
    client = limited["client"]
    rows = records(limited["x"], 21)
    body = assert_error(
        predict(client, "cancer", {"instances": rows}), 413, "too_many_rows", field="instances"
    )
    assert "21 rows" in body["message"] and "20" in body["message"]
    assert "--max-rows" in body["hint"]
    assert predict(client, "cancer", {"instances": rows[:20]}).status_code == 200
    v2 = client.post("/v2/models/cancer/infer", json=tensor_body(rows))
    assert_error(v2, 413, "too_many_rows", field="inputs[0].shape")


def test_limits_come_from_settings(workspace: Workspace) -> None:
    from loopml.workspace import open_workspace

    register(workspace, "cancer", cancer_bundle()[0])
    (workspace.root / "settings.yaml").write_text(
        (workspace.root / "settings.yaml").read_text()
        + "serve_max_rows: 2\nserve_max_body_bytes: 5000\n"
    )
    with open_workspace(workspace.root) as ws:
        server = create_app(ws, reload_interval=0).state.server
        assert (server.max_rows, server.max_body_bytes) == (2, 5000)
        server = create_app(ws, max_rows=7, reload_interval=0).state.server
        assert server.max_rows == 7
    with pytest.raises(ValueError, match="max_rows"):
        create_app(workspace, max_rows=0)


def test_a_huge_value_is_not_echoed(limited: dict[str, Any]) -> None:
    client = limited["client"]
    huge = "z" * 200_000
    cases = []
    rows = records(limited["x"], 1)
    rows[0]["mean texture"] = huge
    cases.append(predict(client, "cancer", {"instances": rows}))
    cases.append(predict(client, "cancer", {"instances": [], huge: 1}))
    pets = records(limited["pets_x"], 1)
    pets[0]["color"] = huge
    cases.append(predict(client, "pets", {"instances": pets}))
    cases.append(predict(client, huge[:5000], {"instances": rows}))
    cases.append(client.post("/v2/models/cancer/infer", json={"inputs": [], huge: 1}))
    cases.append(
        client.post(
            "/v2/models/cancer/infer",
            json={"inputs": [{"name": huge, "shape": [1], "datatype": huge, "data": [1]}]},
        )
    )
    cases.append(
        client.post(
            "/v2/models/cancer/infer",
            json={"inputs": [{"name": huge, "shape": [1], "datatype": "FP64", "data": [1]}]},
        )
    )
    cases.append(
        client.post(
            "/v2/models/cancer/infer",
            json={"inputs": [{"name": "x", "shape": [1] * 5000, "datatype": "FP64", "data": [1]}]},
        )
    )
    for resp in cases:
        assert 400 <= resp.status_code < 500, resp.text[:300]
        assert "zzzzzzzzzz" * 10 not in resp.text, resp.text[:300]
        assert len(resp.content) < 4000, resp.text[:300]
        body = resp.json()
        assert all(len(str(v)) <= 80 for v in body["where"].values()), body["where"]


def test_body_bytes_are_bounded_before_reading(limited: dict[str, Any]) -> None:
    client = limited["client"]
    server = limited["app"].state.server
    old = server.max_body_bytes
    server.max_body_bytes = 1000
    try:
        body = orjson.dumps({"instances": records(limited["x"], 10)})
        resp = predict(client, "cancer", body)
        assert_error(resp, 413, "body_too_large", field="body")

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while reading
            for i in range(0, len(body), 100):
                yield body[i : i + 100]

        resp = client.post(
            "/v1/models/cancer:predict",
            content=chunks(),
            headers={"content-type": "application/json"},
        )
        assert_error(resp, 413, "body_too_large", field="body")
        resp = client.post(
            "/v1/models/cancer:predict",
            content=b"{}",
            headers={"content-type": "application/json", "content-length": "-1"},
        )
        assert resp.status_code in (400, 413)
    finally:
        server.max_body_bytes = old
