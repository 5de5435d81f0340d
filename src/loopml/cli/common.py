"""What every command shares: the workspace option, output helpers, the error handler."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer
from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:  # imported when a command opens one: `--help` need not load settings
    from loopml.workspace import Workspace

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

WorkspaceOpt = Annotated[
    Path | None,
    typer.Option(
        "--workspace",
        "-w",
        help="Workspace folder",
        show_default="$LOOPML_HOME, else the nearest .loopml in this folder or above",
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
    from loopml.workspace import open_workspace

    return open_workspace(workspace_path(ctx, workspace))


def print_json(data: Any) -> None:
    sys.stdout.buffer.write(
        orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY, default=str)
    )
    sys.stdout.buffer.write(b"\n")
    sys.stdout.flush()


MIN_COLUMN = 10  # a column squeezed to fit is never narrower (nor than its header)


def table(
    title: str | None,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    shrink: Sequence[str] = (),
) -> None:
    """Print a table that stays readable in the terminal's width (80 columns and up).

    A table that fits is drawn boxed. One that does not is drawn without borders, and then
    its widest columns (those named in ``shrink`` first) wrap onto more lines, each at least
    :data:`MIN_COLUMN` (or its header) wide; every other column keeps its whole width.
    """
    cells = [["" if v is None else str(v) for v in r] for r in rows]
    natural = [
        max([_width(c), *(_width(r[i]) for r in cells if i < len(r))])
        for i, c in enumerate(columns)
    ]
    n = len(columns)
    widths = natural
    boxed = sum(natural) + 3 * n + 1 <= out.width
    if not boxed:
        floors = [min(w, max(_width(c), MIN_COLUMN)) for c, w in zip(columns, natural, strict=True)]
        first = [i for i, c in enumerate(columns) if c in set(shrink)]
        widths = _fit(natural, floors, out.width - 2 * (n - 1), first)
    if title is not None and _width(title) > out.width:
        out.print(Text.from_markup(title, style="italic"), soft_wrap=False)  # wrapped, not cut
        title = None
    t = (
        Table(title=title, title_justify="left", show_lines=False)
        if boxed
        else Table(
            title=title,
            title_justify="left",
            box=box.SIMPLE_HEAD,
            show_edge=False,
            pad_edge=False,
            collapse_padding=True,
        )
    )
    for c, want, got in zip(columns, natural, widths, strict=True):
        if got < want:
            t.add_column(c, overflow="fold", max_width=got, min_width=got)
        else:
            t.add_column(c, no_wrap=True, min_width=want)
    for r in cells:
        t.add_row(*r)
    out.print(t)


def _width(cell: str) -> int:
    return Text.from_markup(cell).cell_len if "[" in cell else cell_len(cell)


def _fit(natural: list[int], floors: list[int], room: int, first: list[int]) -> list[int]:
    """Column widths summing to at most ``room``: ``first`` shrink towards their floors, then
    every column wider than a common cap is cut to it (never below its floor)."""
    widths = list(natural)
    over = sum(widths) - room
    for i in first:
        if over <= 0:
            return widths
        cut = min(over, widths[i] - floors[i])
        widths[i] -= cut
        over -= cut
    if over <= 0:
        return widths
    for cap in range(max(widths), 0, -1):
        trial = [max(f, min(w, cap)) for w, f in zip(widths, floors, strict=True)]
        if sum(trial) <= room:
            return trial
    return [min(w, f) for w, f in zip(widths, floors, strict=True)]


def short_ids(ids: Sequence[str], length: int = 12) -> list[str]:
    """Each id cut to the shortest length (at least ``length``) at which the listed ids stay
    distinct, as git abbreviates commits; every command that takes an id takes these."""
    n = length
    longest = max((len(i) for i in ids), default=0)
    while n < longest and len({i[:n] for i in ids}) < len(set(ids)):
        n += 1
    return [i[:n] for i in ids]


def step(message: str) -> None:
    """A progress line on stderr, so --json output on stdout stays clean."""
    err.print(f"[cyan]•[/cyan] {message}")


def fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return "" if value is None else str(value)


def dataset_ref(name: str | None, version: int | None) -> str:
    """``NAME@VERSION``, or ``-`` when there is none (a model registered without a dataset)."""
    return "-" if name is None else f"{name}@{'-' if version is None else version}"


EngineOpt = Annotated[
    str | None,
    typer.Option(
        "--engine",
        help="Where the work runs: local (in this process) or spark (needs loopml[spark]) "
        "[default: the setting engine, else local]",
    ),
]
SparkMasterOpt = Annotated[
    str | None,
    typer.Option(
        "--spark-master",
        metavar="URL",
        help="Spark master for --engine spark: local[N], spark://HOST:PORT, yarn, ... "
        "[default: the setting spark_master, else local[2]]",
    ),
]


def chosen_engine(ws: Any, engine: str | None, spark_master: str | None) -> str:
    """``--engine`` (else the workspace's setting); a usage error for an unknown one."""
    from loopml.engines import ENGINES
    from loopml.errors import InvalidInputError

    chosen = engine or ws.settings.engine or "local"
    if chosen not in ENGINES:
        raise InvalidInputError(
            f"unknown engine {chosen!r}",
            where={"option": "--engine"},
            hint=f"Engines: {', '.join(ENGINES)}",
        )
    if spark_master is not None and chosen != "spark":
        raise InvalidInputError(
            "--spark-master is given without --engine spark",
            where={"option": "--spark-master"},
            hint="Add --engine spark (or set engine: spark), or leave --spark-master out",
        )
    return chosen
