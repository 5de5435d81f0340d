"""Every contract check of ``loopml.testing`` over every backend.

Metadata on SQLite and PostgreSQL, lake and artifacts on a local folder and on S3 (moto's
server). One test per (backend, check), so a failure names both.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from loopml.settings import Settings
from loopml.stores.base import ArtifactStore, Lake, MetadataStore
from loopml.stores.records import Run
from loopml.stores.registry import open_artifacts, open_lake, open_metadata
from loopml.testing import artifact_store_checks, lake_checks, metadata_store_checks
from loopml.utils import utcnow
from loopml.workspace import init, open_workspace

Check = Callable[[Callable[[], Any]], None]


def _checks(checks: Any) -> Any:
    return pytest.mark.parametrize(
        "check", [pytest.param(check, id=name) for name, check in checks]
    )


def _backends(*names: str) -> Any:
    marks = {"postgres": pytest.mark.postgres, "s3": pytest.mark.s3}
    return pytest.mark.parametrize(
        "backend", [pytest.param(n, marks=marks.get(n, ())) for n in names]
    )


def _metadata_uri(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'meta' / 'loopml.db'}"
    return str(request.getfixturevalue("postgres_uri"))


def _files_uri(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "file":
        return (tmp_path / "store").as_uri()
    return str(request.getfixturevalue("s3_uri"))


@_backends("sqlite", "postgres")
@_checks(metadata_store_checks())
def test_metadata_store(
    backend: str, check: Check, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    uri = _metadata_uri(backend, request, tmp_path)

    def factory() -> MetadataStore:
        return open_metadata(uri, Settings())

    check(factory)


@_backends("file", "s3")
@_checks(lake_checks())
def test_lake(backend: str, check: Check, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    uri = _files_uri(backend, request, tmp_path)

    def factory() -> Lake:
        return open_lake(uri, Settings())

    check(factory)


@_backends("file", "s3")
@_checks(artifact_store_checks())
def test_artifact_store(
    backend: str, check: Check, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    uri = _files_uri(backend, request, tmp_path)

    def factory() -> ArtifactStore:
        return open_artifacts(uri, Settings())

    check(factory)


@pytest.mark.postgres
@pytest.mark.s3
def test_workspace_on_postgres_and_s3(
    tmp_path: Path, postgres_uri: str, s3_uri: str, s3_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "ws"
    with init(root, metadata_uri=postgres_uri, lake_uri=s3_uri, s3_endpoint_url=s3_env) as ws:
        assert type(ws.metadata).__name__ == "PostgresMetadataStore"
        assert type(ws.lake).__name__ == "S3Lake"
        assert type(ws.artifacts).__name__ == "S3ArtifactStore"
        assert ws.artifacts_uri == f"{s3_uri}/artifacts"
        url = ws.lake.write_table("datasets/t/v=1/part-0.parquet", pa.table({"x": [1, 2]}))
        assert url == f"{s3_uri}/datasets/t/v=1/part-0.parquet"
        sha = ws.artifacts.put(b"model bytes")
        assert ws.artifacts.url(sha).startswith(f"{s3_uri}/artifacts/sha256/")
        run = ws.metadata.add_run(Run(id="r1", name="t", status="running", started_at=utcnow()))
    assert not (root / "loopml.db").exists()

    # the settings file remembers the endpoint: reopening needs no environment
    monkeypatch.delenv("LOOPML_S3_ENDPOINT_URL")
    with open_workspace(root) as again:
        assert again.describe()["metadata"] == postgres_uri
        assert again.lake.read_table("datasets/t/v=1").column("x").to_pylist() == [1, 2]
        assert again.artifacts.get(sha) == b"model bytes"
        assert again.metadata.get_run(run.id) == run
