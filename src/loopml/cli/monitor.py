"""``loopml monitor``: drift of a model's recent inputs and predictions."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from loopml.cli.common import JsonOpt, WorkspaceOpt, err, fmt, open_ws, out, print_json, table
from loopml.errors import InvalidInputError

MIN_ROWS = 30  # loopml.monitor.drift.MIN_ROWS, without importing the statistics for --help

app = typer.Typer(
    help="Monitoring: drift, performance from delayed labels, reports, alerts.",
    no_args_is_help=True,
)


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


FileOpt = Annotated[
    Path | None,
    typer.Option(
        "--file", "-f", help="Project file whose monitor: section holds thresholds and alerts."
    ),
]
WindowOpt = Annotated[
    str | None,
    typer.Option(
        "--window",
        help="'last 1000', '1h', '7d', '2026-01-01..2026-02-01' or a dataset 'NAME@V'.",
    ),
]


def _monitor_section(file: Path | None) -> dict[str, Any]:
    if file is None:
        return {}
    from loopml.project import ProjectConfig

    return dict(ProjectConfig.from_file(file).monitor)


@app.command("drift")
def drift(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", "-m", help="NAME[@VERSION|@ALIAS].")],
    data: Annotated[
        Path | None,
        typer.Option("--data", help="Compare this file instead of the prediction log."),
    ] = None,
    window: WindowOpt = None,
    since: Annotated[str | None, typer.Option(help="Log window start (ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option(help="Log window end (ISO 8601).")] = None,
    file: FileOpt = None,
    psi_threshold: Annotated[
        float | None, typer.Option(help="PSI a feature must reach (default 0.2).")
    ] = None,
    alpha: Annotated[
        float | None, typer.Option(help="Significance level, Bonferroni (default 0.05).")
    ] = None,
    drift_share: Annotated[
        float | None,
        typer.Option(help="Share of drifting features that means drift (default 0.3)."),
    ] = None,
    min_rows: Annotated[
        int | None,
        typer.Option(
            min=1,
            help=f"Fewest rows in each window for a verdict, else a warning (default {MIN_ROWS}).",
        ),
    ] = None,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Compare recent inputs with the training data; exit 1 when drift passes the threshold.

    Numeric features: PSI, Kolmogorov-Smirnov and Wasserstein. Categorical: PSI, chi-square and
    Jensen-Shannon; missing-value and out-of-range rates for both. Thresholds per feature come
    from the monitor.drift section of -f loopml.yaml; options given here override them. The
    model's scores are compared with its out-of-sample scores from training. A window with
    fewer than --min-rows rows is no verdict: a warning, exit 0. Writes an HTML report.
    """
    from loopml.monitor import check_drift
    from loopml.monitor.drift import DRIFT, INSUFFICIENT, NO_DRIFT
    from loopml.monitor.thresholds import DriftThresholds

    if data is not None and (window is not None or since or until):
        raise InvalidInputError(
            "--data compares a file; it cannot be combined with --window, --since or --until",
            where={"option": "--data"},
            hint="Pass --data FILE, or a window of the prediction log",
        )
    if window is not None and (since or until):
        raise InvalidInputError(
            "--window and --since/--until both choose the window",
            where={"option": "--window"},
            hint="Write the dates as a window instead: --window 2026-01-01..2026-02-01",
        )
    thresholds = DriftThresholds.from_mapping(_monitor_section(file).get("drift"))
    with open_ws(ctx, workspace) as ws:
        res = check_drift(
            ws,
            model,
            data=data,
            window=window,
            since=_when(since, "--since"),
            until=_when(until, "--until"),
            thresholds=thresholds,
            psi_threshold=psi_threshold,
            alpha=alpha,
            drift_share=drift_share,
            min_rows=min_rows,
        )
    for warning in res.warnings:
        err.print(f"[yellow]warning:[/yellow] {warning}")
    drift_share = res.features.drift_share
    min_rows = res.features.min_rows
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


def _num(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}g}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if abs(seconds) >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


@app.command("performance")
def performance_cmd(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="NAME (every version) or NAME@VERSION|@ALIAS.")],
    window: WindowOpt = None,
    by: Annotated[
        str | None, typer.Option("--by", help="Split the window per 'day' or 'week'.")
    ] = None,
    metric: Annotated[
        str | None,
        typer.Option(help="Metric to follow (default: the one the model was trained for)."),
    ] = None,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The model's metric on logged predictions that got labels (feedback), per period.

    Shows the metric against its value at training time (the holdout), how many predictions
    were labelled (coverage) and how late the labels came (p50/p90 delay).
    """
    from loopml.monitor.performance import BY, performance

    if by is not None and by not in BY:
        raise typer.BadParameter(f"must be one of {', '.join(BY)}", param_hint="--by")
    with open_ws(ctx, workspace) as ws:
        period: Literal["day", "week"] | None = None if by is None else by  # type: ignore[assignment]
        rep = performance(ws, model, window=window, metric=metric, by=period)
    for warning in rep.warnings:
        err.print(f"[yellow]warning:[/yellow] {warning}")
    if as_json:
        print_json(rep.to_dict())
        return
    rows = [
        (
            "all" if r.start is None and r.end is None and rep.by is None else _period(r.start),
            str(r.n_predictions),
            str(r.n_labelled),
            f"{r.coverage:.1%}",
            _num(r.value) or (r.note or ""),
            _num(r.delta, 3),
            _duration(r.delay_p50_s),
            _duration(r.delay_p90_s),
        )
        for r in rep.rows
    ]
    which = rep.model if rep.version is None else f"{rep.model}@{rep.version}"
    table(
        f"{rep.metric} of {which} ({rep.window})",
        [
            "period",
            "predictions",
            "labelled",
            "coverage",
            rep.metric,
            "vs training",
            "delay p50",
            "delay p90",
        ],
        rows,
    )
    training = "not recorded" if rep.training is None else _num(rep.training)
    out.print(f"at training (holdout): {training}")
    overall = rep.overall
    if overall.value is not None:
        out.print(
            f"window: {rep.metric} {_num(overall.value)} on {overall.n_labelled} labels "
            f"({overall.coverage:.1%} of {overall.n_predictions} predictions)"
        )


def _period(start: Any) -> str:
    return "" if start is None else start.strftime("%Y-%m-%d")


@app.command("check")
def check_cmd(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="NAME[@VERSION|@ALIAS].")],
    file: Annotated[
        Path, typer.Option("--file", "-f", help="Project file with the monitor: section.")
    ] = Path("loopml.yaml"),
    window: Annotated[str, typer.Option(help="Window of the prediction log.")] = "1d",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Evaluate the rules; record and send nothing.")
    ] = False,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One monitoring pass: drift, performance and latency over the window, then the alert
    rules of monitor.alerts (sent to monitor.webhook, recorded as events). Exit 1 on an alert."""
    from loopml.monitor.alerts import check_model

    monitor = _monitor_section(file)
    with open_ws(ctx, workspace) as ws:
        res = check_model(ws, model, monitor, window=window, send=not dry_run)
    for problem in res.problems:
        err.print(f"[yellow]not measured:[/yellow] {problem}")
    if as_json:
        print_json(res.to_dict())
    else:
        if res.drift is not None:
            out.print(f"drift: {res.drift.summary}")
        if res.performance is not None:
            p = res.performance
            out.print(
                f"{p.metric}: {_num(p.overall.value) or 'no value'} on {p.overall.n_labelled} "
                f"labels (training {_num(p.training) or '-'})"
            )
        if res.latency_p99_ms is not None:
            out.print(f"latency p99: {res.latency_p99_ms:.3g} ms")
        for alert in res.outcome.alerts:
            out.print(f"[red]ALERT[/red] {alert.rule.name}: {alert.reason}")
        for skipped in res.outcome.skipped:
            out.print(f"skipped {skipped}")
        if res.raised is not None:
            if res.raised.repeated:
                names = ", ".join(a.rule.name for a in res.raised.repeated)
                out.print(f"already raised for this window: {names}")
            d = res.raised.delivery
            if d is not None:
                said = "sent" if d.ok else f"[red]not delivered[/red] ({d.error})"
                out.print(f"webhook: {said} after {d.attempts} attempt(s)")
        elif dry_run and res.outcome.alerts:
            out.print("dry run: nothing recorded or sent")
        if not res.outcome.alerts:
            out.print("no alert")
    if res.outcome.alerts:
        raise typer.Exit(1)


@app.command("report")
def report_cmd(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="NAME[@VERSION|@ALIAS].")],
    window: Annotated[str, typer.Option(help="Window of the prediction log.")] = "30d",
    by: Annotated[str, typer.Option("--by", help="One point per 'day' or 'week'.")] = "day",
    metric: Annotated[
        str | None, typer.Option(help="Metric to plot (default: the model's own).")
    ] = None,
    file: FileOpt = None,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """An HTML page of the model over the window: drift scores and the metric over time,
    and every feature's histogram, reference against current. Self-contained (inline SVG)."""
    from loopml.monitor.check import monitor_report
    from loopml.monitor.thresholds import DriftThresholds

    if by not in ("day", "week"):
        raise typer.BadParameter("must be day or week", param_hint="--by")
    thresholds = DriftThresholds.from_mapping(_monitor_section(file).get("drift"))
    with open_ws(ctx, workspace) as ws:
        rep = monitor_report(
            ws,
            model,
            window=window,
            by="week" if by == "week" else "day",
            thresholds=thresholds,
            metric=metric,
        )
    if as_json:
        print_json(
            {
                "model": rep.model,
                "version": rep.version,
                "report_url": rep.url,
                "periods": rep.periods,
                "drift_share": rep.drift_share,
                "metric": rep.metric,
                "metric_values": rep.metric_values,
            }
        )
    else:
        out.print(f"{len(rep.periods)} periods of {rep.model}@{rep.version}")
        out.print(f"report: {rep.url}")
