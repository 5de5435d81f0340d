"""Settings: every ``LOOPML_*`` variable is declared here, once, typed.

Precedence, highest first: explicit arguments (CLI flags) > environment (``LOOPML_*``) >
the workspace settings file (``<workspace>/settings.yaml``) > defaults. Store URIs left empty
default to the embedded stores inside the workspace folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from loopml.errors import ConfigError

SETTINGS_FILE = "settings.yaml"
DEFAULT_WORKSPACE = ".loopml"


class Settings(BaseSettings):
    """Where the stores live and how the server behaves."""

    model_config = SettingsConfigDict(env_prefix="LOOPML_", extra="ignore")

    metadata_uri: str = Field("", description="metadata store; default sqlite:///<ws>/loopml.db")
    lake_uri: str = Field("", description="lake; default file://<ws>/lake")
    artifacts_uri: str = Field("", description="artifact store; default file://<ws>/artifacts")
    s3_endpoint_url: str = Field("", description="S3 endpoint for s3:// URIs (MinIO, moto, ...)")
    serve_host: str = "127.0.0.1"
    serve_port: int = 8000
    serve_token: str = Field("", description="bearer token for state-changing endpoints")
    log_flush_rows: int = Field(1000, description="prediction log: rows buffered before a flush")
    log_flush_seconds: float = Field(1.0, description="prediction log: longest wait for a flush")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        file_values = getattr(init_settings, "init_kwargs", {}).pop("_file_values", {})
        return (
            init_settings,
            env_settings,
            InitSettingsSource(settings_cls, init_kwargs=file_values),
        )


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


def load_settings(root: Path, overrides: dict[str, Any] | None = None) -> Settings:
    """Settings for the workspace at ``root`` with the documented precedence."""
    file_values = read_settings_file(root)
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
    """Write the settings file atomically (temporary name, fsync, rename)."""
    from loopml.utils import atomic_write_bytes

    body = {"version": 1, **{k: v for k, v in values.items() if v not in (None, "")}}
    atomic_write_bytes(root / SETTINGS_FILE, yaml.safe_dump(body, sort_keys=False).encode())
