"""A real uvicorn server on 127.0.0.1: HTTP, concurrency with batching, hot reload, shutdown."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import httpx
import orjson
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier

from loopml.registry import load_model, register_model, set_alias
from loopml.serve import read_prediction_log, start_background_server
from loopml.serve.metrics import parse_exposition
from loopml.train import fit_bundle
from loopml.workspace import Workspace


def cancer(ws: Workspace, seed: int = 0) -> tuple[int, pd.DataFrame]:
    df = load_breast_cancer(as_frame=True).frame
    bundle, x = fit_bundle(df, "target", RandomForestClassifier(n_estimators=20, random_state=seed))
    mv = register_model(ws, "cancer", bundle)
    set_alias(ws, "cancer", "champion", mv.version)
    return mv.version, x


def test_server_end_to_end(workspace: Workspace) -> None:
    _, x = cancer(workspace)
    server = start_background_server(workspace, "127.0.0.1", 0, reload_interval=0)
    try:
        assert server.url.startswith("http://127.0.0.1:") and server.port > 0
        with httpx.Client(base_url=server.url, timeout=10) as client:
            rows = x.iloc[:5].to_dict("records")
            resp = client.post("/v1/models/cancer:predict", json={"instances": rows})
            assert resp.status_code == 200
            assert "server" not in resp.headers  # the software is not named to every client
            assert "date" in resp.headers
            expected = load_model(workspace, "cancer").predict(x.iloc[:5]).labels.tolist()
            assert [p["prediction"] for p in resp.json()["predictions"]] == expected
            infer = client.post(
                "/v2/models/cancer/infer",
                json={
                    "id": "1",
                    "inputs": [
                        {
                            "name": "x",
                            "shape": [5, 30],
                            "datatype": "FP64",
                            "data": x.iloc[:5].to_numpy().tolist(),
                        }
                    ],
                },
            )
            assert infer.status_code == 200 and infer.json()["id"] == "1"
            assert infer.json()["outputs"][0]["data"] == expected
            bad = client.post(
                "/v1/models/cancer:predict",
                content=b"{oops",
                headers={"content-type": "application/json"},
            )
            assert bad.status_code == 400 and bad.json()["code"] == "invalid_json"
            untyped = client.post("/v1/models/cancer:predict", content=b"{oops")
            assert untyped.status_code == 415
            assert client.get("/docs").status_code == 200
    finally:
        server.stop()
    # stopping flushed the prediction log
    assert len(read_prediction_log(workspace.lake, "cancer")) == 10
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.url}/v2/health/live", timeout=1)


def test_concurrent_clients_are_batched(workspace: Workspace) -> None:
    _, x = cancer(workspace)
    rows = x.to_dict("records")
    server = start_background_server(workspace, reload_interval=0, max_wait_ms=5)
    clients, per_client = 12, 15
    try:

        async def client_loop(client: httpx.AsyncClient, k: int) -> list[int]:
            statuses = []
            for i in range(per_client):
                row = rows[(k * per_client + i) % len(rows)]
                r = await client.post("/v1/models/cancer:predict", json={"instances": [row]})
                statuses.append(r.status_code)
            return statuses

        async def main() -> list[list[int]]:
            limits = httpx.Limits(max_connections=clients)
            async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30) as c:
                return list(await asyncio.gather(*(client_loop(c, k) for k in range(clients))))

        statuses = asyncio.run(main())
        assert all(s == 200 for batch in statuses for s in batch)
        samples = parse_exposition(httpx.get(f"{server.url}/metrics").text)
    finally:
        server.stop()
    count = samples['loopml_batch_size_count{model="cancer"}']
    singles = samples['loopml_batch_size_bucket{model="cancer",le="1"}']
    total_rows = samples['loopml_batch_size_sum{model="cancer"}']
    assert total_rows == clients * per_client
    assert count < total_rows  # fewer predict calls than requests
    assert singles < count  # some calls served more than one request
    ok = 'loopml_requests_total{model="cancer",version="1",endpoint="v1_predict",status="200"}'
    assert samples[ok] == clients * per_client


def test_hot_reload_under_load_has_no_failed_request(workspace: Workspace) -> None:
    _, x = cancer(workspace)
    rows = x.head(50).to_dict("records")
    server = start_background_server(workspace, reload_interval=0.1, log_predictions=False)
    per_client: dict[int, list[tuple[int, int | None]]] = {}
    stop = threading.Event()

    def client_loop(k: int) -> None:
        seen: list[tuple[int, int | None]] = []
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for i in range(400):  # bounded
                if stop.is_set():
                    break
                r = client.post(
                    "/v1/models/cancer:predict", json={"instances": [rows[(i + k) % len(rows)]]}
                )
                version = r.json().get("version") if r.status_code == 200 else None
                seen.append((r.status_code, version))
        per_client[k] = seen

    threads = [threading.Thread(target=client_loop, args=(k,)) for k in range(4)]
    new_version: int | None = None
    try:
        for t in threads:
            t.start()
        time.sleep(0.3)
        new_version, _ = cancer(workspace, seed=1)  # registers v2 and moves the alias
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            r = httpx.get(f"{server.url}/v2/models/cancer", timeout=5)
            if r.json()["versions"] == [str(new_version)]:
                break
            time.sleep(0.05)
        time.sleep(0.3)  # keep the load on across and after the swap
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        server.stop()
    results = [r for seen in per_client.values() for r in seen]
    for seen in per_client.values():  # each client moves to the new version and stays there
        versions_seen = [v for _, v in seen if v is not None]
        assert versions_seen == sorted(versions_seen)
    statuses = {s for s, _ in results}
    versions = {v for _, v in results}
    assert statuses == {200}, statuses
    assert versions == {1, new_version}
    assert len(results) > 20


def test_startup_error_is_raised(workspace: Workspace) -> None:
    from loopml.errors import NotFoundError

    with pytest.raises(NotFoundError, match="no model named"):
        start_background_server(workspace, models={"a": "nope@champion"})


def test_keep_alive_survives_every_kind_of_error(workspace: Workspace) -> None:
    """One connection, 50 bad requests of each kind, each followed by a good one: all answered,
    on the same connection (an error used to close it: a 500 let the exception reach uvicorn)."""
    _, x = cancer(workspace)
    server = start_background_server(
        workspace, reload_interval=0, log_predictions=False, max_body_bytes=20_000
    )
    runtime = server.model_server.models.runtime("cancer")  # type: ignore[union-attr]
    predict = runtime.batcher._predict

    def sometimes_fails(frame: pd.DataFrame) -> object:  # a model that breaks on one input
        if (frame["mean radius"] == 12345.0).any():
            raise RuntimeError("the model fell over")
        return predict(frame)

    runtime.batcher._predict = sometimes_fails
    row = x.iloc[0].to_dict()
    good = {"instances": [row]}
    json_type = {"content-type": "application/json"}
    bad: dict[str, tuple[int, dict[str, object]]] = {
        "bad json": (400, {"content": b'{"instances": [', "headers": json_type}),
        "huge number": (422, {"json": {"instances": [{**row, "mean texture": 1e308}]}}),
        "unknown model": (404, {"json": good, "url": "/v1/models/nope:predict"}),
        "text/plain": (
            415,
            {"content": orjson.dumps(good), "headers": {"content-type": "text/plain"}},
        ),
        "no content type": (415, {"content": orjson.dumps(good)}),
        "too large": (413, {"json": {"instances": [row] * 100}}),
        "too large, chunked": (
            413,
            {"content": iter([orjson.dumps({"instances": [row] * 100})]), "headers": json_type},
        ),
        "model failure": (500, {"json": {"instances": [{**row, "mean radius": 12345.0}]}}),
        "wrong host": (421, {"json": good, "headers": {"host": "evil.example"}}),
    }
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert client.get("/v2/health/ready").status_code == 200
            first = _connections(client)
            for kind, (status, request) in bad.items():
                for _ in range(50):
                    options = dict(request)
                    url = str(options.pop("url", "/v1/models/cancer:predict"))
                    if kind == "too large, chunked":
                        options["content"] = iter([orjson.dumps({"instances": [row] * 100})])
                    r = client.post(url, **options)  # type: ignore[arg-type]
                    assert r.status_code == status, (kind, r.text)
                    assert r.json()["code"], kind
                    ok = client.post("/v1/models/cancer:predict", json=good)
                    assert ok.status_code == 200, (kind, ok.text)
            assert _connections(client) == first  # never reconnected
    finally:
        server.stop()


def _connections(client: httpx.Client) -> list[int]:
    """Ids of the client's pooled connections (httpcore's pool)."""
    pool = client._transport._pool  # type: ignore[attr-defined]
    return [id(c) for c in pool.connections]


def test_a_background_server_leaves_the_host_process_logging_open(
    workspace: Workspace, tmp_path: Path
) -> None:
    """Defect: uvicorn's default logging setup (dictConfig) closed every handler of the
    process that embeds the server, a user's log file included."""
    import logging

    handler = logging.FileHandler(tmp_path / "host.log")
    logging.getLogger().addHandler(handler)
    try:
        cancer(workspace)
        server = start_background_server(workspace, "127.0.0.1", 0, reload_interval=0)
        server.stop()
        assert handler.stream is not None and not handler.stream.closed
        logging.getLogger("host").warning("still logged")
        handler.flush()
        assert "still logged" in (tmp_path / "host.log").read_text()
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
