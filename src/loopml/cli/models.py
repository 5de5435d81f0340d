"""``loopml models`` and ``loopml runs``: registered versions, aliases, training runs."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from loopml.cli.common import (
    JsonOpt,
    WorkspaceOpt,
    dataset_ref,
    fmt,
    open_ws,
    out,
    print_json,
    short_ids,
    table,
)

app = typer.Typer(help="Registered models: list, show, alias.", no_args_is_help=True)
runs_app = typer.Typer(help="Training runs: list, show.", no_args_is_help=True)


def _main_metric(metrics: dict[str, Any]) -> tuple[str, str, str]:
    name = metrics.get("metric", "")
    holdout = metrics.get("holdout", {}).get(name)
    cv = metrics.get("cv", {}).get(name, {})
    spread = f"{fmt(cv.get('mean'))} ± {fmt(cv.get('std'))}" if cv else ""
    return name, fmt(holdout), spread


@app.command("list")
def list_(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Only this model.")] = None,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List model versions with their main metric and aliases."""
    from loopml import registry

    with open_ws(ctx, workspace) as ws:
        rows = registry.list_models(ws, name)
        if as_json:
            print_json(rows)
            return
        table(
            "models",
            ["name", "version", "aliases", "metric", "holdout", "cv (mean ± std)", "dataset"],
            [
                (
                    r["name"],
                    r["version"],
                    ", ".join(r["aliases"]),
                    *_main_metric(r["metrics"]),
                    dataset_ref(r["dataset_name"], r["dataset_version"]),
                )
                for r in rows
            ],
        )


@app.command("show")
def show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME, NAME@VERSION or NAME@ALIAS.")],
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a version: metrics, signature, lineage (run, dataset, artifact) and trust opt-ins."""
    from rich.markup import escape

    from loopml import registry

    with open_ws(ctx, workspace) as ws:
        mv = registry.resolve_version(ws, ref)
        aliases = sorted(a for a, v in ws.metadata.get_aliases(mv.name).items() if v == mv.version)
        run = ws.metadata.get_run(mv.run_id)
        doc = {
            **mv.to_dict(),
            "aliases": aliases,
            "artifact_url": ws.artifacts.url(mv.artifact_sha256),
            "run": run.to_dict(),
        }
        if as_json:
            print_json(doc)
            return
        out.print(f"[bold]{mv.name}@{mv.version}[/bold]  aliases: {', '.join(aliases) or '-'}")
        out.print(f"flavor {mv.flavor}, created {mv.created_at:%Y-%m-%d %H:%M:%S}")
        out.print(f"trained on {dataset_ref(mv.dataset_name, mv.dataset_version)} by run {run.id}")
        out.print(f"git {run.git_commit or '-'}; took {fmt(run.duration_s, 1)} s")
        out.print(f"artifact {doc['artifact_url']} ({mv.size_bytes} bytes)")
        if mv.trusted:  # opt-ins recorded at registration; loads honour exactly these
            names = ", ".join(escape(t) for t in mv.trusted)
            out.print(f"[yellow]trusted beyond loopml's allowlist:[/yellow] {names}")
        else:
            out.print("trusted: loopml's allowlist only")
        holdout = mv.metrics.get("holdout", {})
        cv = mv.metrics.get("cv", {})
        table(
            "metrics",
            ["metric", "holdout", "cv mean", "cv std"],
            [
                (k, fmt(v), fmt(cv.get(k, {}).get("mean")), fmt(cv.get(k, {}).get("std")))
                for k, v in holdout.items()
            ],
        )
        sig = mv.signature
        table(
            f"signature ({sig['task']}, target {sig['target']!r})",
            ["feature", "kind", "dtype", "nullable", "range / categories"],
            [
                (
                    f["name"],
                    f["kind"],
                    f["dtype"],
                    f["nullable"],
                    ", ".join(f["categories"][:6])
                    if f.get("categories")
                    else f"{fmt(f.get('min'))} .. {fmt(f.get('max'))}",
                )
                for f in sig["inputs"]
            ],
        )


@app.command("alias")
def alias(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias_name: Annotated[str, typer.Argument(metavar="ALIAS", help="e.g. champion.")],
    version: Annotated[int, typer.Argument(help="Version the alias points at.")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Point ALIAS of model NAME at VERSION (servers pick the change up)."""
    from loopml import registry

    with open_ws(ctx, workspace) as ws:
        registry.set_alias(ws, name, alias_name, version)
        out.print(f"{name}@{alias_name} -> version {version}")


@runs_app.command("list")
def runs_list(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Only runs of this model.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 20,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List training runs, newest first."""
    with open_ws(ctx, workspace) as ws:
        runs = ws.metadata.list_runs(name, limit=limit)
        if as_json:
            print_json([r.to_dict() for r in runs])
            return
        ids = short_ids([r.id for r in runs])  # 'runs show' takes these prefixes
        table(
            "runs",
            ["id", "model", "status", "dataset", "metric", "holdout", "version", "seconds"],
            [
                (
                    short,
                    r.name,
                    r.status,
                    dataset_ref(r.dataset_name, r.dataset_version),
                    *_main_metric(r.metrics)[:2],
                    r.model_version,
                    fmt(r.duration_s, 1),
                )
                for short, r in zip(ids, runs, strict=True)
            ],
        )


@runs_app.command("show")
def runs_show(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="Run id, or its first 4+ hex digits.")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Show one run as JSON: parameters, metrics, lineage, packages."""
    with open_ws(ctx, workspace) as ws:
        print_json(ws.metadata.resolve_run(run_id).to_dict())
