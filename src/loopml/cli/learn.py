"""``loopml learn -f loopml.yaml``: learn a model online from a stream, checkpointed."""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from loopml.cli.common import JsonOpt, WorkspaceOpt, fmt, open_ws, out, print_json, step


def register(app: typer.Typer) -> None:
    app.command("learn")(learn)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def learn(
    ctx: typer.Context,
    file: Annotated[Path, typer.Option("--file", "-f", help="Project file.")] = Path("loopml.yaml"),
    max_events: Annotated[
        int | None,
        typer.Option("--max-events", help="Stop after this many events (then checkpoint).", min=1),
    ] = None,
    idle_timeout: Annotated[
        float | None,
        typer.Option(
            "--idle-timeout",
            help="Stop when no event came for this many seconds (then checkpoint).",
            min=0.001,
        ),
    ] = None,
    retry_for: Annotated[
        float,
        typer.Option(
            "--retry-for",
            help="How long a missing or unreachable stream is retried before giving up (s).",
            min=0.0,
        ),
    ] = 30.0,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Learn the project's online: model from its stream, test-then-train.

    Each event is predicted, scored, then learned; the model and the stream position are
    checkpointed together every checkpoint_every events or checkpoint_seconds, and a restart
    (also after kill -9) resumes from the last checkpoint. Ctrl-C or SIGTERM stops after a
    checkpoint. Example loopml.yaml:

        name: phishing
        online:
          stream: redis://127.0.0.1:6379/0?stream=events
          target: is_phishing
          learner: river.linear_model.LogisticRegression
          preprocessing: [river.preprocessing.StandardScaler]
          checkpoint_every: 1000
          alias: online
          drift: {detector: adwin}
    """
    from loopml.project.online import load_online
    from loopml.train.online.learn import learn as learn_api

    spec = load_online(file)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with open_ws(ctx, workspace) as ws:
            res = learn_api(
                ws,
                spec,
                max_events=max_events,
                idle_timeout=idle_timeout,
                retry_for=retry_for,
                progress=None if as_json else step,
            )
    finally:
        signal.signal(signal.SIGTERM, previous)
    if as_json:
        print_json(res.to_dict())
        return
    cumulative = res.metrics.get("cumulative") or {}
    shown = ", ".join(f"{k} {fmt(v)}" for k, v in sorted(cumulative.items()))
    out.print(
        f"{spec.model}: {res.events} events ({res.learned} learned, {res.predicted_only} "
        f"predicted only, {res.dead_letters} dead-lettered) in {res.seconds:.1f} s "
        f"({res.events_per_s:,.0f}/s); {res.checkpoints} checkpoints"
        + (f", versions {', '.join(map(str, res.versions))}" if res.versions else "")
        + (f"; {res.drifts} drift events" if res.drifts else "")
    )
    if shown:
        out.print(f"prequential: {shown}")
    out.print(f"state checksum {res.checksum[:16]} (stopped: {res.stopped})")
