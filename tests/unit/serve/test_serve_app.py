"""The model server's records endpoint, errors, auth, reload, docs and metrics (in-process)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge

from loopml.errors import IntegrityError, NotFoundError
from loopml.registry import ModelBundle, load_model, register_model, set_alias
from loopml.serve import create_app, read_prediction_log
from loopml.serve.metrics import parse_exposition
from loopml.train import fit_bundle
from loopml.workspace import Workspace, init

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's notice about httpx in its TestClient
    from starlette.testclient import TestClient


# -- models ---------------------------------------------------------------------------------


def cancer_bundle(seed: int = 0) -> tuple[ModelBundle, pd.DataFrame]:
    df = load_breast_cancer(as_frame=True).frame
    return fit_bundle(df, "target", RandomForestClassifier(n_estimators=20, random_state=seed))


def pets_frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 240
    color = rng.choice(["red", "green", "blue"], n)
    size = rng.normal(10, 2, n)
    weight = rng.normal(5, 1, n)
    weight[::7] = np.nan
    return pd.DataFrame(
        {
            "color": color,
            "size": size,
            "weight": weight,
            "label": np.where((color == "red") | (size > 11), "yes", "no"),
            "price": size * 2 + (color == "blue") * 3,
        }
    )


def pets_bundle(task: str) -> tuple[ModelBundle, pd.DataFrame]:
    """Categorical + nullable numeric features; string classes or a regression target."""
    df = pets_frame()
    target, other = ("label", "price") if task == "classification" else ("price", "label")
    est = LogisticRegression() if task == "classification" else Ridge()
    return fit_bundle(df, target, est, task=task, features={"exclude": [other]})


def register(ws: Workspace, name: str, bundle: ModelBundle, alias: str | None = "champion") -> int:
    mv = register_model(ws, name, bundle)
    if alias:
        set_alias(ws, name, alias, mv.version)
    return mv.version


def records(x: pd.DataFrame, n: int, start: int = 0) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for rec in x.iloc[start : start + n].to_dict("records"):  # JSON has null, not NaN
        out.append(
            {str(k): None if isinstance(v, float) and np.isnan(v) else v for k, v in rec.items()}
        )
    return out


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    ws = init(tmp_path_factory.mktemp("serve") / "ws")
    cancer, cancer_x = cancer_bundle()
    pets, pets_x = pets_bundle("classification")
    prices, _ = pets_bundle("regression")
    register(ws, "cancer", cancer)
    register(ws, "pets", pets)
    register(ws, "prices", prices)
    register(ws, "draft", pets, alias=None)  # no champion: not served
    app = create_app(ws, reload_interval=0)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield {"ws": ws, "client": client, "app": app, "cancer_x": cancer_x, "pets_x": pets_x}
    ws.close()


def predict(client: TestClient, model: str, body: Any) -> Any:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.post(
        f"/v1/models/{model}:predict",
        content=content,
        headers={"content-type": "application/json"},
    )


def assert_error(resp: Any, status: int, code: str, **where: Any) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["code"] == code, body
    assert set(body) >= {"code", "message", "where", "hint"}
    for key, value in where.items():
        assert body["where"].get(key) == value, body
    assert "Traceback" not in resp.text
    return body  # type: ignore[no-any-return]


# -- v1 predictions -------------------------------------------------------------------------


def test_predictions_equal_load_model(served: dict[str, Any]) -> None:
    x = served["cancer_x"]
    rows = records(x, 25, start=100)
    resp = predict(served["client"], "cancer", {"instances": rows})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model"] == "cancer"
    assert body["version"] == 1
    expected = load_model(served["ws"], "cancer").predict(x.iloc[100:125])
    preds = body["predictions"]
    assert [p["prediction"] for p in preds] == expected.labels.tolist()
    got = np.array([[p["probabilities"]["0"], p["probabilities"]["1"]] for p in preds])
    assert expected.probabilities is not None
    # the server predicts with the compiled (ONNX) bundle where it converts: native to 1e-6
    np.testing.assert_allclose(got, expected.probabilities, rtol=0, atol=1e-6)
    ids = [p["prediction_id"] for p in preds]
    assert len(set(ids)) == 25
    assert all(len(i) == 32 for i in ids)


def test_string_classes_and_nullable_feature(served: dict[str, Any]) -> None:
    rows = records(served["pets_x"], 8)
    assert any(r["weight"] is None for r in rows)  # row 0 has a null weight, seen in training
    resp = predict(served["client"], "pets", {"instances": rows})
    assert resp.status_code == 200, resp.text
    expected = load_model(served["ws"], "pets").predict(served["pets_x"].iloc[:8])
    preds = resp.json()["predictions"]
    assert [p["prediction"] for p in preds] == expected.labels.tolist()
    assert set(preds[0]["probabilities"]) == {"no", "yes"}


def test_regression_has_no_probabilities(served: dict[str, Any]) -> None:
    rows = records(served["pets_x"], 3)
    resp = predict(served["client"], "prices", {"instances": rows})
    assert resp.status_code == 200, resp.text
    preds = resp.json()["predictions"]
    expected = load_model(served["ws"], "prices").predict(served["pets_x"].iloc[:3])
    np.testing.assert_allclose([p["prediction"] for p in preds], expected.labels)
    assert all("probabilities" not in p for p in preds)


# -- v1 bad input ---------------------------------------------------------------------------


def test_missing_feature(served: dict[str, Any]) -> None:
    rows = records(served["cancer_x"], 2)
    del rows[1]["mean radius"]
    body = assert_error(
        predict(served["client"], "cancer", {"instances": rows}),
        422,
        "invalid_input",
        row=1,
        field="mean radius",
    )
    assert "missing" in body["message"]


def test_extra_feature_is_ignored(served: dict[str, Any]) -> None:
    # one policy for extra fields on every path (the signature's): ignored, as in batch
    rows = records(served["cancer_x"], 1)
    plain = predict(served["client"], "cancer", {"instances": rows}).json()["predictions"]
    rows[0]["bogus"] = 1.0
    resp = predict(served["client"], "cancer", {"instances": rows})
    assert resp.status_code == 200, resp.text
    assert resp.json()["predictions"][0]["probabilities"] == plain[0]["probabilities"]


def test_wrong_type(served: dict[str, Any]) -> None:
    rows = records(served["cancer_x"], 3)
    rows[2]["mean texture"] = "thick"
    body = assert_error(
        predict(served["client"], "cancer", {"instances": rows}),
        422,
        "invalid_input",
        row=2,
        field="mean texture",
    )
    assert "number" in body["message"]


def test_unseen_category(served: dict[str, Any]) -> None:
    rows = records(served["pets_x"], 2)
    rows[1]["color"] = "purple"
    body = assert_error(
        predict(served["client"], "pets", {"instances": rows}),
        422,
        "invalid_input",
        row=1,
        field="color",
    )
    assert "purple" in body["message"]
    assert "red" in body["hint"]


def test_null_where_training_had_none(served: dict[str, Any]) -> None:
    rows = records(served["cancer_x"], 1)
    rows[0]["mean area"] = None
    assert_error(
        predict(served["client"], "cancer", {"instances": rows}),
        422,
        "invalid_input",
        row=0,
        field="mean area",
    )


def test_nan_literal_is_not_json(served: dict[str, Any]) -> None:
    rows = records(served["cancer_x"], 1)
    text = orjson.dumps({"instances": rows}).replace(b'"mean area":', b'"mean area":NaN,"x":', 1)
    body = assert_error(
        predict(served["client"], "cancer", text), 400, "invalid_json", field="body"
    )
    assert "null" in body["hint"]


@pytest.mark.parametrize("instances", [[], None, {"a": 1}, [1, 2]])
def test_bad_instances(served: dict[str, Any], instances: Any) -> None:
    resp = predict(served["client"], "cancer", {"instances": instances})
    body = assert_error(resp, 422, "invalid_input")
    assert body["where"].get("field") == "instances" or body["where"].get("row") == 0


@pytest.mark.parametrize("raw", [b"{bad", b"", b'{"instances": [', b"\xff\xfe"])
def test_malformed_json(served: dict[str, Any], raw: bytes) -> None:
    assert_error(predict(served["client"], "cancer", raw), 400, "invalid_json", field="body")


def test_body_not_an_object_or_unknown_key(served: dict[str, Any]) -> None:
    assert_error(predict(served["client"], "cancer", [1]), 422, "invalid_input", field="body")
    rows = records(served["cancer_x"], 1)
    assert_error(
        predict(served["client"], "cancer", {"instances": rows, "inputs": []}),
        422,
        "invalid_input",
        field="inputs",
    )


def test_unknown_model_names_served_models(served: dict[str, Any]) -> None:
    body = assert_error(
        predict(served["client"], "nope", {"instances": []}), 404, "not_found", model="nope"
    )
    assert "cancer" in body["hint"]
    assert "pets" in body["hint"]
    assert "prices" in body["hint"]
    assert "draft" not in body["hint"]  # no champion alias, so not served


def test_unknown_route_and_method(served: dict[str, Any]) -> None:
    assert_error(served["client"].get("/v1/nothing"), 404, "not_found", path="/v1/nothing")
    resp = served["client"].get("/v1/models/cancer:predict")
    assert_error(resp, 405, "method_not_allowed")


# -- health, docs, metrics ------------------------------------------------------------------


def test_v2_health_and_server_metadata(served: dict[str, Any]) -> None:
    client = served["client"]
    assert client.get("/v2/health/live").json() == {"live": True}
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True}
    meta = client.get("/v2").json()
    assert meta["name"] == "loopml"
    assert meta["extensions"] == []


def test_openapi_and_docs(served: dict[str, Any]) -> None:
    client = served["client"]
    spec = client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    assert "/v1/models/{name}:predict" in spec["paths"]
    assert "/v2/models/{name}/versions/{version}/infer" in spec["paths"]
    schema = spec["components"]["schemas"]["Instance_pets"]
    assert schema["required"] == ["color", "size", "weight"]
    assert schema["properties"]["color"]["enum"] == ["blue", "green", "red"]
    example = spec["paths"]["/v1/models/{name}:predict"]["post"]["requestBody"]["content"][
        "application/json"
    ]["examples"]["cancer"]["value"]
    assert predict(client, "cancer", example).status_code == 200  # the example works as is
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "openapi.json" in docs.text
    # readable without the Swagger UI scripts (offline): every operation is listed
    assert "<code>POST /v1/models/{name}:predict</code>" in docs.text
    assert "<code>GET /v2/health/ready</code>" in docs.text


def test_metrics_exposition(served: dict[str, Any]) -> None:
    client = served["client"]
    rows = records(served["cancer_x"], 2)
    assert predict(client, "cancer", {"instances": rows}).status_code == 200
    predict(client, "cancer", b"{bad")
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = resp.text
    assert "# TYPE loopml_requests_total counter" in text
    assert "# TYPE loopml_request_duration_seconds histogram" in text
    samples = parse_exposition(text)
    ok = 'loopml_requests_total{model="cancer",version="1",endpoint="v1_predict",status="200"}'
    bad = 'loopml_requests_total{model="cancer",version="1",endpoint="v1_predict",status="400"}'
    assert samples[ok] >= 1
    assert samples[bad] >= 1
    labels = 'model="cancer",version="1",endpoint="v1_predict"'
    count = f"loopml_request_duration_seconds_count{{{labels}}}"
    inf = f'loopml_request_duration_seconds_bucket{{{labels},le="+Inf"}}'
    assert samples[count] == samples[inf] >= 2
    assert samples[f'loopml_request_errors_total{{{labels},code="invalid_json"}}'] >= 1
    assert samples['loopml_batch_size_count{model="cancer"}'] >= 1
    assert samples['loopml_model_version{model="cancer",reference="cancer@champion"}'] == 1
    assert "loopml_prediction_log_rows_written_total" in samples
    assert "loopml_prediction_log_rows_dropped_total" in samples


# -- prediction log -------------------------------------------------------------------------


def test_prediction_log_rows(served: dict[str, Any]) -> None:
    client, ws = served["client"], served["ws"]
    served["app"].state.server.logger.flush()
    before = len(read_prediction_log(ws.lake, "pets"))
    rows = records(served["pets_x"], 5, start=20)
    resp = predict(client, "pets", {"instances": rows})
    assert resp.status_code == 200
    preds = resp.json()["predictions"]
    assert served["app"].state.server.logger.flush() >= 5
    log = read_prediction_log(ws.lake, "pets")
    assert len(log) == before + 5
    mine = log.set_index("prediction_id").loc[[p["prediction_id"] for p in preds]]
    assert list(mine["prediction"]) == [str(p["prediction"]) for p in preds]
    assert list(mine["color"]) == [r["color"] for r in rows]
    np.testing.assert_allclose(mine["size"], [r["size"] for r in rows])
    np.testing.assert_allclose(mine["score"], [p["probabilities"]["yes"] for p in preds])
    assert (mine["model"] == "pets").all()
    assert (mine["version"] == 1).all()
    assert (mine["latency_ms"] > 0).all()
    assert str(log["timestamp"].dtype) == "datetime64[us, UTC]"
    assert log["version"].dtype == np.int64
    assert read_prediction_log(ws.lake, "pets", version=2).empty


# -- reload, auth and startup ---------------------------------------------------------------


@pytest.fixture
def fresh(workspace: Workspace) -> Workspace:
    bundle, _ = cancer_bundle()
    register(workspace, "cancer", bundle)
    return workspace


def test_reload_needs_token(fresh: Workspace) -> None:
    app = create_app(fresh, token="s3cret", reload_interval=0, log_predictions=False)
    assert app.state.server.token == "s3cret"
    with TestClient(app, base_url="http://127.0.0.1") as client:
        resp = client.post("/v1/models/cancer:reload")
        assert_error(resp, 401, "unauthorized", header="Authorization")
        assert resp.headers["www-authenticate"] == "Bearer"
        wrong = client.post("/v1/models/cancer:reload", headers={"Authorization": "Bearer nope"})
        assert_error(wrong, 401, "unauthorized")
        ok = client.post("/v1/models/cancer:reload", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        entry = {
            "reference": "cancer@champion",
            "previous_version": 1,
            "version": 1,
            "changed": False,
        }
        assert ok.json() == {
            "model": "cancer",
            **entry,
            "entries": [entry],
            "deployment_changed": False,  # no deployment stored: the alias alone routes
            "deployment": None,
        }
        # reading stays open
        assert client.get("/v2/models/cancer").status_code == 200


def test_reload_endpoint_swaps_version(fresh: Workspace) -> None:
    x = cancer_bundle()[1]
    app = create_app(
        fresh, models={"cancer": "cancer@champion", "first": "cancer@1"}, reload_interval=0
    )
    auth = {"Authorization": f"Bearer {app.state.server.token}"}
    with TestClient(app, base_url="http://127.0.0.1", headers=auth) as client:
        v2 = register(fresh, "cancer", cancer_bundle(seed=1)[0])
        rows = records(x, 1)
        assert predict(client, "cancer", {"instances": rows}).json()["version"] == 1
        resp = client.post("/v1/models/cancer:reload")
        assert resp.status_code == 200
        assert resp.json()["changed"] is True
        assert resp.json()["version"] == v2
        assert predict(client, "cancer", {"instances": rows}).json()["version"] == v2
        pinned = client.post("/v1/models/first:reload").json()
        assert pinned["changed"] is False
        assert pinned["version"] == 1
        assert predict(client, "first", {"instances": rows}).json()["version"] == 1
        assert_error(client.post("/v1/models/nope:reload"), 404, "not_found", model="nope")


def test_periodic_reload_and_discovery(fresh: Workspace) -> None:
    import time

    x = cancer_bundle()[1]
    app = create_app(fresh, reload_interval=0.05, log_predictions=False)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        register(fresh, "cancer", cancer_bundle(seed=2)[0])
        register(fresh, "other", cancer_bundle(seed=3)[0])
        deadline = time.monotonic() + 10
        versions: set[int] = set()
        while time.monotonic() < deadline:
            versions.add(predict(client, "cancer", {"instances": records(x, 1)}).json()["version"])
            if 2 in versions and client.get("/v2/models/other/ready").status_code == 200:
                break
            time.sleep(0.02)
        assert versions >= {2}
        assert predict(client, "other", {"instances": records(x, 1)}).status_code == 200
        text = client.get("/metrics").text
        assert 'loopml_model_reloads_total{model="cancer",result="swapped"} 1' in text


def test_startup_fails_for_unknown_reference(workspace: Workspace) -> None:
    app = create_app(workspace, models={"x": "nope@champion"})
    with pytest.raises(NotFoundError), TestClient(app, base_url="http://127.0.0.1"):
        pass


def test_invalid_options(workspace: Workspace) -> None:
    with pytest.raises(ValueError, match="max_batch"):
        create_app(workspace, max_batch=0)
    with pytest.raises(ValueError, match="reload_interval"):
        create_app(workspace, reload_interval=-1)


def test_no_models_is_ready_and_404(workspace: Workspace, tmp_path: Path) -> None:
    with TestClient(
        create_app(workspace, reload_interval=0), base_url="http://127.0.0.1"
    ) as client:
        assert client.get("/v2/health/ready").status_code == 200
        body = assert_error(client.get("/v2/models/cancer"), 404, "not_found")
        assert "none" in body["hint"]
        assert body["error"]  # V2 error object


def test_body_too_large(served: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(served["app"].state.server, "max_body_bytes", 100)
    rows = records(served["cancer_x"], 3)
    body = assert_error(
        predict(served["client"], "cancer", {"instances": rows}), 413, "body_too_large"
    )
    assert body["where"] == {"field": "body"}
    assert "--max-body-bytes" in body["hint"]


def broken_bundle(*, sample: bool) -> tuple[ModelBundle, pd.DataFrame]:
    """A real, loadable model that cannot predict: the forest saw 5 columns, the pipeline
    gives it 30. With ``sample`` it keeps the training sample rows, as ``fit_bundle`` does."""
    bundle, x = cancer_bundle()
    broken = RandomForestClassifier(n_estimators=3, random_state=0).fit(
        bundle.features.transform(x)[:, :5], load_breast_cancer().target
    )
    kept = bundle.sample if sample else None
    return ModelBundle(bundle.features, broken, bundle.signature, "sklearn", sample=kept), x


def register_broken(
    ws: Workspace, name: str, *, sample: bool, alias: str | None = "champion"
) -> int:
    """Register a broken bundle as if it had worked where it was registered (registration
    warms a bundle with sample rows up too; a version can still break where it is served)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ModelBundle, "warm_up", lambda self: None)
        return register(ws, name, broken_bundle(sample=sample)[0], alias=alias)


@pytest.mark.parametrize("sample", [True, False], ids=["sample rows", "no sample rows"])
def test_a_version_that_cannot_predict_is_not_served(workspace: Workspace, sample: bool) -> None:
    """Warm-up at startup: with the bundle's sample rows, or a row made from its signature."""
    register_broken(workspace, "broken", sample=sample)
    app = create_app(workspace, reload_interval=0, log_predictions=False)
    with (
        pytest.raises(IntegrityError, match="cannot predict"),
        TestClient(app, base_url="http://127.0.0.1"),
    ):
        pass


def test_model_failure_is_json_500_without_traceback(
    fresh: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = cancer_bundle()[1]
    app = create_app(fresh, reload_interval=0, log_predictions=False)
    # raise_server_exceptions stays on: no exception may escape the app (the server would
    # close the keep-alive connection)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        runtime = app.state.server.models.runtime("cancer")

        def fail(frame: pd.DataFrame) -> Any:
            raise RuntimeError("the model fell over")

        monkeypatch.setattr(runtime.batcher, "_predict", fail)
        resp = predict(client, "cancer", {"instances": records(x, 2)})
        body = assert_error(resp, 500, "internal_error")
        assert body["where"] == {"path": "/v1/models/cancer:predict"}
        assert "fell over" not in resp.text
        assert resp.headers["x-content-type-options"] == "nosniff"
        text = client.get("/metrics").text
        assert 'model="cancer",version="1",endpoint="v1_predict",status="500"} 1' in text


def test_run_server_fails_fast(workspace: Workspace) -> None:
    import socket

    from loopml.serve import run_server

    with pytest.raises(NotFoundError, match="no model named"):
        run_server(workspace, models={"a": "nope@champion"})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(ValueError, match=f"cannot listen on 127.0.0.1:{port}"):
            run_server(workspace, port=port)
