"""Choosing backends by URI scheme, and the errors a wrong URI gives."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from loopml.errors import ConfigError
from loopml.settings import Settings
from loopml.stores.registry import open_artifacts, open_lake, open_metadata, redact_uri
from loopml.stores.sql import psycopg_uri


@pytest.mark.parametrize("opener", [open_metadata, open_lake, open_artifacts])
def test_unknown_scheme_lists_the_known_ones(opener: object) -> None:
    with pytest.raises(ConfigError) as info:
        opener("ftp://host/x", Settings())  # type: ignore[operator]
    text = str(info.value)
    assert "'ftp'" in text
    assert ("sqlite://" in text) or ("s3://" in text and "file://" in text)


def test_unknown_scheme_hides_the_password() -> None:
    with pytest.raises(ConfigError) as info:
        open_metadata("mysql://me:hunter2@db/x", Settings())
    assert "hunter2" not in str(info.value)
    assert "me:***@db" in str(info.value)


@pytest.mark.parametrize("uri", ["", "   ", "relative/folder"])
def test_empty_or_relative_uri_is_a_config_error(uri: str) -> None:
    with pytest.raises(ConfigError):
        open_lake(uri, Settings())


def test_plain_absolute_path_is_a_local_folder(tmp_path: Path) -> None:
    lake = open_lake(str(tmp_path / "lake"), Settings())
    assert type(lake).__name__ == "FileLake"
    assert lake.url("a.txt") == (tmp_path / "lake" / "a.txt").as_uri()


def test_file_uri_with_a_host_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="three slashes"):
        open_artifacts("file://somehost/x", Settings())


@pytest.mark.parametrize(
    ("module", "uri", "extra"),
    [
        ("s3fs", "s3://bucket/prefix", "loopml[s3]"),
        ("psycopg", "postgresql://u@127.0.0.1/db", "loopml[postgres]"),
    ],
)
def test_missing_optional_dependency_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, module: str, uri: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes "import module" fail
    opener = open_metadata if uri.startswith("postgresql") else open_lake
    with pytest.raises(ConfigError) as info:
        opener(uri, Settings())
    assert f"pip install '{extra}'" in str(info.value)


@pytest.mark.parametrize(
    "uri",
    [
        "postgres://u@h/db",
        "postgresql://u@h/db",
        "postgresql+psycopg://u@h/db",
    ],
)
def test_postgres_uris_use_psycopg3(uri: str) -> None:
    assert psycopg_uri(uri) == "postgresql+psycopg://u@h/db"


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("postgresql://u:p%40ss@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    ],
)
def test_redact_uri(uri: str, shown: str) -> None:
    assert redact_uri(uri) == shown


def test_importing_loopml_loads_no_optional_backend() -> None:
    code = (
        "import sys, loopml, loopml.stores, loopml.workspace; "
        "print(sorted(m for m in ('s3fs', 'psycopg', 'botocore', 'alembic') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"
