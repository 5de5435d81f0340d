"""Fuzzing the V1 and V2 endpoints: malformed JSON, wrong types, NaN/Infinity, missing and
extra fields, huge numbers, nested junk and wrong content types (pickle included, refused and
never deserialized) always get a 4xx JSON error naming what was wrong, never a 5xx; afterwards
a valid request is still answered correctly."""

from __future__ import annotations

import json
import pickle
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loopml.registry import load_model, register_model, set_alias
from loopml.serve import create_app
from loopml.workspace import init

from .test_serve_app import cancer_bundle, pets_bundle, records

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

CONTENT_TYPES = [
    "application/json",
    "application/json",
    "application/json",
    "application/json; charset=utf-8",
    "application/x-python-pickle",
    "application/octet-stream",
    "text/plain",
    "multipart/form-data; boundary=x",
    None,
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([10**400, -(10**400), 2**63, 2**64]),
    st.floats(),  # NaN and Infinity too: json.dumps writes them as bare NaN/Infinity
    st.sampled_from([1e39, -1e39, 1e308, 3.5e38, 0.0, -0.0]),
    st.text(max_size=8),
    st.sampled_from(["red", "green", "NaN", "Infinity", "1e5", "", "\x00", "2020-01-01"]),
)
junk = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    ws = init(tmp_path_factory.mktemp("fuzz") / "ws")
    cancer, cancer_x = cancer_bundle()
    pets, pets_x = pets_bundle("classification")
    for name, bundle in (("cancer", cancer), ("pets", pets)):
        mv = register_model(ws, name, bundle)
        set_alias(ws, name, "champion", mv.version)
    app = create_app(ws, reload_interval=0, log_predictions=False, max_rows=50)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield {
            "ws": ws,
            "client": client,
            "rows": {"cancer": records(cancer_x, 3), "pets": records(pets_x, 3)},
            "x": {"cancer": cancer_x, "pets": pets_x},
        }
    ws.close()


@st.composite
def v1_body(draw: st.DrawFn, rows: dict[str, list[dict[str, Any]]]) -> tuple[str, Any]:
    model = draw(st.sampled_from(["cancer", "pets"]))
    base = [dict(r) for r in rows[model]]
    choice = draw(st.integers(0, 6))
    if choice == 0:
        return model, draw(junk)
    if choice == 1:
        return model, {"instances": draw(junk)}
    recs = base[: draw(st.integers(1, 3))]
    rec = recs[draw(st.integers(0, len(recs) - 1))]
    field = draw(st.sampled_from(sorted(rec)))
    if choice == 2:
        rec[field] = draw(junk)  # a wrong type, huge number, nested junk, ...
    elif choice == 3:
        del rec[field]  # missing
    elif choice == 4:
        rec[draw(st.text(max_size=6))] = draw(junk)  # extra (ignored) or overwriting one
    elif choice == 5:
        recs.append(draw(junk))  # a row that is not an object
    else:
        return model, {"instances": recs, draw(st.text(max_size=5)): draw(junk)}
    return model, {"instances": recs}


@st.composite
def v2_body(draw: st.DrawFn, rows: dict[str, list[dict[str, Any]]]) -> tuple[str, Any]:
    model = draw(st.sampled_from(["cancer", "pets"]))
    recs = rows[model]
    names = list(recs[0])
    tensors: list[Any] = []
    for name in names:
        data = [r[name] for r in recs]
        dtype = "BYTES" if isinstance(data[0], str) else "FP64"
        tensors.append({"name": name, "shape": [len(data)], "datatype": dtype, "data": data})
    choice = draw(st.integers(0, 6))
    if choice == 0:
        return model, draw(junk)
    if choice == 1:
        return model, {"inputs": draw(junk)}
    k = draw(st.integers(0, len(tensors) - 1))
    key = draw(st.sampled_from(["name", "shape", "datatype", "data", "parameters", "extra"]))
    if choice == 2:
        tensors[k] = {**tensors[k], key: draw(junk)}
    elif choice == 3:
        tensors[k] = {kk: v for kk, v in tensors[k].items() if kk != key}
    elif choice == 4:
        tensors[k] = {**tensors[k], "data": [draw(junk) for _ in tensors[k]["data"]]}
    elif choice == 5:
        tensors[k] = draw(junk)
    else:
        return model, {"inputs": tensors, draw(st.sampled_from(["id", "outputs", "x"])): draw(junk)}
    return model, {"inputs": tensors}


raw_bodies = st.one_of(
    st.binary(max_size=64),
    st.sampled_from(
        [
            b"",
            b"{",
            b'{"instances": [',
            b'{"instances": [{"a": NaN}]}',
            b'{"instances": [{"a": Infinity}]}',
            b"[1, 2",
            b"NaN",
            b"\xff\xfe",
            pickle.dumps({"instances": [{"a": 1}]}),
            pickle.dumps(object),
        ]
    ),
)


def assert_client_error(resp: Any, payload: Any) -> None:
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text, payload)
    assert resp.headers["content-type"] == "application/json", payload
    body = orjson.loads(resp.content)
    assert set(body) >= {"code", "message", "where", "hint"}, body
    assert body["where"], body  # names the field, row, header or input
    assert "Traceback" not in resp.text


def dumps(body: Any) -> bytes:
    """JSON as a careless client writes it: huge integers and bare NaN/Infinity included."""
    return json.dumps(body).encode()


def send(client: TestClient, path: str, content: bytes, ctype: str | None) -> Any:
    headers = {} if ctype is None else {"content-type": ctype}
    return client.post(path, content=content, headers=headers)


@pytest.mark.slow
def test_fuzz_never_5xx_and_still_answers(fuzz_server: dict[str, Any]) -> None:
    client: TestClient = fuzz_server["client"]
    rows = fuzz_server["rows"]
    counted = {"n": 0}

    def check(path: str, content: bytes, ctype: str | None, payload: Any) -> None:
        counted["n"] += 1
        resp = send(client, path, content, ctype)
        if resp.status_code == 200:  # a payload that happens to be valid (extra field, ...)
            assert ctype is not None and ctype.startswith("application/json"), payload
            return
        assert_client_error(resp, payload)

    common = settings(
        max_examples=900,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )

    @common
    @given(v1_body(rows), st.sampled_from(CONTENT_TYPES))
    def fuzz_v1(item: tuple[str, Any], ctype: str | None) -> None:
        model, body = item
        check(f"/v1/models/{model}:predict", dumps(body), ctype, body)

    @common
    @given(v2_body(rows), st.sampled_from(CONTENT_TYPES))
    def fuzz_v2(item: tuple[str, Any], ctype: str | None) -> None:
        model, body = item
        check(f"/v2/models/{model}/infer", dumps(body), ctype, body)

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        raw_bodies,
        st.sampled_from(CONTENT_TYPES),
        st.sampled_from(
            ["/v1/models/cancer:predict", "/v2/models/pets/infer", "/v1/models/nope:predict"]
        ),
    )
    def fuzz_raw(content: bytes, ctype: str | None, path: str) -> None:
        check(path, content, ctype, content)

    fuzz_v1()
    fuzz_v2()
    fuzz_raw()
    assert counted["n"] >= 2000

    # still answering valid requests correctly
    x = fuzz_server["x"]["pets"]
    resp = send(
        client,
        "/v1/models/pets:predict",
        orjson.dumps({"instances": records(x, 10)}),
        "application/json",
    )
    assert resp.status_code == 200, resp.text
    expected = load_model(fuzz_server["ws"], "pets").predict(x.iloc[:10])
    assert [p["prediction"] for p in resp.json()["predictions"]] == expected.labels.tolist()
    got = np.array([list(p["probabilities"].values()) for p in resp.json()["predictions"]])
    assert expected.probabilities is not None
    np.testing.assert_allclose(got, expected.probabilities, rtol=0, atol=1e-6)


def test_pickle_is_refused_never_loaded(fuzz_server: dict[str, Any]) -> None:
    client: TestClient = fuzz_server["client"]

    class Boom:
        def __reduce__(self) -> Any:
            return (pytest.fail, ("the server unpickled a request body",))

    resp = send(
        client, "/v1/models/cancer:predict", pickle.dumps(Boom()), "application/x-python-pickle"
    )
    assert_client_error(resp, "pickle")
    assert resp.status_code == 415
    assert resp.json()["where"] == {"header": "Content-Type"}


@pytest.mark.parametrize("datatype", [["FP64"], {"a": 1}, 3, None])
def test_v2_datatype_that_is_not_text_is_a_422(fuzz_server: dict[str, Any], datatype: Any) -> None:
    """Found by the fuzz test: a list as datatype was a 500 (unhashable in a set lookup)."""
    client: TestClient = fuzz_server["client"]
    name = next(iter(fuzz_server["rows"]["cancer"][0]))
    body = {"inputs": [{"name": name, "shape": [1], "datatype": datatype, "data": [1.0]}]}
    resp = send(client, "/v2/models/cancer/infer", dumps(body), "application/json")
    assert_client_error(resp, body)
    assert resp.status_code == 422
    assert resp.json()["where"]["field"] == "inputs[0].datatype"
