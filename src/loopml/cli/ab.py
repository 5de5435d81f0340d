"""``loopml ab status MODEL``: the A/B test of a deployment, judged sequentially (mSPRT)."""

from __future__ import annotations

from typing import Annotated

import typer

from loopml.cli.common import JsonOpt, WorkspaceOpt, open_ws, out, print_json

app = typer.Typer(help="A/B tests between deployed versions.", no_args_is_help=True)


@app.command("status")
def status(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="The served model name.")],
    metric: Annotated[
        str,
        typer.Option(
            "--metric",
            help="accuracy or roc_auc (labelled traffic), conversion or reward (feedback).",
        ),
    ] = "accuracy",
    alpha: Annotated[float, typer.Option("--alpha", help="Error rate of the decision.")] = 0.05,
    min_per_arm: Annotated[
        int, typer.Option("--min-per-arm", help="Fewest outcomes per arm before deciding.", min=1)
    ] = 30,
    as_json: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Estimate of challenger minus champion, its always-valid interval, and the decision
    (or how much more traffic it needs). Valid however often it is run."""
    from loopml.monitor.ab import ab_status

    with open_ws(ctx, workspace) as ws:
        result = ab_status(ws, model, metric=metric, alpha=alpha, min_per_arm=min_per_arm)
    if as_json:
        print_json(result.to_dict())
        return
    for line in result.lines():
        out.print(line, markup=False)
