"""What every command shares: the workspace option, output helpers, the error handler."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from loopml.workspace import Workspace, open_workspace

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

WorkspaceOpt = Annotated[
    Path | None,
    typer.Option(
        "--workspace",
        "-w",
        help="Workspace folder [default: $LOOPML_HOME or ./.loopml]",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


def workspace_path(ctx: typer.Context, workspace: Path | None) -> Path | None:
    """The command's --workspace, else the one given before the command group."""
    if workspace is not None:
        return workspace
    obj = ctx.find_root().obj or {}
    return obj.get("workspace") if isinstance(obj, dict) else None


def open_ws(ctx: typer.Context, workspace: Path | None) -> Workspace:
    return open_workspace(workspace_path(ctx, workspace))


def print_json(data: Any) -> None:
    sys.stdout.buffer.write(
        orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY, default=str)
    )
    sys.stdout.buffer.write(b"\n")
    sys.stdout.flush()


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    t = Table(title=title, title_justify="left", show_lines=False)
    for c in columns:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*("" if v is None else str(v) for v in r))
    out.print(t)


def step(message: str) -> None:
    """A progress line on stderr, so --json output on stdout stays clean."""
    err.print(f"[cyan]•[/cyan] {message}")


def fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return "" if value is None else str(value)
