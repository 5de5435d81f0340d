"""A model card per version: markdown generated from the version, its run and its evaluation.

Sections: a summary (status, aliases, flavor, artifact), metrics (holdout, cross-validated
mean ± spread), the gate's verdict, data and lineage (dataset, rows, source, run, code
version), the signature as a table, the run's parameters, trust opt-ins, and the history of
the aliases that pointed at it.
"""

from __future__ import annotations

from typing import Any

from loopml.errors import LoopmlError
from loopml.registry.models import resolve_version
from loopml.workspace import Workspace


def _cell(value: Any, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        text = f"{value:.{digits}f}"
    elif isinstance(value, list | tuple):
        text = ", ".join(str(v) for v in value)
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _table(columns: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return [*lines, ""]


def _flat(params: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(params, dict):
        out: list[tuple[str, Any]] = []
        for key in sorted(params, key=str):
            out += _flat(params[key], f"{prefix}.{key}" if prefix else str(key))
        return out
    return [(prefix, params)]


def _metrics(metrics: dict[str, Any]) -> list[str]:
    holdout = metrics.get("holdout") or {}
    cv = metrics.get("cv") or {}
    names = [*holdout, *(k for k in cv if k not in holdout)]
    if not names:
        return ["No evaluation was recorded for this version.", ""]
    main = metrics.get("metric")
    rows = []
    for name in names:
        spread = cv.get(name) or {}
        mean, std = spread.get("mean"), spread.get("std")
        cv_text = "" if mean is None else f"{mean:.4f} ± {std or 0.0:.4f}"
        label = f"**{name}**" if name == main else name
        value = holdout.get(name)
        rows.append([label, value if not isinstance(value, dict | list) else "", cv_text])
    lines = _table(["metric", "holdout", "cross-validated (mean ± std)"], rows)
    rows_info = metrics.get("rows") or {}
    if rows_info:
        parts = ", ".join(f"{k} {v}" for k, v in rows_info.items())
        lines.insert(0, f"Rows: {parts}.")
        lines.insert(1, "")
    return lines


def model_card(ws: Workspace, ref: str) -> str:
    """The model card of ``NAME@VERSION`` (or an alias, or a bare name's latest) as markdown."""
    mv = resolve_version(ws, ref)
    aliases = sorted(a for a, v in ws.metadata.get_aliases(mv.name).items() if v == mv.version)
    try:
        run = ws.metadata.get_run(mv.run_id)
    except LoopmlError:
        run = None
    sig = mv.signature
    lines = [f"# {mv.name}@{mv.version}", ""]
    lines += [
        f"- status: {mv.status}",
        f"- aliases: {', '.join(aliases) or 'none'}",
        f"- task: {sig.get('task')}, target `{sig.get('target')}`"
        + (f", classes {_cell(sig.get('classes'))}" if sig.get("classes") else ""),
        f"- flavor: {mv.flavor}",
        f"- registered: {mv.created_at:%Y-%m-%d %H:%M:%S} UTC",
        f"- artifact: sha256 `{mv.artifact_sha256}` ({mv.size_bytes} bytes)",
        "",
        "## Metrics",
        "",
        *_metrics(mv.metrics),
    ]
    gate = (run.metrics.get("gate") if run is not None else None) or mv.metrics.get("gate")
    if isinstance(gate, dict):
        verdict = "passed" if gate.get("passed") else "failed"
        lines += ["## Gate", "", f"{verdict}: {gate.get('reason', '')}", ""]
    lines += ["## Data and lineage", ""]
    if mv.dataset_name is not None:
        lines.append(f"- dataset: {mv.dataset_name}@{mv.dataset_version}")
        try:
            dv = ws.metadata.get_dataset_version(mv.dataset_name, mv.dataset_version)
            lines.append(f"- rows: {dv.num_rows}; source: `{dv.source}`; sha256 `{dv.sha256}`")
        except LoopmlError:
            lines.append("- (the dataset version is no longer recorded)")
    else:
        lines.append("- dataset: none recorded")
    if run is not None:
        lines.append(f"- run: `{run.id}` ({run.status}, started {run.started_at:%Y-%m-%d %H:%M})")
        if run.parent_id:
            lines.append(f"- parent run: `{run.parent_id}`")
        lines.append(f"- code version (git): {run.git_commit or 'unknown'}")
        if run.duration_s is not None:
            lines.append(f"- training took {run.duration_s:.1f} s")
        if run.packages:
            shown = ", ".join(f"{k} {v}" for k, v in sorted(run.packages.items()))
            lines.append(f"- packages: {shown}")
    lines += ["", "## Signature", ""]
    rows = []
    for f in sig.get("inputs", []):
        cats = f.get("categories")
        span = (
            ", ".join(cats[:8]) + (" …" if len(cats) > 8 else "")
            if cats
            else ("" if f.get("min") is None else f"{_cell(f.get('min'))} .. {_cell(f.get('max'))}")
        )
        rows.append([f["name"], f["kind"], f["dtype"], "yes" if f["nullable"] else "no", span])
    lines += _table(["feature", "kind", "dtype", "nullable", "range / categories"], rows)
    lines += ["## Parameters", ""]
    params = _flat(run.params) if run is not None else []
    lines += (
        _table(
            ["parameter", "value"], [[k, repr(v) if isinstance(v, float) else v] for k, v in params]
        )
        if params
        else ["none", ""]
    )
    lines += ["## Trust", ""]
    if mv.trusted:
        lines.append(
            "Trusted beyond loopml's allowlist (opted in at registration): "
            + ", ".join(f"`{t}`" for t in mv.trusted)
        )
    else:
        lines.append("loopml's allowlist only.")
    lines += ["", "## Alias history", ""]
    events = [
        e
        for e in ws.metadata.list_alias_events(mv.name, limit=1000)
        if mv.version in (e.from_version, e.to_version)
    ]
    if events:
        lines += _table(
            ["when (UTC)", "alias", "from", "to", "who", "why"],
            [
                [
                    f"{e.at:%Y-%m-%d %H:%M:%S}",
                    e.alias,
                    e.from_version,
                    e.to_version,
                    e.actor,
                    e.reason,
                ]
                for e in events
            ],
        )
    else:
        lines += ["No alias has pointed at this version.", ""]
    return "\n".join(lines).rstrip() + "\n"


__all__ = ["model_card"]
