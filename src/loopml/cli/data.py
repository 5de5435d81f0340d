"""``loopml data``: ingest files as dataset versions; list and show them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from loopml.cli.common import JsonOpt, WorkspaceOpt, open_ws, out, print_json, step, table

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
                    col.get("kind", "-"),
                    st.get("nulls"),
                    st.get("distinct"),
                    _summary(st),
                )
            )
        # the Arrow type of each column is in --json (schema); here, how it is meant to be used
        table(None, ["column", "kind", "nulls", "distinct", "values"], rows, shrink=["values"])


TOP_SHOWN = 3  # most frequent values data show lists
VALUE_CHARS = 20  # a listed value longer than this is cut


def _summary(st: dict[str, Any]) -> str:
    """The values of a column in a few words: the top categories, or the range and mean."""
    top = st.get("top")
    if top:
        count = st.get("count") or sum(int(t["count"]) for t in top) or 1
        shown = [f"{_short(t['value'])} {int(t['count']) / count:.0%}" for t in top[:TOP_SHOWN]]
        more = int(st.get("distinct") or len(top)) - len(shown)
        return ", ".join(shown) + (f", +{more} more" if more > 0 else "")
    lo, hi, mean = st.get("min"), st.get("max"), st.get("mean")
    if isinstance(lo, int | float) and isinstance(hi, int | float):
        said = f"{_num(lo)} .. {_num(hi)}"
        return said + (f" (mean {_num(mean)})" if isinstance(mean, int | float) else "")
    if lo is not None and hi is not None:
        return f"{lo} .. {hi}"
    return ""


def _num(value: float) -> str:
    """Three significant digits, or whole thousands with separators: 0.0526, 14.1, 4,254."""
    if isinstance(value, bool):
        return str(value)
    if abs(value) >= 1000 and abs(value) < 1e15:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 1] + "…"
