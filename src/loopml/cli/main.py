"""``loopml``: one sub-command group per stage, thin shells over the Python API."""

from __future__ import annotations

import functools
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer
import typer.main
from rich.markup import escape
from typer.core import TyperGroup

from loopml.cli import ab as ab_cmd
from loopml.cli import data as data_cmd
from loopml.cli import deploy as deploy_cmd
from loopml.cli import evaluate as evaluate_cmd
from loopml.cli import features as features_cmd
from loopml.cli import feedback as feedback_cmd
from loopml.cli import learn as learn_cmd
from loopml.cli import loop as _loop_cmd  # noqa: F401  (registers monitor watch/run-once/events)
from loopml.cli import models as models_cmd
from loopml.cli import monitor as monitor_cmd
from loopml.cli import runs as runs_cmd
from loopml.cli import workflow
from loopml.cli.common import err, out
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
app.add_typer(features_cmd.app, name="features")
app.add_typer(models_cmd.app, name="models")
app.add_typer(runs_cmd.app, name="runs")
app.add_typer(monitor_cmd.app, name="monitor")
app.add_typer(deploy_cmd.app, name="deploy")
app.add_typer(ab_cmd.app, name="ab")
workflow.register(app)
evaluate_cmd.register(app)
feedback_cmd.register(app)
learn_cmd.register(app)

_debug = {"on": False}


def _print_version(value: bool) -> None:
    if value:
        from loopml import __version__

        out.print(f"loopml {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    workspace: Annotated[
        Path | None,
        typer.Option(
            "--workspace",
            "-w",
            help="Workspace folder for every command",
            show_default="$LOOPML_HOME, else the nearest .loopml in this folder or above",
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            expose_value=False,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    ctx.obj = {"workspace": workspace}
    _debug["on"] = debug


def main(argv: list[str] | None = None) -> int:
    """Entry point; exit codes: 0 success, 1 a finding (drift, failed gate), 2 bad input,
    3 a bug in loopml.

    typer runs in its standalone mode, so that it shows its own usage errors (usage line and
    message, exit 2), help and ``typer.Exit`` codes itself, whichever copy of click's
    exceptions it raises (typer 0.29 bundles its own); loopml's errors reach the handler below.
    """
    args = sys.argv[1:] if argv is None else argv
    _debug["on"] = "--debug" in args
    try:
        command().main(args=args, prog_name="loopml", standalone_mode=True)
    except SystemExit as exc:
        return _exit_code(exc)
    except LoopmlError as exc:
        if _debug["on"]:
            traceback.print_exc()
        colour = "yellow" if exc.exit_code == 1 else "red"
        err.print(f"[{colour}]error:[/{colour}] {escape(str(exc))}")
        return exc.exit_code
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
    return 0  # standalone mode always ends in SystemExit; kept for type checkers


@functools.cache
def command() -> TyperGroup:
    """The click command typer builds from ``app``, with every help text taken literally.

    typer renders help through rich, which reads ``[default: ...]`` or ``NAME[@VERSION]`` in
    a help text as console markup and drops it; escaping keeps what the author wrote. Built
    once per process: a caller running many commands in one process (the tests, a notebook)
    pays the build (0.07-0.25 s) once, and the help texts are escaped exactly once.
    """
    group = typer.main.get_group(app)
    todo: list[object] = [group]
    while todo:
        cmd = todo.pop()
        for item in (cmd, *getattr(cmd, "params", ())):
            for attr in ("help", "short_help", "epilog"):
                text = getattr(item, attr, None)
                if isinstance(text, str):
                    setattr(item, attr, escape(text))
        todo.extend(getattr(cmd, "commands", {}).values())
    return group


def _exit_code(exc: SystemExit) -> int:
    """The code of ``sys.exit(code)``: None is 0, a message is printed and is 1 (as Python)."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    err.print(escape(str(exc.code)))
    return 1


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
