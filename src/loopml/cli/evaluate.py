"""``loopml evaluate``: score a registered version on a dataset version, with an HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from loopml.cli.common import JsonOpt, WorkspaceOpt, fmt, open_ws, out, print_json, step, table


def evaluate(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME@VERSION or NAME@ALIAS (bare NAME: champion).")],
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="DATASET[@VERSION] to score on; default: the run's holdout, re-created from "
            "its recorded split and seed.",
        ),
    ] = None,
    html: Annotated[
        Path | None, typer.Option("--html", help="Also write the HTML report to this file.")
    ] = None,
    permutation: Annotated[
        bool,
        typer.Option(
            "--permutation/--no-permutation", help="Compute permutation importances (seeded)."
        ),
    ] = True,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate a registered version: metrics, curves, calibration, importances, champion."""
    from loopml.train.evaluation import evaluate_model

    with open_ws(ctx, workspace) as ws:
        ev = evaluate_model(ws, ref, data, permutation=permutation, progress=step)
        page = ws.lake.read_bytes(ev.report_path)
        url = ws.lake.url(ev.report_path)
    if html is not None:
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_bytes(page)
    if as_json:
        print_json({**ev.to_dict(), "report_url": url, "html": None if html is None else str(html)})
        return
    for warning in ev.warnings:
        out.print(f"[yellow]warning:[/yellow] {escape(warning)}", soft_wrap=False)
    champion = ev.doc.get("champion") or {}
    theirs = champion.get("metrics", {})
    columns = ["metric", ev.model] + ([str(champion["model"])] if champion else [])
    table(
        f"{ev.model} on {ev.doc.get('data')}: {ev.rows} rows, {ev.split}",
        columns,
        [
            (k, fmt(v), *([fmt(theirs.get(k))] if champion else []))
            for k, v in sorted(ev.metrics.items())
        ],
    )
    out.print("report (HTML):" if html is None else f"report (HTML), also in {escape(str(html))}:")
    out.print(url)  # alone on its line, so that it can be copied


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
