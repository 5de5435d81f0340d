"""Top-level commands: init, train, serve, predict, quickstart."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from loopml.cli.common import (
    JsonOpt,
    WorkspaceOpt,
    fmt,
    open_ws,
    out,
    print_json,
    step,
    table,
    workspace_path,
)
from loopml.errors import InvalidInputError

if TYPE_CHECKING:
    from loopml.train import TrainResult


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.command("train")(train)
    app.command("serve")(serve)
    app.command("predict")(predict)
    app.command("trace")(trace)
    app.command("quickstart")(quickstart)


def init(
    ctx: typer.Context,
    metadata: Annotated[
        str | None, typer.Option(help="Metadata URI: sqlite:///... or postgresql://...")
    ] = None,
    lake: Annotated[
        str | None, typer.Option(help="Lake URI: file://... or s3://bucket/prefix")
    ] = None,
    artifacts: Annotated[
        str | None, typer.Option(help="Artifacts URI [default: inside the lake's bucket or folder]")
    ] = None,
    s3_endpoint: Annotated[
        str | None, typer.Option(help="S3 endpoint URL (MinIO, moto, ...) for s3:// URIs")
    ] = None,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a workspace (or update an existing one) and migrate its metadata store."""
    from loopml.workspace import init as init_ws

    ws = init_ws(
        workspace_path(ctx, workspace),
        metadata_uri=metadata,
        lake_uri=lake,
        artifacts_uri=artifacts,
        s3_endpoint_url=s3_endpoint,
    )
    with ws:
        if as_json:
            print_json(ws.describe())
            return
        out.print(f"workspace ready at {ws.root}")
        table(
            None, ["store", "uri"], [(k, v) for k, v in ws.describe().items() if k != "workspace"]
        )


def train(
    ctx: typer.Context,
    file: Annotated[Path, typer.Option("--file", "-f", help="Project file.")] = Path("loopml.yaml"),
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Train the model the project file describes; register and promote it if it passes.

    Exit code 1 when the run fails its gate. Example loopml.yaml:

        name: cancer
        data: {dataset: cancer, target: target}
        features: {numeric: {impute: median, scale: standard}}
        model: {class: sklearn.ensemble.RandomForestClassifier, params: {n_estimators: 100}}
        evaluation: {metric: roc_auc, folds: 5, holdout: 0.2, gate: "roc_auc >= 0.9"}
        registry: {alias: champion}
    """
    from loopml.errors import GateFailedError
    from loopml.project import ProjectConfig
    from loopml.train import train as train_api

    config = ProjectConfig.from_file(file)
    with open_ws(ctx, workspace) as ws:
        res = train_api(ws, config, progress=step)
    if as_json:
        print_json(res.to_dict())
    else:
        _print_train(res)
    if not res.passed:
        raise GateFailedError(
            f"run {res.run.id} failed its gate: {res.reason}",
            where={"run": res.run.id},
            hint="The run is recorded; the model was not registered or promoted",
        )


def _print_train(res: TrainResult) -> None:
    m = res.run.metrics
    metric = m.get("metric", "")
    cv = m.get("cv", {})
    table(
        f"run {res.run.id} ({res.run.status}, {fmt(res.run.duration_s, 1)} s)",
        ["metric", "holdout", "cv mean", "cv std"],
        [
            (k, fmt(v), fmt(cv.get(k, {}).get("mean")), fmt(cv.get(k, {}).get("std")))
            for k, v in m.get("holdout", {}).items()
        ],
    )
    if res.model_version:
        mv = res.model_version
        alias = f", alias {res.promoted_alias}" if res.promoted_alias else ""
        out.print(f"registered [bold]{mv.name}@{mv.version}[/bold]{alias} — main metric {metric}")


def serve(
    ctx: typer.Context,
    host: Annotated[
        str | None,
        typer.Option(help="Interface to bind [default: 127.0.0.1, or LOOPML_SERVE_HOST]"),
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="TCP port [default: 8000, or LOOPML_SERVE_PORT]")
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            "-m",
            help="Serve only these, as NAME (its champion) or NAME@VERSION; repeatable.",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(help="Bearer token for state-changing endpoints [env LOOPML_SERVE_TOKEN]"),
    ] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Serve registered models over HTTP (V1 records API, Open Inference Protocol V2).

    OpenAPI docs at /docs, Prometheus metrics at /metrics.
    """
    from loopml.names import parse_ref
    from loopml.serve import run_server

    models = None
    if model:
        models = {}
        for ref in model:
            name, tag = parse_ref(ref)
            models[name] = f"{name}@{tag or 'champion'}"
    with open_ws(ctx, workspace) as ws:
        host = host or ws.settings.serve_host
        port = ws.settings.serve_port if port is None else port
        step(f"serving on http://{host}:{port} (docs at /docs)")
        run_server(
            ws,
            host=host,
            port=port,
            models=models,
            token=token or ws.settings.serve_token or None,
        )


def predict(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", "-m", help="NAME[@VERSION|@ALIAS].")],
    input_: Annotated[Path, typer.Option("--input", "-i", help="CSV, Parquet or JSONL file.")],
    output: Annotated[Path, typer.Option("--output", "-o", help=".csv or .parquet file.")],
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Score every row of a file in one batch; writes the rows with their predictions."""
    from loopml.serve.scoring import predict_file

    if input_.resolve() == output.resolve():
        raise InvalidInputError(
            "--output is the same file as --input",
            where={"file": str(output)},
            hint="Write predictions to a new file",
        )
    with open_ws(ctx, workspace) as ws:
        res = predict_file(ws, model, input_, output)
    if as_json:
        print_json(res.to_dict())
    else:
        out.print(f"scored {res.rows} rows with {res.model}@{res.version} -> {res.output}")


def quickstart(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(help="Port for the demo server (0: any free port).")] = 0,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the whole loop on scikit-learn's breast-cancer data in a workspace.

    ingest -> features -> train (5-fold CV) -> evaluate -> register as champion -> serve on
    127.0.0.1 -> real HTTP requests -> predictions logged -> shifted traffic -> drift report.
    """
    from loopml.quickstart import run_quickstart

    summary = run_quickstart(workspace_path(ctx, workspace), port=port, progress=step)
    if as_json:
        print_json(summary)
        return
    out.print(f"\n[bold green]quickstart done[/bold green] in {summary['seconds']:.1f} s")
    table("where everything lies", ["what", "where"], summary["locations"].items())
    table("what happened", ["step", "result"], summary["results"].items())


def trace(
    ctx: typer.Context,
    prediction_id: Annotated[str, typer.Argument(help="An id the server answered with.")],
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Trace a served prediction back: inputs -> model version -> run -> dataset -> source."""
    from loopml.lineage import trace_prediction

    with open_ws(ctx, workspace) as ws:
        doc = trace_prediction(ws, prediction_id)
    if as_json:
        print_json(doc)
        return
    p, m, r, d = doc["prediction"], doc["model"], doc["run"], doc["dataset"]
    out.print(
        f"[bold]prediction {p['id']}[/bold] at {p['timestamp']}: {p['prediction']} "
        f"(score {fmt(p['score'])}, {fmt(p['latency_ms'], 2)} ms)"
    )
    out.print(f"  logged in {p['log_file']}")
    out.print(f"  <- model {m['name']}@{m['version']}, artifact {m['artifact_url']}")
    out.print(
        f"  <- run {r['id']} ({r['status']}, {r['started_at']}, git {r['git_commit'] or '-'})"
    )
    if d:
        out.print(f"  <- dataset {d['name']}@{d['version']} ({d['rows']} rows) at {d['url']}")
        out.print(f"  <- source {d['source']}")
    table("inputs", ["feature", "value"], p["inputs"].items())
