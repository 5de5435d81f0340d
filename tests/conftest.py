"""Fixtures for the whole suite: a clean environment, real services, a workspace.

Services: PostgreSQL on 127.0.0.1:5432 (database ``test``, trust auth) and moto's S3 server,
started here on a free port. When one is missing the tests that need it skip, or fail when
``LOOPML_REQUIRE_SERVICES=1`` (as in CI) — see :func:`service_unavailable`.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from loopml.settings import require_services
from loopml.workspace import Workspace, init

PG_HOST, PG_PORT, PG_DATABASE = "127.0.0.1", 5432, "test"
PG_USERS = ("postgres", "root")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's LOOPML_* settings (LOOPML_REQUIRE_SERVICES stays)."""
    for key in list(os.environ):
        if key.startswith("LOOPML_") and key != "LOOPML_REQUIRE_SERVICES":
            monkeypatch.delenv(key)


def service_unavailable(reason: str) -> NoReturn:
    """Skip the test for want of a service, or fail it when services are required."""
    if require_services():
        pytest.fail(f"{reason} (LOOPML_REQUIRE_SERVICES is set)")
    pytest.skip(reason)


# -- PostgreSQL -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """``postgresql://USER@127.0.0.1:5432/test`` for the first of postgres, root that connects."""
    if importlib.util.find_spec("psycopg") is None:
        service_unavailable("psycopg is not installed: pip install 'loopml[postgres]'")
    import psycopg

    errors = []
    for user in PG_USERS:
        uri = f"postgresql://{user}@{PG_HOST}:{PG_PORT}/{PG_DATABASE}"
        try:
            with psycopg.connect(uri, connect_timeout=3):
                return uri
        except psycopg.Error as exc:
            errors.append(f"{user}: {str(exc).strip().splitlines()[0]}")
    service_unavailable(f"PostgreSQL is not reachable at {PG_HOST}:{PG_PORT}: {'; '.join(errors)}")


@pytest.fixture
def postgres_uri(postgres_server: str) -> Iterator[str]:
    """A URI whose ``search_path`` is a fresh schema, dropped after the test."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield f"{postgres_server}?options=-csearch_path%3D{schema}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# -- S3 (moto's standalone server) ------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start moto's S3 server on a free port for the session; yields its endpoint URL."""
    for module in ("moto", "flask", "s3fs"):
        if importlib.util.find_spec(module) is None:
            service_unavailable(f"{module} is not installed: pip install -e '.[dev]'")
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("moto") / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for(endpoint, proc, log)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _wait_for(endpoint: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            service_unavailable(f"moto's S3 server exited with {proc.returncode}: {tail}")
        try:
            with urllib.request.urlopen(endpoint, timeout=1):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    service_unavailable(f"moto's S3 server did not answer at {endpoint} within 30 s")


@pytest.fixture
def s3_env(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Credentials and LOOPML_S3_ENDPOINT_URL pointing at the moto server; yields the endpoint."""
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("LOOPML_S3_ENDPOINT_URL", s3_server)
    return s3_server


@pytest.fixture
def s3_uri(s3_env: str) -> str:
    """``s3://<fresh bucket>/prefix`` on the moto server (the store creates the bucket)."""
    return f"s3://loopml-{uuid.uuid4().hex[:16]}/prefix"


# -- workspace --------------------------------------------------------------------------------


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    """A fresh workspace on the embedded stores, closed after the test."""
    ws = init(tmp_path / "ws")
    try:
        yield ws
    finally:
        ws.close()
