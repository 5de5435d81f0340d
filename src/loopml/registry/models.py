"""Registering model versions, moving aliases and loading models back."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from loopml.errors import InvalidInputError, NotFoundError
from loopml.names import check_name, is_version, parse_ref
from loopml.registry.allowlist import check_trust
from loopml.registry.bundle import ModelBundle, Prediction
from loopml.registry.signature import Signature
from loopml.stores.records import ModelVersion, Run
from loopml.utils import new_id, utcnow
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

    def predict(
        self,
        data: Any,
        *,
        source: str = "input",
        unknown: str | None = None,
        extra: str = "ignore",
    ) -> Prediction:
        """Predict a DataFrame or a list of records (judged as the server judges them).

        Extra fields are ignored (``extra="error"`` refuses them). ``unknown`` says what to
        do with values training never had: ``flag`` scores them and lists them in the
        prediction's ``unknown_fields``, ``error`` refuses them; by default the model's own
        policy, else ``flag`` for a frame and ``error`` for records.
        """
        if isinstance(data, list):
            return self.bundle.predict_records(data, unknown=unknown, extra=extra)
        return self.bundle.predict(data, source=source, unknown=unknown, extra=extra)


def register_model(
    ws: Workspace,
    name: str,
    bundle: ModelBundle,
    *,
    run_id: str | None = None,
    metrics: dict[str, Any] | None = None,
    dataset_name: str | None = None,
    dataset_version: int | None = None,
    trust: Iterable[str] | None = None,
) -> ModelVersion:
    """Store the bundle in the artifact store and record a new version of ``name``.

    ``run_id`` names the run that trained it; without one (a model fitted in a notebook) a
    succeeded run is recorded for it, so that ``models show`` and ``trace`` always find one.

    The stored bytes are loaded back and the bundle's sample rows predicted before anything
    is recorded. ``trust`` (with any opt-ins the bundle carries from ``fit_bundle``) names
    types or functions beyond loopml's allowlist that the model may contain, e.g. the
    function of a ``FunctionTransformer``; the ones it needs are recorded on the version
    (``ModelVersion.trusted``), honoured by every later load, and shown by ``models show``.
    """
    check_name(name, "model")
    metrics = {} if metrics is None else metrics
    _check_lineage(ws, run_id, dataset_name, dataset_version)
    data = bundle.to_bytes()
    opted_in = sorted({*check_trust(trust), *bundle.trusted})
    checked = ModelBundle.from_bytes(data, what=f"{name} (being registered)", trusted=opted_in)
    checked.warm_up()
    sha = ws.artifacts.put(data)
    draft = ModelVersion(
        name=name,
        version=0,
        run_id=run_id or "",  # a draft; the run recorded below gives its id
        artifact_sha256=sha,
        flavor=bundle.flavor,
        signature=bundle.signature.to_dict(),
        metrics=metrics,
        dataset_name=dataset_name,
        dataset_version=dataset_version,
        created_at=utcnow(),
        size_bytes=len(data),
        trusted=list(checked.trusted),
    )
    if run_id is not None:
        return ws.metadata.add_model_version(draft)
    return _register_with_run(ws, draft)


def _check_lineage(
    ws: Workspace, run_id: str | None, dataset_name: str | None, dataset_version: int | None
) -> None:
    """Refuse a version that would point at a run or a dataset that is not there."""
    if run_id is not None:
        try:
            ws.metadata.get_run(run_id)
        except NotFoundError as exc:
            raise InvalidInputError(
                f"no run with id {run_id!r} to register the model under",
                where={"run": run_id},
                hint="Leave out run_id to record a run for this registration, or pass the id "
                "of a recorded run (see 'loopml runs list')",
            ) from exc
    if (dataset_name is None) != (dataset_version is None):
        raise InvalidInputError(
            "dataset_name and dataset_version go together",
            where={"field": "dataset_version" if dataset_version is None else "dataset_name"},
            hint="Pass both (the dataset version the model was trained on) or neither",
        )
    if dataset_name is not None and dataset_version is not None:
        ws.metadata.get_dataset_version(dataset_name, dataset_version)


def _register_with_run(ws: Workspace, draft: ModelVersion) -> ModelVersion:
    """Record a succeeded run for a model registered from Python, then the version."""
    run = Run(
        id=new_id(),
        name=draft.name,
        status="succeeded",
        started_at=draft.created_at,
        params={"registered_from": "python"},
        metrics=draft.metrics,
        dataset_name=draft.dataset_name,
        dataset_version=draft.dataset_version,
        duration_s=0.0,
    )
    ws.metadata.add_run(run)
    try:
        mv = ws.metadata.add_model_version(replace(draft, run_id=run.id))
    except BaseException as exc:
        ws.metadata.update_run(replace(run, status="failed", error=f"{type(exc).__name__}: {exc}"))
        raise
    ws.metadata.update_run(replace(run, model_version=mv.version))
    return mv


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
    if is_version(tag):
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

    The artifact is checked against its sha256 on the way in, and may contain only the
    types loopml lists plus those recorded as trusted on the version (UnsafeFormatError).
    """
    record = resolve_version(ws, ref, default_alias=default_alias)
    data = ws.artifacts.get(record.artifact_sha256)
    # the opt-ins come from the version's record, never from the (untrusted) bundle
    what = f"{record.name}@{record.version}"
    bundle = ModelBundle.from_bytes(data, what=what, trusted=record.trusted)
    return LoadedModel(record, bundle)


def set_alias(ws: Workspace, name: str, alias: str, version: int) -> None:
    """Point ``alias`` of ``name`` at ``version``."""
    check_name(name, "model")
    check_name(alias, "alias")
    if is_version(alias) or alias.isdigit():
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
