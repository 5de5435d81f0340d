"""Workspaces open their stores from the settings file's URIs."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from loopml.errors import NotFoundError
from loopml.stores.fs import FileArtifactStore, FileLake
from loopml.stores.sql import SqliteMetadataStore
from loopml.testing import _dataset
from loopml.workspace import Workspace, init, open_workspace


def test_init_uses_the_embedded_stores(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    with init(root) as ws:
        assert isinstance(ws.metadata, SqliteMetadataStore)
        assert isinstance(ws.lake, FileLake)
        assert isinstance(ws.artifacts, FileArtifactStore)
        assert ws.metadata_uri == f"sqlite:///{root / 'loopml.db'}"
        ws.metadata.add_dataset_version(_dataset("iris"))
        ws.lake.write_table("datasets/iris/v=1/part-0.parquet", pa.table({"x": [1.0]}))
        sha = ws.artifacts.put(b"model")
    assert (root / "loopml.db").exists()
    assert (root / "lake" / "datasets" / "iris" / "v=1" / "part-0.parquet").exists()

    with open_workspace(root) as again:
        assert again.metadata.get_dataset_version("iris") == _dataset("iris")
        assert again.lake.read_table("datasets/iris/v=1").num_rows == 1
        assert again.artifacts.get(sha) == b"model"


def test_the_workspace_fixture(workspace: Workspace) -> None:
    assert workspace.metadata.list_dataset_versions() == []
    assert workspace.lake.list() == []


def test_open_workspace_needs_one(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no loopml workspace"):
        open_workspace(tmp_path / "nothing")
