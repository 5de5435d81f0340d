"""``loopml monitor``: drift of a model's recent inputs and predictions."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from loopml.cli.common import JsonOpt, WorkspaceOpt, err, fmt, open_ws, out, print_json, table
from loopml.errors import InvalidInputError

MIN_ROWS = 30  # loopml.monitor.drift.MIN_ROWS, without importing the statistics for --help

app = typer.Typer(help="Monitoring: drift.", no_args_is_help=True)


def _when(text: str | None, flag: str) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidInputError(
            f"{flag} {text!r} is not a date or time",
            where={"option": flag},
            hint="Use ISO 8601, e.g. 2026-11-27 or 2026-11-27T10:00:00+00:00",
        ) from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@app.command("drift")
def drift(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", "-m", help="NAME[@VERSION|@ALIAS].")],
    data: Annotated[
        Path | None,
        typer.Option("--data", help="Compare this file instead of the prediction log."),
    ] = None,
    since: Annotated[str | None, typer.Option(help="Log window start (ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option(help="Log window end (ISO 8601).")] = None,
    psi_threshold: Annotated[float, typer.Option(help="PSI a feature must reach.")] = 0.2,
    alpha: Annotated[float, typer.Option(help="Significance level (Bonferroni).")] = 0.05,
    drift_share: Annotated[
        float, typer.Option(help="Share of drifting features that means drift.")
    ] = 0.3,
    min_rows: Annotated[
        int,
        typer.Option(min=1, help="Fewest rows in each window for a verdict (else: a warning)."),
    ] = MIN_ROWS,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Compare recent inputs with the training data; exit 1 when drift passes the threshold.

    Numeric features: PSI and Kolmogorov-Smirnov. Categorical: PSI and chi-square. The model's
    scores are compared with its out-of-sample scores from training. A window with fewer than
    --min-rows rows is no verdict: a warning, exit 0. Writes an HTML report with a plot per
    drifting feature.
    """
    from loopml.monitor import check_drift
    from loopml.monitor.drift import DRIFT, INSUFFICIENT, NO_DRIFT

    with open_ws(ctx, workspace) as ws:
        res = check_drift(
            ws,
            model,
            data=data,
            since=_when(since, "--since"),
            until=_when(until, "--until"),
            psi_threshold=psi_threshold,
            alpha=alpha,
            drift_share=drift_share,
            min_rows=min_rows,
        )
    for warning in res.warnings:
        err.print(f"[yellow]warning:[/yellow] {warning}")
    if as_json:
        print_json(res.to_dict())
    else:
        rows = []
        for f in [*res.features.features, *res.prediction.features]:
            rows.append(
                (
                    f.feature,
                    f.kind,
                    fmt(f.psi),
                    f.statistic_name,
                    fmt(f.statistic),
                    f"{f.p_value:.2e}" if f.p_value is not None else "",
                    "[red]DRIFT[/red]" if f.drifted else ("ok" if f.note is None else "-"),
                )
            )
        out.print(f"current:   {res.current}")
        out.print(f"reference: {res.reference}; scores: {res.reference_scores}")
        table(
            f"drift of {res.model}@{res.version}",
            ["feature", "kind", "psi", "test", "statistic", "p-value", "drift"],
            rows,
        )
        share = res.features.share_drifted
        said = {
            DRIFT: f"[red]drift[/red] ({share:.0%} of features drift, threshold "
            f"{drift_share:.0%}{'' if res.features.drifted else '; the predictions drift'})",
            NO_DRIFT: f"[green]no drift[/green] ({share:.0%} of features drift, threshold "
            f"{drift_share:.0%})",
            INSUFFICIENT: f"[yellow]insufficient data[/yellow] (fewer than {min_rows} rows: "
            "nothing decided)",
        }
        out.print(f"verdict: {said[res.verdict]}")
        out.print(res.summary)
        out.print(f"report: {res.report_url}")
    if res.drifted:
        raise typer.Exit(1)
