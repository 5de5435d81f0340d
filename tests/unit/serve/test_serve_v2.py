"""The Open Inference Protocol (KServe V2) endpoints, in-process."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge

from loopml.registry import load_model, register_model, set_alias
from loopml.serve import create_app
from loopml.train import fit_bundle
from loopml.workspace import init

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's notice about httpx in its TestClient
    from starlette.testclient import TestClient


def _register(
    ws: Any,
    name: str,
    df: pd.DataFrame,
    target: str,
    est: Any,
    task: str,
    exclude: list[str] | None = None,
) -> pd.DataFrame:
    bundle, x = fit_bundle(df, target, est, task=task, features={"exclude": exclude or []})
    mv = register_model(ws, name, bundle)
    set_alias(ws, name, "champion", mv.version)
    return x


@pytest.fixture(scope="module")
def v2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    ws = init(tmp_path_factory.mktemp("v2") / "ws")
    cancer = load_breast_cancer(as_frame=True).frame
    cancer_x = _register(
        ws,
        "cancer",
        cancer,
        "target",
        RandomForestClassifier(n_estimators=20, random_state=0),
        "classification",
    )
    rng = np.random.default_rng(1)
    n = 200
    color = rng.choice(["red", "green", "blue"], n)
    size = rng.normal(10, 2, n)
    pets = pd.DataFrame(
        {
            "color": color,
            "size": size,
            "label": np.where(color == "red", "yes", "no"),
            "price": size * 2 + (color == "blue"),
        }
    )
    pets_x = _register(
        ws, "pets", pets, "label", LogisticRegression(), "classification", exclude=["price"]
    )
    _register(ws, "prices", pets, "price", Ridge(), "regression", exclude=["label"])
    app = create_app(ws, reload_interval=0, log_predictions=False)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield {"ws": ws, "client": client, "cancer_x": cancer_x, "pets_x": pets_x}
    ws.close()


def tensors(x: pd.DataFrame, nested: bool = False) -> list[dict[str, Any]]:
    out = []
    for col in x.columns:
        values = x[col].tolist()
        numeric = x[col].dtype.kind == "f"
        out.append(
            {
                "name": col,
                "shape": [len(x), 1] if nested else [len(x)],
                "datatype": "FP64" if numeric else "BYTES",
                "data": [[v] for v in values] if nested else values,
            }
        )
    return out


def infer(client: TestClient, model: str, body: Any, version: str | None = None) -> Any:
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    return client.post(path, json=body)


def outputs(resp: Any) -> dict[str, dict[str, Any]]:
    assert resp.status_code == 200, resp.text
    return {o["name"]: o for o in resp.json()["outputs"]}


def bad(resp: Any, **where: Any) -> dict[str, Any]:
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert body["code"] == "invalid_input"
    assert body["error"]  # the V2 error object
    for key, value in where.items():
        assert body["where"].get(key) == value, body
    return body  # type: ignore[no-any-return]


# -- metadata and readiness -----------------------------------------------------------------


def test_model_metadata(v2: dict[str, Any]) -> None:
    client = v2["client"]
    meta = client.get("/v2/models/pets").json()
    assert meta["name"] == "pets"
    assert meta["versions"] == ["1"]
    assert meta["platform"] == "loopml-sklearn"
    assert meta["inputs"] == [
        {"name": "color", "datatype": "BYTES", "shape": [-1]},
        {"name": "size", "datatype": "FP64", "shape": [-1]},
    ]
    outs = {o["name"]: o for o in meta["outputs"]}
    assert outs["label"]["datatype"] == "BYTES"
    assert outs["probabilities"] == {"name": "probabilities", "datatype": "FP64", "shape": [-1, 2]}
    assert outs["prediction_id"]["datatype"] == "BYTES"
    assert client.get("/v2/models/pets/versions/1").json() == meta
    assert client.get("/v2/models/cancer").json()["outputs"][0]["datatype"] == "INT64"
    prices = client.get("/v2/models/prices").json()
    assert [o["name"] for o in prices["outputs"]] == ["label", "prediction_id"]
    assert prices["outputs"][0]["datatype"] == "FP64"


def test_model_ready_and_wrong_version(v2: dict[str, Any]) -> None:
    client = v2["client"]
    assert client.get("/v2/models/cancer/ready").json() == {"name": "cancer", "ready": True}
    assert client.get("/v2/models/cancer/versions/1/ready").status_code == 200
    resp = client.get("/v2/models/cancer/versions/7")
    assert resp.status_code == 404
    body = resp.json()
    assert body["code"] == "not_found"
    assert body["where"] == {"model": "cancer", "version": "7"}
    assert "version 1" in body["error"]
    assert client.get("/v2/models/nope/ready").status_code == 404


# -- inference ------------------------------------------------------------------------------


def test_infer_named_tensors_matches_load_model(v2: dict[str, Any]) -> None:
    x = v2["cancer_x"].iloc[10:17]
    expected = load_model(v2["ws"], "cancer").predict(x)
    assert expected.probabilities is not None
    for nested in (False, True):
        resp = infer(
            v2["client"],
            "cancer",
            {"id": "req-7", "parameters": {"a": 1}, "inputs": tensors(x, nested)},
        )
        body = resp.json()
        assert body["model_name"] == "cancer"
        assert body["model_version"] == "1"
        assert body["id"] == "req-7"
        out = outputs(resp)
        assert out["label"] == {
            "name": "label",
            "shape": [7],
            "datatype": "INT64",
            "data": expected.labels.tolist(),
        }
        proba = out["probabilities"]
        assert proba["shape"] == [7, 2]
        assert proba["datatype"] == "FP64"
        np.testing.assert_allclose(np.array(proba["data"]).reshape(7, 2), expected.probabilities)
        assert out["prediction_id"]["shape"] == [7]
        assert len(set(out["prediction_id"]["data"])) == 7


def test_infer_matrix_flat_and_nested(v2: dict[str, Any]) -> None:
    x = v2["cancer_x"].iloc[:4]
    expected = load_model(v2["ws"], "cancer").predict(x).labels.tolist()
    matrix = x.to_numpy().tolist()
    for data in (matrix, [v for row in matrix for v in row]):
        body = {"inputs": [{"name": "input-0", "shape": [4, 30], "datatype": "FP64", "data": data}]}
        assert (
            outputs(infer(v2["client"], "cancer", body, version="1"))["label"]["data"] == expected
        )


def test_infer_string_labels_regression_and_output_filter(v2: dict[str, Any]) -> None:
    x = v2["pets_x"].iloc[:5]
    out = outputs(infer(v2["client"], "pets", {"inputs": tensors(x)}))
    assert out["label"]["datatype"] == "BYTES"
    assert set(out["label"]["data"]) <= {"yes", "no"}
    resp = infer(v2["client"], "prices", {"inputs": tensors(x), "outputs": [{"name": "label"}]})
    only = outputs(resp)
    assert list(only) == ["label"]
    assert only["label"]["datatype"] == "FP64"
    expected = load_model(v2["ws"], "prices").predict(x).labels
    np.testing.assert_allclose(only["label"]["data"], expected)
    assert isinstance(resp.json()["id"], str)


# -- bad requests ---------------------------------------------------------------------------


def test_bad_datatypes(v2: dict[str, Any]) -> None:
    client, x = v2["client"], v2["pets_x"].iloc[:2]
    t = tensors(x)
    t[1]["datatype"] = "FP65"
    bad(infer(client, "pets", {"inputs": t}), input="size", field="inputs[1].datatype")
    t = tensors(x)
    t[1]["datatype"] = "BYTES"
    bad(infer(client, "pets", {"inputs": t}), input="size", field="inputs[1].datatype")
    t = tensors(x)
    t[0]["datatype"] = "FP64"
    bad(infer(client, "pets", {"inputs": t}), input="color", field="inputs[0].datatype")
    mx = {"inputs": [{"name": "m", "shape": [1, 30], "datatype": "BYTES", "data": ["a"] * 30}]}
    bad(infer(client, "cancer", mx), input="m", field="inputs[0].datatype")


def test_bad_shapes(v2: dict[str, Any]) -> None:
    client, x = v2["client"], v2["pets_x"].iloc[:3]
    t = tensors(x)
    t[1]["shape"] = [4]
    bad(infer(client, "pets", {"inputs": t}), input="size", field="inputs[1].data")
    t = tensors(x)
    t[1]["shape"] = [3, 2]
    t[1]["data"] = [1.0] * 6
    bad(infer(client, "pets", {"inputs": t}), input="size", field="inputs[1].shape")
    t = tensors(x)
    t[1]["shape"] = [-3]
    bad(infer(client, "pets", {"inputs": t}), input="size", field="inputs[1].shape")
    t = tensors(x)
    t[1] = {**t[1], "shape": [2], "data": t[1]["data"][:2]}
    body = bad(infer(client, "pets", {"inputs": t}), input="size")
    assert "rows" in body["message"]
    cx = v2["cancer_x"].iloc[:2].to_numpy()
    wide = {
        "inputs": [
            {"name": "m", "shape": [2, 29], "datatype": "FP64", "data": cx[:, :29].ravel().tolist()}
        ]
    }
    bad(infer(client, "cancer", wide), input="m", field="inputs[0].shape")
    mixed = {"inputs": [{"name": "m", "shape": [3, 2], "datatype": "FP64", "data": [1.0] * 6}]}
    body = bad(infer(client, "pets", mixed), input="m")
    assert "numeric" in body["message"]
    empty = tensors(x.iloc[:0])
    bad(infer(client, "pets", {"inputs": empty}), field="inputs")


def test_bad_structure(v2: dict[str, Any]) -> None:
    client, x = v2["client"], v2["pets_x"].iloc[:2]
    bad(infer(client, "pets", {"inputs": []}), field="inputs")
    bad(infer(client, "pets", {}), field="inputs")
    bad(infer(client, "pets", {"inputs": tensors(x), "extra": 1}), field="extra")
    bad(infer(client, "pets", {"inputs": tensors(x), "id": 5}), field="id")
    bad(infer(client, "pets", {"inputs": tensors(x), "parameters": [1]}), field="parameters")
    bad(
        infer(client, "pets", {"inputs": tensors(x), "outputs": [{"name": "nope"}]}),
        field="outputs[0].name",
    )
    bad(
        infer(client, "prices", {"inputs": tensors(x), "outputs": [{"name": "probabilities"}]}),
        field="outputs[0].name",
    )
    t = tensors(x)
    del t[0]["data"]
    bad(infer(client, "pets", {"inputs": t}), field="inputs[0].data")
    bad(infer(client, "pets", {"inputs": [5]}), field="inputs[0]")
    t = tensors(x)
    bad(infer(client, "pets", {"inputs": t[1:]}), field="color")  # a feature is missing
    t = tensors(x)
    t.append({**t[1], "name": "height"})  # an extra input is ignored, as on every path
    assert infer(client, "pets", {"inputs": t}).status_code == 200
    t = tensors(x)
    bad(infer(client, "pets", {"inputs": [*t, t[1]]}), input="size", field="inputs[2]")
    bad(infer(client, "pets", ["not", "an", "object"]), field="body")


def test_bad_values_name_row_and_field(v2: dict[str, Any]) -> None:
    client, x = v2["client"], v2["pets_x"].iloc[:3]
    t = tensors(x)
    t[1]["data"][2] = "big"
    bad(infer(client, "pets", {"inputs": t}), row=2, field="size")
    t = tensors(x)
    t[0]["data"][1] = "purple"
    bad(infer(client, "pets", {"inputs": t}), row=1, field="color")
    t = tensors(x)
    t[1]["data"][0] = None
    bad(infer(client, "pets", {"inputs": t}), row=0, field="size")
    cx = v2["cancer_x"].iloc[:2].to_numpy().ravel().tolist()
    cx[31] = None  # row 1, second feature
    body = {"inputs": [{"name": "m", "shape": [2, 30], "datatype": "FP64", "data": cx}]}
    bad(infer(client, "cancer", body), row=1, field="mean texture")


def test_malformed_json_and_binary_extension(v2: dict[str, Any]) -> None:
    client = v2["client"]
    json_type = {"content-type": "application/json"}
    resp = client.post("/v2/models/cancer/infer", content=b"{nope", headers=json_type)
    assert resp.status_code == 400
    assert resp.json()["code"] == "invalid_json"
    assert resp.json()["error"]
    resp = client.post("/v2/models/cancer/infer", content=b"{nope")  # no Content-Type
    assert resp.status_code == 415
    assert resp.json()["error"]
    resp = client.post(
        "/v2/models/cancer/infer",
        content=b"{}",
        headers={"Inference-Header-Content-Length": "2", **json_type},
    )
    bad(resp, header="Inference-Header-Content-Length")
    resp = infer(client, "nope", {"inputs": []})
    assert resp.status_code == 404
    assert "cancer" in resp.json()["hint"]
    resp = infer(client, "cancer", {"inputs": []}, version="3")
    assert resp.status_code == 404
