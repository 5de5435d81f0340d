"""POST /v1/feedback through the real app: token required, idempotent, unknown ids 404."""

from __future__ import annotations

import warnings
from typing import Any

import orjson

from loopml.serve import create_app
from loopml.workspace import init
from tests.unit.serve.test_serve_app import cancer_bundle, records, register

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

JSON = {"content-type": "application/json"}


def test_feedback_needs_the_token_and_is_stored_once(tmp_path: Any) -> None:
    ws = init(tmp_path / "ws")
    bundle, x = cancer_bundle()
    register(ws, "cancer", bundle)
    app = create_app(ws, reload_interval=0)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        resp = client.post(
            "/v1/models/cancer:predict",
            content=orjson.dumps({"instances": records(x, 2)}),
            headers=JSON,
        )
        assert resp.status_code == 200, resp.text
        pid = resp.json()["predictions"][0]["prediction_id"]
        body = orjson.dumps({"prediction_id": pid, "label": 1})
        anonymous = client.post("/v1/feedback", content=body, headers=JSON)
        assert anonymous.status_code == 401  # it changes state: the token is required
        auth = {**JSON, "authorization": f"Bearer {app.state.server.token}"}
        first = client.post("/v1/feedback", content=body, headers=auth)
        assert first.status_code == 200, first.text
        for _ in range(2):
            again = client.post("/v1/feedback", content=body, headers=auth)
            assert again.status_code == 200, again.text
        unknown = client.post(
            "/v1/feedback",
            content=orjson.dumps({"prediction_id": "0" * 32, "label": 1}),
            headers=auth,
        )
        assert unknown.status_code == 404, unknown.text
        malformed = client.post(
            "/v1/feedback", content=orjson.dumps({"prediction_id": "x", "label": 1}), headers=auth
        )
        assert malformed.status_code == 422, malformed.text
        assert "prediction_id" in malformed.text
    stored = ws.metadata.list_feedback(prediction_ids=[pid])
    assert len(stored) == 1 and stored[0].label == 1
    ws.close()
