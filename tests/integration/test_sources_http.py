"""HttpSource against a small JSON API that the tests start on 127.0.0.1."""

from __future__ import annotations

import ipaddress
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from loopml.data.http_source import HttpSource, _is_private, make
from loopml.data.sources import source_for
from loopml.errors import InvalidInputError, NotFoundError, StoreError
from loopml.settings import load_settings

RECORDS = [{"id": i, "name": f"r{i}", "score": i / 2} for i in range(23)]


class Api(BaseHTTPRequestHandler):
    hits: dict[str, int]
    seen_headers: list[dict[str, str]]

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        headers = {"Content-Type": "application/json", **(headers or {})}
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        path = parts.path
        self.hits[path] = self.hits.get(path, 0) + 1
        self.seen_headers.append(dict(self.headers))
        port = self.server.server_address[1]
        if path == "/list":
            self._send(200, RECORDS[:5])
        elif path == "/wrapped":
            self._send(200, {"meta": {"n": 5}, "data": {"items": RECORDS[:5]}})
        elif path == "/pages":  # page=1.. of 10, the last one shorter
            page, size = int(q["page"]), int(q.get("limit", 10))
            self._send(200, {"records": RECORDS[(page - 1) * size : page * size]})
        elif path == "/offset":
            off, lim = int(q["offset"]), int(q["limit"])
            self._send(200, RECORDS[off : off + lim])
        elif path == "/cursor":
            start = int(q.get("cursor", 0))
            nxt = start + 7 if start + 7 < len(RECORDS) else None
            self._send(200, {"records": RECORDS[start : start + 7], "next_cursor": nxt})
        elif path == "/link":
            start = int(q.get("from", 0))
            headers = {}
            if start + 10 < len(RECORDS):
                headers["Link"] = f'</link?from={start + 10}>; rel="next"'
            self._send(200, RECORDS[start : start + 10], headers)
        elif path == "/flaky":  # 429 (Retry-After), then 503, then the records
            n = self.hits[path]
            if n == 1:
                self._send(429, {"error": "slow down"}, {"Retry-After": "0"})
            elif n == 2:
                self._send(503, {"error": "busy"})
            else:
                self._send(200, RECORDS[:3])
        elif path == "/down":
            self._send(503, {"error": "down"})
        elif path == "/html":
            self._send(200, b"<html><body>hello</body></html>", {"Content-Type": "text/html"})
        elif path == "/bad-second-page":
            if q.get("page", "1") == "1":
                self._send(200, RECORDS[:2])
            else:
                self._send(200, b"oops not json")
        elif path == "/auth":
            if self.headers.get("Authorization") == "Bearer tok-123":
                self._send(200, RECORDS[:2])
            else:
                self._send(401, {"error": "bad token"})
        elif path == "/to-metadata":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/to-localhost":
            self.send_response(302)
            self.send_header("Location", f"http://localhost:{port}/list")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/to-self":
            self.send_response(302)
            self.send_header("Location", "/list")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/to-file":
            self.send_response(302)
            self.send_header("Location", "file:///etc/passwd")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/slow":
            time.sleep(2)
            self._send(200, RECORDS[:1])
        else:
            self._send(404, {"error": "no such path"})


@pytest.fixture
def api() -> Iterator[tuple[str, type[Api]]]:
    handler = type("H", (Api,), {"hits": {}, "seen_headers": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def src(url: str, **kw: Any) -> HttpSource:
    return HttpSource(url, allow_hosts=["127.0.0.1"], backoff=0.01, **kw)


def test_a_list_and_a_records_path(api: tuple[str, type[Api]]) -> None:
    base, _ = api
    assert src(f"{base}/list").read().num_rows == 5
    table = src(f"{base}/wrapped", records_path="data.items").read()
    assert table.column("id").to_pylist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("path", "options"),
    [
        ("/pages", {"paginate": "page", "page_size": 10}),
        ("/pages", {"paginate": "page"}),  # stops at the first empty page
        ("/offset", {"paginate": "offset", "page_size": 6}),
        ("/cursor", {"paginate": "cursor"}),
        ("/link", {"paginate": "cursor"}),
    ],
)
def test_pagination(api: tuple[str, type[Api]], path: str, options: dict[str, Any]) -> None:
    base, _ = api
    table = src(f"{base}{path}", **options).read()
    assert table.column("id").to_pylist() == list(range(23))


def test_batches_hold_several_pages(api: tuple[str, type[Api]]) -> None:
    base, _ = api
    source = src(f"{base}/cursor", paginate="cursor", batch_rows=10)
    assert [b.num_rows for b in source.batches()] == [14, 9]


def test_retries_429_and_5xx(api: tuple[str, type[Api]]) -> None:
    base, handler = api
    assert src(f"{base}/flaky").read().num_rows == 3
    assert handler.hits["/flaky"] == 3


def test_gives_up_after_the_retries(api: tuple[str, type[Api]]) -> None:
    base, handler = api
    with pytest.raises(StoreError, match="answered 503 after 2 retries"):
        src(f"{base}/down", retries=2).read()
    assert handler.hits["/down"] == 3


def test_a_page_that_is_not_json_names_url_and_page(api: tuple[str, type[Api]]) -> None:
    base, _ = api
    with pytest.raises(InvalidInputError, match=r"/html page 1 is not JSON \(text/html"):
        src(f"{base}/html").read()
    with pytest.raises(InvalidInputError, match=r"page=2 page 2 is not JSON"):
        src(f"{base}/bad-second-page", paginate="page").read()


def test_headers_from_the_environment(
    api: tuple[str, type[Api]], monkeypatch: pytest.MonkeyPatch
) -> None:
    base, handler = api
    source = src(f"{base}/auth", headers=["Authorization=Bearer ${API_TOKEN}"])
    assert "tok-123" not in repr(vars(source))
    assert source.describe().endswith("(headers=Authorization)")
    with pytest.raises(InvalidInputError, match="API_TOKEN, which is not set"):
        source.read()
    monkeypatch.setenv("API_TOKEN", "wrong")
    with pytest.raises(InvalidInputError, match="answered 401: not authorised"):
        source.read()
    monkeypatch.setenv("API_TOKEN", "tok-123")
    assert source.read().num_rows == 2
    assert handler.seen_headers[-1]["Authorization"] == "Bearer tok-123"


def test_loopback_is_refused_unless_allowed(api: tuple[str, type[Api]]) -> None:
    base, handler = api
    with pytest.raises(InvalidInputError, match="loopback, private or link-local") as info:
        HttpSource(f"{base}/list").read()
    assert info.value.code == "source_forbidden"
    assert handler.hits == {}  # refused before any request
    assert HttpSource(f"{base}/list", allow_hosts="127.0.0.0/8").read().num_rows == 5
    assert HttpSource(f"{base}/list", allow_private=True).read().num_rows == 5


def test_a_redirect_is_checked_at_every_hop(api: tuple[str, type[Api]]) -> None:
    base, _ = api
    with pytest.raises(InvalidInputError, match=r"169\.254\.169\.254 is .*link-local"):
        src(f"{base}/to-metadata").read()
    # localhost is allowed by the address it resolves to only when that address is allowed
    only_name = HttpSource(f"{base}/to-localhost", allow_hosts=["127.0.0.1/32"], backoff=0.01)
    assert only_name.read().num_rows == 5
    by_name = HttpSource(f"http://localhost:{base.rsplit(':', 1)[1]}/list", allow_hosts="x.org")
    with pytest.raises(InvalidInputError, match=r"localhost is .*loopback"):
        by_name.read()
    with pytest.raises(InvalidInputError, match="only http"):
        src(f"{base}/to-file").read()
    assert src(f"{base}/to-self").read().num_rows == 5


def test_settings_allow_hosts(
    api: tuple[str, type[Api]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    base, _ = api
    monkeypatch.setenv("LOOPML_HTTP_ALLOW_HOSTS", "example.org, 127.0.0.1")
    settings = load_settings(tmp_path)
    assert make(f"{base}/list", settings=settings).read().num_rows == 5
    monkeypatch.delenv("LOOPML_HTTP_ALLOW_HOSTS")
    with pytest.raises(InvalidInputError, match="loopback"):
        make(f"{base}/list", settings=load_settings(tmp_path)).read()


def test_scheme_dispatch_and_unknown_options(api: tuple[str, type[Api]]) -> None:
    base, _ = api
    source = source_for(f"{base}/list", allow_hosts=["127.0.0.1"])
    assert isinstance(source, HttpSource)
    with pytest.raises(InvalidInputError, match="'table' is not one for HTTP"):
        source_for(f"{base}/list", table="x")


def test_timeout_and_unreachable(api: tuple[str, type[Api]]) -> None:
    base, _ = api
    with pytest.raises(StoreError, match=r"cannot reach .*ReadTimeout"):
        src(f"{base}/slow", timeout=0.3, retries=0).read()
    with pytest.raises(StoreError, match="cannot reach"):
        src("http://127.0.0.1:1/x", retries=1).read()


def test_not_found_and_bad_records(api: tuple[str, type[Api]]) -> None:
    base, _ = api
    with pytest.raises(NotFoundError, match="answered 404"):
        src(f"{base}/nope").read()
    with pytest.raises(InvalidInputError, match=r"has no 'rows'.*top-level keys: data, meta"):
        src(f"{base}/wrapped", records_path="rows").read()


@pytest.mark.parametrize(
    ("address", "private"),
    [
        ("127.0.0.1", True),
        ("10.1.2.3", True),
        ("172.16.0.1", True),
        ("192.168.1.1", True),
        ("169.254.169.254", True),
        ("::1", True),
        ("fe80::1", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", True),
        ("8.8.8.8", False),
        ("2606:4700::1111", False),
    ],
)
def test_private_addresses(address: str, private: bool) -> None:
    assert _is_private(ipaddress.ip_address(address)) is private


def test_only_http_urls() -> None:
    with pytest.raises(InvalidInputError, match="not an http"):
        HttpSource("ftp://example.org/x")
    with pytest.raises(InvalidInputError, match="unknown pagination"):
        HttpSource("https://example.org/x", paginate="pages")


@pytest.mark.slow
def test_cli_ingest_with_a_token_and_allowed_host(
    api: tuple[str, type[Api]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from loopml.cli.main import main
    from loopml.data import load_table
    from loopml.workspace import open_workspace

    base, _ = api
    ws = tmp_path / "ws"
    assert main(["init", "-w", str(ws)]) == 0
    run = ["data", "ingest", f"{base}/auth", "--name", "api", "-w", str(ws)]
    run += ["-H", "Authorization=Bearer ${API_TOKEN}"]
    monkeypatch.setenv("API_TOKEN", "tok-123")
    capsys.readouterr()
    assert main(run) == 2  # 127.0.0.1 is not allowed by default
    assert "http_allow_hosts" in capsys.readouterr().err
    monkeypatch.setenv("LOOPML_HTTP_ALLOW_HOSTS", "127.0.0.1")
    assert main(run) == 0, capsys.readouterr().err
    with open_workspace(ws) as opened:
        table = load_table(opened, "api")
        assert table.num_rows == 2
        dv = opened.metadata.latest_dataset_version("api")
        assert dv == 1
    assert "tok-123" not in (ws / "loopml.db").read_bytes().decode("latin-1")
    paged = ["data", "ingest", f"{base}/pages", "--name", "paged", "-w", str(ws)]
    assert main([*paged, "--paginate", "page", "--records-path", "records"]) == 0
    with open_workspace(ws) as opened:
        assert load_table(opened, "paged").num_rows == 23


def test_python_ingest_reads_the_workspaces_allowed_hosts(
    api: tuple[str, type[Api]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ingest(ws, "http://...") honours the workspace's http_allow_hosts (it used to read only
    the environment, so a workspace that allowed 127.0.0.1 was still refused)."""
    from loopml.data import ingest
    from loopml.workspace import init, open_workspace

    monkeypatch.delenv("LOOPML_HTTP_ALLOW_HOSTS", raising=False)
    base, _ = api
    with pytest.raises(InvalidInputError, match="loopback"):
        ingest(init(tmp_path / "closed"), f"{base}/list", "api")
    init(tmp_path / "open")
    ws = open_workspace(tmp_path / "open", http_allow_hosts="127.0.0.1")
    assert ingest(ws, f"{base}/list", "api").dataset.num_rows == 5
