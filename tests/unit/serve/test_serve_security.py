"""The server's safe defaults: a token always, the Host header, JSON only, safe headers."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import stat
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest

from loopml.errors import ConfigError
from loopml.serve import create_app
from loopml.serve.security import (
    TOKEN_FILE,
    allowed_hosts,
    is_json_type,
    normalize_host,
    workspace_token,
)
from loopml.workspace import Workspace, init, open_workspace

from .test_serve_app import assert_error, cancer_bundle, predict, records, register

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's notice about httpx in its TestClient
    from starlette.testclient import TestClient

BASE = "http://127.0.0.1"


@pytest.fixture
def ws(workspace: Workspace) -> Workspace:
    register(workspace, "cancer", cancer_bundle()[0])
    return workspace


@pytest.fixture
def client(ws: Workspace) -> Iterator[TestClient]:
    app = create_app(ws, reload_interval=0, log_predictions=False)
    with TestClient(app, base_url=BASE) as c:
        yield c


def rows() -> dict[str, Any]:
    return {"instances": records(cancer_bundle()[1], 1)}


# -- the token ------------------------------------------------------------------------------


def test_a_token_is_generated_into_the_workspace_0600(ws: Workspace) -> None:
    path = ws.root / TOKEN_FILE
    assert not path.exists()
    app = create_app(ws, reload_interval=0, log_predictions=False)
    assert path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = app.state.server.token
    assert path.read_text().strip() == token and len(token) >= 32
    assert token not in app.state.server.token_info.describe()
    assert str(path) in app.state.server.token_info.describe()
    again = create_app(ws, reload_interval=0, log_predictions=False)
    assert again.state.server.token == token  # the same token on the next serve
    assert [p.name for p in ws.root.iterdir() if TOKEN_FILE in p.name] == [TOKEN_FILE]


def test_the_token_file_is_never_readable_by_others(tmp_path: Path) -> None:
    old = os.umask(0)  # even with a permissive umask
    try:
        with init(tmp_path / "ws") as fresh:
            path = workspace_token(fresh).path
    finally:
        os.umask(old)
    assert path is not None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_concurrent_first_serves_agree_on_one_token(workspace: Workspace) -> None:
    with ThreadPoolExecutor(8) as pool:
        tokens = {t.value for t in pool.map(lambda _: workspace_token(workspace), range(16))}
    assert len(tokens) == 1
    leftovers = [p.name for p in workspace.root.iterdir() if p.name.startswith(".serve-token")]
    assert leftovers == []


def test_token_from_the_environment_or_a_file(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
    secret.chmod(0o600)
    app = create_app(ws, token_file=secret, reload_interval=0, log_predictions=False)
    assert app.state.server.token == "from-a-file"
    monkeypatch.setenv("LOOPML_SERVE_TOKEN", "from-the-env")
    with open_workspace(ws.root) as again:
        app = create_app(again, reload_interval=0, log_predictions=False)
        assert app.state.server.token == "from-the-env"
        assert app.state.server.token_info.describe() == "from LOOPML_SERVE_TOKEN"
    monkeypatch.delenv("LOOPML_SERVE_TOKEN")
    monkeypatch.setenv("LOOPML_SERVE_TOKEN_FILE", str(secret))
    with open_workspace(ws.root) as again:
        assert create_app(again, reload_interval=0).state.server.token == "from-a-file"
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        create_app(ws, token_file=empty)
    with pytest.raises(ConfigError, match="does not exist"):
        create_app(ws, token_file=tmp_path / "nowhere")


def test_host_and_token_file_settings(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    (ws.root / "secrets").mkdir()
    (ws.root / "secrets" / "token").write_text("in-the-workspace\n")
    settings = ws.root / "settings.yaml"
    settings.write_text(
        settings.read_text()
        + "serve_allowed_hosts: [api.example, b.example]\nserve_token_file: secrets/token\n"
    )
    with open_workspace(ws.root) as again:
        server = create_app(again, reload_interval=0).state.server
        assert {"api.example", "b.example"} <= server.allowed_hosts
        assert server.token == "in-the-workspace"  # relative to the workspace
    monkeypatch.setenv("LOOPML_SERVE_ALLOWED_HOSTS", "c.example, d.example")
    with open_workspace(ws.root) as again:
        hosts = create_app(again, reload_interval=0).state.server.allowed_hosts
        assert {"c.example", "d.example"} <= hosts and "api.example" not in hosts


def test_every_state_changing_route_needs_the_token(ws: Workspace) -> None:
    app = create_app(ws, reload_interval=0, log_predictions=False)
    server = app.state.server
    changing = [e for e in server.endpoints() if e.changes_state]
    assert [e.path for e in changing] == ["/v1/models/{name}:reload", "/v1/feedback"]
    # nothing but GET routes and the ones that only read (predict, recommend, infer, index)
    # is open
    open_posts = {e.path for e in server.endpoints() if "POST" in e.methods and not e.changes_state}
    assert open_posts == {
        "/v1/models/{name}:predict",
        "/v1/models/{name}:recommend",  # a read, as predict is (serve/recommend.py)
        "/v2/repository/index",
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}/infer",
    }
    with TestClient(app, base_url=BASE) as client:
        for endpoint in changing:
            path = endpoint.path.replace("{name}", "cancer")
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "x"}):
                resp = client.post(path, headers=headers)
                assert_error(resp, 401, "unauthorized", header="Authorization")
            ok = client.post(path, headers={"Authorization": f"Bearer {server.token}"})
            if endpoint.body == "none":
                assert ok.status_code == 200, ok.text
            else:  # past the token check: the missing JSON body is what is refused now
                assert ok.status_code == 415, ok.text


# -- the Host header ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example", "localhost.evil"]
)
def test_a_foreign_host_is_refused(client: TestClient, host: str) -> None:
    # a DNS-rebinding page: text/plain needs no preflight, the Host is the attacker's name
    resp = client.post(
        "/v1/models/cancer:predict",
        content=b'{"instances": []}',
        headers={"host": host, "content-type": "text/plain"},
    )
    body = assert_error(resp, 421, "host_not_allowed", header="Host")
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert "--allowed-host" in body["hint"]
    assert_error(client.get("/v2/health/ready", headers={"host": host}), 421, "host_not_allowed")
    v2 = client.get("/v2/models/cancer", headers={"host": host})
    assert v2.status_code == 421 and v2.json()["error"]


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.0.0.1:8000", "localhost:8000", "LOCALHOST", "[::1]:8000"]
)
def test_loopback_names_are_answered(client: TestClient, host: str) -> None:
    assert client.get("/v2/health/ready", headers={"host": host}).status_code == 200


def test_listed_hosts_and_any_host(ws: Workspace) -> None:
    app = create_app(ws, allowed_hosts=["api.example"], reload_interval=0, log_predictions=False)
    with TestClient(app, base_url="http://api.example") as client:
        assert client.get("/v2/health/ready").status_code == 200
        assert client.get("/v2/health/ready", headers={"host": "other"}).status_code == 421
    anyhost = create_app(ws, allowed_hosts=["*"], reload_interval=0, log_predictions=False)
    with TestClient(anyhost, base_url="http://whatever.example") as client:
        assert client.get("/v2/health/ready").status_code == 200


def test_allowed_hosts_rules() -> None:
    assert allowed_hosts("127.0.0.1") == {"127.0.0.1", "localhost", "::1"}
    assert allowed_hosts("::1") == {"127.0.0.1", "localhost", "::1"}
    assert allowed_hosts("10.0.0.5") == {"10.0.0.5"}
    assert allowed_hosts("10.0.0.5", ["Model.Example:80"]) == {"10.0.0.5", "model.example"}
    assert allowed_hosts("0.0.0.0", ["model.example"]) == {
        "model.example",
        "127.0.0.1",
        "localhost",
        "::1",
    }
    assert allowed_hosts("0.0.0.0", ["*"]) is None
    for wildcard in ("0.0.0.0", "::"):
        with pytest.raises(ConfigError, match="host names clients use"):
            allowed_hosts(wildcard)
    assert normalize_host("[::1]:80") == "::1"
    assert normalize_host("::1") == "::1"
    assert normalize_host("Example.COM.:8000") == "example.com"


def test_serving_every_interface_needs_hosts(ws: Workspace) -> None:
    with pytest.raises(ConfigError, match="--allowed-host"):
        create_app(ws, host="0.0.0.0")
    app = create_app(ws, host="0.0.0.0", allowed_hosts=["model.example"], reload_interval=0)
    assert "model.example" in app.state.server.allowed_hosts


# -- JSON only ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", None]
)
def test_a_non_json_body_is_415(client: TestClient, kind: str | None) -> None:
    headers = {} if kind is None else {"content-type": kind}
    body = orjson.dumps(rows())
    for path in ("/v1/models/cancer:predict", "/v2/models/cancer/infer"):
        resp = client.post(path, content=body, headers=headers)
        assert_error(resp, 415, "unsupported_media_type", header="Content-Type")


@pytest.mark.parametrize(
    "kind",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON;charset=UTF-8",
        'application/json; charset="utf-8"',
        "application/vnd.loopml+json",
    ],
)
def test_json_content_types_are_accepted(client: TestClient, kind: str) -> None:
    resp = client.post(
        "/v1/models/cancer:predict", content=orjson.dumps(rows()), headers={"content-type": kind}
    )
    assert resp.status_code == 200, resp.text


def test_is_json_type() -> None:
    assert is_json_type("application/json")
    assert is_json_type("application/problem+json; charset=utf8")
    assert not is_json_type(None)
    assert not is_json_type("")
    assert not is_json_type("text/json")
    assert not is_json_type("application/jsonp")
    assert not is_json_type("application/json; charset=latin-1")


# -- headers and the docs page --------------------------------------------------------------


def test_nosniff_on_every_response(client: TestClient) -> None:
    for resp in (
        client.get("/v2/health/ready"),
        client.get("/nothing"),
        client.get("/metrics"),
        predict(client, "cancer", rows()),
        predict(client, "cancer", b"{bad"),
    ):
        assert resp.headers["x-content-type-options"] == "nosniff", resp.url


def test_docs_page_is_self_contained_under_a_strict_policy(client: TestClient) -> None:
    resp = client.get("/docs")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    assert resp.headers["x-frame-options"] == "DENY"
    csp = resp.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "script-src" not in csp and "unsafe-inline" not in csp
    page = resp.text
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing from elsewhere
    assert "cdn" not in page.lower()
    # the inline style is allowed by its hash, and only it
    style = re.search(r"<style>(.*?)</style>", page, re.S)
    assert style is not None
    digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp
    for op in (
        "POST /v1/models/{name}:predict",
        "GET /v1/models",
        "POST /v2/repository/index",
        "GET /v2/health/ready",
    ):
        assert f"<code>{op}</code>" in page
    assert "&quot;instances&quot;" in page  # the example request, escaped
