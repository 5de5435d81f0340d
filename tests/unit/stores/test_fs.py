"""The fsspec lake and artifact store: path checks, layout, atomic writes, errors."""

from __future__ import annotations

import socket
from pathlib import Path

import pyarrow as pa
import pytest

from loopml.errors import ConfigError, InvalidInputError, StoreError
from loopml.settings import Settings
from loopml.stores.fs import FileArtifactStore, FileLake, check_path, check_sha256
from loopml.utils import sha256_bytes


@pytest.mark.parametrize(
    ("path", "want"),
    [
        ("a", "a"),
        ("datasets/iris/v=1/part-0.parquet", "datasets/iris/v=1/part-0.parquet"),
        ("folder/", "folder"),
        ("predictions/m/date=2024-01-01", "predictions/m/date=2024-01-01"),
        (".hidden/x..y", ".hidden/x..y"),
    ],
)
def test_check_path_accepts_relative_paths(path: str, want: str) -> None:
    assert check_path(path) == want


@pytest.mark.parametrize(
    "path",
    ["", "/", "/etc/passwd", "../x", "a/../../b", "a/..", "./a", "a//b", "a\\b", "C:\\x", "a\x00"],
)
def test_check_path_refuses_escapes_and_malformed_paths(path: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        check_path(path)
    assert info.value.hint


def test_check_path_root_only_when_allowed() -> None:
    assert check_path("", allow_root=True) == ""
    with pytest.raises(InvalidInputError):
        check_path(None)


def test_check_sha256() -> None:
    assert check_sha256("AB" * 32) == "ab" * 32
    with pytest.raises(InvalidInputError):
        check_sha256("ab" * 31)


def test_artifacts_are_content_addressed(tmp_path: Path) -> None:
    store = FileArtifactStore((tmp_path / "art").as_uri(), Settings())
    sha = store.put(b"hello")
    assert sha == sha256_bytes(b"hello")
    blob = tmp_path / "art" / "sha256" / sha[:2] / sha
    assert blob.read_bytes() == b"hello"
    assert store.url(sha) == blob.as_uri()


def test_local_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    lake = FileLake((tmp_path / "lake").as_uri())
    for i in range(3):
        lake.write_bytes("r/report.html", b"x" * i)
    assert sorted(p.name for p in (tmp_path / "lake" / "r").iterdir()) == ["report.html"]


def test_a_folder_with_spaces_in_its_name(tmp_path: Path) -> None:
    root = tmp_path / "my lake %20"
    lake = FileLake(root.as_uri())
    url = lake.write_table("t/part-0.parquet", pa.table({"x": [1]}))
    assert url == (root / "t" / "part-0.parquet").as_uri()
    assert (root / "t" / "part-0.parquet").exists()
    assert lake.read_table("t").num_rows == 1


def test_incompatible_schemas_say_so(tmp_path: Path) -> None:
    lake = FileLake(str(tmp_path / "lake"))
    lake.write_table("d/a.parquet", pa.table({"x": [1]}))
    lake.write_table("d/b.parquet", pa.table({"x": ["text"]}))
    with pytest.raises(InvalidInputError, match="incompatible schemas"):
        lake.read_table("d")


def test_a_damaged_parquet_file_is_named(tmp_path: Path) -> None:
    lake = FileLake(str(tmp_path / "lake"))
    lake.write_bytes("d/a.parquet", b"not parquet at all")
    with pytest.raises(InvalidInputError, match="not a readable Parquet file"):
        lake.read_table("d")


def test_a_lake_root_that_is_a_file_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError):
        FileLake(str(tmp_path / "file" / "lake"))


def test_bad_s3_uris_are_config_errors() -> None:
    pytest.importorskip("s3fs")
    from loopml.stores.fs import S3Lake

    for uri in ["s3:///prefix", "s3://Bad_Bucket/x", "s3://bucket/a/../b"]:
        with pytest.raises(ConfigError):
            S3Lake(uri, Settings())


def test_unreachable_s3_endpoint_is_a_store_error(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("s3fs")
    from loopml.stores.fs import S3Lake

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with pytest.raises(StoreError) as info:
        S3Lake("s3://bucket/prefix", Settings(s3_endpoint_url=f"http://127.0.0.1:{port}"))
    assert "LOOPML_S3_ENDPOINT_URL" in str(info.value)
