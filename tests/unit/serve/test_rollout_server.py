"""The server routes by the model's deployment: A/B, canary and shadow (in-process)."""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from loopml.registry.deployments import deploy
from loopml.serve import create_app
from loopml.serve.metrics import parse_exposition
from loopml.workspace import init
from tests.unit.serve.test_serve_app import cancer_bundle, records, register

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


@pytest.fixture
def two_versions(tmp_path: Any) -> Iterator[dict[str, Any]]:
    ws = init(tmp_path / "ws")
    first, x = cancer_bundle(seed=0)
    second, _ = cancer_bundle(seed=1)
    register(ws, "cancer", first)  # champion
    register(ws, "cancer", second, alias=None)
    app = create_app(ws, reload_interval=0, log_predictions=False)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield {"ws": ws, "client": client, "server": app.state.server, "rows": records(x, 1)}
    ws.close()


def _predict(ctx: dict[str, Any], key: str | None = None, ref: str = "cancer") -> Any:
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["x-loopml-key"] = key
    resp = ctx["client"].post(
        f"/v1/models/{ref}:predict",
        content=orjson.dumps({"instances": ctx["rows"]}),
        headers=headers,
    )
    assert resp.status_code == 200, resp.text
    version = resp.json()["version"]
    assert resp.headers["x-loopml-version"] == str(version)  # every answer says who answered
    return version


def _reload(ctx: dict[str, Any]) -> dict[str, Any]:
    token = ctx["server"].token
    resp = ctx["client"].post(
        "/v1/models/cancer:reload", headers={"authorization": f"Bearer {token}"}
    )
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


def test_without_a_deployment_the_champion_answers(two_versions: dict[str, Any]) -> None:
    assert {_predict(two_versions, key=f"k{i}") for i in range(20)} == {1}


def test_ab_split_is_sticky_by_key_and_honours_the_weights(two_versions: dict[str, Any]) -> None:
    deploy(two_versions["ws"], "cancer", ab={1: 70, 2: 30})
    assert _reload(two_versions)["deployment_changed"] is True
    keys = [f"user-{i}" for i in range(300)]
    first = {k: _predict(two_versions, key=k) for k in keys}
    shares = Counter(first.values())
    assert set(shares) == {1, 2}
    assert 0.55 < shares[1] / len(keys) < 0.85
    assert all(_predict(two_versions, key=k) == first[k] for k in keys[:40])  # sticky
    # an explicit version is answered by that version, whatever the split says
    assert _predict(two_versions, key="user-0", ref="cancer@2") == 2


def test_raising_a_canary_moves_only_keys_to_the_canary(two_versions: dict[str, Any]) -> None:
    ws = two_versions["ws"]
    deploy(ws, "cancer", canary={2: 10})
    _reload(two_versions)
    keys = [f"k{i}" for i in range(300)]
    before = {k: _predict(two_versions, key=k) for k in keys}
    deploy(ws, "cancer", canary={2: 30}, expected=1)
    _reload(two_versions)
    after = {k: _predict(two_versions, key=k) for k in keys}
    moved = [k for k in keys if before[k] != after[k]]
    assert all(before[k] == 1 and after[k] == 2 for k in moved)  # never back to the primary
    assert 0.1 < len(moved) / len(keys) < 0.3


def test_a_shadow_scores_every_request_and_never_answers(two_versions: dict[str, Any]) -> None:
    deploy(two_versions["ws"], "cancer", single=1, shadow=2)
    _reload(two_versions)
    server = two_versions["server"]
    assert {_predict(two_versions, key=f"k{i}") for i in range(30)} == {1}
    # the shadow's predictions are counted under their own endpoint
    shadow = server.models.shadow("cancer")
    assert shadow is not None and shadow.version == 2

    def boom(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("the shadow broke")

    shadow.batcher._predict = boom  # a failing shadow must not touch the answer
    shadow.batcher._inline = False
    assert {_predict(two_versions) for _ in range(10)} == {1}
    text = two_versions["client"].get("/metrics").text
    got = parse_exposition(text)
    ok = sum(v for k, v in got.items() if 'endpoint="shadow"' in k and 'status="200"' in k)
    failed = sum(v for k, v in got.items() if 'endpoint="shadow"' in k and 'status="500"' in k)
    assert ok >= 1 and failed >= 1, [k for k in got if "shadow" in k]


def test_removing_nothing_and_bad_revisions_keep_serving(two_versions: dict[str, Any]) -> None:
    ws = two_versions["ws"]
    deploy(ws, "cancer", single=2)
    _reload(two_versions)
    assert _predict(two_versions) == 2
    assert _reload(two_versions)["deployment_changed"] is False  # same revision: no swap


def test_a_new_deployment_is_picked_up_within_a_second_without_a_failed_request(
    tmp_path: Any,
) -> None:
    import time

    ws = init(tmp_path / "ws")
    first, x = cancer_bundle(seed=0)
    second, _ = cancer_bundle(seed=1)
    register(ws, "cancer", first)
    register(ws, "cancer", second, alias=None)
    app = create_app(ws, reload_interval=0.2, log_predictions=False)
    ctx: dict[str, Any] = {"rows": records(x, 1)}
    with TestClient(app, base_url="http://127.0.0.1") as client:
        ctx["client"] = client
        assert _predict(ctx) == 1
        deploy(ws, "cancer", single=2)
        t0 = time.monotonic()
        seen = []
        while time.monotonic() - t0 < 5:
            seen.append(_predict(ctx))  # every request answers 200 (checked in _predict)
            if seen[-1] == 2:
                break
        assert seen[-1] == 2
        assert time.monotonic() - t0 < 1.5
    ws.close()


def test_v1_predict_takes_the_fast_path_with_the_routes_checks(
    two_versions: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import loopml.serve.app as app_module

    async def routed(*_a: Any) -> Any:
        raise AssertionError("the Starlette route read a predict request")

    monkeypatch.setattr(app_module, "read_body", routed)  # only the route reads through it
    assert _predict(two_versions) == 1
    client = two_versions["client"]
    body = orjson.dumps({"instances": two_versions["rows"]})
    wrong_type = client.post(
        "/v1/models/cancer:predict", content=body, headers={"content-type": "text/plain"}
    )
    assert wrong_type.status_code == 415 and wrong_type.json()["code"] == "unsupported_media_type"
    assert wrong_type.headers["x-content-type-options"] == "nosniff"  # Guard still wraps it
    foreign = client.post(
        "/v1/models/cancer:predict",
        content=body,
        headers={"content-type": "application/json", "host": "evil.example"},
    )
    assert foreign.status_code == 421
    unknown = client.post(
        "/v1/models/nope:predict", content=body, headers={"content-type": "application/json"}
    )
    assert unknown.status_code == 404 and unknown.json()["where"]["model"] == "nope"
    # V2 infer takes it too, by name and by version
    sig = server_signature(two_versions)
    v2 = {
        "inputs": [
            {"name": f, "shape": [1], "datatype": "FP64", "data": [two_versions["rows"][0][f]]}
            for f in sig
        ]
    }
    for path in ("/v2/models/cancer/infer", "/v2/models/cancer/versions/1/infer"):
        resp = client.post(
            path, content=orjson.dumps(v2), headers={"content-type": "application/json"}
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["model_version"] == "1"
        assert resp.headers["x-loopml-version"] == "1"
    missing = client.post(
        "/v2/models/cancer/versions/9/infer",
        content=orjson.dumps(v2),
        headers={"content-type": "application/json"},
    )
    assert missing.status_code == 404 and "error" in missing.json()  # the V2 error object


def server_signature(ctx: dict[str, Any]) -> list[str]:
    runtime = ctx["server"].models.runtime("cancer")
    return [f.name for f in runtime.signature.inputs]
