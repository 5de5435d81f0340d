"""``loopml data``: ingest files as dataset versions; list and show them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from loopml.cli.common import (
    EngineOpt,
    JsonOpt,
    SparkMasterOpt,
    WorkspaceOpt,
    chosen_engine,
    err,
    open_ws,
    out,
    print_json,
    step,
    table,
)

app = typer.Typer(
    help="Datasets: ingest, list, show, head, schema, stats, diff, delete.", no_args_is_help=True
)

# delimiters that a shell makes hard to type
_DELIMITER_NAMES = {"\\t": "\t", "tab": "\t", "TAB": "\t", "\\x09": "\t"}


@app.command("ingest")
def ingest(
    ctx: typer.Context,
    source: Annotated[
        str,
        typer.Argument(
            help="A file (CSV, TSV, Parquet, JSON Lines; local, file://, s3://), a database URL "
            "(with --table or --query), an http(s) URL, mqtt://, redis://...?stream=, or - "
            "for standard input.",
            metavar="SOURCE",
        ),
    ],
    name: Annotated[str, typer.Option("--name", "-n", help="Dataset name.")],
    fmt_: Annotated[
        str | None,
        typer.Option("--format", help="csv, parquet or jsonl", show_default="from the extension"),
    ] = None,
    delimiter: Annotated[
        str | None,
        typer.Option(
            help="CSV delimiter, one character ('\\t' or tab for a tab)",
            show_default="sniffed from , ; tab |",
        ),
    ] = None,
    encoding: Annotated[
        str | None,
        typer.Option(help="Text encoding of a CSV file, e.g. latin-1", show_default="utf-8"),
    ] = None,
    header: Annotated[
        bool,
        typer.Option(
            "--header/--no-header",
            help="Whether the first CSV line names the columns (--no-header: column_1..n).",
        ),
    ] = True,
    decimal: Annotated[
        str | None,
        typer.Option(
            help="Decimal mark of a CSV file, . or ,",
            show_default=", in files not separated by commas that write 1,5; else .",
        ),
    ] = None,
    mode: Annotated[
        str | None,
        typer.Option(
            help="replace: a fresh snapshot; append: the latest version's rows plus these",
            show_default="replace (append for incremental and streaming sources)",
        ),
    ] = None,
    partition_by: Annotated[
        list[str] | None,
        typer.Option("--partition-by", help="Write hive folders COLUMN=value/ (repeatable)."),
    ] = None,
    on_error: Annotated[
        str,
        typer.Option(
            "--on-error",
            help="fail: a failing batch stops the ingest (exit 1); skip-rows: keep good rows, "
            "quarantine bad ones",
        ),
    ] = "fail",
    allow_schema_change: Annotated[
        bool,
        typer.Option(
            "--allow-schema-change", help="Accept a column type differing from the last version."
        ),
    ] = False,
    batch_rows: Annotated[
        int | None,
        typer.Option("--batch-rows", min=1, help="Rows validated (and quarantined) together."),
    ] = None,
    project: Annotated[
        Path | None,
        typer.Option(
            "--project",
            help="loopml.yaml whose data.datasets declares schemas and expectations",
            show_default="./loopml.yaml when there is one",
        ),
    ] = None,
    table_: Annotated[str | None, typer.Option("--table", help="Database table to read.")] = None,
    query: Annotated[str | None, typer.Option("--query", help="SQL query to read.")] = None,
    since_column: Annotated[
        str | None,
        typer.Option(
            "--since-column", help="Incremental: only rows past the stored cursor of this column."
        ),
    ] = None,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option", "-o", help="KEY=VALUE passed to the source (repeatable), e.g. page_size=100"
        ),
    ] = None,
    http_header: Annotated[
        list[str] | None,
        typer.Option(
            "--http-header",
            "-H",
            help="HTTP sources: a header NAME=VALUE (repeatable); write ${VAR} in single quotes "
            "to read VAR from the environment at each request (never stored).",
        ),
    ] = None,
    records_path: Annotated[
        str | None,
        typer.Option("--records-path", help="HTTP sources: dotted path of the records, data.items"),
    ] = None,
    paginate: Annotated[
        str | None, typer.Option("--paginate", help="HTTP sources: page, offset or cursor.")
    ] = None,
    ca_file: Annotated[
        Path | None,
        typer.Option("--ca-file", help="mqtts://: PEM CA certificate to check the broker's by."),
    ] = None,
    cert_file: Annotated[
        Path | None,
        typer.Option("--cert-file", help="mqtts://: a PEM client certificate."),
    ] = None,
    key_file: Annotated[
        Path | None,
        typer.Option("--key-file", help="mqtts://: the client certificate's PEM private key."),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", help="Keep reading a growing JSON Lines file.")
    ] = False,
    max_records: Annotated[
        int | None,
        typer.Option("--max-records", min=1, help="Streams: stop after this many records."),
    ] = None,
    idle_timeout: Annotated[
        float | None,
        typer.Option(
            "--idle-timeout", min=0.0, help="Streams: stop when nothing arrived for SECONDS."
        ),
    ] = None,
    micro_batch_rows: Annotated[
        int, typer.Option("--micro-batch-rows", min=1, help="Streams: records per version.")
    ] = 10_000,
    micro_batch_seconds: Annotated[
        float,
        typer.Option("--micro-batch-seconds", min=0.0, help="Streams: seconds per version."),
    ] = 5.0,
    engine: EngineOpt = None,
    spark_master: SparkMasterOpt = None,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Store SOURCE as a new immutable version of dataset NAME (same content: no new version).

    With --engine spark, Spark reads the file (CSV, TSV, Parquet, JSON Lines; local, s3a://,
    hdfs://) or the JDBC table (jdbc:postgresql://... with --table or --query; the driver jar
    as -o driver_jar=PATH or spark.jars) and writes the version: the same layout, types and
    content hash as a local ingest."""
    from loopml import data as data_api
    from loopml.data.ingest import with_storage_options
    from loopml.data.sources import source_for
    from loopml.project.data import load_dataset_specs

    options: dict[str, Any] = {"encoding": encoding, "decimal": decimal}
    options["delimiter"] = _DELIMITER_NAMES.get(delimiter, delimiter) if delimiter else None
    if not header:
        options["header"] = False
    for key, value in (
        ("table", table_),
        ("query", query),
        ("since_column", since_column),
        ("headers", http_header or None),
        ("records_path", records_path),
        ("paginate", paginate),
        ("ca_file", ca_file),
        ("cert_file", cert_file),
        ("key_file", key_file),
    ):
        if value is not None:
            options[key] = str(value) if isinstance(value, Path) else value
    options.update(_key_values(option or []))
    options = {k: v for k, v in options.items() if v is not None}
    if follow:
        options["follow"] = True
    specs = load_dataset_specs(project)
    spec = specs.get(name)
    with open_ws(ctx, workspace) as ws:
        if chosen_engine(ws, engine, spark_master) == "spark" and (
            engine is not None or _spark_reads(source, options, follow, max_records, idle_timeout)
        ):  # engine: spark in the settings leaves streams and HTTP APIs to the local engine
            _ingest_on_spark(
                ws,
                source,
                name,
                fmt_,
                options,
                spark_master,
                streaming=follow or max_records is not None or idle_timeout is not None,
                mode=mode,
                partition_by=partition_by,
                on_error=on_error,
                allow_schema_change=allow_schema_change,
                spec=spec,
                as_json=as_json,
            )
            return
        step(f"reading {source}")
        if source.lower().startswith(("http://", "https://")):
            options["settings"] = ws.settings  # http_allow_hosts, http_allow_private
        options = with_storage_options(source, options, ws.settings)  # s3://: the endpoint
        src = source_for(source, fmt_, **options)
        started = time.monotonic()
        with _Progress(enabled=not as_json) as bar:
            if src.streaming:
                results = data_api.ingest_stream(
                    ws,
                    src,
                    name,
                    max_records=max_records,
                    idle_timeout=idle_timeout,
                    micro_batch_rows=micro_batch_rows,
                    micro_batch_seconds=micro_batch_seconds,
                    partition_by=partition_by,
                    on_error=on_error,
                    progress=bar.update,
                    spec=spec,
                )
            else:
                if max_records is not None or idle_timeout is not None:
                    src.close()
                    raise typer.BadParameter(
                        f"{source} is not a stream; --max-records and --idle-timeout apply to "
                        "streams (mqtt://, redis://, -, --follow)"
                    )
                results = [
                    data_api.ingest(
                        ws,
                        src,
                        name,
                        mode=mode,
                        partition_by=partition_by,
                        on_error=on_error,
                        allow_schema_change=allow_schema_change,
                        batch_rows=batch_rows,
                        progress=bar.update,
                        spec=spec,
                    )
                ]
        elapsed = time.monotonic() - started
        _report(ws, results, bar.rows, elapsed, as_json, streaming=src.streaming)


def _spark_reads(
    source: str,
    options: dict[str, Any],
    follow: bool,
    max_records: int | None,
    idle_timeout: float | None,
) -> bool:
    """Whether the Spark engine ingests this source (files and JDBC tables)."""
    streaming = follow or max_records is not None or idle_timeout is not None
    lowered = source.lower()
    local_only = any(k in options for k in ("since_column", "headers", "records_path", "paginate"))
    if streaming or local_only or source == "-":
        return False
    return (
        lowered.startswith(("jdbc:", "file://"))
        or "://" not in lowered
        or lowered.startswith(("s3a://", "hdfs://", "gs://", "abfs://", "abfss://", "wasbs://"))
    )


def _ingest_on_spark(
    ws: Any,
    source: str,
    name: str,
    fmt_: str | None,
    options: dict[str, Any],
    spark_master: str | None,
    *,
    streaming: bool,
    as_json: bool,
    **given: Any,
) -> None:
    """``loopml data ingest --engine spark``: files and JDBC tables, not streams."""
    from loopml.engines.spark.ingest import ingest as spark_ingest
    from loopml.errors import InvalidInputError

    unsupported = [
        k for k in ("since_column", "headers", "records_path", "paginate") if k in options
    ]
    if (
        streaming
        or unsupported
        or source == "-"
        or source.lower().startswith(("http://", "https://", "mqtt://", "redis://"))
    ):
        what = "--" + unsupported[0].replace("_", "-") if unsupported else source
        raise InvalidInputError(
            f"--engine spark ingests files and JDBC tables, not {what}",
            where={"option": "--engine"},
            hint="Ingest streams, HTTP APIs and incremental SQL with --engine local",
        )
    step(f"reading {source} on Spark")
    started = time.monotonic()
    # the session ends with the process (an in-process caller keeps its session open)
    result = spark_ingest(ws, source, name, format=fmt_, master=spark_master, **given, **options)
    _report(
        ws, [result], result.dataset.num_rows, time.monotonic() - started, as_json, streaming=False
    )


def _key_values(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise typer.BadParameter(f"--option {item!r}: write KEY=VALUE")
        out[key.strip().replace("-", "_")] = _scalar(value)
    return out


def _scalar(text: str) -> Any:
    """``--option`` values: numbers and true/false as such, the rest as text."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


class _Progress:
    """Rows read and rows/s on stderr while an ingest runs (only on a terminal)."""

    def __init__(self, enabled: bool) -> None:
        self.rows = 0
        self._bar: Any = None
        self._task: Any = None
        self.enabled = enabled and err.is_terminal

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                SpinnerColumn(),
                TextColumn("{task.completed:,.0f} rows"),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                console=err,
                transient=True,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("ingest", total=None, rate="")
            self._started = time.monotonic()
        return self

    def update(self, rows: int) -> None:
        self.rows = rows
        if self._bar is not None:
            spent = max(time.monotonic() - self._started, 1e-9)
            self._bar.update(self._task, completed=rows, rate=f"{rows / spent:,.0f} rows/s")

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)


def _report(
    ws: Any, results: list[Any], rows: int, elapsed: float, as_json: bool, *, streaming: bool
) -> None:
    if rows:  # on stderr: --json output on stdout stays one document
        step(f"{rows:,} rows in {elapsed:.1f} s ({rows / max(elapsed, 1e-9):,.0f} rows/s)")
    if as_json:
        items = [
            {**r.dataset.to_dict(), "created": r.created, "quarantine": r.quarantine}
            for r in results
        ]
        print_json(items if streaming else items[0])
        return
    if not results:
        out.print("nothing new: no version added")
        return
    for res in results:
        dv = res.dataset
        what = "new version" if res.created else "unchanged content, existing version"
        parent = f", {dv.mode} of @{dv.parent}" if dv.mode == "append" and dv.parent else ""
        out.print(
            f"{dv.name}@{dv.version}: {what}{parent} — {dv.num_rows} rows, sha256 {dv.sha256[:12]}"
        )
        if res.quarantine:
            q = res.quarantine
            out.print(
                f"[yellow]quarantined {q['quarantined_rows']} rows[/yellow] — report at "
                f"{q['url']}/report.txt"
            )
    out.print(f"stored at {ws.lake.url(results[-1].dataset.path)}")


@app.command("list")
def list_(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Only this dataset.")] = None,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List dataset versions with their parent, rows, sha256 and source."""
    from loopml import data as data_api

    with open_ws(ctx, workspace) as ws:
        versions = data_api.list_datasets(ws, name)
        if as_json:
            print_json([dv.to_dict() for dv in versions])
            return
        table(
            "datasets",
            ["name", "version", "parent", "rows", "columns", "sha256", "created", "source"],
            [
                (
                    dv.name,
                    dv.version,
                    _parent(dv),
                    dv.num_rows,
                    len(dv.schema),
                    dv.sha256[:12],
                    dv.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                    dv.source,
                )
                for dv in versions
            ],
        )


def _parent(dv: Any) -> str:
    if dv.parent is None:
        return "-"
    return f"+{dv.parent}" if dv.mode == "append" else str(dv.parent)


@app.command("show")
def show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME or NAME@VERSION.")],
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one dataset version: schema and statistics per column."""
    from loopml import data as data_api

    with open_ws(ctx, workspace) as ws:
        dv = data_api.get_dataset(ws, ref)
        if as_json:
            print_json({**dv.to_dict(), "url": ws.lake.url(dv.path)})
            return
        out.print(f"[bold]{dv.name}@{dv.version}[/bold]  {dv.num_rows} rows  sha256 {dv.sha256}")
        out.print(f"source {dv.source}\nstored at {ws.lake.url(dv.path)}")
        rows = []
        for col in dv.schema:
            st = dv.stats.get(col["name"], {})
            rows.append(
                (
                    col["name"],
                    col.get("kind", "-"),
                    st.get("nulls"),
                    st.get("distinct"),
                    _summary(st),
                )
            )
        # the Arrow type of each column is in --json (schema); here, how it is meant to be used
        table(None, ["column", "kind", "nulls", "distinct", "values"], rows, shrink=["values"])


TOP_SHOWN = 3  # most frequent values data show lists
VALUE_CHARS = 20  # a listed value longer than this is cut


def _summary(st: dict[str, Any]) -> str:
    """The values of a column in a few words: the top categories, or the range and mean."""
    top = st.get("top")
    if top:
        count = st.get("count") or sum(int(t["count"]) for t in top) or 1
        shown = [f"{_short(t['value'])} {int(t['count']) / count:.0%}" for t in top[:TOP_SHOWN]]
        more = int(st.get("distinct") or len(top)) - len(shown)
        return ", ".join(shown) + (f", +{more} more" if more > 0 else "")
    lo, hi, mean = st.get("min"), st.get("max"), st.get("mean")
    if isinstance(lo, int | float) and isinstance(hi, int | float):
        said = f"{_num(lo)} .. {_num(hi)}"
        return said + (f" (mean {_num(mean)})" if isinstance(mean, int | float) else "")
    if lo is not None and hi is not None:
        return f"{lo} .. {hi}"
    return ""


def _num(value: float) -> str:
    """Three significant digits, or whole thousands with separators: 0.0526, 14.1, 4,254."""
    if isinstance(value, bool):
        return str(value)
    if abs(value) >= 1000 and abs(value) < 1e15:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 1] + "…"


@app.command("head")
def head(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME or NAME@VERSION.")],
    rows: Annotated[int, typer.Option("--rows", "-r", min=1, max=10_000, help="How many.")] = 10,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the first rows of a dataset version."""
    from loopml import data as data_api

    with open_ws(ctx, workspace) as ws:
        got = data_api.head(ws, ref, rows)
        records = got.to_pylist()
        if as_json:
            print_json(records)
            return
        table(
            None,
            got.column_names,
            [tuple(_short(v) if v is not None else "" for v in r.values()) for r in records],
        )


@app.command("schema")
def schema(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME or NAME@VERSION.")],
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the columns of a dataset version: type, kind, nullability, and each column's
    history of changes by appends (added, widened, dropped, restored; --json: ``history``,
    an empty list for a column that never changed)."""
    from loopml import data as data_api

    with open_ws(ctx, workspace) as ws:
        dv = data_api.get_dataset(ws, ref)
        columns = [{**c, "history": list(c.get("history") or [])} for c in dv.schema]
        if as_json:
            print_json(columns)
            return
        out.print(f"[bold]{dv.name}@{dv.version}[/bold]  {len(dv.schema)} columns")
        if dv.partition_by:
            out.print(f"partitioned by {', '.join(dv.partition_by)}")
        from_path = [c["name"] for c in dv.schema if c.get("from_path")]
        if from_path:
            out.print(f"read from the source's key=value folders: {', '.join(from_path)}")
        table(
            None,
            ["column", "type", "kind", "nullable", "nulls", "history"],
            [
                (
                    c["name"],
                    c["type"],
                    c.get("kind", "-"),
                    str(c["nullable"]).lower(),
                    c["nulls"],
                    type_history(c["history"]),
                )
                for c in columns
            ],
            shrink=["history"],
        )


def type_history(history: list[dict[str, Any]]) -> str:
    """A column's recorded changes in a few words: ``v2 added (string); v3 int64 -> double``."""
    said = []
    for entry in history:
        change = entry.get("change")
        at = f"v{entry.get('version', '?')}"
        if change == "widened":
            said.append(f"{at} {entry.get('old')} -> {entry.get('new')}")
        elif change == "added" and entry.get("new"):
            said.append(f"{at} added ({entry['new']})")
        else:
            said.append(f"{at} {change}")
    return "; ".join(said) or "-"


@app.command("stats")
def stats(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME or NAME@VERSION.")],
    column: Annotated[
        str | None, typer.Option("--column", "-c", help="Only this column, in full.")
    ] = None,
    engine: EngineOpt = None,
    spark_master: SparkMasterOpt = None,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the statistics recorded for a dataset version (computed while ingesting);
    --engine spark computes them again on Spark from the version's files."""
    from loopml import data as data_api
    from loopml.errors import NotFoundError

    with open_ws(ctx, workspace) as ws:
        dv = data_api.get_dataset(ws, ref)
        every = dv.stats
        if chosen_engine(ws, engine, spark_master) == "spark":
            from loopml.engines.spark.stats import version_stats

            every = version_stats(ws, dv, master=spark_master)
        found = every
        if column is not None:
            if column not in every:
                raise NotFoundError(
                    f"{dv.name}@{dv.version} has no column {column!r}",
                    where={"dataset": f"{dv.name}@{dv.version}", "column": column},
                    hint=f"Its columns: {', '.join(list(every)[:20])}",
                )
            found = {column: every[column]}
        if as_json:
            print_json(found)
            return
        rows = []
        for name, st in found.items():
            approx = st.get("approximate") or []
            rows.append(
                (
                    name,
                    st.get("count"),
                    st.get("nulls"),
                    f"~{st.get('distinct')}" if "distinct" in approx else st.get("distinct"),
                    _num_or(st.get("mean")),
                    _num_or(st.get("std")),
                    " / ".join(_num_or(st.get(k)) for k in ("min", "p50", "max")),
                    _summary(st) if st.get("top") else "",
                )
            )
        table(
            f"{dv.name}@{dv.version}",
            ["column", "count", "nulls", "distinct", "mean", "std", "min / p50 / max", "top"],
            rows,
            shrink=["top"],
        )
        if column is not None:
            hist = found[column].get("histogram")
            if hist and hist.get("counts"):
                peak = max(hist["counts"]) or 1
                for lo, n in zip(hist["edges"], hist["counts"], strict=False):
                    out.print(f"{_num(lo):>12} {'█' * round(30 * n / peak)} {n}")


def _num_or(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _num(value)
    return "" if value is None else _short(value)


@app.command("drift")
def drift(
    ctx: typer.Context,
    reference: Annotated[str, typer.Argument(help="NAME[@VERSION] compared against.")],
    current: Annotated[str, typer.Argument(help="NAME[@VERSION] checked for drift.")],
    features: Annotated[
        str | None,
        typer.Option(
            "--features",
            metavar="COL[:KIND],...",
            help="Columns to test (KIND numeric or categorical) [default: every numeric, "
            "categorical and boolean column both versions hold]",
        ),
    ] = None,
    engine: EngineOpt = None,
    spark_master: SparkMasterOpt = None,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Drift of CURRENT against REFERENCE, feature by feature (PSI, KS or chi-square,
    Wasserstein or Jensen-Shannon, missing and out-of-range rates); --engine spark computes
    the same report with Spark reading and counting."""
    from loopml import data as data_api
    from loopml.monitor.datasets import dataset_drift, shared_features

    with open_ws(ctx, workspace) as ws:
        ref = data_api.get_dataset(ws, reference)
        cur = data_api.get_dataset(ws, current)
        chosen = None if features is None else _drift_features(features, shared_features(ref, cur))
        if chosen_engine(ws, engine, spark_master) == "spark":
            from loopml.engines.spark.drift import dataset_drift as on_spark

            report = on_spark(ws, ref, cur, chosen, master=spark_master)
        else:
            report = dataset_drift(ws, ref, cur, chosen)
        if as_json:
            print_json(report.to_dict())
            return
        out.print(
            f"[bold]{cur.name}@{cur.version} against {ref.name}@{ref.version}[/bold]: "
            f"{report.verdict} ({len(report.drifted_features)} of {len(report.features)} "
            f"features drifted, {report.n_reference_rows} / {report.n_current_rows} rows)"
        )
        table(
            "features",
            ["feature", "kind", "psi", "test", "p-value", "drifted"],
            [
                (
                    f.feature,
                    f.kind,
                    _num_or(f.psi),
                    f.statistic_name,
                    _num_or(f.p_value),
                    "yes" if f.drifted else "",
                )
                for f in report.features
            ],
        )


def _drift_features(text: str, shared: dict[str, str]) -> dict[str, str]:
    """``a,b:categorical`` as ``{"a": <its kind>, "b": "categorical"}``."""
    from loopml.errors import InvalidInputError

    chosen: dict[str, str] = {}
    for piece in (p.strip() for p in text.split(",")):
        if not piece:
            continue
        name, _, kind = piece.partition(":")
        kind = kind.strip() or shared.get(name.strip(), "")
        if kind not in ("numeric", "categorical"):
            raise InvalidInputError(
                f"--features: {piece!r} names no numeric or categorical column of both versions",
                where={"option": "--features", "column": name.strip()},
                hint="Write COLUMN:numeric or COLUMN:categorical, or pick from: "
                + (", ".join(shared) or "(none shared)"),
            )
        chosen[name.strip()] = kind
    return chosen


@app.command("diff")
def diff(
    ctx: typer.Context,
    old: Annotated[str, typer.Argument(help="NAME@VERSION (before).")],
    new: Annotated[str, typer.Argument(help="NAME@VERSION (after).")],
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show what changed between two dataset versions: schema, row count, column stats."""
    from loopml import data as data_api

    with open_ws(ctx, workspace) as ws:
        found = data_api.diff_versions(ws, old, new)
        if as_json:
            print_json(found)
            return
        r = found["rows"]
        out.print(f"[bold]{found['old']} -> {found['new']}[/bold]  ({found['relation']})")
        out.print(f"rows {r['old']} -> {r['new']} ({r['change']:+d})")
        if found["sha256"]["same"]:
            out.print("same content")
        if not found["schema"]:
            out.print("schema unchanged")
        for c in found["schema"]:
            if c["change"] == "type":
                out.print(f"  ~ {c['column']}: {c['old']} -> {c['new']}")
            elif c["change"] == "added":
                out.print(f"  + {c['column']} ({c['new']})")
            else:
                out.print(f"  - {c['column']} ({c['old']})")
        if found["columns"]:
            table(
                "column changes",
                ["column", "statistic", "old", "new"],
                [
                    (c["column"], key, _num_or(v["old"]), _num_or(v["new"]))
                    for c in found["columns"]
                    for key, v in c.items()
                    if key != "column"
                ],
            )


@app.command("delete")
def delete(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME@VERSION to delete.")],
    force: Annotated[
        bool, typer.Option("--force", help="Delete even though models or runs used it.")
    ] = False,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete one dataset version (refused while a model's lineage uses it, unless --force)."""
    from loopml import data as data_api

    if "@" not in ref:
        raise typer.BadParameter(f"{ref!r}: name the version to delete, e.g. {ref}@1")
    with open_ws(ctx, workspace) as ws:
        dv = data_api.delete_version(ws, ref, force=force)
        if as_json:
            print_json({**dv.to_dict(), "deleted": True})
            return
        out.print(f"deleted {dv.name}@{dv.version} ({dv.num_rows} rows)")
