"""``loopml models``: registered versions and aliases (``loopml runs`` is in cli/runs.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from loopml.cli.common import (
    JsonOpt,
    WorkspaceOpt,
    dataset_ref,
    err,
    fmt,
    open_ws,
    out,
    print_json,
    table,
)

app = typer.Typer(
    help="Registered models: list, show, alias, history, card, archive, delete, import, export, "
    "compile.",
    no_args_is_help=True,
)


def _main_metric(metrics: dict[str, Any]) -> tuple[str, str, str]:
    name = metrics.get("metric", "")
    holdout = metrics.get("holdout", {}).get(name)
    cv = metrics.get("cv", {}).get(name, {})
    spread = f"{fmt(cv.get('mean'))} ± {fmt(cv.get('std'))}" if cv else ""
    return name, fmt(holdout), spread


@app.command("list")
def list_(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Only this model.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Archived versions too.")] = False,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List model versions with their main metric and aliases (archived ones with --all)."""
    from loopml import registry

    with open_ws(ctx, workspace) as ws:
        rows = registry.list_models(ws, name, all=all_)
        if as_json:
            print_json(rows)
            return
        table(
            "models",
            [
                "name",
                "version",
                *(["status"] if all_ else []),
                "aliases",
                "metric",
                "holdout",
                "cv (mean ± std)",
                "dataset",
            ],
            [
                (
                    r["name"],
                    r["version"],
                    *([r["status"]] if all_ else []),
                    ", ".join(r["aliases"]),
                    *_main_metric(r["metrics"]),
                    dataset_ref(r["dataset_name"], r["dataset_version"]),
                )
                for r in rows
            ],
        )


@app.command("show")
def show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME, NAME@VERSION or NAME@ALIAS.")],
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a version: metrics, signature, lineage (run, dataset, artifact) and trust opt-ins."""
    from rich.markup import escape

    from loopml import registry
    from loopml.cli.features import selection_table

    with open_ws(ctx, workspace) as ws:
        mv = registry.resolve_version(ws, ref)
        aliases = sorted(a for a, v in ws.metadata.get_aliases(mv.name).items() if v == mv.version)
        run = ws.metadata.get_run(mv.run_id)
        doc = {
            **mv.to_dict(),
            "aliases": aliases,
            "artifact_url": ws.artifacts.url(mv.artifact_sha256),
            "run": run.to_dict(),
        }
        if as_json:
            print_json(doc)
            return
        out.print(f"[bold]{mv.name}@{mv.version}[/bold]  aliases: {', '.join(aliases) or '-'}")
        out.print(f"status {mv.status}")
        out.print(f"flavor {mv.flavor}, created {mv.created_at:%Y-%m-%d %H:%M:%S}")
        out.print(f"trained on {dataset_ref(mv.dataset_name, mv.dataset_version)} by run {run.id}")
        out.print(f"git {run.git_commit or '-'}; took {fmt(run.duration_s, 1)} s")
        out.print(f"artifact {doc['artifact_url']} ({mv.size_bytes} bytes)")
        if mv.trusted:  # opt-ins recorded at registration; loads honour exactly these
            names = ", ".join(escape(t) for t in mv.trusted)
            out.print(f"[yellow]trusted beyond loopml's allowlist:[/yellow] {names}")
        else:
            out.print("trusted: loopml's allowlist only")
        holdout = mv.metrics.get("holdout", {})
        cv = mv.metrics.get("cv", {})
        table(
            "metrics",
            ["metric", "holdout", "cv mean", "cv std"],
            [
                (k, fmt(v), fmt(cv.get(k, {}).get("mean")), fmt(cv.get(k, {}).get("std")))
                for k, v in holdout.items()
            ],
        )
        selection_table(mv.metrics.get("feature_selection"))
        sig = mv.signature
        table(
            f"signature ({sig['task']}, target {sig['target']!r})",
            ["feature", "kind", "dtype", "nullable", "range / categories"],
            [
                (
                    f["name"],
                    f["kind"],
                    f["dtype"],
                    f["nullable"],
                    ", ".join(f["categories"][:6])
                    if f.get("categories")
                    else f"{fmt(f.get('min'))} .. {fmt(f.get('max'))}",
                )
                for f in sig["inputs"]
            ],
        )


def _expected(text: str | None) -> object:
    """``--expect``: a version number, ``none`` (the alias must not exist), or absent."""
    from loopml.errors import InvalidInputError
    from loopml.registry import ANY_VERSION

    if text is None:
        return ANY_VERSION
    if text.strip().lower() == "none":
        return None
    if text.strip().isdigit() and int(text) >= 1:
        return int(text)
    raise InvalidInputError(
        f"--expect {text!r} is not a version number or 'none'",
        where={"option": "--expect"},
        hint="Pass the version the alias points at now (loopml models list NAME), or "
        "--expect none when it must not exist yet",
    )


@app.command("alias")
def alias(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias_name: Annotated[str, typer.Argument(metavar="ALIAS", help="e.g. champion.")],
    version: Annotated[
        int | None, typer.Argument(help="Version the alias points at (not with --delete).")
    ] = None,
    expect: Annotated[
        str | None,
        typer.Option(
            "--expect",
            metavar="N|none",
            help="Move it only if it points at version N now ('none': only if it is not "
            "set); otherwise fail, naming where it points.",
        ),
    ] = None,
    delete: Annotated[bool, typer.Option("--delete", help="Remove the alias.")] = False,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why, for 'loopml models history'.")
    ] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Point ALIAS of model NAME at VERSION, or remove it (servers pick the change up)."""
    from loopml import registry
    from loopml.errors import InvalidInputError

    expected: Any = _expected(expect)
    if delete == (version is not None):
        raise InvalidInputError(
            "give VERSION to point the alias at, or --delete to remove it (not both)",
            where={"alias": alias_name},
            hint=f"e.g. 'loopml models alias {name} {alias_name} 3' or "
            f"'loopml models alias {name} {alias_name} --delete'",
        )
    with open_ws(ctx, workspace) as ws:
        if version is None:  # --delete (checked above)
            event = registry.delete_alias(ws, name, alias_name, expected=expected, reason=reason)
            out.print(f"{name}@{alias_name} removed (it pointed at version {event.from_version})")
            return
        from loopml.registry.compiled import compile_for_traffic

        for line in compile_for_traffic(ws, name, [version]):  # before servers see the move
            out.print(line, markup=False)
        moved = registry.set_alias(ws, name, alias_name, version, expected=expected, reason=reason)
        if moved is None:
            out.print(f"{name}@{alias_name} -> version {version} (already)")
        else:
            was = "" if moved.from_version is None else f" (was {moved.from_version})"
            out.print(f"{name}@{alias_name} -> version {version}{was}")


@app.command("history")
def history(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias_name: Annotated[
        str | None, typer.Option("--alias", metavar="ALIAS", help="Only this alias.")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The alias moves of a model: who moved which alias, when, from where to where, and why."""
    from loopml import registry

    with open_ws(ctx, workspace) as ws:
        events = registry.alias_history(ws, name, alias_name, limit=limit)
        if as_json:
            print_json([e.to_dict() for e in events])
            return
        table(
            f"alias history of {name}",
            ["when (UTC)", "alias", "from", "to", "who", "why"],
            [
                (
                    f"{e.at:%Y-%m-%d %H:%M:%S}",
                    e.alias,
                    "-" if e.from_version is None else e.from_version,
                    "-" if e.to_version is None else e.to_version,
                    e.actor or "",
                    e.reason or "",
                )
                for e in events
            ],
            shrink=["why"],
        )


@app.command("card")
def card(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME@VERSION (or NAME@ALIAS).")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the markdown to this file.")
    ] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """The model card of a version, as markdown: metrics, data, lineage, signature, history."""
    from loopml import registry
    from loopml.utils import atomic_write_bytes

    with open_ws(ctx, workspace) as ws:
        text = registry.model_card(ws, ref)
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    atomic_write_bytes(output, text.encode())
    err.print(f"model card written to {output}")


@app.command("archive")
def archive(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME@VERSION.")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Archive a version: hidden from 'models list' (unless --all), never served by an alias."""
    from loopml import registry

    with open_ws(ctx, workspace) as ws:
        mv = registry.archive_version(ws, ref)
        out.print(f"{mv.name}@{mv.version} archived (restore it with 'loopml models restore')")


@app.command("restore")
def restore(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME@VERSION.")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Make an archived version active again."""
    from loopml import registry

    with open_ws(ctx, workspace) as ws:
        mv = registry.restore_version(ws, ref)
        out.print(f"{mv.name}@{mv.version} is active")


@app.command("delete")
def delete_(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME@VERSION.")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Delete a version's record (refused while an alias points at it)."""
    from loopml import registry

    with open_ws(ctx, workspace) as ws:
        mv = registry.delete_version(ws, ref)
        out.print(
            f"{mv.name}@{mv.version} deleted: only its record; its artifact "
            f"{mv.artifact_sha256[:12]} stays in the artifact store (artifacts are "
            "content-addressed and may be shared by other versions)"
        )


@app.command("import")
def import_(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Model file, or a SavedModel folder.")],
    name: Annotated[str, typer.Option("--name", help="Register it as this model.")],
    target: Annotated[
        str | None, typer.Option("--target", help="The target column's name.")
    ] = None,
    task: Annotated[
        str | None, typer.Option("--task", help="classification or regression (checked).")
    ] = None,
    features: Annotated[
        str | None,
        typer.Option(
            "--features", help="a,b,c: the model's inputs, in order, when it has no names."
        ),
    ] = None,
    sample: Annotated[
        Path | None,
        typer.Option("--sample", help="CSV or Parquet rows it takes: kinds and ranges."),
    ] = None,
    trust: Annotated[
        list[str] | None,
        typer.Option("--trust", metavar="TYPE", help="Trust a type beyond the allowlist."),
    ] = None,
    trust_pickle: Annotated[
        bool,
        typer.Option("--trust-pickle", help="Unpickle a pickle or joblib file (runs its code!)."),
    ] = False,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a model file: a loopml bundle, LightGBM text, XGBoost JSON/UBJ, skops,
    ONNX (standard operators only; its inputs named with --features or --sample) or a
    TensorFlow SavedModel folder (converted to ONNX; kept as a SavedModel only with
    --trust tensorflow.saved_model, since a graph can hold file-system ops).

    Pickle and joblib files are refused unless --trust-pickle (recorded on the version).
    The first version of a name takes the champion alias.
    """
    from loopml import registry

    with open_ws(ctx, workspace) as ws:
        done = registry.import_model(
            ws,
            file,
            name,
            target=target,
            task=task,
            features=None if features is None else features.split(","),
            sample=sample,
            trust=trust,
            trust_pickle=trust_pickle,
        )
        mv = done.version
        if as_json:
            print_json({**mv.to_dict(), "format": done.format, "alias": done.alias})
            return
        out.print(f"imported {file.name} ({done.format}) as {mv.name}@{mv.version}")
        if mv.trusted:
            out.print(f"trusted beyond loopml's allowlist: {', '.join(mv.trusted)}")
        if done.alias:
            out.print(f"alias {done.alias} -> {mv.name}@{mv.version}")


@app.command("compile")
def compile_(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME@VERSION (or NAME@ALIAS).")],
    strict: Annotated[
        bool, typer.Option("--strict", help="Fail unless it compiles to ONNX.")
    ] = False,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Compile a version to ONNX now and check it against the native model (servers then
    load the cached graph); prints onnx or native, the reason, the difference and the time."""
    from loopml.registry.compiled import compile_model, describe

    with open_ws(ctx, workspace) as ws:
        record, predictor = compile_model(ws, ref, strict=strict)
        doc = describe(record, predictor)
        if as_json:
            print_json(doc)
            return
        name = f"{record.name}@{record.version}"
        diff = doc.get("max_abs_diff")
        shown = "-" if diff is None else f"{diff:.2g}"
        if predictor.kind == "onnx":
            out.print(
                f"{name}: onnx (max abs difference from native {shown} on {doc['rows']} rows, "
                f"{fmt(doc['seconds'], 2)} s)"
            )
        else:
            out.print(f"{name}: native ({predictor.reason}; {fmt(doc.get('seconds'), 2)} s)")


@app.command("export")
def export(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME@VERSION (or NAME@ALIAS).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write.")],
    format_: Annotated[
        str, typer.Option("--format", help="bundle, or onnx (the compiled graph).")
    ] = "bundle",
    workspace: WorkspaceOpt = None,
) -> None:
    """Write a version's bundle to a file ('loopml models import' reads it back)."""
    from loopml import registry

    with open_ws(ctx, workspace) as ws:
        path = registry.export_model(ws, ref, output, format=format_)
        out.print(f"exported {ref} to {path}")
