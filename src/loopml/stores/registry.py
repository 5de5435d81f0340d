"""Backends chosen by URI scheme.

Each store kind maps URI schemes to a factory. Factories import their backend lazily, so
importing loopml never imports s3fs or psycopg; a missing optional dependency becomes a
:class:`~loopml.errors.ConfigError` naming the extra to install.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

from loopml.errors import ConfigError
from loopml.settings import Settings
from loopml.stores.base import ArtifactStore, Lake, MetadataStore

T = TypeVar("T")
Factory = Callable[[str, Settings], T]

# optional dependency -> the extra that installs it
_EXTRAS = {"s3fs": "s3", "psycopg": "postgres"}


def _lazy(module: str, cls: str, *, needs: str | None = None) -> Factory[T]:
    """A factory that imports ``loopml.stores.<module>.<cls>`` (and ``needs``) when called."""

    def factory(uri: str, settings: Settings) -> T:
        if needs is not None:
            try:
                importlib.import_module(needs)
            except ImportError as exc:
                extra = _EXTRAS[needs]
                raise ConfigError(
                    f"{urlsplit(uri).scheme}:// URIs need the {needs} package, which is not "
                    "installed",
                    where={"uri": redact_uri(uri)},
                    hint=f"Install it with: pip install 'loopml[{extra}]'",
                ) from exc
        backend = getattr(importlib.import_module(f"loopml.stores.{module}"), cls)
        return backend(uri, settings)  # type: ignore[no-any-return]

    return factory


METADATA_BACKENDS: dict[str, Factory[MetadataStore]] = {
    "sqlite": _lazy("sql", "SqliteMetadataStore"),
    "postgresql": _lazy("sql", "PostgresMetadataStore", needs="psycopg"),
    "postgresql+psycopg": _lazy("sql", "PostgresMetadataStore", needs="psycopg"),
    "postgres": _lazy("sql", "PostgresMetadataStore", needs="psycopg"),
}
LAKE_BACKENDS: dict[str, Factory[Lake]] = {
    "file": _lazy("fs", "FileLake"),
    "s3": _lazy("fs", "S3Lake", needs="s3fs"),
}
ARTIFACT_BACKENDS: dict[str, Factory[ArtifactStore]] = {
    "file": _lazy("fs", "FileArtifactStore"),
    "s3": _lazy("fs", "S3ArtifactStore", needs="s3fs"),
}


def redact_uri(uri: str) -> str:
    """``uri`` with any password replaced by ``***``, for messages."""
    parts = urlsplit(uri)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return uri
    user = userinfo.partition(":")[0]
    return parts._replace(netloc=f"{user}:***@{hostport}").geturl()


def _open(kind: str, setting: str, backends: dict[str, Factory[T]], uri: str, s: Settings) -> T:
    if not isinstance(uri, str) or not uri.strip():
        raise ConfigError(
            f"empty {kind} URI",
            where={"field": setting},
            hint=f"Set {setting} to one of the schemes {', '.join(sorted(backends))}",
        )
    uri = uri.strip()
    scheme = urlsplit(uri).scheme.lower()
    if not scheme and uri.startswith("/") and "file" in backends:
        scheme = "file"  # a plain absolute path
    factory = backends.get(scheme)
    if factory is None:
        known = ", ".join(f"{name}://" for name in sorted(backends))
        got = f"scheme {scheme!r}" if scheme else "no scheme"
        raise ConfigError(
            f"unknown {kind} URI {redact_uri(uri)!r} ({got})",
            where={"field": setting, "uri": redact_uri(uri)},
            hint=f"Known {kind} schemes: {known}"
            + (", or an absolute path" if "file" in backends else ""),
        )
    return factory(uri, s)


def open_metadata(uri: str, settings: Settings) -> MetadataStore:
    """Open (and migrate) the metadata store ``uri``: ``sqlite:///...`` or ``postgresql://...``."""
    return _open("metadata", "metadata_uri", METADATA_BACKENDS, uri, settings)


def open_lake(uri: str, settings: Settings) -> Lake:
    """Open the lake ``uri``: ``file:///...``, an absolute path, or ``s3://bucket/prefix``."""
    return _open("lake", "lake_uri", LAKE_BACKENDS, uri, settings)


def open_artifacts(uri: str, settings: Settings) -> ArtifactStore:
    """Open the artifact store ``uri``: ``file:///...``, an absolute path, or ``s3://...``."""
    return _open("artifacts", "artifacts_uri", ARTIFACT_BACKENDS, uri, settings)


__all__ = [
    "ARTIFACT_BACKENDS",
    "LAKE_BACKENDS",
    "METADATA_BACKENDS",
    "open_artifacts",
    "open_lake",
    "open_metadata",
    "redact_uri",
]
