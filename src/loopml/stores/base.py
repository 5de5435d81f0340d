"""The store interfaces: the walls every stage builds against.

Each interface is small; backends are chosen by URI scheme (see ``loopml.stores.registry``).
The contract every backend must satisfy is in ``loopml.testing``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

from loopml.stores.records import DatasetVersion, ModelVersion, Run


class MetadataStore(ABC):
    """Datasets, runs, model versions and aliases. Transactions; no file content."""

    uri: str

    # datasets
    @abstractmethod
    def latest_dataset_version(self, name: str) -> int:
        """Highest version number of ``name``, 0 when there is none."""

    @abstractmethod
    def add_dataset_version(self, dv: DatasetVersion) -> DatasetVersion:
        """Insert ``dv`` as given. ConflictError if (name, version) or (name, sha256) exists."""

    @abstractmethod
    def get_dataset_version(self, name: str, version: int | None = None) -> DatasetVersion:
        """One version, or the latest when ``version`` is None. NotFoundError if absent."""

    @abstractmethod
    def find_dataset_version(self, name: str, sha256: str) -> DatasetVersion | None:
        """The version of ``name`` whose content hash is ``sha256``, if any."""

    @abstractmethod
    def list_dataset_versions(self, name: str | None = None) -> list[DatasetVersion]:
        """All versions (of one dataset, or of all), ordered by name then version."""

    # runs
    @abstractmethod
    def add_run(self, run: Run) -> Run:
        """Insert a new run. ConflictError if the id exists."""

    @abstractmethod
    def update_run(self, run: Run) -> Run:
        """Replace the stored run with the same id. NotFoundError if absent."""

    @abstractmethod
    def get_run(self, run_id: str) -> Run:
        """NotFoundError if absent."""

    @abstractmethod
    def list_runs(self, name: str | None = None, limit: int = 100) -> list[Run]:
        """Newest first."""

    # models
    @abstractmethod
    def add_model_version(self, mv: ModelVersion) -> ModelVersion:
        """Register ``mv`` under the next version number of its name; returns it numbered."""

    @abstractmethod
    def get_model_version(self, name: str, version: int) -> ModelVersion:
        """NotFoundError if absent."""

    @abstractmethod
    def list_model_versions(self, name: str | None = None) -> list[ModelVersion]:
        """Ordered by name then version."""

    @abstractmethod
    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point ``alias`` of model ``name`` at ``version`` (which must exist)."""

    @abstractmethod
    def delete_alias(self, name: str, alias: str) -> None:
        """Remove an alias. NotFoundError if absent."""

    @abstractmethod
    def get_aliases(self, name: str) -> dict[str, int]:
        """alias -> version for one model."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""


class Lake(ABC):
    """Tables (Parquet) and report files under a root folder or bucket prefix.

    Paths are relative, ``/``-separated and checked: no ``..``, no absolute paths.
    """

    uri: str

    @abstractmethod
    def write_table(self, path: str, table: pa.Table) -> str:
        """Write ``table`` as one Parquet file at ``path``, atomically. Returns its URL."""

    @abstractmethod
    def read_table(self, path: str) -> pa.Table:
        """Read a Parquet file, or every ``*.parquet`` under a folder (schemas unified)."""

    @abstractmethod
    def write_bytes(self, path: str, data: bytes) -> str:
        """Write a file atomically. Returns its URL."""

    @abstractmethod
    def read_bytes(self, path: str) -> bytes:
        """NotFoundError if absent."""

    @abstractmethod
    def exists(self, path: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Relative paths of the files under ``prefix``, sorted."""

    @abstractmethod
    def delete(self, path: str) -> None:
        """Delete a file or a folder with everything in it; no error if absent."""

    @abstractmethod
    def url(self, path: str = "") -> str:
        """The absolute URL of ``path`` (``file:///...`` or ``s3://...``) for people to open."""


class ArtifactStore(ABC):
    """Immutable blobs addressed by their sha256; checked on every read."""

    uri: str

    @abstractmethod
    def put(self, data: bytes) -> str:
        """Store ``data`` (idempotent) and return its sha256 in hex."""

    @abstractmethod
    def get(self, sha256: str) -> bytes:
        """The blob; NotFoundError if absent, IntegrityError if its content does not match."""

    @abstractmethod
    def exists(self, sha256: str) -> bool: ...

    @abstractmethod
    def url(self, sha256: str) -> str:
        """Where the blob lies, for people."""
