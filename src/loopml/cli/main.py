"""``loopml``: one sub-command group per stage, thin shells over the Python API."""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Annotated

import click
import typer
from rich.markup import escape

from loopml.cli import data as data_cmd
from loopml.cli import models as models_cmd
from loopml.cli import monitor as monitor_cmd
from loopml.cli import workflow
from loopml.cli.common import err
from loopml.errors import LoopmlError

app = typer.Typer(
    name="loopml",
    help="The whole machine-learning loop: ingest, features, train, evaluate, register, "
    "serve, monitor.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(data_cmd.app, name="data")
app.add_typer(models_cmd.app, name="models")
app.add_typer(models_cmd.runs_app, name="runs")
app.add_typer(monitor_cmd.app, name="monitor")
workflow.register(app)

_debug = {"on": False}


@app.callback()
def root(
    ctx: typer.Context,
    workspace: Annotated[
        Path | None,
        typer.Option(
            "--workspace",
            "-w",
            help="Workspace folder for every command [default: $LOOPML_HOME or ./.loopml]",
            show_default=False,
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    ctx.obj = {"workspace": workspace}
    _debug["on"] = debug


def main(argv: list[str] | None = None) -> int:
    """Entry point; exit codes: 0 success, 1 a finding (drift, failed gate), 2 bad input."""
    args = sys.argv[1:] if argv is None else argv
    _debug["on"] = "--debug" in args
    try:
        rv = app(args=args, prog_name="loopml", standalone_mode=False)
    except LoopmlError as exc:
        if _debug["on"]:
            traceback.print_exc()
        colour = "yellow" if exc.exit_code == 1 else "red"
        err.print(f"[{colour}]error:[/{colour}] {escape(str(exc))}")
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return int(exc.exit_code or 0)
    except click.exceptions.Abort:
        err.print("[red]aborted[/red]")
        return 130
    except click.ClickException as exc:
        exc.show()
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug in loopml, not the user's mistake
        if _debug["on"]:
            traceback.print_exc()
        err.print(
            f"[red]internal error:[/red] {escape(type(exc).__name__)}: {escape(str(exc))}\n"
            "This is a bug in loopml; rerun with --debug for the traceback and report it."
        )
        return 3
    # click returns the code of a typer.Exit instead of raising it when not standalone
    return rv if isinstance(rv, int) else 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
