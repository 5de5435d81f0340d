"""The stores: metadata (SQL), the lake (Parquet files) and artifacts (content-addressed blobs).

Open them by URI with :func:`open_metadata`, :func:`open_lake` and :func:`open_artifacts`.
The backends (``SqliteMetadataStore``, ``S3Lake``, ...) are importable from here too, but are
loaded only when asked for, so importing loopml stays light and never needs s3fs or psycopg.
"""

from __future__ import annotations

from loopml.stores.base import ArtifactStore, Lake, MetadataStore
from loopml.stores.records import DatasetVersion, ModelVersion, Run
from loopml.stores.registry import open_artifacts, open_lake, open_metadata
from loopml.utils import lazy_exports

_BACKENDS = {
    "SqlMetadataStore": "loopml.stores.sql",
    "SqliteMetadataStore": "loopml.stores.sql",
    "PostgresMetadataStore": "loopml.stores.sql",
    "FileLake": "loopml.stores.fs",
    "S3Lake": "loopml.stores.fs",
    "FileArtifactStore": "loopml.stores.fs",
    "S3ArtifactStore": "loopml.stores.fs",
}


__getattr__ = lazy_exports(__name__, _BACKENDS)


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
