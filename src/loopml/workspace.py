"""The workspace: a folder with a settings file, and the stores its URIs name.

A :class:`Workspace` carries the opened stores and is passed to every stage function; there is
no global connection. Open one with :func:`init` (creates it) or :func:`open_workspace`.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import TracebackType
from typing import Any

from loopml.errors import NotFoundError
from loopml.settings import (
    DEFAULT_WORKSPACE,
    SETTINGS_FILE,
    Settings,
    env_workspace,
    load_settings,
    write_settings_file,
)
from loopml.stores.base import ArtifactStore, Lake, MetadataStore


def resolve_root(path: str | Path | None = None) -> Path:
    """``path``, else ``LOOPML_HOME``, else ``./.loopml``; absolute."""
    chosen = path or env_workspace() or DEFAULT_WORKSPACE
    return Path(chosen).expanduser().resolve()


def default_uris(root: Path) -> dict[str, str]:
    return {
        "metadata_uri": f"sqlite:///{root / 'loopml.db'}",
        "lake_uri": (root / "lake").as_uri(),
        "artifacts_uri": (root / "artifacts").as_uri(),
    }


class Workspace:
    """Opened stores of one workspace. Close it (or use ``with``) when done."""

    def __init__(self, root: Path, settings: Settings) -> None:
        from loopml.stores.registry import open_artifacts, open_lake, open_metadata

        self.root = root
        self.settings = settings
        defaults = default_uris(root)
        self.metadata_uri = settings.metadata_uri or defaults["metadata_uri"]
        self.lake_uri = settings.lake_uri or defaults["lake_uri"]
        self.artifacts_uri = settings.artifacts_uri or defaults["artifacts_uri"]
        self.metadata: MetadataStore = open_metadata(self.metadata_uri, settings)
        try:
            self.lake: Lake = open_lake(self.lake_uri, settings)
            self.artifacts: ArtifactStore = open_artifacts(self.artifacts_uri, settings)
        except BaseException:
            self.metadata.close()
            raise

    def describe(self) -> dict[str, Any]:
        return {
            "workspace": str(self.root),
            "metadata": self.metadata_uri,
            "lake": self.lake_uri,
            "artifacts": self.artifacts_uri,
        }

    def close(self) -> None:
        self.metadata.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"


def init(
    path: str | Path | None = None,
    *,
    metadata_uri: str | None = None,
    lake_uri: str | None = None,
    artifacts_uri: str | None = None,
    s3_endpoint_url: str | None = None,
) -> Workspace:
    """Create (or re-open) a workspace folder, write its settings and migrate its metadata.

    URIs not given keep what the settings file already says, or the embedded defaults.
    When ``lake_uri`` is ``s3://bucket/prefix`` and no ``artifacts_uri`` is given, artifacts go
    under ``s3://bucket/prefix/artifacts``.
    """
    root = resolve_root(path)
    created = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    from loopml.settings import read_settings_file

    current = read_settings_file(root)
    current.pop("version", None)
    given = {
        "metadata_uri": metadata_uri,
        "lake_uri": lake_uri,
        "artifacts_uri": artifacts_uri,
        "s3_endpoint_url": s3_endpoint_url,
    }
    if lake_uri and not artifacts_uri and lake_uri.startswith("s3://"):
        given["artifacts_uri"] = lake_uri.rstrip("/") + "/artifacts"
    values = {**current, **{k: v for k, v in given.items() if v}}
    for key, uri in default_uris(root).items():
        values.setdefault(key, uri)
    # Open (and migrate) the stores first; the settings file is written only when they work,
    # so a wrong URI leaves no half-made workspace behind.
    try:
        ws = Workspace(root, load_settings(root, {k: v for k, v in given.items() if v}))
    except BaseException:
        if created:
            shutil.rmtree(root, ignore_errors=True)
        raise
    write_settings_file(root, values)
    return ws


def open_workspace(path: str | Path | None = None, **overrides: Any) -> Workspace:
    """Open an existing workspace (migrating an older metadata schema). NotFoundError if absent."""
    root = resolve_root(path)
    if not (root / SETTINGS_FILE).exists():
        raise NotFoundError(
            f"no loopml workspace at {root}",
            where={"workspace": str(root)},
            hint=f"Run 'loopml init --workspace {root}' first, or point --workspace/LOOPML_HOME "
            "at an existing workspace",
        )
    return Workspace(root, load_settings(root, overrides))
