"""Registering model versions, moving aliases and loading models back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from loopml.errors import InvalidInputError, NotFoundError
from loopml.names import check_name, parse_ref
from loopml.registry.bundle import ModelBundle, Prediction
from loopml.registry.signature import Signature
from loopml.stores.records import ModelVersion
from loopml.utils import utcnow
from loopml.workspace import Workspace

CHAMPION = "champion"


@dataclass
class LoadedModel:
    """A registered version, loaded and checked, ready to predict."""

    record: ModelVersion
    bundle: ModelBundle

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def version(self) -> int:
        return self.record.version

    @property
    def signature(self) -> Signature:
        return self.bundle.signature

    def predict(self, data: Any, *, source: str = "input") -> Prediction:
        """Predict a DataFrame (extra columns ignored) or a list of records."""
        if isinstance(data, list):
            return self.bundle.predict_records(data)
        return self.bundle.predict(data, source=source)


def register_model(
    ws: Workspace,
    name: str,
    bundle: ModelBundle,
    *,
    run_id: str,
    metrics: dict[str, Any],
    dataset_name: str | None = None,
    dataset_version: int | None = None,
) -> ModelVersion:
    """Store the bundle in the artifact store and record a new version of ``name``."""
    check_name(name, "model")
    data = bundle.to_bytes()
    sha = ws.artifacts.put(data)
    draft = ModelVersion(
        name=name,
        version=0,
        run_id=run_id,
        artifact_sha256=sha,
        flavor=bundle.flavor,
        signature=bundle.signature.to_dict(),
        metrics=metrics,
        dataset_name=dataset_name,
        dataset_version=dataset_version,
        created_at=utcnow(),
        size_bytes=len(data),
    )
    return ws.metadata.add_model_version(draft)


def resolve_version(ws: Workspace, ref: str, *, default_alias: str | None = None) -> ModelVersion:
    """``NAME``, ``NAME@VERSION`` or ``NAME@ALIAS`` -> the version record.

    A bare name means ``default_alias`` when given, else the latest version.
    """
    name, tag = parse_ref(ref, "model")
    if tag is None:
        if default_alias is not None:
            tag = default_alias
        else:
            versions = ws.metadata.list_model_versions(name)
            if not versions:
                raise _no_model(ws, name)
            return versions[-1]
    if tag.isdigit():
        return ws.metadata.get_model_version(name, int(tag))
    check_name(tag, "alias")
    aliases = ws.metadata.get_aliases(name)
    if tag not in aliases:
        if not ws.metadata.list_model_versions(name):
            raise _no_model(ws, name)
        known = ", ".join(sorted(aliases)) or "none"
        raise NotFoundError(
            f"model {name!r} has no alias {tag!r}",
            where={"model": name, "alias": tag},
            hint=f"Aliases of {name}: {known}. Use NAME@VERSION or set the alias with "
            f"'loopml models alias {name} {tag} VERSION'",
        )
    return ws.metadata.get_model_version(name, aliases[tag])


def _no_model(ws: Workspace, name: str) -> NotFoundError:
    names = sorted({m.name for m in ws.metadata.list_model_versions()})
    return NotFoundError(
        f"no model named {name!r}",
        where={"model": name},
        hint=f"Registered models: {', '.join(names) or 'none yet; run loopml train'}",
    )


def load_model(ws: Workspace, ref: str, *, default_alias: str | None = CHAMPION) -> LoadedModel:
    """Load ``NAME[@VERSION|@ALIAS]`` (bare name: its champion) from the artifact store.

    The artifact is checked against its sha256 on the way in.
    """
    record = resolve_version(ws, ref, default_alias=default_alias)
    data = ws.artifacts.get(record.artifact_sha256)
    bundle = ModelBundle.from_bytes(data, what=f"{record.name}@{record.version}")
    return LoadedModel(record, bundle)


def set_alias(ws: Workspace, name: str, alias: str, version: int) -> None:
    """Point ``alias`` of ``name`` at ``version``."""
    check_name(name, "model")
    check_name(alias, "alias")
    if alias.isdigit():
        raise InvalidInputError(
            f"alias {alias!r} is a number",
            where={"alias": alias},
            hint="Aliases are names such as champion or challenger; numbers mean versions",
        )
    ws.metadata.get_model_version(name, version)
    ws.metadata.set_alias(name, alias, version)


def list_models(ws: Workspace, name: str | None = None) -> list[dict[str, Any]]:
    """Every version (of one model, or all) with its aliases, for listings."""
    if name is not None:
        check_name(name, "model")
    rows = []
    alias_cache: dict[str, dict[str, int]] = {}
    for mv in ws.metadata.list_model_versions(name):
        if mv.name not in alias_cache:
            alias_cache[mv.name] = ws.metadata.get_aliases(mv.name)
        aliases = sorted(a for a, v in alias_cache[mv.name].items() if v == mv.version)
        rows.append({**mv.to_dict(), "aliases": aliases})
    if name is not None and not rows:
        raise _no_model(ws, name)
    return rows
