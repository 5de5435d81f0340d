"""``loopml monitor watch | run-once | events``: the closed loop from the command line.

Registered on :data:`loopml.cli.monitor.app`; thin over :mod:`loopml.pipeline.loop`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from loopml.cli.common import JsonOpt, WorkspaceOpt, err, open_ws, out, print_json, table
from loopml.cli.monitor import app
from loopml.errors import InvalidInputError

FilesOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--file",
        "-f",
        help="Project file with a policy: section (repeat for several models).",
        show_default="loopml.yaml",
    ),
]


def _projects(files: list[Path] | None) -> list[Any]:
    from loopml.project.config import ProjectConfig

    paths = files or [Path("loopml.yaml")]
    return [ProjectConfig.from_file(p) for p in paths]


def _show(actions: list[Any], as_json: bool) -> None:
    if as_json:
        print_json([a.to_dict() for a in actions])
        return
    for a in actions:
        out.print(str(a), markup=False)


@app.command("run-once")
def run_once_cmd(
    ctx: typer.Context,
    file: FilesOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would be done; do and record nothing.")
    ] = False,
    retrain: Annotated[
        bool, typer.Option("--retrain", help="Retrain now, whatever the trigger says.")
    ] = False,
    as_json: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Apply each model's retraining policy once (for cron): check, retrain, roll out."""
    from loopml.pipeline.loop import run_once

    projects = _projects(file)
    with open_ws(ctx, workspace) as ws:
        actions = run_once(ws, projects, dry_run=dry_run, force=retrain)
    _show(actions, as_json)
    if any(a.kind == "error" for a in actions):
        raise typer.Exit(1)


@app.command("watch")
def watch_cmd(
    ctx: typer.Context,
    file: FilesOpt = None,
    interval: Annotated[
        float, typer.Option("--interval", help="Seconds between passes.", min=0.0)
    ] = 300.0,
    iterations: Annotated[
        int | None, typer.Option("--iterations", help="Stop after this many passes.", min=1)
    ] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Apply the retraining policies every --interval seconds until stopped (Ctrl-C)."""
    from loopml.pipeline.loop import watch

    projects = _projects(file)
    names = ", ".join(p.name for p in projects)
    err.print(f"watching {names} every {interval:g}s", markup=False)
    with open_ws(ctx, workspace) as ws:
        try:
            watch(
                ws,
                projects,
                interval,
                iterations=iterations,
                say=lambda m: out.print(m, markup=False),
            )
        except KeyboardInterrupt:
            err.print("stopped", markup=False)


@app.command("events")
def events_cmd(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Only this model.")] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="Only this kind.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="Most events shown.")] = 50,
    as_json: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """What the monitor saw and did, newest first, with reasons (--json: with evidence)."""
    from loopml.monitor.events import list_events

    if limit < 1:
        raise InvalidInputError(
            f"--limit {limit} is not a positive number",
            where={"option": "--limit"},
            hint="Give --limit 1 or more",
        )
    with open_ws(ctx, workspace) as ws:
        events = list_events(ws, model, kind, limit)
    if as_json:
        print_json([e.to_dict() for e in events])
        return
    if not events:
        out.print("no monitor events", markup=False)
        return
    rows = [(e.id, e.at.isoformat(timespec="seconds"), e.model, e.kind, e.reason) for e in events]
    table(None, ["id", "at", "model", "kind", "reason"], rows, shrink=["reason"])
