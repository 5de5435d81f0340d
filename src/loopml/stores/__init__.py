"""The stores: metadata (SQL), the lake (Parquet files) and artifacts (content-addressed blobs).

Open them by URI with :func:`open_metadata`, :func:`open_lake` and :func:`open_artifacts`.
The backends (``SqliteMetadataStore``, ``S3Lake``, ...) are importable from here too, but are
loaded only when asked for, so importing loopml stays light and never needs s3fs or psycopg.
"""

from __future__ import annotations

import importlib
from typing import Any

from loopml.stores.base import ArtifactStore, Lake, MetadataStore
from loopml.stores.records import DatasetVersion, ModelVersion, Run
from loopml.stores.registry import open_artifacts, open_lake, open_metadata

_BACKENDS = {
    "SqlMetadataStore": "sql",
    "SqliteMetadataStore": "sql",
    "PostgresMetadataStore": "sql",
    "FileLake": "fs",
    "S3Lake": "fs",
    "FileArtifactStore": "fs",
    "S3ArtifactStore": "fs",
}


def __getattr__(name: str) -> Any:
    module = _BACKENDS.get(name)
    if module is None:
        raise AttributeError(f"module 'loopml.stores' has no attribute {name!r}")
    return getattr(importlib.import_module(f"loopml.stores.{module}"), name)


__all__ = [
    "ArtifactStore",
    "DatasetVersion",
    "FileArtifactStore",
    "FileLake",
    "Lake",
    "MetadataStore",
    "ModelVersion",
    "PostgresMetadataStore",
    "Run",
    "S3ArtifactStore",
    "S3Lake",
    "SqlMetadataStore",
    "SqliteMetadataStore",
    "open_artifacts",
    "open_lake",
    "open_metadata",
]
