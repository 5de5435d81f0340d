"""What the server holds: safe swaps, several versions under one name, and what it says."""

from __future__ import annotations

import logging
import warnings
from typing import Any

import pytest

from loopml.registry import set_alias
from loopml.serve import create_app
from loopml.serve.metrics import parse_exposition
from loopml.workspace import Workspace

from .test_serve_app import (
    assert_error,
    cancer_bundle,
    predict,
    records,
    register,
    register_broken,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's notice about httpx in its TestClient
    from starlette.testclient import TestClient

BASE = "http://127.0.0.1"


def client_for(app: Any) -> TestClient:
    token = app.state.server.token
    return TestClient(app, base_url=BASE, headers={"Authorization": f"Bearer {token}"})


# -- a broken version never takes over ------------------------------------------------------


@pytest.mark.parametrize("sample", [True, False], ids=["sample rows", "no sample rows"])
def test_alias_moving_to_a_broken_version_keeps_the_old_one(
    workspace: Workspace, sample: bool, caplog: pytest.LogCaptureFixture
) -> None:
    good, x = cancer_bundle()
    register(workspace, "cancer", good)
    app = create_app(workspace, reload_interval=0, log_predictions=False)
    rows = {"instances": records(x, 3)}
    with client_for(app) as client:
        assert predict(client, "cancer", rows).json()["version"] == 1
        broken = register_broken(workspace, "cancer", sample=sample)  # moves the champion
        caplog.set_level(logging.INFO, logger="loopml.serve")
        models = app.state.server.models
        assert client.portal is not None
        for _ in range(3):  # the periodic reload: refused once, not retried every pass
            client.portal.call(models.reload_all)
        for _ in range(50):
            resp = predict(client, "cancer", rows)
            assert resp.status_code == 200, resp.text
            assert resp.json()["version"] == 1
        assert client.get("/v2/health/ready").status_code == 200
        assert client.get("/v2/models/cancer/ready").status_code == 200
        samples = parse_exposition(client.get("/metrics").text)
        assert samples['loopml_model_reloads_total{model="cancer",result="refused"}'] == 1
        assert 'loopml_model_reloads_total{model="cancer",result="swapped"}' not in samples
        refused = [r for r in caplog.records if "event=swap_refused" in r.getMessage()]
        assert len(refused) == 1
        line = refused[0].getMessage()
        assert f"version={broken}" in line and "serving=1" in line and "\n" not in line
        listed = client.get("/v1/models").json()["models"]
        assert listed == [
            {
                "name": "cancer",
                "model": "cancer",
                "reference": "cancer@champion",
                "version": 1,
                "ready": True,
                "last_error": listed[0]["last_error"],
            }
        ]
        assert f"version {broken} refused" in listed[0]["last_error"]
        # asked explicitly, the refusal is an error the caller sees; still version 1
        resp = client.post("/v1/models/cancer:reload")
        body = assert_error(resp, 409, "swap_refused", model="cancer", version=broken)
        assert "still serving version 1" in body["message"]
        assert predict(client, "cancer", rows).json()["version"] == 1
        # a good version after it is swapped in as usual
        fixed = register(workspace, "cancer", cancer_bundle(seed=1)[0])
        reloaded = client.post("/v1/models/cancer:reload").json()
        assert reloaded["version"] == fixed and reloaded["changed"] is True
        assert predict(client, "cancer", rows).json()["version"] == fixed
        assert client.get("/v1/models").json()["models"][0]["last_error"] is None


def test_loading_and_switching_are_logged_one_line_each(
    workspace: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="loopml.serve")
    register(workspace, "cancer", cancer_bundle()[0])
    app = create_app(workspace, reload_interval=0, log_predictions=False)
    with client_for(app) as client:
        register(workspace, "cancer", cancer_bundle(seed=1)[0])
        assert client.post("/v1/models/cancer:reload").json()["version"] == 2
        assert predict(client, "nope", {"instances": []}).status_code == 404
    lines = [r.getMessage() for r in caplog.records if r.name == "loopml.serve"]
    loaded = [m for m in lines if m.startswith("event=model_loaded")]
    assert len(loaded) == 2
    assert "served=cancer ref=cancer@champion version=1" in loaded[0]
    switch = [m for m in lines if m.startswith("event=alias_switch")]
    assert len(switch) == 1
    assert "previous=1 version=2" in switch[0]
    errors = [m for m in lines if m.startswith("event=request_error")]
    assert any("status=404" in m and "path=/v1/models/nope:predict" in m for m in errors)


# -- several versions under one name --------------------------------------------------------


@pytest.fixture
def two_versions(workspace: Workspace) -> Workspace:
    register(workspace, "cancer", cancer_bundle()[0])
    register(workspace, "cancer", cancer_bundle(seed=5)[0])
    set_alias(workspace, "cancer", "challenger", 1)
    return workspace


def test_two_versions_of_one_model_are_both_addressable(two_versions: Workspace) -> None:
    x = cancer_bundle()[1]
    rows = {"instances": records(x, 2)}
    app = create_app(two_versions, models={"cancer": ["cancer@1", "cancer@2"]}, reload_interval=0)
    with client_for(app) as client:
        assert predict(client, "cancer", rows).json()["version"] == 1  # the first is default
        assert predict(client, "cancer@1", rows).json()["version"] == 1
        assert predict(client, "cancer@2", rows).json()["version"] == 2
        assert_error(predict(client, "cancer@7", rows), 404, "not_found", version="7")
        for version in ("1", "2"):
            infer = client.post(
                f"/v2/models/cancer/versions/{version}/infer",
                json={
                    "inputs": [
                        {
                            "name": "x",
                            "shape": [1, 30],
                            "datatype": "FP64",
                            "data": x.iloc[0].tolist(),
                        }
                    ]
                },
            )
            assert infer.status_code == 200, infer.text
            assert infer.json()["model_version"] == version
            ready = client.get(f"/v2/models/cancer/versions/{version}/ready")
            assert ready.status_code == 200
        meta = client.get("/v2/models/cancer/versions/2").json()
        assert meta["versions"] == ["2", "1"]
        assert client.get("/v2/models/cancer").json()["versions"] == ["1", "2"]
        listed = client.get("/v1/models").json()["models"]
        assert [(m["name"], m["reference"], m["version"]) for m in listed] == [
            ("cancer", "cancer@1", 1),
            ("cancer", "cancer@2", 2),
        ]
        index = client.post("/v2/repository/index").json()
        assert index == [
            {"name": "cancer", "version": "1", "state": "READY", "reason": ""},
            {"name": "cancer", "version": "2", "state": "READY", "reason": ""},
        ]
        samples = parse_exposition(client.get("/metrics").text)
        assert samples['loopml_model_version{model="cancer",reference="cancer@2"}'] == 2


def test_an_alias_addresses_its_entry(two_versions: Workspace) -> None:
    rows = {"instances": records(cancer_bundle()[1], 1)}
    app = create_app(
        two_versions,
        models={"cancer": ["cancer@champion", "cancer@challenger"]},
        reload_interval=0,
    )
    with client_for(app) as client:
        assert predict(client, "cancer", rows).json()["version"] == 2
        assert predict(client, "cancer@challenger", rows).json()["version"] == 1
        reloaded = client.post("/v1/models/cancer:reload").json()
        assert [e["reference"] for e in reloaded["entries"]] == [
            "cancer@champion",
            "cancer@challenger",
        ]


def test_the_same_reference_twice_is_served_once(two_versions: Workspace) -> None:
    app = create_app(two_versions, models={"cancer": ["cancer@2", "cancer@2"]}, reload_interval=0)
    with client_for(app) as client:
        assert len(client.get("/v1/models").json()["models"]) == 1


# -- what is served -------------------------------------------------------------------------


def test_repository_index_body_and_states(workspace: Workspace) -> None:
    register(workspace, "cancer", cancer_bundle()[0])
    app = create_app(workspace, reload_interval=0, log_predictions=False)
    with client_for(app) as client:
        everything = client.post("/v2/repository/index", json={})
        assert everything.status_code == 200
        assert everything.json() == [
            {"name": "cancer", "version": "1", "state": "READY", "reason": ""}
        ]
        assert client.post("/v2/repository/index", json={"ready": True}).json() == (
            everything.json()
        )
        bad = client.post("/v2/repository/index", json={"ready": "yes"})
        assert_error(bad, 422, "invalid_input", field="ready")
        text = client.post(
            "/v2/repository/index", content=b"{}", headers={"content-type": "text/plain"}
        )
        assert_error(text, 415, "unsupported_media_type")
        untyped = client.post("/v2/repository/index", content=b'{"ready": true}')
        assert_error(untyped, 415, "unsupported_media_type")
        spec = client.get("/openapi.json").json()
        assert "post" in spec["paths"]["/v2/repository/index"]
        assert "get" in spec["paths"]["/v1/models"]
