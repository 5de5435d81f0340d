"""``loopml runs``: training runs — list, show, compare, tag, delete."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

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

app = typer.Typer(help="Training runs: list, show, compare, tag, delete.", no_args_is_help=True)

RunArg = Annotated[str, typer.Argument(help="Run id, or its first 4+ hex digits.")]
#: how many of a run's packages, params and steps 'runs show' prints (--json has them all)
SHOWN = 40


def _main_metric(metrics: dict[str, Any]) -> tuple[str, str]:
    name = metrics.get("metric", "")
    return name, fmt(metrics.get("holdout", {}).get(name))


def _tags(tags: dict[str, str]) -> str:
    return escape(", ".join(f"{k}={v}" for k, v in sorted(tags.items())))


def _cell(value: Any) -> str:
    """A value as a table cell: formatted, and never read as console markup."""
    return escape(fmt(value))


@app.command("list")
def list_(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Only runs of this model.")] = None,
    parent: Annotated[
        str | None, typer.Option("--parent", help="Only the children of this run (id or prefix).")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 20,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List training runs, newest first."""
    with open_ws(ctx, workspace) as ws:
        parent_id = None if parent is None else ws.metadata.resolve_run(parent).id
        runs = ws.metadata.list_runs(name, limit=limit, parent=parent_id)
        if as_json:
            print_json([r.to_dict() for r in runs])
            return
        ids = short_ids([r.id for r in runs])  # 'runs show' takes these prefixes
        tagged = any(r.tags for r in runs)  # a tags column only when there are tags
        table(
            "runs" if parent_id is None else f"children of run {parent_id[:12]}",
            ["id", "model", "status", "dataset", "metric", "holdout", "version", "seconds"]
            + (["tags"] if tagged else []),
            [
                (
                    short,
                    r.name,
                    r.status,
                    dataset_ref(r.dataset_name, r.dataset_version),
                    *_main_metric(r.metrics),
                    r.model_version,
                    fmt(r.duration_s, 1),
                    *([_tags(r.tags)] if tagged else []),
                )
                for short, r in zip(ids, runs, strict=True)
            ],
            shrink=["tags", "dataset", "model"],
        )


@app.command("show")
def show(
    ctx: typer.Context,
    run_id: RunArg,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one run: status, lineage, tags, parameters, metrics (and per step), children."""
    from loopml.cli.features import selection_table
    from loopml.evaluate.runs import run_metrics, run_params

    with open_ws(ctx, workspace) as ws:
        run = ws.metadata.resolve_run(run_id)
        children = ws.metadata.list_runs(parent=run.id, limit=10_000)
        steps = ws.metadata.list_steps(run.id)
        if as_json:
            print_json(
                {
                    **run.to_dict(),
                    "children": [c.id for c in children],
                    "steps": [s.to_dict() for s in steps],
                }
            )
            return
        out.print(f"[bold]run {run.id}[/bold]  {escape(run.name)}  {run.status}")
        out.print(
            f"started {run.started_at:%Y-%m-%d %H:%M:%S} UTC; took {fmt(run.duration_s, 1)} s; "
            f"dataset {escape(dataset_ref(run.dataset_name, run.dataset_version))}"
        )
        out.print(f"git {run.git_commit or '-'}; model version {run.model_version or '-'}")
        if run.parent_id:
            out.print(f"child of run {run.parent_id}")
        if run.error:
            out.print(f"[yellow]error:[/yellow] {escape(run.error)}")
        if run.tags:
            out.print(f"tags: {_tags(run.tags)}")
        report = run.metrics.get("report")
        if isinstance(report, str):
            out.print("report (HTML):")
            out.print(ws.lake.url(report))  # alone on its line, so that it can be copied
        metrics = list(run_metrics(run).items())
        table(
            "metrics",
            ["metric", "value"],
            [(escape(k), _cell(v)) for k, v in metrics],
            shrink=["metric"],
        )
        selection_table(run.metrics.get("feature_selection"))
        params = [(escape(k), _cell(v)) for k, v in run_params(run).items()]
        table(
            f"parameters ({len(params)}{', first ' + str(SHOWN) if len(params) > SHOWN else ''})",
            ["parameter", "value"],
            params[:SHOWN],
            shrink=["value", "parameter"],
        )
        if steps:
            table(
                "metrics per step",
                ["key", "step", "value"],
                [(escape(s.key), s.step, fmt(s.value)) for s in steps[: SHOWN * 5]],
            )
        packages = ", ".join(f"{k} {v}" for k, v in sorted(run.packages.items()))
        out.print(f"packages: {escape(packages) or '-'}", soft_wrap=False)
        if children:
            ids = short_ids([c.id for c in children])
            table(
                f"children ({len(children)})",
                ["id", "model", "status", "metric", "holdout", "tags"],
                [
                    (short, c.name, c.status, *_main_metric(c.metrics), _tags(c.tags))
                    for short, c in zip(ids, children, strict=True)
                ],
                shrink=["tags"],
            )


@app.command("compare")
def compare(
    ctx: typer.Context,
    run_ids: Annotated[list[str], typer.Argument(help="Two or more run ids (or prefixes).")],
    html: Annotated[
        Path | None, typer.Option("--html", help="Also write the comparison as an HTML page.")
    ] = None,
    all_rows: Annotated[
        bool, typer.Option("--all", help="Show rows that are equal in every run too.")
    ] = False,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Runs side by side: metrics and parameters, differences highlighted."""
    from loopml.errors import InvalidInputError
    from loopml.evaluate.report import render_comparison_html
    from loopml.evaluate.runs import compare_runs

    if len(run_ids) < 2:
        raise InvalidInputError(
            f"runs compare needs two or more runs, got {len(run_ids)}",
            where={"runs": run_ids},
            hint="Give the ids of the runs to compare, e.g. from 'loopml runs list'",
        )
    with open_ws(ctx, workspace) as ws:
        runs = [ws.metadata.resolve_run(r) for r in run_ids]
    comparison = compare_runs(runs)
    if html is not None:
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(render_comparison_html(comparison), encoding="utf-8")
    if as_json:
        print_json({**comparison.to_dict(), "html": None if html is None else str(html)})
        return
    heads = ["", *short_ids([r.id for r in runs], length=8)]
    for title, rows in (("metrics", comparison.metrics), ("parameters", comparison.params)):
        shown = [
            (f"[bold yellow]{escape(k)}[/bold yellow]" if comparison.differs(v) else escape(k), v)
            for k, v in rows
            if all_rows or comparison.differs(v)
        ]
        hidden = len(rows) - len(shown)
        note = f" ({hidden} equal in every run not shown; --all shows them)" if hidden else ""
        table(
            f"{title}{note}",
            heads,
            [(k, *(_cell(x) for x in v)) for k, v in shown],
            shrink=heads[1:],  # the values wrap before the names do
        )
    if html is not None:
        out.print(f"wrote {escape(str(html))}", soft_wrap=False)


@app.command("tag")
def tag(
    ctx: typer.Context,
    run_id: RunArg,
    tags: Annotated[
        list[str] | None, typer.Argument(help="KEY=VALUE tags to set.", show_default=False)
    ] = None,
    delete: Annotated[
        list[str] | None, typer.Option("--delete", help="Remove this tag (repeatable).")
    ] = None,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Set tags KEY=VALUE on a run, or remove them with --delete KEY."""
    from loopml.errors import InvalidInputError

    pairs: dict[str, str] = {}
    for item in tags or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInputError(
                f"tag {item!r} is not KEY=VALUE",
                where={"tag": item},
                hint="Write tags as KEY=VALUE, e.g. team=risk; remove one with --delete KEY",
            )
        pairs[key] = value
    if not pairs and not delete:
        raise InvalidInputError(
            "nothing to tag: give KEY=VALUE tags or --delete KEY",
            where={"run": run_id},
            hint="e.g. loopml runs tag RUN team=risk",
        )
    with open_ws(ctx, workspace) as ws:
        run = ws.metadata.resolve_run(run_id)
        updated = ws.metadata.set_run_tags(run.id, pairs, delete or [])
    if as_json:
        print_json({"id": updated.id, "tags": updated.tags})
        return
    out.print(f"run {updated.id[:12]} tags: {_tags(updated.tags) or '-'}")


@app.command("delete")
def delete(
    ctx: typer.Context,
    run_id: RunArg,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete a run and its per-step metrics; refused while a model version comes from it."""
    with open_ws(ctx, workspace) as ws:
        run = ws.metadata.resolve_run(run_id)
        ws.metadata.delete_run(run.id)
        report = run.metrics.get("report")
        if isinstance(report, str) and report.startswith("reports/runs/"):
            ws.lake.delete(report)
    if as_json:
        print_json({"deleted": run.id})
        return
    out.print(f"deleted run {run.id}")
