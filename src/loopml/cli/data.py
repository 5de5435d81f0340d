"""``loopml data``: ingest files as dataset versions; list and show them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from loopml.cli.common import JsonOpt, WorkspaceOpt, fmt, open_ws, out, print_json, step, table

app = typer.Typer(help="Datasets: ingest, list, show.", no_args_is_help=True)

# delimiters that a shell makes hard to type
_DELIMITER_NAMES = {"\\t": "\t", "tab": "\t", "TAB": "\t", "\\x09": "\t"}


@app.command("ingest")
def ingest(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="CSV, Parquet or JSON Lines file.")],
    name: Annotated[str, typer.Option("--name", "-n", help="Dataset name.")],
    fmt_: Annotated[
        str | None,
        typer.Option("--format", help="csv, parquet or jsonl", show_default="from the extension"),
    ] = None,
    delimiter: Annotated[
        str | None,
        typer.Option(
            help="CSV delimiter, one character ('\\t' or tab for a tab)",
            show_default="sniffed from , ; tab |",
        ),
    ] = None,
    encoding: Annotated[
        str | None,
        typer.Option(help="Text encoding of a CSV file, e.g. latin-1", show_default="utf-8"),
    ] = None,
    header: Annotated[
        bool,
        typer.Option(
            "--header/--no-header",
            help="Whether the first CSV line names the columns (--no-header: column_1..n).",
        ),
    ] = True,
    decimal: Annotated[
        str | None,
        typer.Option(
            help="Decimal mark of a CSV file, . or ,",
            show_default=", in files not separated by commas that write 1,5; else .",
        ),
    ] = None,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Store FILE as a new immutable version of dataset NAME (same content: no new version)."""
    from loopml import data as data_api

    options: dict[str, Any] = {"encoding": encoding, "decimal": decimal}
    options["delimiter"] = _DELIMITER_NAMES.get(delimiter, delimiter) if delimiter else None
    if not header:
        options["header"] = False
    with open_ws(ctx, workspace) as ws:
        step(f"reading {file}")
        res = data_api.ingest(ws, file, name, format=fmt_, **options)
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
