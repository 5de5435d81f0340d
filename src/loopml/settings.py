"""Settings: every ``LOOPML_*`` variable is declared here, once, typed.

Precedence, highest first: explicit arguments (CLI flags) > environment (``LOOPML_*``) >
the workspace settings file (``<workspace>/settings.yaml``) > defaults. Store URIs left empty
default to the embedded stores inside the workspace folder.

The settings file never names the workspace folder itself, so a workspace can be moved or
copied: the embedded stores are left out of it, and a local store inside the folder is written
relative to it (``sqlite:///db/meta.db``, ``data/lake``); relative paths in the file are read
relative to the folder. A file written by an older loopml (``version: 1``) named the embedded
stores by absolute path: when those paths are of another folder (the workspace was moved or
copied) and this folder holds the stores, this folder's stores are used (with a warning).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from loopml.errors import ConfigError

SETTINGS_FILE = "settings.yaml"
SETTINGS_VERSION = 2  # 2: no absolute paths of the workspace folder (1: the defaults written out)
DEFAULT_WORKSPACE = ".loopml"
#: where each embedded store lies in the workspace folder
STORE_PLACES = {"metadata_uri": "loopml.db", "lake_uri": "lake", "artifacts_uri": "artifacts"}

log = logging.getLogger("loopml.settings")


#: the environment variables of the settings: ``LOOPML_`` and a field's name, in any case
ENV_PREFIX = "LOOPML_"


class Settings(BaseModel):
    """Where the stores live and how the server behaves.

    ``Settings(**values)`` reads the ``LOOPML_*`` environment (as pydantic-settings'
    ``BaseSettings`` with ``env_prefix="LOOPML_"`` does, not importing it: its import costs
    every ``loopml`` process): explicit values win over the environment, which wins over
    ``_file_values`` (the settings file's)."""

    model_config = ConfigDict(extra="ignore", validate_default=True)

    def __init__(self, *, _file_values: dict[str, Any] | None = None, **values: Any) -> None:
        super().__init__(**{**(_file_values or {}), **_env_values(), **values})

    metadata_uri: str = Field("", description="metadata store; default sqlite:///<ws>/loopml.db")
    lake_uri: str = Field("", description="lake; default file://<ws>/lake")
    artifacts_uri: str = Field("", description="artifact store; default file://<ws>/artifacts")
    s3_endpoint_url: str = Field("", description="S3 endpoint for s3:// URIs (MinIO, moto, ...)")
    serve_host: str = "127.0.0.1"
    serve_port: int = 8000
    serve_token: str = Field("", description="bearer token for state-changing endpoints")
    serve_token_file: str = Field(
        "", description="file holding the bearer token; default <ws>/serve-token (generated)"
    )
    serve_allowed_hosts: str = Field(
        "", description="Host headers the server answers, comma-separated ('*': any)"
    )
    serve_max_rows: int = Field(10_000, gt=0, description="most rows in one request")
    serve_max_body_bytes: int = Field(
        64 * 1024 * 1024, gt=0, description="largest request body the server reads"
    )
    serve_compile: str = Field(
        "auto",
        pattern="^(auto|onnx|native)$",
        description="auto: serve the ONNX-compiled bundle where it converts and matches, else "
        "native; onnx: refuse a version that does not compile; native: never compile",
    )
    serve_queue_rows: int = Field(
        4096, gt=0, description="rows waiting per model before new requests get 503"
    )
    serve_retry_after: int = Field(1, ge=0, description="Retry-After seconds on a 503")
    serve_shutdown_grace: float = Field(
        30.0, gt=0, description="seconds in-flight requests get to finish on SIGTERM"
    )
    serve_drain_seconds: float = Field(
        0.0,
        ge=0,
        description="on SIGTERM: seconds /v2/health/ready answers 503 while requests are "
        "still served (so a load balancer stops sending) before the server stops accepting",
    )
    serve_grpc_port: int = Field(
        0, ge=0, le=65535, description="Open Inference Protocol gRPC port; 0: off"
    )
    serve_workers: int = Field(1, ge=1, description="server processes sharing the port")
    log_flush_seconds: float = Field(
        1.0, description="prediction log: longest a spool segment waits to go to the lake"
    )
    log_fsync: str = Field(
        "interval",
        pattern="^(always|interval|never)$",
        description="prediction log spool: fsync before each answer (always), every "
        "log_fsync_ms (interval), or leave it to the OS (never); every answered row is written "
        "to the spool before its response in all three",
    )
    log_fsync_ms: float = Field(200.0, gt=0, description="prediction log: fsync period (interval)")
    log_spool_max_bytes: int = Field(
        256 * 1024 * 1024, gt=0, description="prediction log: most bytes spooled locally"
    )
    actor: str = Field("", description="who is recorded moving aliases; default the OS user@host")
    http_allow_hosts: str = Field(
        "",
        description="HTTP sources: hosts, addresses or networks (CIDR) that may be read even "
        "though they are loopback, private or link-local, comma-separated",
    )
    http_allow_private: bool = Field(
        False, description="HTTP sources: allow every loopback, private and link-local address"
    )
    engine: str = Field(
        "local",
        pattern="^(local|spark)$",
        description="where batch work runs: local (in process) or spark (needs loopml[spark])",
    )
    spark_master: str = Field(
        "local[2]", description="Spark master URL: local[N], spark://HOST:PORT, yarn, ..."
    )
    spark_conf: str = Field(
        "",
        description="extra Spark settings, comma-separated key=value "
        "(e.g. spark.executor.memory=4g)",
    )
    online_swap_seconds: float = Field(
        30.0,
        ge=0,
        description="online learning: least seconds between two alias moves to a checkpoint",
    )

    @field_validator("serve_allowed_hosts", "http_allow_hosts", mode="before")
    @classmethod
    def _hosts_as_text(cls, value: Any) -> Any:
        """A YAML list in the settings file reads like the comma-separated variable."""
        if isinstance(value, list | tuple):
            return ",".join(str(v) for v in value)
        return value


def _env_values() -> dict[str, str]:
    """The settings the ``LOOPML_*`` environment gives, by field name: a variable's name is
    matched in any case (the last of two that differ only in case wins), an empty value is
    a value, a variable that names no setting is left alone."""
    fields = Settings.model_fields
    prefix = ENV_PREFIX.lower()
    out: dict[str, str] = {}
    for key, value in os.environ.items():
        name = key.lower()
        if name.startswith(prefix) and name[len(prefix) :] in fields:
            out[name[len(prefix) :]] = value
    return out


def env_workspace() -> str | None:
    """``LOOPML_HOME``, the workspace folder when ``--workspace`` is not given."""
    return os.environ.get("LOOPML_HOME") or None


def require_services() -> bool:
    """``LOOPML_REQUIRE_SERVICES=1``: tests fail instead of skipping when a service is absent."""
    return os.environ.get("LOOPML_REQUIRE_SERVICES", "") not in ("", "0", "false", "no")


def read_settings_file(root: Path) -> dict[str, Any]:
    path = root / SETTINGS_FILE
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"settings file is not valid YAML: {exc}",
            where={"file": str(path)},
            hint="Fix the YAML syntax or run 'loopml init' in a new folder",
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError(
            "settings file must hold a mapping of keys to values",
            where={"file": str(path)},
            hint="Write lines such as 'metadata_uri: sqlite:///...'",
        )
    return data


def load_settings(
    root: Path,
    overrides: dict[str, Any] | None = None,
    *,
    file_values: dict[str, Any] | None = None,
) -> Settings:
    """Settings for the workspace at ``root`` with the documented precedence.

    ``file_values``: the settings file's values when already read (and resolved, see
    :func:`store_values`); by default the file is read here.
    """
    if file_values is None:
        file_values = store_values(root, read_settings_file(root))
    known = set(Settings.model_fields)
    unknown = sorted(set(file_values) - known - {"version"})
    if unknown:
        raise ConfigError(
            f"unknown key {unknown[0]!r} in the settings file",
            where={"file": str(root / SETTINGS_FILE), "field": unknown[0]},
            hint=f"Known keys: {', '.join(sorted(known))}",
        )
    file_values = {k: v for k, v in file_values.items() if k in known}
    init = {k: v for k, v in (overrides or {}).items() if v not in (None, "")}
    try:
        return Settings(**init, _file_values=file_values)  # type: ignore[call-arg]
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise ConfigError(
            f"setting {field!r}: {err['msg']}",
            where={"field": field},
            hint="Check the flag, the LOOPML_* variable or the settings file",
        ) from exc


def write_settings_file(root: Path, values: dict[str, Any]) -> None:
    """Write the settings file atomically (temporary name, fsync, rename).

    Store URIs are written so that the workspace folder can move (:func:`portable_values`).
    """
    from loopml.utils import atomic_write_bytes

    kept = {k: v for k, v in portable_values(root, values).items() if v not in (None, "")}
    body = {"version": SETTINGS_VERSION, **kept}
    atomic_write_bytes(root / SETTINGS_FILE, yaml.safe_dump(body, sort_keys=False).encode())


# -- store URIs in the settings file ----------------------------------------------------------


def default_store_uris(root: Path) -> dict[str, str]:
    """The URIs of the embedded stores of the workspace at ``root`` (absolute)."""
    return {
        "metadata_uri": f"sqlite:///{root / STORE_PLACES['metadata_uri']}",
        "lake_uri": (root / STORE_PLACES["lake_uri"]).as_uri(),
        "artifacts_uri": (root / STORE_PLACES["artifacts_uri"]).as_uri(),
    }


def _local_path(key: str, uri: object) -> str | None:
    """The path on this machine a store URI names, as written (maybe relative); else None."""
    if not isinstance(uri, str) or not uri:
        return None
    if key == "metadata_uri":
        if not uri.lower().startswith("sqlite:///"):
            return None
        path = uri[len("sqlite:///") :].split("?", 1)[0]
        return None if path in ("", ":memory:") or path.startswith("file:") else path
    parts = urlsplit(uri)
    if parts.scheme.lower() == "file" and parts.netloc in ("", "localhost"):
        return unquote(parts.path)
    return uri if parts.scheme == "" else None  # a plain path


def _with_path(key: str, uri: str, path: str) -> str:
    """``uri`` naming ``path`` instead (a relative path is written as such)."""
    if key == "metadata_uri":
        query = uri.partition("?")[2]
        return f"sqlite:///{path}" + (f"?{query}" if query else "")
    return Path(path).as_uri() if os.path.isabs(path) else path


def store_values(root: Path, values: dict[str, Any]) -> dict[str, Any]:
    """The settings file's ``values`` with every store URI absolute, as the stores take them.

    Relative local paths are relative to the workspace folder ``root``; an older file's
    absolute paths of the folder the workspace was moved (or copied) from are dropped, so the
    stores inside ``root`` are used (see the module's documentation).
    """
    out = dict(values)
    for key in STORE_PLACES:
        path = _local_path(key, out.get(key))
        if path is not None and not os.path.isabs(path):
            out[key] = _with_path(key, out[key], os.path.normpath(root / path))
    version = out.get("version", 1)
    if isinstance(version, int) and version >= 2:
        return out
    return _follow_a_move(root, out)


def _follow_a_move(root: Path, values: dict[str, Any]) -> dict[str, Any]:
    """Drop the embedded stores' absolute URIs that name where the workspace used to be."""
    olds: dict[str, Path] = {}
    for key, place in STORE_PLACES.items():
        path = _local_path(key, values.get(key))
        if path is not None and "?" not in values[key] and Path(path).name == place:
            olds[key] = Path(os.path.normpath(path)).parent
    if len({*olds.values()}) != 1:  # none, or stores of several folders: named on purpose
        return values
    old = next(iter(olds.values()))
    if old == root or old.resolve() == root.resolve():
        return values
    moved = [key for key in olds if (root / STORE_PLACES[key]).exists()]
    if not moved:
        return values  # this folder has no stores of its own: the file's are the stores
    also = f"; {old} exists too and is left as it is" if old.exists() else ""
    log.warning(
        "the settings file %s names the stores of %s, where this workspace was before it was "
        "moved or copied: using the ones in %s%s (run 'loopml init --workspace %s' to write "
        "the settings without the old paths)",
        root / SETTINGS_FILE,
        old,
        root,
        also,
        root,
    )
    return {k: v for k, v in values.items() if k not in moved}


def portable_values(root: Path, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` as the settings file keeps them: the embedded stores left out, local stores
    inside ``root`` relative to it, every other URI as it is."""
    out = {}
    base = root.resolve()
    for key, value in values.items():
        path = _local_path(key, value) if key in STORE_PLACES else None
        if path is not None and os.path.isabs(path):
            where = Path(path).resolve()
            if where == base / STORE_PLACES[key] and "?" not in value:
                continue  # the default: left out, so it follows the folder
            if where.is_relative_to(base):
                value = _with_path(key, value, where.relative_to(base).as_posix())
        out[key] = value
    return out
