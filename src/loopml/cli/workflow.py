"""Top-level commands: init, train, serve, predict, quickstart."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from loopml.cli.common import (
    EngineOpt,
    JsonOpt,
    SparkMasterOpt,
    WorkspaceOpt,
    chosen_engine,
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
    from loopml.serve import ModelServer
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
    search: Annotated[
        bool,
        typer.Option(
            "--search",
            help="Run the project's search: section first (Optuna; processes running the "
            "same search share its study), then train its best params.",
        ),
    ] = False,
    trials: Annotated[
        int | None,
        typer.Option(help="Trials of the whole study, overriding search.trials.", min=1),
    ] = None,
    from_version: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="NAME@VERSION",
            help="Continue this registered version on the project's dataset (LightGBM, "
            "XGBoost, partial_fit estimators) instead of training from scratch.",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            help="Train a PyTorch model (loopml.train.deep.*) over this many processes "
            "(DistributedDataParallel on 127.0.0.1: gloo on the CPU, NCCL on GPUs).",
            min=1,
        ),
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option(
            "--resume",
            metavar="RUN_ID",
            help="Continue a failed PyTorch run (a worker killed, a crash) from its last "
            "complete epoch checkpoint; the project must be the one it trained.",
        ),
    ] = None,
    engine: EngineOpt = None,
    spark_master: SparkMasterOpt = None,
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
    from loopml.features.spec import feature_warnings_to
    from loopml.project import ProjectConfig
    from loopml.train import train as train_api

    config = ProjectConfig.from_file(file)
    if workers is not None:
        config = _with_workers(config, workers)
    if trials is not None and not search:
        raise InvalidInputError(
            "--trials is given without --search",
            where={"option": "--trials"},
            hint="Add --search to run the project's search: section",
        )
    if from_version is not None and search:
        raise InvalidInputError(
            "--from and --search cannot be given together",
            where={"option": "--from"},
            hint="Continue a version with --from, or search from scratch with --search",
        )
    if resume is not None and (search or from_version is not None):
        option = "--search" if search else "--from"
        raise InvalidInputError(
            f"--resume and {option} cannot be given together",
            where={"option": "--resume"},
            hint="Resume the failed run with --resume alone, or leave --resume out",
        )
    with open_ws(ctx, workspace) as ws, feature_warnings_to(lambda m: step(f"warning: {m}")):
        if chosen_engine(ws, engine, spark_master) == "spark":
            _refuse_on_spark(
                search=search, from_version=from_version, workers=workers, resume=resume
            )
            _train_on_spark(ws, config, spark_master, as_json)
            return
        if search:
            from loopml.cli.searching import print_search, run_search

            found = run_search(ws, config, trials=trials, quiet=as_json)
            if found.result is None:  # another process trains the best
                if as_json:
                    print_json(found.to_dict())
                else:
                    print_search(found)
                return
            res = found.result
        else:
            res = train_api(ws, config, progress=step, from_version=from_version, resume=resume)
    if as_json:
        print_json(found.to_dict() if search else res.to_dict())
    else:
        if search:
            print_search(found)
        _print_train(res)
    if not res.passed:
        raise GateFailedError(
            f"run {res.run.id} failed its gate: {res.reason}",
            where={"run": res.run.id},
            hint="The run is recorded; the model was not registered or promoted",
        )


def _with_workers(config: Any, workers: int) -> Any:
    """``config`` with ``model.params.workers``; a usage error for a model without it."""
    import dataclasses
    import inspect

    from loopml.train.estimators import estimator_class

    cls = estimator_class(config.model, config.source)
    if "workers" not in inspect.signature(cls).parameters:
        raise InvalidInputError(
            f"--workers is for PyTorch models; model.class is {config.model.cls}",
            where={"option": "--workers"},
            hint="Leave --workers out, or train a loopml.train.deep estimator",
        )
    params = {**config.model.params, "workers": workers}
    return dataclasses.replace(config, model=dataclasses.replace(config.model, params=params))


def _refuse_on_spark(**given: object) -> None:
    for name, value in given.items():
        if value not in (None, False):
            option = "--from" if name == "from_version" else f"--{name}"
            raise InvalidInputError(
                f"{option} is not run by --engine spark",
                where={"option": option},
                hint=f"Leave {option} out, or train with --engine local",
            )


def _train_on_spark(ws: Any, config: Any, master: str | None, as_json: bool) -> None:
    """``loopml train --engine spark``: one line (or --json) for cron; exit 1 on a gate."""
    from loopml.engines.spark.train import train_on_spark
    from loopml.errors import GateFailedError

    res = train_on_spark(ws, config, master=master, progress=None if as_json else step)
    if as_json:
        print_json(res.to_dict())
    else:
        metric = res.run.metrics.get("metric", "")
        value = res.run.metrics.get("holdout", {}).get(metric)
        mv = res.model_version
        done = f"registered {mv.name}@{mv.version}" if mv else "not registered"
        alias = f", alias {res.promoted_alias}" if res.promoted_alias else ""
        out.print(
            f"run {res.run.id} on {res.run.dataset_name}@{res.run.dataset_version} (Spark, "
            f"{fmt(res.run.duration_s, 1)} s): holdout {metric} {fmt(value)}, {done}{alias}"
        )
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
            help="Serve only these, as NAME (its champion), NAME@VERSION or NAME@ALIAS; "
            "repeatable. Several versions of one NAME are all served under NAME: the first "
            "is the default, the others are /v2/models/NAME/versions/V/... and "
            "/v1/models/NAME@V:predict.",
        ),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            help="File holding the bearer token for state-changing endpoints [default: "
            "LOOPML_SERVE_TOKEN, else <workspace>/serve-token, generated on first serve]",
        ),
    ] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            help="Host header to answer, besides the bound host (and localhost when bound "
            "to loopback); repeatable; '*' answers any. Needed when binding 0.0.0.0 "
            "[setting serve_allowed_hosts].",
        ),
    ] = None,
    max_rows: Annotated[
        int | None,
        typer.Option(min=1, help="Most rows in one request [default: 10000, serve_max_rows]"),
    ] = None,
    max_body_bytes: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Largest request body in bytes [default: 64 MiB, serve_max_body_bytes]",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            help="Server processes sharing the port, each with its own models [default: 1, "
            "serve_workers]",
        ),
    ] = None,
    grpc_port: Annotated[
        int | None,
        typer.Option(
            "--grpc-port",
            min=0,
            help="Also serve the Open Inference Protocol over gRPC on this port, up to 65535 "
            "(on the same host; tritonclient.grpc works); 0: off [default: 0, "
            "serve_grpc_port]",
        ),
    ] = None,
    max_batch: Annotated[
        int,
        typer.Option(
            "--max-batch",
            min=1,
            help="Most rows in one model call: concurrent requests share calls up to this "
            "[default: 64]",
        ),
    ] = 64,
    max_wait_ms: Annotated[
        float,
        typer.Option(
            "--max-wait-ms",
            min=0,
            help="Longest a batch predicted in a worker thread (a slow model) waits for "
            "concurrent requests to join it [default: 2]",
        ),
    ] = 2.0,
    queue_rows: Annotated[
        int | None,
        typer.Option(
            "--queue-rows",
            min=1,
            help="Rows waiting per model version before new requests get 503 with "
            "Retry-After [default: 4096, serve_queue_rows]",
        ),
    ] = None,
    drain_seconds: Annotated[
        float | None,
        typer.Option(
            "--drain-seconds",
            min=0,
            help="On SIGTERM, seconds /v2/health/ready answers 503 while requests are still "
            "served, before the server stops accepting [default: 0, serve_drain_seconds]",
        ),
    ] = None,
    token: Annotated[str | None, typer.Option(hidden=True)] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Serve registered models over HTTP (V1 records API, Open Inference Protocol V2).

    Docs at /docs, what is served at /v1/models, Prometheus metrics at /metrics.
    State-changing endpoints (POST /v1/models/NAME:reload) take the bearer token.
    """
    from loopml.serve import run_server

    if token is not None:
        raise InvalidInputError(
            "--token is not taken on the command line: every user of this machine can "
            "read it there (ps)",
            where={"option": "--token"},
            hint="Put the token in LOOPML_SERVE_TOKEN, or in a file named by --token-file",
        )
    models = serve_models(model)
    if grpc_port is not None and grpc_port > 65535:
        raise typer.BadParameter(
            f"{grpc_port} is not a TCP port (0-65535)", param_hint="--grpc-port"
        )
    with open_ws(ctx, workspace) as ws:
        host = host or ws.settings.serve_host
        port = ws.settings.serve_port if port is None else port
        grpc = ws.settings.serve_grpc_port if grpc_port is None else grpc_port

        def ready(url: str, server: ModelServer) -> None:
            where = server.token_info.describe()
            step(f"serving on {url} (docs at /docs; the reload token is {where})")
            if grpc:
                step(f"serving the Open Inference Protocol over gRPC on {host}:{grpc}")

        run_server(
            ws,
            host=host,
            port=port,
            models=models,
            token_file=token_file,
            allowed_hosts=allowed_host or None,
            max_rows=max_rows,
            max_body_bytes=max_body_bytes,
            on_ready=ready,
            workers=workers,
            grpc_port=grpc_port,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            queue_rows=queue_rows,
            drain_seconds=drain_seconds,
        )


def serve_models(refs: list[str] | None) -> dict[str, list[str]] | None:
    """``-m`` values -> served name -> references: ``-m a@1 -m a@2`` serves both under ``a``."""
    from loopml.names import parse_ref

    if not refs:
        return None
    models: dict[str, list[str]] = {}
    for ref in refs:
        name, tag = parse_ref(ref)
        full = f"{name}@{tag or 'champion'}"
        group = models.setdefault(name, [])
        if full not in group:
            group.append(full)
    return models


def predict(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", "-m", help="NAME[@VERSION|@ALIAS].")],
    input_: Annotated[
        Path,
        typer.Option(
            "--input",
            "-i",
            help="CSV, Parquet or JSONL file; with --engine spark a Parquet file or folder "
            "(path or URL), or a dataset NAME[@VERSION].",
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help=".csv or .parquet file; with --engine spark a folder (path or URL) [default "
            "with --engine spark: scores/NAME/v=VERSION/input=... in the lake].",
        ),
    ] = None,
    unknown: Annotated[
        str | None,
        typer.Option(
            "--unknown",
            help="A row with a value training never had (a new category, a new missing "
            "value): 'flag' scores it and names the fields in the unknown_fields column, "
            "'error' refuses the file [default: the model's features.unknown, else flag].",
        ),
    ] = None,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            min=1,
            help="Rows read, validated, predicted and written at a time (memory grows with "
            "it, not with the file).",
        ),
    ] = 65_536,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar (none either off a terminal).")
    ] = False,
    engine: EngineOpt = None,
    spark_master: SparkMasterOpt = None,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Score every row of a file, streamed in batches; writes the rows with their predictions.

    Every row is logged (as a batch prediction naming the input file), so each id in the
    output can be followed back with 'loopml trace ID'. The output appears only once every
    row is scored. With --engine spark the version is applied on Spark executors to a
    Parquet input or a dataset, into a folder of Parquet parts committed by a marker file.
    """
    from loopml.cli.common import err
    from loopml.serve.scoring import predict_file

    with open_ws(ctx, workspace) as ws:
        if chosen_engine(ws, engine, spark_master) == "spark":
            _predict_on_spark(ws, model, input_, output, unknown, batch_size, spark_master, as_json)
            return
        if output is None:
            raise InvalidInputError(
                "--output is missing",
                where={"option": "--output"},
                hint="Name the file to write, ending in .csv or .parquet",
            )
        if input_.resolve() == output.resolve():
            raise InvalidInputError(
                "--output is the same file as --input",
                where={"file": str(output)},
                hint="Write predictions to a new file",
            )
        with _scoring_bar(quiet or as_json or not err.is_terminal) as bar:
            res = predict_file(
                ws, model, input_, output, unknown=unknown, batch_size=batch_size, progress=bar
            )
    if as_json:
        print_json(res.to_dict())
    else:
        rate = res.rows / res.seconds if res.seconds > 0 else 0.0
        out.print(
            f"scored {res.rows} rows with {res.model}@{res.version} -> {res.output} "
            f"({res.seconds:.1f} s, {rate:,.0f} rows/s, {res.predictor} predictor)"
        )
        if res.flagged:
            out.print(
                f"{res.flagged} rows hold values training never had (a new category or a "
                "missing value): scored, and their fields named in the unknown_fields column"
            )
        if res.log_files:
            out.print(
                "logged in the prediction log as batch predictions; follow one back with "
                "'loopml trace ID' (its prediction_id, or the first 12 characters of it)"
            )


def _predict_on_spark(
    ws: Any,
    model: str,
    input_: Path,
    output: Path | None,
    unknown: str | None,
    batch_size: int,
    master: str | None,
    as_json: bool,
) -> None:
    """``loopml predict --engine spark``: the version applied on Spark, a folder of parts."""
    from loopml.engines.spark.score import MARKER, score_version

    res = score_version(
        ws, model, str(input_), output=output, master=master, unknown=unknown, batch_size=batch_size
    )
    if as_json:
        print_json(res.to_dict())
        return
    rate = res.rows / res.seconds if res.seconds > 0 else 0.0
    out.print(
        f"scored {res.rows} rows with {res.model}@{res.version} on Spark -> {res.output} "
        f"({res.parts} parts, {res.seconds:.1f} s, {rate:,.0f} rows/s, {res.predictor} "
        f"predictor; committed with {MARKER})"
    )
    if res.flagged:
        out.print(
            f"{res.flagged} rows hold values training never had: scored, and their fields "
            "named in the unknown_fields column"
        )


@contextmanager
def _scoring_bar(off: bool) -> Iterator[Callable[[int, int | None], None] | None]:
    """A rich progress bar on stderr for ``loopml predict`` (rows done, of the file's total
    where the input says it: Parquet), or None when ``off``."""
    if off:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from loopml.cli.common import err

    bar = Progress(
        TextColumn("[cyan]scoring[/cyan]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )
    task = bar.add_task("rows", total=None)

    def advance(done: int, total: int | None) -> None:
        bar.update(task, completed=done, total=total)

    with bar:
        yield advance


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
    prediction_id: Annotated[
        str,
        typer.Argument(
            help="A prediction id (from the server or 'loopml predict'), or its first 4+ "
            "hex digits."
        ),
    ],
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Trace a prediction back: inputs -> model version -> run -> dataset -> source."""
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
    if p.get("source") == "batch":
        out.print(f"  scored in batch from {p['input_file']}")
    out.print(f"  logged in {p['log_file']}")
    out.print(f"  <- model {m['name']}@{m['version']}, artifact {m['artifact_url']}")
    out.print(
        f"  <- run {r['id']} ({r['status']}, {r['started_at']}, git {r['git_commit'] or '-'})"
    )
    if d:
        out.print(f"  <- dataset {d['name']}@{d['version']} ({d['rows']} rows) at {d['url']}")
        out.print(f"  <- source {d['source']}")
    table("inputs", ["feature", "value"], p["inputs"].items())
