"""``loopml data``: ingest files as dataset versions; list and show them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from loopml.cli.common import JsonOpt, WorkspaceOpt, fmt, open_ws, out, print_json, step, table

app = typer.Typer(help="Datasets: ingest, list, show.", no_args_is_help=True)


@app.command("ingest")
def ingest(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="CSV, Parquet or JSON Lines file.")],
    name: Annotated[str, typer.Option("--name", "-n", help="Dataset name.")],
    fmt_: Annotated[
        str | None,
        typer.Option("--format", help="csv, parquet or jsonl [default: from the extension]"),
    ] = None,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Store FILE as a new immutable version of dataset NAME (same content: no new version)."""
    from loopml import data as data_api

    with open_ws(ctx, workspace) as ws:
        step(f"reading {file}")
        res = data_api.ingest(ws, file, name, format=fmt_)
        dv = res.dataset
        if as_json:
            print_json({**dv.to_dict(), "created": res.created})
            return
        what = "new version" if res.created else "unchanged content, existing version"
        out.print(f"{dv.name}@{dv.version}: {what} — {dv.num_rows} rows, sha256 {dv.sha256[:12]}")
        out.print(f"stored at {ws.lake.url(dv.path)}")


@app.command("list")
def list_(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Only this dataset.")] = None,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List dataset versions."""
    from loopml import data as data_api

    with open_ws(ctx, workspace) as ws:
        versions = data_api.list_datasets(ws, name)
        if as_json:
            print_json([dv.to_dict() for dv in versions])
            return
        table(
            "datasets",
            ["name", "version", "rows", "columns", "sha256", "created", "source"],
            [
                (
                    dv.name,
                    dv.version,
                    dv.num_rows,
                    len(dv.schema),
                    dv.sha256[:12],
                    dv.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                    dv.source,
                )
                for dv in versions
            ],
        )


@app.command("show")
def show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME or NAME@VERSION.")],
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one dataset version: schema and statistics per column."""
    from loopml import data as data_api

    with open_ws(ctx, workspace) as ws:
        dv = data_api.get_dataset(ws, ref)
        if as_json:
            print_json({**dv.to_dict(), "url": ws.lake.url(dv.path)})
            return
        out.print(f"[bold]{dv.name}@{dv.version}[/bold]  {dv.num_rows} rows  sha256 {dv.sha256}")
        out.print(f"source {dv.source}\nstored at {ws.lake.url(dv.path)}")
        rows = []
        for col in dv.schema:
            st = dv.stats.get(col["name"], {})
            rows.append(
                (
                    col["name"],
                    col.get("type"),
                    st.get("nulls"),
                    st.get("distinct"),
                    fmt(st.get("min")),
                    fmt(st.get("mean")),
                    fmt(st.get("max")),
                )
            )
        table(None, ["column", "type", "nulls", "distinct", "min", "mean", "max"], rows)
