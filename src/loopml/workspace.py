"""The workspace: a folder with a settings file, and the stores its URIs name.

A :class:`Workspace` carries the opened stores and is passed to every stage function; there is
no global connection. Open one with :func:`init` (creates it) or :func:`open_workspace`.

Which folder: the one given (``--workspace``), else ``LOOPML_HOME``; else :func:`open_workspace`
looks for ``.loopml/settings.yaml`` in the current folder and each folder above it, as git finds
its repository (:func:`find_workspace`), and :func:`init` creates ``./.loopml``.
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
    default_store_uris,
    env_workspace,
    load_settings,
    read_settings_file,
    store_values,
    write_settings_file,
)
from loopml.stores.base import ArtifactStore, Lake, MetadataStore


def resolve_root(path: str | Path | None = None, *, discover: bool = False) -> Path:
    """``path``, else ``LOOPML_HOME``, else (``discover``) the workspace found from the current
    folder (:func:`find_workspace`), else ``./.loopml``; absolute."""
    chosen = path or env_workspace()
    if chosen:
        return Path(chosen).expanduser().resolve()
    found = find_workspace() if discover else None
    return found or Path(DEFAULT_WORKSPACE).resolve()


def find_workspace(start: str | Path | None = None) -> Path | None:
    """The nearest ``.loopml`` folder holding a settings file, in ``start`` (default: the
    current folder) or a folder above it; None when there is none.

    Like git's search for its repository, the walk stops at the root and does not cross into
    another file system (a mount point).
    """
    here = Path.cwd() if start is None else Path(start)
    try:
        here = here.resolve()
        device = here.stat().st_dev
    except OSError:
        return None
    for folder in (here, *here.parents):
        try:
            if folder.stat().st_dev != device:
                return None
        except OSError:
            return None
        candidate = folder / DEFAULT_WORKSPACE
        if (candidate / SETTINGS_FILE).is_file():
            return candidate
    return None


def default_uris(root: Path) -> dict[str, str]:
    """The URIs of the embedded stores inside ``root``."""
    return default_store_uris(root)


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
    current = store_values(root, read_settings_file(root))
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
    # Open (and migrate) the stores first; the settings file is written only when they work,
    # so a wrong URI leaves no half-made workspace behind. The file leaves the embedded stores
    # out and names stores inside the folder relative to it, so the folder can move.
    try:
        overrides = {k: v for k, v in given.items() if v}
        ws = Workspace(root, load_settings(root, overrides, file_values=current))
    except BaseException:
        if created:
            shutil.rmtree(root, ignore_errors=True)
        raise
    write_settings_file(root, values)
    return ws


def open_workspace(path: str | Path | None = None, **overrides: Any) -> Workspace:
    """Open an existing workspace (migrating an older metadata schema). NotFoundError if absent.

    Without ``path`` and ``LOOPML_HOME``, the nearest ``.loopml`` in the current folder or one
    above it is opened (:func:`find_workspace`).
    """
    root = resolve_root(path, discover=True)
    if (root / SETTINGS_FILE).exists():
        return Workspace(root, load_settings(root, overrides))
    elsewhere = "or point --workspace/LOOPML_HOME at an existing workspace"
    if path or env_workspace():
        raise NotFoundError(
            f"no loopml workspace at {root}",
            where={"workspace": str(root)},
            hint=f"Run 'loopml init --workspace {root}' first, {elsewhere}",
        )
    raise NotFoundError(
        f"no loopml workspace in {Path.cwd()} or any folder above it (none has a "
        f"{DEFAULT_WORKSPACE}/{SETTINGS_FILE})",
        where={"workspace": str(root)},
        hint=f"Run 'loopml init' here first (it creates ./{DEFAULT_WORKSPACE}), {elsewhere}",
    )
