"""``loopml features``: what a version's fitted feature pipeline does, column by column."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer
from rich.markup import escape

from loopml.cli.common import JsonOpt, WorkspaceOpt, fmt, open_ws, out, print_json, table

app = typer.Typer(help="Feature pipelines of model versions: explain.", no_args_is_help=True)

# most scores the selection table lists (best first); --json has them all
SELECTION_SHOWN = 30
# most output columns a row of the table names (a text column has one per word); --json has all
OUTPUTS_SHOWN = 12


@app.command("explain")
def explain_cmd(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME@VERSION (or NAME@ALIAS, or NAME).")],
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Each input column of a version: its kind (declared or inferred), the transforms
    applied to it, and the feature columns it produced (and those selection dropped)."""
    from loopml import registry
    from loopml.features.explain import explain, selection_report

    with open_ws(ctx, workspace) as ws:
        loaded = registry.load_model(ws, ref)
        record, bundle = loaded.record, loaded.bundle
        declared = _declared_kinds(ws, record.run_id)
        rows = explain(bundle.features, bundle.signature.kinds(), declared)
        selection = selection_report(bundle.features)
        onnx = _onnx_status(bundle)
        if as_json:
            print_json(
                {
                    "model": record.name,
                    "version": record.version,
                    "columns": rows,
                    "selection": selection,
                    "onnx": onnx,
                }
            )
            return
        width = sum(len(r["outputs"]) for r in rows)
        table(
            f"features of {record.name}@{record.version} ({len(rows)} inputs -> {width} features)",
            ["column", "kind", "transforms", "outputs"],
            [
                (
                    escape(r["column"]),
                    f"{r['kind']} ({r['kind_source']})",
                    escape("\n".join(r["transforms"])),
                    escape(_outputs_cell(r)),
                )
                for r in rows
            ],
            shrink=["transforms", "outputs"],
        )
        if selection is not None:
            selection_table(selection)
        if onnx["converts"]:
            out.print("ONNX: every feature step converts (compiled serving uses the graph)")
        else:
            out.print(f"ONNX: served natively: {escape(str(onnx['reason']))}")


def _outputs_cell(row: Mapping[str, Any]) -> str:
    kept = [o.split("__", 1)[-1] for o in row["outputs"]]
    text = ", ".join(kept[:OUTPUTS_SHOWN]) if kept else "-"
    if len(kept) > OUTPUTS_SHOWN:
        text += f" and {len(kept) - OUTPUTS_SHOWN} more ({len(kept)} columns)"
    if "vocabulary" in row:
        size = row["vocabulary"]
        text = (
            f"[{row.get('encode')}: vocabulary of {size} words/n-grams] "
            if size is not None
            else f"[{row.get('encode')}: {len(kept)} hashed columns] "
        ) + text
    dropped = [o.split("__", 1)[-1] for o in row["dropped"]]
    if dropped:
        text += f" (dropped by selection: {', '.join(dropped)})"
    return text


def _declared_kinds(ws: Any, run_id: str | None) -> dict[str, str]:
    """The kinds the version's project file declared (its run's parameters), or none."""
    if not run_id:
        return {}
    try:
        run = ws.metadata.get_run(run_id)
    except Exception:  # a version imported without its run
        return {}
    features = (run.params.get("project") or {}).get("features") or {}
    kinds = dict(features.get("kinds") or {})
    for col, entry in (features.get("columns") or {}).items():
        if isinstance(entry, Mapping) and entry.get("kind"):
            kinds[col] = entry["kind"]
    return kinds


def _onnx_status(bundle: Any) -> dict[str, Any]:
    """Whether the feature pipeline converts to ONNX, and the reason when it does not."""
    try:
        from loopml.registry.flavors.base import NotConvertible
        from loopml.registry.onnx_graph import feature_model
    except ImportError as exc:  # pragma: no cover - the onnx extra is not installed
        return {"converts": False, "reason": f"{exc.name} is not installed"}
    try:
        feature_model(bundle)
    except NotConvertible as exc:
        return {"converts": False, "reason": str(exc)}
    except ImportError as exc:
        return {"converts": False, "reason": f"{exc.name} is not installed"}
    return {"converts": True, "reason": None}


def selection_table(selection: Mapping[str, Any] | None) -> None:
    """The kept and dropped features of a run's selection with their scores, best first
    (used by ``loopml runs show`` and ``loopml models show`` too)."""
    if not selection:
        return
    kept = set(selection.get("kept", []))
    scores = sorted(selection.get("scores", {}).items(), key=lambda kv: -float(kv[1]))
    more = len(scores) - SELECTION_SHOWN
    table(
        f"feature selection ({selection.get('method')}): {len(kept)} kept, "
        f"{len(selection.get('dropped', []))} dropped"
        + (f" (best {SELECTION_SHOWN} shown)" if more > 0 else ""),
        ["feature", "score", "kept"],
        [
            (escape(name), fmt(score), "yes" if name in kept else "no")
            for name, score in scores[:SELECTION_SHOWN]
        ],
        shrink=["feature"],
    )
