"""``loopml train --search``: the search with a progress bar (stderr), then its summary."""

from __future__ import annotations

from typing import TYPE_CHECKING

from loopml.cli.common import err, fmt, out, step, table

if TYPE_CHECKING:
    from loopml.project import ProjectConfig
    from loopml.train.search import SearchResult
    from loopml.workspace import Workspace


def run_search(
    ws: Workspace, config: ProjectConfig, *, trials: int | None, quiet: bool
) -> SearchResult:
    """:func:`loopml.search` with a bar showing the study's trials and the best score so far;
    ``quiet`` (``--json``) shows no bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from loopml.train.search import TrialEvent, search

    if quiet:
        return search(ws, config, trials=trials, progress=step)
    target = trials or (config.search.trials if config.search else 0)
    bar = Progress(
        TextColumn("[cyan]search[/cyan]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[best]}"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )
    task = bar.add_task("trials", total=target, best="")

    def on_trial(e: TrialEvent) -> None:
        if not bar.live.is_started:  # shown from the first trial on, after every check passed
            bar.start()
        best = "" if e.best is None else f"best {fmt(e.best)}"
        bar.update(task, completed=min(e.done, e.target), total=e.target, best=best)

    def say(message: str) -> None:
        bar.console.print(f"[cyan]•[/cyan] {message}")

    try:
        return search(ws, config, trials=trials, progress=say, on_trial=on_trial)
    finally:
        if bar.live.is_started:
            bar.stop()


def print_search(res: SearchResult) -> None:
    table(
        f"search run {res.run.id} (study {res.study}, {res.trials} trials)",
        ["best trial", res.metric, "params"],
        [(str(res.best_trial), fmt(res.best_score), str(res.best_params))],
    )
    if res.result is None:
        out.print("the process that ran the study's last trial trains the best params")
    else:
        out.print(f"best params trained as run {res.result.run.id}")
