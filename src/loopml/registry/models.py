"""Registering model versions, moving aliases and loading models back."""

from __future__ import annotations

import getpass
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from loopml.errors import InvalidInputError, NotFoundError
from loopml.names import check_name, is_version, parse_ref
from loopml.registry.allowlist import check_trust
from loopml.registry.bundle import ModelBundle, Prediction
from loopml.registry.signature import Signature
from loopml.stores.base import ANY_VERSION, Expected
from loopml.stores.records import AliasEvent, ModelVersion, Run
from loopml.utils import new_id, utcnow
from loopml.workspace import Workspace

if TYPE_CHECKING:
    from loopml.registry.compiled import CompiledModel, NativeFallback

CHAMPION = "champion"
#: opt-ins that name a format a model came from rather than a type inside it: recorded on the
#: version (``trusted``) and shown, never passed to the loader
FORMAT_OPT_INS = ("pickle",)


@dataclass
class LoadedModel:
    """A registered version, loaded and checked, ready to predict."""

    record: ModelVersion
    bundle: ModelBundle
    #: where the compiled graph is cached (None: compiled without a cache)
    workspace: Workspace | None = field(default=None, repr=False, compare=False)
    #: ``serve_compile`` for this model (None: the workspace's setting, else auto)
    compile: str | None = None
    _predictor: Any = field(default=None, init=False, repr=False, compare=False)
    _lock: Any = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    @property
    def predictor(self) -> CompiledModel | NativeFallback:
        """What to predict :data:`~loopml.registry.signature.Columns` with: the bundle
        compiled to ONNX where ``serve_compile`` allows it and it converts and matches the
        native model, else the native bundle with the reason (``predictor.kind``,
        ``predictor.reason``; see :mod:`loopml.registry.compiled`). Worked out once, on
        first use (at load when ``load_model`` is given ``compile``), cached by bundle."""
        if self._predictor is None:
            with self._lock:
                if self._predictor is None:
                    self._predictor = self._make_predictor()
        return self._predictor  # type: ignore[no-any-return]

    def serving_predictor(self) -> CompiledModel | NativeFallback:
        """:attr:`predictor`, worked out as a server must (blocking: off the event loop): a
        version never compiled is compiled by a separate process, never in this one
        (:func:`loopml.registry.compiled.serving_predictor`); :attr:`predictor` answers it
        from then on."""
        if self._predictor is None:
            with self._lock:
                if self._predictor is None:
                    self._predictor = self._make_predictor(serving=True)
        return self._predictor  # type: ignore[no-any-return]

    def _make_predictor(self, *, serving: bool = False) -> CompiledModel | NativeFallback:
        from loopml.registry.compiled import load_predictor, serving_predictor

        ws = self.workspace
        mode = self.compile
        if mode is None:
            mode = ws.settings.serve_compile if ws is not None else "auto"
        make = serving_predictor if serving else load_predictor
        return make(ws, self.bundle, self.record.artifact_sha256, mode=mode)

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
    run_params: dict[str, Any] | None = None,
    compile: bool = False,
) -> ModelVersion:
    """Store the bundle in the artifact store and record a new version of ``name``.

    ``run_id`` names the run that trained it; without one (a model fitted in a notebook) a
    succeeded run is recorded for it, so that ``models show`` and ``trace`` always find one.

    The stored bytes are loaded back and the bundle's sample rows predicted before anything
    is recorded. ``trust`` (with any opt-ins the bundle carries from ``fit_bundle``) names
    types or functions beyond loopml's allowlist that the model may contain, e.g. the
    function of a ``FunctionTransformer``; the ones it needs are recorded on the version
    (``ModelVersion.trusted``), honoured by every later load, and shown by ``models show``.
    ``"pickle"`` in ``trust`` records that the model was converted from a pickle the user
    trusted (see :mod:`loopml.registry.transfer`). ``run_params``: the params of the run
    recorded when there is no ``run_id`` (default ``{"registered_from": "python"}``).
    ``compile``: also compile the version to ONNX now, as ``serve_compile`` says (see
    :mod:`loopml.registry.compiled`), so that servers find the checked graph cached; a model
    that does not compile is recorded as native, with its reason.
    """
    check_name(name, "model")
    metrics = {} if metrics is None else metrics
    _check_lineage(ws, run_id, dataset_name, dataset_version)
    data = bundle.to_bytes()
    trust = [] if trust is None else trust
    if isinstance(trust, str):
        check_trust(trust)  # the error for a string in place of a list
    formats = sorted({t for t in trust if t in FORMAT_OPT_INS})
    opted_in = sorted({*check_trust(t for t in trust if t not in FORMAT_OPT_INS), *bundle.trusted})
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
        trusted=[*formats, *checked.trusted],
    )
    if run_id is not None:
        mv = ws.metadata.add_model_version(draft)
    else:
        mv = _register_with_run(ws, draft, run_params or {"registered_from": "python"})
    if compile and ws.settings.serve_compile != "native":
        from loopml.registry.compiled import load_predictor

        load_predictor(ws, checked, sha, mode="auto")  # cached; never raises for a fallback
    return mv


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


def _register_with_run(ws: Workspace, draft: ModelVersion, params: dict[str, Any]) -> ModelVersion:
    """Record a succeeded run for a model registered from Python, then the version."""
    run = Run(
        id=new_id(),
        name=draft.name,
        status="succeeded",
        started_at=draft.created_at,
        params=params,
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

    A bare name means ``default_alias`` when given, else the latest active version.
    """
    name, tag = parse_ref(ref, "model")
    if tag is None:
        if default_alias is not None:
            tag = default_alias
        else:
            versions = ws.metadata.list_model_versions(name)
            if not versions:
                raise _no_model(ws, name)
            active = [v for v in versions if v.status == "active"]
            return (active or versions)[-1]
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


def load_model(
    ws: Workspace,
    ref: str,
    *,
    default_alias: str | None = CHAMPION,
    compile: str | None = None,
) -> LoadedModel:
    """Load ``NAME[@VERSION|@ALIAS]`` (bare name: its champion) from the artifact store.

    The artifact is checked against its sha256 on the way in, and may contain only the
    types loopml lists plus those recorded as trusted on the version (UnsafeFormatError).
    ``compile`` (``auto``, ``onnx`` or ``native``) overrides the setting ``serve_compile``
    and works out :attr:`LoadedModel.predictor` now (``onnx``: ConfigError for a model that
    does not compile); without it the predictor is worked out on first use.
    """
    if compile is not None:
        from loopml.registry.compiled import check_mode

        check_mode(compile)
    record = resolve_version(ws, ref, default_alias=default_alias)
    data = ws.artifacts.get(record.artifact_sha256)
    # the opt-ins come from the version's record, never from the (untrusted) bundle
    what = f"{record.name}@{record.version}"
    types = [t for t in record.trusted if t not in FORMAT_OPT_INS]
    bundle = ModelBundle.from_bytes(data, what=what, trusted=types)
    # a network's optimizer state is read again from the store only if a fine-tune asks
    attach = getattr(bundle.flavor_impl, "attach_source", None)
    if callable(attach):
        sha = record.artifact_sha256
        attach(bundle.estimator, lambda: ws.artifacts.get(sha), what)
    loaded = LoadedModel(record, bundle, workspace=ws, compile=compile)
    if compile is not None:
        loaded.predictor  # noqa: B018 (worked out at load, off any request path)
    return loaded


def actor(ws: Workspace) -> str:
    """Who is changing the registry: ``$LOOPML_ACTOR`` (setting ``actor``), else user@host."""
    if ws.settings.actor:
        return ws.settings.actor
    try:
        user = getpass.getuser()
    except Exception:  # no user name in the environment or the password database
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _check_alias(name: str, alias: str) -> None:
    check_name(name, "model")
    check_name(alias, "alias")
    if is_version(alias) or alias.isdigit():
        raise InvalidInputError(
            f"alias {alias!r} is a number",
            where={"alias": alias},
            hint="Aliases are names such as champion or challenger; numbers mean versions",
        )


def _check_expected(expected: Expected) -> None:
    if expected is ANY_VERSION or expected is None:
        return
    if isinstance(expected, bool) or not isinstance(expected, int) or expected < 1:
        raise InvalidInputError(
            f"expected must be a version number (1 or more), None or ANY_VERSION, got {expected!r}",
            where={"field": "expected"},
            hint="Pass the version the alias points at now (see 'loopml models list'), or "
            "None when it must not exist yet",
        )


def set_alias(
    ws: Workspace,
    name: str,
    alias: str,
    version: int,
    *,
    expected: Expected = ANY_VERSION,
    reason: str | None = None,
) -> AliasEvent | None:
    """Point ``alias`` of ``name`` at ``version``, as a compare-and-set, and log the move.

    ``expected`` is the version the caller believes the alias points at (None: it must not
    exist yet; the default :data:`ANY_VERSION`: wherever it points). When another move got
    there first, ConflictError (code ``alias_moved``) naming the current version; of two
    concurrent promotions with the same ``expected`` exactly one wins. The move is logged
    (``loopml models history``) with who made it (setting ``actor``, ``$LOOPML_ACTOR``, else
    user@host) and ``reason``. Returns the event, None when the alias already pointed there.
    """
    _check_alias(name, alias)
    _check_expected(expected)
    return ws.metadata.set_alias(
        name, alias, int(version), expected=expected, actor=actor(ws), reason=reason
    )


def delete_alias(
    ws: Workspace,
    name: str,
    alias: str,
    *,
    expected: Expected = ANY_VERSION,
    reason: str | None = None,
) -> AliasEvent:
    """Remove ``alias`` of ``name`` (compare-and-set as :func:`set_alias`) and log it."""
    _check_alias(name, alias)
    _check_expected(expected)
    return ws.metadata.delete_alias(name, alias, expected=expected, actor=actor(ws), reason=reason)


def alias_history(
    ws: Workspace, name: str, alias: str | None = None, *, limit: int = 100
) -> list[AliasEvent]:
    """The alias moves of ``name`` (of one alias), newest first."""
    check_name(name, "model")
    if alias is not None:
        check_name(alias, "alias")
    if not ws.metadata.list_model_versions(name):
        events = ws.metadata.list_alias_events(name, alias, limit=limit)
        if not events:
            raise _no_model(ws, name)
        return events
    return ws.metadata.list_alias_events(name, alias, limit=limit)


def _exact_version(ws: Workspace, ref: str, doing: str) -> tuple[str, int]:
    name, tag = parse_ref(ref, "model")
    if tag is None or not is_version(tag):
        raise InvalidInputError(
            f"{doing} needs NAME@VERSION, got {ref!r}",
            where={"model": ref},
            hint=f"Name the version, e.g. {name}@1 ('loopml models list {name}' shows them)",
        )
    return name, int(tag)


def archive_version(ws: Workspace, ref: str) -> ModelVersion:
    """Archive ``NAME@VERSION``: kept and loadable by number, hidden from listings (unless
    ``all``) and never served by an alias. ConflictError when an alias points at it."""
    name, version = _exact_version(ws, ref, "archive")
    return ws.metadata.set_model_version_status(name, version, "archived")


def restore_version(ws: Workspace, ref: str) -> ModelVersion:
    """Make an archived ``NAME@VERSION`` active again."""
    name, version = _exact_version(ws, ref, "restore")
    return ws.metadata.set_model_version_status(name, version, "active")


def delete_version(ws: Workspace, ref: str) -> ModelVersion:
    """Delete the record of ``NAME@VERSION`` (ConflictError when an alias points at it).

    Only the record goes: artifacts are content-addressed and may be shared by other
    versions, so the bundle's bytes stay in the artifact store. The number is not reused.
    """
    name, version = _exact_version(ws, ref, "delete")
    return ws.metadata.delete_model_version(name, version)


def list_models(
    ws: Workspace, name: str | None = None, *, all: bool = False
) -> list[dict[str, Any]]:
    """Every active version (of one model, or all) with its aliases, for listings; archived
    ones too with ``all``."""
    if name is not None:
        check_name(name, "model")
    rows = []
    alias_cache: dict[str, dict[str, int]] = {}
    versions = ws.metadata.list_model_versions(name)
    for mv in versions:
        if mv.status != "active" and not all:
            continue
        if mv.name not in alias_cache:
            alias_cache[mv.name] = ws.metadata.get_aliases(mv.name)
        aliases = sorted(a for a, v in alias_cache[mv.name].items() if v == mv.version)
        rows.append({**mv.to_dict(), "aliases": aliases})
    if name is not None and not versions:
        raise _no_model(ws, name)
    return rows
