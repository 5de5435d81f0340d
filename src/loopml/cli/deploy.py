"""``loopml deploy``: how a served model splits its traffic (single, A/B, canary, shadow).

``loopml deploy NAME --single 3 | --ab 3=90,4=10 | --canary 4=5 [--shadow 5]`` sets it (the
same as ``loopml deploy set NAME ...``, which also works for a model named like a
sub-command), ``loopml deploy step NAME --to 20`` moves a canary, ``loopml deploy status``
shows the stored split and, from the servers' ``/metrics``, each version's traffic, errors
and latency; ``loopml deploy history NAME`` lists the changes.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from loopml.cli.common import JsonOpt, WorkspaceOpt, err, open_ws, out, print_json, table
from loopml.errors import InvalidInputError

if TYPE_CHECKING:
    from loopml.stores.records import Deployment


class _DeployGroup(TyperGroup):
    """``loopml deploy NAME ...`` is ``loopml deploy set NAME ...``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["set", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_DeployGroup,
    help="Deployments: how a served model splits its traffic among versions. "
    "'loopml deploy NAME --single 3 | --ab 3=90,4=10 | --canary 4=5 [--shadow 5]' sets one "
    "(the same as 'loopml deploy set NAME ...').",
    no_args_is_help=True,
)

ExpectOpt = Annotated[
    int | None,
    typer.Option(
        "--expect",
        help="Change only if the stored revision is this one (0: no deployment yet); "
        "'loopml deploy status' shows it.",
        show_default=False,
    ),
]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why; kept in the history.")]


def _pairs(text: str, flag: str) -> list[tuple[int, float]]:
    """``3=90,4=10`` -> ``[(3, 90.0), (4, 10.0)]``; InvalidInputError naming the flag."""
    pairs = []
    for part in text.split(","):
        version, sep, percent = part.strip().partition("=")
        try:
            if not sep:
                raise ValueError(part)
            pairs.append((int(version), float(percent)))
        except ValueError:
            raise InvalidInputError(
                f"{flag} {text!r}: {part.strip()!r} is not VERSION=PERCENT",
                where={"flag": flag, "value": text},
                hint=f"e.g. {flag} 3=90,4=10" if flag == "--ab" else f"e.g. {flag} 4=5",
            ) from None
    return pairs


def _print_deployment(dep: Deployment, verb: str) -> None:
    from loopml.registry.deployments import describe

    out.print(
        f"{verb} [bold]{dep.name}[/bold] revision {dep.revision}: {describe(dep)}"
        + (f" ({dep.reason})" if dep.reason else "")
    )


@app.command("set")
def set_(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The served model name.")],
    single: Annotated[
        int | None, typer.Option("--single", help="One version answers everything.")
    ] = None,
    ab: Annotated[
        str | None,
        typer.Option("--ab", help="Fixed weights summing to 100, e.g. 3=90,4=10."),
    ] = None,
    canary: Annotated[
        str | None,
        typer.Option(
            "--canary",
            help="VERSION=PERCENT of the traffic against the current primary (the deployed "
            "single version, else the champion), e.g. 4=5.",
        ),
    ] = None,
    shadow: Annotated[
        int | None,
        typer.Option("--shadow", help="A version that scores every request, never answers."),
    ] = None,
    expect: ExpectOpt = None,
    reason: ReasonOpt = "",
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Set the deployment of NAME: --single, --ab or --canary (one of them), and --shadow."""
    from loopml.registry.compiled import compile_for_traffic
    from loopml.registry.deployments import deploy

    ab_pairs = None if ab is None else _pairs(ab, "--ab")
    canary_pairs = None if canary is None else _pairs(canary, "--canary")
    with open_ws(ctx, workspace) as ws:
        # the versions that get traffic are compiled before it moves (servers then load the
        # cached graph); the canary's primary already serves
        named = [
            single,
            shadow,
            *(v for v, _ in ab_pairs or ()),
            *(v for v, _ in canary_pairs or ()),
        ]
        for line in compile_for_traffic(ws, name, named):
            (err if as_json else out).print(line, markup=False)
        dep = deploy(
            ws,
            name,
            single=single,
            ab=ab_pairs,
            canary=canary_pairs,
            shadow=shadow,
            expected=expect,
            reason=reason,
            compile=False,  # done above, with the lines printed
        )
    if as_json:
        print_json(dep.to_dict())
        return
    _print_deployment(dep, "deployed")
    out.print("[dim]servers following the workspace pick the change up within a second[/dim]")


@app.command("step")
def step(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The served model name (a canary deployment).")],
    to: Annotated[
        float, typer.Option("--to", help="The canary's new percentage, 0 to 100.", min=0, max=100)
    ],
    expect: ExpectOpt = None,
    reason: ReasonOpt = "",
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Move the canary of NAME to --to percent (keys move only between the old and new share)."""
    from loopml.registry.deployments import step_canary

    with open_ws(ctx, workspace) as ws:
        dep = step_canary(ws, name, to=to, expected=expect, reason=reason)
    if as_json:
        print_json(dep.to_dict())
        return
    _print_deployment(dep, "stepped")


@app.command("history")
def history(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The served model name.")],
    limit: Annotated[int, typer.Option("--limit", help="At most this many.", min=1)] = 50,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The changes of NAME's deployment, newest first: who, when, why, from what to what."""
    from loopml.registry.deployments import deployment_history, describe

    with open_ws(ctx, workspace) as ws:
        events = deployment_history(ws, name, limit)
    if as_json:
        print_json([e.to_dict() for e in events])
        return
    table(
        f"deployment history of {name}",
        ["revision", "at (UTC)", "by", "from", "to", "reason"],
        [
            (
                e.revision,
                f"{e.at:%Y-%m-%d %H:%M:%S}",
                e.actor or "",
                describe(e.old) if e.old else "-",
                describe(e.new),
                e.reason or "",
            )
            for e in events
        ],
        shrink=["reason", "from", "to"],
    )


# -- status -----------------------------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
REQUESTS = "loopml_requests_total"
LATENCY = "loopml_request_duration_seconds"


@dataclass
class Traffic:
    """What the servers report for one (model, version), summed over endpoints and servers."""

    requests: float = 0.0
    errors: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)  # upper bound -> cumulative

    def quantile(self, q: float) -> float | None:
        """Seconds below which a share ``q`` of the requests finished (as Prometheus's
        ``histogram_quantile``: linear within a bucket); None without observations."""
        bounds = sorted(self.buckets)
        if not bounds or self.buckets[bounds[-1]] <= 0:
            return None
        rank = q * self.buckets[bounds[-1]]
        lower, below = 0.0, 0.0
        for bound in bounds:
            count = self.buckets[bound]
            if count >= rank:
                if math.isinf(bound):
                    return lower
                if count == below:
                    return bound
                return lower + (bound - lower) * (rank - below) / (count - below)
            lower, below = bound, count
        return lower  # pragma: no cover - the last bucket holds every observation


def _labels(text: str) -> dict[str, str]:
    return {
        k: v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
        for k, v in _LABEL.findall(text or "")
    }


def parse_metrics(text: str, into: dict[tuple[str, str], Traffic]) -> None:
    """Add the requests, errors and latency buckets of one server's ``/metrics`` to ``into``."""
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or line.startswith("#"):
            continue
        name, raw, value_text = match.groups()
        try:
            value = float(value_text)
        except ValueError:
            continue
        labels = _labels(raw)
        if "model" not in labels or "version" not in labels:
            continue
        traffic = into.setdefault((labels["model"], labels["version"]), Traffic())
        if name == REQUESTS:
            traffic.requests += value
            if labels.get("status", "200")[:1] in ("4", "5"):
                traffic.errors += value
        elif name == f"{LATENCY}_bucket" and "le" in labels:
            bound = float("inf") if labels["le"] == "+Inf" else float(labels["le"])
            traffic.buckets[bound] = traffic.buckets.get(bound, 0.0) + value


def _scrape(
    urls: list[str], timeout: float
) -> tuple[dict[tuple[str, str], Traffic], list[dict[str, Any]]]:
    import httpx

    traffic: dict[tuple[str, str], Traffic] = {}
    servers = []
    for url in urls:
        target = url.rstrip("/") + "/metrics"
        try:
            response = httpx.get(target, timeout=timeout)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            servers.append({"url": url, "reachable": False, "error": reason})
            continue
        parse_metrics(response.text, traffic)
        servers.append({"url": url, "reachable": True, "error": None})
    return traffic, servers


def _role(dep: Deployment | None, version: int) -> tuple[str, float | None]:
    if dep is None:
        return "-", None
    shares = dict(dep.routes)
    if version in shares:
        if dep.mode == "canary":
            return ("primary" if dep.routes[0][0] == version else "canary"), shares[version]
        return dep.mode, shares[version]
    if dep.shadow == version:
        return "shadow", None
    return "not deployed", None


def _ms(ms: float | None) -> str:
    return "" if ms is None else f"{ms:.2f}"


@app.command("status")
def status(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Only this model.")] = None,
    server: Annotated[
        list[str] | None,
        typer.Option(
            "--server",
            help="A server's base URL to read /metrics from (repeat for several).",
            show_default="http://SERVE_HOST:SERVE_PORT of the workspace settings",
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for each server.", min=0.1)
    ] = 2.0,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the stored split and, from the servers' metrics, each version's requests, errors
    and p50/p99 latency (totals since each server started)."""
    from loopml.registry.deployments import describe, effective_deployment, list_deployments

    with open_ws(ctx, workspace) as ws:
        if name is not None:
            found = effective_deployment(ws, name)
            deps = [found] if found is not None else []
            if found is None and not ws.metadata.list_model_versions(name):
                from loopml.registry.models import resolve_version

                resolve_version(ws, name)  # the not-found error naming the known models
        else:
            deps = list_deployments(ws)
        settings = ws.settings
        urls = list(server or [f"http://{settings.serve_host}:{settings.serve_port}"])
    traffic, servers = _scrape(urls, timeout)
    by_name = {d.name: d for d in deps}
    keys = set(traffic)
    for dep in deps:
        held = {v for v, _ in dep.routes} | ({dep.shadow} if dep.shadow else set())
        keys.update((dep.name, str(v)) for v in held)
    rows: list[dict[str, Any]] = []
    for model, version in sorted(keys, key=lambda k: (k[0], _number(k[1]))):
        if name is not None and model != name:
            continue
        if name is None and model not in by_name and not traffic.get((model, version)):
            continue
        seen = traffic.get((model, version), Traffic())
        role, share = _role(by_name.get(model), _number(version))
        p50, p99 = seen.quantile(0.5), seen.quantile(0.99)
        rows.append(
            {
                "model": model,
                "version": version,
                "role": role,
                "share": share,
                "requests": int(seen.requests),
                "errors": int(seen.errors),
                "p50_ms": None if p50 is None else p50 * 1000,
                "p99_ms": None if p99 is None else p99 * 1000,
            }
        )
    if as_json:
        print_json(
            {
                "deployments": [{**d.to_dict(), "stored": d.revision > 0} for d in deps],
                "servers": servers,
                "traffic": rows,
            }
        )
        return
    if not deps:
        what = f"model {name!r} has no deployment and no champion" if name else "no deployments"
        out.print(f"{what}; set one with 'loopml deploy NAME --single VERSION'")
    for dep in deps:
        if dep.revision == 0:
            out.print(
                f"[bold]{dep.name}[/bold]: no deployment stored; the champion answers: "
                f"{describe(dep)}"
            )
        else:
            by = f" by {dep.updated_by}" if dep.updated_by else ""
            at = f" at {dep.updated_at:%Y-%m-%d %H:%M:%S} UTC" if dep.updated_at else ""
            out.print(f"[bold]{dep.name}[/bold] revision {dep.revision}: {describe(dep)}{by}{at}")
    for s in servers:
        if not s["reachable"]:
            err.print(
                f"[yellow]note:[/yellow] server {s['url']} not reachable ({s['error']}); skipped"
            )
    if not any(s["reachable"] for s in servers):
        return
    totals: dict[str, float] = defaultdict(float)
    for r in rows:
        if r["role"] != "shadow":  # a shadow scores copies; it answers none of the traffic
            totals[r["model"]] += r["requests"]
    table(
        "traffic (since each server started)",
        [
            "model",
            "version",
            "role",
            "split %",
            "requests",
            "served %",
            "errors",
            "error %",
            "p50 ms",
            "p99 ms",
        ],
        [
            (
                r["model"],
                r["version"],
                r["role"],
                "" if r["share"] is None else f"{r['share']:g}",
                r["requests"],
                f"{100 * r['requests'] / totals[r['model']]:.1f}"
                if totals[r["model"]] and r["role"] != "shadow"
                else "",
                r["errors"],
                f"{100 * r['errors'] / r['requests']:.2f}" if r["requests"] else "",
                _ms(r["p50_ms"]),
                _ms(r["p99_ms"]),
            )
            for r in rows
        ],
    )


def _number(version: str) -> int:
    return int(version) if version.isdigit() else -1
