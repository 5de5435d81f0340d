"""Deployments: how a served model name splits its traffic among versions.

One deployment per model name, stored in the metadata so that every server agrees:

- ``single``: one version answers everything;
- ``ab``: fixed weights, e.g. ``{3: 90, 4: 10}``;
- ``canary``: a percentage of one version against the current primary, stepped up (or down)
  with :func:`step_canary`;

each optionally with a ``shadow`` version that scores every request, is logged, and never
answers. Every change is a compare-and-set on the deployment's revision, recorded with who
made it and why (``deployment_history``). Without a deployment a server answers with the
champion alias (:func:`effective_deployment`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from loopml.errors import ConflictError, InvalidInputError, NotFoundError
from loopml.names import check_name
from loopml.registry.models import CHAMPION, actor
from loopml.stores.records import Deployment, DeploymentEvent, ModelVersion
from loopml.utils import utcnow
from loopml.workspace import Workspace

#: attempts of an unchecked change (``expected=None``) that lost a race to another writer
_ATTEMPTS = 5
#: how far from 100 A/B weights may sum (they are rounded by people)
_SLACK = 1e-6

Weights = Mapping[int, float] | Sequence[tuple[int, float]]


def get_deployment(ws: Workspace, name: str) -> Deployment | None:
    """The stored deployment of model ``name``, None when it has none."""
    return ws.metadata.get_deployment(check_name(name, "model"))


def effective_deployment(ws: Workspace, name: str) -> Deployment | None:
    """What a server routes ``name`` by: its deployment, else its champion alone (revision
    0, not stored); None when it has neither."""
    dep = get_deployment(ws, name)
    if dep is not None:
        return dep
    champion = ws.metadata.get_aliases(name).get(CHAMPION)
    if champion is None:
        return None
    return Deployment(name, "single", ((champion, 100.0),), revision=0, reason="champion alias")


def deployment_history(ws: Workspace, name: str, limit: int = 100) -> list[DeploymentEvent]:
    """The changes of ``name``'s deployment (who, when, why, old, new), newest first."""
    return ws.metadata.list_deployment_events(check_name(name, "model"), limit)


def list_deployments(ws: Workspace) -> list[Deployment]:
    """Every stored deployment, by name."""
    return ws.metadata.list_deployments()


def deploy(
    ws: Workspace,
    name: str,
    *,
    single: int | None = None,
    ab: Weights | None = None,
    canary: Weights | tuple[int, float] | None = None,
    shadow: int | None = None,
    expected: int | None = None,
    reason: str = "",
    compile: bool = True,
) -> Deployment:
    """Set how ``name`` splits its traffic: exactly one of ``single`` (a version), ``ab``
    (version -> percent, summing to 100) or ``canary`` (``{version: percent}`` or
    ``(version, percent)``, against the current primary: the deployment's single or primary
    version, else the champion), and optionally a ``shadow`` version.

    ``expected`` is the revision the caller believes is stored (0: none yet), checked as a
    compare-and-set (ConflictError, code ``deployment_moved``, naming the current one);
    None changes whatever is stored. Versions must exist and be active. Returns the
    deployment as stored (its new ``revision``), recorded with the actor and ``reason``.

    ``compile``: the versions it names are compiled to ONNX first, as ``serve_compile``
    says (:func:`loopml.registry.compiled.compile_for_traffic`; a model that does not
    convert is recorded native, an error only with ``onnx``), so that servers load the
    cached graph instead of compiling it.
    """
    check_name(name, "model")
    flags = (("single", single), ("ab", ab), ("canary", canary))
    given = [flag for flag, value in flags if value is not None]
    if len(given) != 1:
        raise InvalidInputError(
            f"deploy {name!r} needs exactly one of --single, --ab, --canary; got "
            f"{', '.join('--' + g for g in given) or 'none'}",
            where={"deployment": name, "flags": given},
            hint=f"e.g. 'loopml deploy {name} --single 3', '--ab 3=90,4=10' or '--canary 4=5'",
        )
    expected_revision = _expected(expected)
    _known(ws, name)
    for attempt in range(_ATTEMPTS):
        current = ws.metadata.get_deployment(name)
        if expected_revision is not ...:
            base: int | None = expected_revision
        else:
            base = None if current is None else current.revision
        routes: tuple[tuple[int, float], ...]
        if single is not None:
            mode, routes = "single", ((_version(single, "--single"), 100.0),)
        elif ab is not None:
            mode, routes = "ab", _ab_routes(ab)
        else:
            version, percent = _canary(canary)
            primary = _primary(ws, name, current)
            if version == primary:
                raise InvalidInputError(
                    f"--canary {version}={percent:g}: version {version} is already the primary "
                    f"of {name!r}",
                    where={"deployment": name, "flag": "--canary", "version": version},
                    hint=f"Canary another version, or step this one with 'loopml deploy step "
                    f"{name} --to PCT'",
                )
            mode, routes = "canary", ((primary, 100.0 - percent), (version, percent))
        dep = Deployment(
            name,
            mode,
            routes,
            shadow=None if shadow is None else _version(shadow, "--shadow"),
            updated_at=utcnow(),
            updated_by=actor(ws),
            reason=reason or None,
        )
        _check_versions(ws, dep)
        if compile:
            from loopml.registry.compiled import compile_for_traffic, log

            for line in compile_for_traffic(ws, name, [*(v for v, _ in routes), dep.shadow]):
                log.info("%s", line)
            compile = False  # once, whatever a lost race retries
            dep = replace(dep, updated_at=utcnow())  # when it changes, after compiling
        try:
            return ws.metadata.set_deployment(dep, expected_revision=base)
        except ConflictError as exc:
            if expected_revision is not ... or exc.code != "deployment_moved":
                raise
            if attempt == _ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def step_canary(
    ws: Workspace,
    name: str,
    *,
    to: float,
    expected: int | None = None,
    reason: str = "",
) -> Deployment:
    """Move the canary of ``name`` to ``to`` percent (0 to 100), keeping its primary, its
    canary version and its shadow; raising 10 -> 20 moves only the keys between (see
    :class:`loopml.serve.rollout.Router`). InvalidInputError when it is not a canary."""
    check_name(name, "model")
    percent = _percent(to, "--to")
    expected_revision = _expected(expected)
    for attempt in range(_ATTEMPTS):
        current = ws.metadata.get_deployment(name)
        if current is None or current.mode != "canary":
            now = "no deployment" if current is None else f"a deployment in mode {current.mode}"
            raise InvalidInputError(
                f"model {name!r} has {now}, not a canary to step",
                where={"deployment": name, "mode": None if current is None else current.mode},
                hint=f"Start one with 'loopml deploy {name} --canary VERSION=PCT'",
            )
        (primary, _), (version, _) = current.routes
        dep = Deployment(
            name,
            "canary",
            ((primary, 100.0 - percent), (version, percent)),
            shadow=current.shadow,
            updated_at=utcnow(),
            updated_by=actor(ws),
            reason=reason or None,
        )
        base = current.revision if expected_revision is ... else expected_revision
        _check_versions(ws, dep)
        try:
            return ws.metadata.set_deployment(dep, expected_revision=base)
        except ConflictError as exc:
            if expected_revision is not ... or exc.code != "deployment_moved":
                raise
            if attempt == _ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


# -- checks -----------------------------------------------------------------------------------


def _expected(expected: object) -> Any:
    """The store's ``expected_revision`` (None: must not exist), or ``...``: unchecked."""
    if expected is None:
        return ...
    if isinstance(expected, bool) or not isinstance(expected, int) or expected < 0:
        raise InvalidInputError(
            f"--expect {expected!r} is not a revision number",
            where={"flag": "--expect", "value": expected},
            hint="Give the revision 'loopml deploy status' shows (0: no deployment yet)",
        )
    return None if expected == 0 else expected


def _version(value: object, flag: str) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(
            f"{flag} {value!r} is not a version number",
            where={"flag": flag, "value": value},
            hint="Versions are whole numbers from 1 ('loopml models list NAME' shows them)",
        )
    return value


def _percent(value: object, flag: str, *, low_open: bool = False) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or not 0 <= number <= 100:
        raise InvalidInputError(
            f"{flag}: {value!r} is not a percentage from 0 to 100",
            where={"flag": flag, "value": value},
            hint="Give a number such as 5 or 12.5",
        )
    if low_open and number == 0:
        raise InvalidInputError(
            f"{flag}: a weight of 0 sends no traffic",
            where={"flag": flag, "value": value},
            hint="Leave that version out, or give it a positive weight",
        )
    return number


def _pairs(weights: Weights | tuple[int, float], flag: str) -> list[tuple[int, float]]:
    if isinstance(weights, Mapping):
        items = list(weights.items())
    elif (
        isinstance(weights, tuple)
        and len(weights) == 2
        and not isinstance(weights[0], tuple | list)
    ):
        items = [weights]
    else:
        items = list(weights)  # type: ignore[arg-type]
    pairs = []
    for item in items:
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise InvalidInputError(
                f"{flag}: {item!r} is not a VERSION=PERCENT pair",
                where={"flag": flag, "value": item},
                hint=f"e.g. {flag} 3=90,4=10",
            )
        pairs.append((_version(item[0], flag), _percent(item[1], flag, low_open=flag == "--ab")))
    return pairs


def _ab_routes(ab: Weights) -> tuple[tuple[int, float], ...]:
    pairs = _pairs(ab, "--ab")
    versions = [v for v, _ in pairs]
    if len(pairs) < 2:
        raise InvalidInputError(
            f"--ab needs two or more versions, got {len(pairs)}",
            where={"flag": "--ab", "versions": versions},
            hint="For one version use --single VERSION",
        )
    twice = sorted({v for v in versions if versions.count(v) > 1})
    if twice:
        raise InvalidInputError(
            f"--ab names version {twice[0]} more than once",
            where={"flag": "--ab", "version": twice[0]},
            hint="Give each version once, with its whole weight",
        )
    total = sum(w for _, w in pairs)
    if abs(total - 100.0) > _SLACK:
        shown = ",".join(f"{v}={w:g}" for v, w in pairs)
        raise InvalidInputError(
            f"--ab {shown}: the weights sum to {total:g}, not 100",
            where={"flag": "--ab", "sum": total},
            hint="Give percentages that add up to 100, e.g. --ab 3=90,4=10",
        )
    return tuple(pairs)


def _canary(canary: Weights | tuple[int, float] | None) -> tuple[int, float]:
    pairs = _pairs(canary or (), "--canary")
    if len(pairs) != 1:
        raise InvalidInputError(
            f"--canary takes one VERSION=PERCENT, got {len(pairs)}",
            where={"flag": "--canary", "value": [list(p) for p in pairs]},
            hint="e.g. --canary 4=5 (version 4 answers 5 %, the primary the rest)",
        )
    return pairs[0]


def _primary(ws: Workspace, name: str, current: Deployment | None) -> int:
    """The version a canary is measured against: the deployment's, else the champion."""
    if current is not None and current.mode in ("single", "canary"):
        return current.routes[0][0]
    if current is not None:
        raise InvalidInputError(
            f"model {name!r} runs an A/B split ({_shown(current)}); a canary needs one primary",
            where={"deployment": name, "flag": "--canary", "mode": current.mode},
            hint=f"Deploy the primary first ('loopml deploy {name} --single VERSION'), or "
            "change the A/B weights with --ab",
        )
    champion = ws.metadata.get_aliases(name).get(CHAMPION)
    if champion is None:
        raise InvalidInputError(
            f"model {name!r} has no deployment and no {CHAMPION} alias to canary against",
            where={"deployment": name, "flag": "--canary"},
            hint=f"Deploy a primary first ('loopml deploy {name} --single VERSION') or set "
            f"the champion ('loopml models alias {name} {CHAMPION} VERSION')",
        )
    return champion


def _known(ws: Workspace, name: str) -> dict[int, ModelVersion]:
    """The versions of model ``name`` by number; NotFoundError when it has none."""
    known = {mv.version: mv for mv in ws.metadata.list_model_versions(name)}
    if not known:
        names = sorted({mv.name for mv in ws.metadata.list_model_versions()})
        raise NotFoundError(
            f"no model named {name!r}",
            where={"model": name},
            hint=f"Registered models: {', '.join(names) or 'none yet; run loopml train'}",
        )
    return known


def _check_versions(ws: Workspace, dep: Deployment) -> None:
    """Every version routed to or shadowing exists and is active; the shadow answers none."""
    flags = {v: "--" + dep.mode for v, _ in dep.routes}
    if dep.mode == "canary":
        flags[dep.routes[0][0]] = "the primary"
    if dep.shadow is not None:
        if dep.shadow in flags:
            raise InvalidInputError(
                f"--shadow {dep.shadow}: version {dep.shadow} already answers requests of "
                f"{dep.name!r}; a shadow must be another version",
                where={"deployment": dep.name, "flag": "--shadow", "version": dep.shadow},
                hint="Shadow a version that gets no traffic, to compare it without risk",
            )
        flags[dep.shadow] = "--shadow"
    known = _known(ws, dep.name)
    for version, flag in flags.items():
        mv = known.get(version)
        if mv is None:
            raise NotFoundError(
                f"{flag}: model {dep.name!r} has no version {version}",
                where={"model": dep.name, "version": version, "flag": flag},
                hint=f"Its versions: {', '.join(map(str, sorted(known)))}",
            )
        if mv.status != "active":
            raise ConflictError(
                f"{flag}: model {dep.name!r} version {version} is {mv.status}; it cannot be "
                "deployed",
                where={"model": dep.name, "version": version, "flag": flag},
                hint=f"Restore it first with 'loopml models restore {dep.name}@{version}'",
                code="version_archived",
            )


def _shown(dep: Deployment) -> str:
    return ", ".join(f"{v}={w:g}%" for v, w in dep.routes)


def describe(dep: Deployment) -> str:
    """One line for people, e.g. ``canary: 3=90% 4=10%, shadow 5``."""
    text = f"{dep.mode}: " + " ".join(f"{v}={w:g}%" for v, w in dep.routes)
    return text + (f", shadow {dep.shadow}" if dep.shadow is not None else "")


__all__ = [
    "deploy",
    "deployment_history",
    "describe",
    "effective_deployment",
    "get_deployment",
    "list_deployments",
    "step_canary",
]
