"""Evaluation and run-comparison reports as self-contained HTML: inline CSS and SVG, no
scripts, no external assets.

Every piece of text that comes from data (model, feature and class names, tag and parameter
values, the title) goes through :func:`html.escape`. The input is the JSON-friendly document
:func:`loopml.evaluate_model` returns (and the trainer writes for each run), so a report can
be re-rendered from what was stored.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from loopml.evaluate.runs import RunComparison

COLORS = ("#4c78a8", "#f58518", "#54a24b", "#e45756")
_W, _H = 360, 300
_ML, _MR, _MT, _MB = 52, 14, 14, 40

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;
max-width:1100px;padding:0 1rem;color:#1f2328;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.3rem}h2{font-size:1.2rem;margin-top:2rem}
.warning{background:#fff8c5;border-left:4px solid #d4a72c;padding:.4rem .8rem;margin:.4rem 0}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}
th,td{border-bottom:1px solid #d0d7de;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f6f8fa;white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.differs td{background:#fff8c5}tr.differs td:first-child{border-left:4px solid #d4a72c}
.grid{display:flex;flex-wrap:wrap;gap:1rem}
figure{margin:0;padding:.6rem;border:1px solid #d0d7de;border-radius:6px}
figcaption{font-size:.9rem;color:#57606a;margin-bottom:.3rem}
.note{color:#57606a;font-size:.8rem}
svg text{font-family:inherit;font-size:11px}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _v(value: Any) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.4f}"
    if value is None:
        return "-"
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return str(value)


def _page(title: str, body: Sequence[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{_e(title)}</h1>{''.join(body)}</body></html>\n"
    )


def _table(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], classes: Sequence[str] = ()
) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{_e(classes[i])}"' if i < len(classes) and classes[i] else ""
        cells = "".join(
            f'<td class="num">{_e(_v(c))}</td>'
            if isinstance(c, int | float) and not isinstance(c, bool)
            else f"<td>{_e(_v(c))}</td>"
            for c in row
        )
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


# -- SVG --------------------------------------------------------------------------------------


def _axes(x_label: str, y_label: str, lo: tuple[float, float], hi: tuple[float, float]) -> str:
    pw, ph = _W - _ML - _MR, _H - _MT - _MB
    parts = [f'<rect x="{_ML}" y="{_MT}" width="{pw}" height="{ph}" fill="none" stroke="#d0d7de"/>']
    for k in range(5):
        t = k / 4
        x = _ML + t * pw
        y = _MT + ph - t * ph
        xv = lo[0] + t * (hi[0] - lo[0])
        yv = lo[1] + t * (hi[1] - lo[1])
        parts.append(f'<text x="{x:.1f}" y="{_MT + ph + 14}" text-anchor="middle">{xv:.3g}</text>')
        parts.append(f'<text x="{_ML - 4}" y="{y + 4:.1f}" text-anchor="end">{yv:.3g}</text>')
    parts.append(
        f'<text x="{_ML + pw / 2}" y="{_H - 6}" text-anchor="middle">{_e(x_label)}</text>'
        f'<text x="12" y="{_MT + ph / 2}" text-anchor="middle" '
        f'transform="rotate(-90 12 {_MT + ph / 2})">{_e(y_label)}</text>'
    )
    return "".join(parts)


def _scale(lo: tuple[float, float], hi: tuple[float, float]) -> tuple[Any, Any]:
    pw, ph = _W - _ML - _MR, _H - _MT - _MB
    dx = (hi[0] - lo[0]) or 1.0
    dy = (hi[1] - lo[1]) or 1.0
    return (
        lambda x: _ML + (x - lo[0]) / dx * pw,
        lambda y: _MT + ph - (y - lo[1]) / dy * ph,
    )


def svg_lines(
    series: Sequence[tuple[str, Sequence[float], Sequence[float]]],
    *,
    x_label: str,
    y_label: str,
    diagonal: bool = False,
    points: bool = False,
    bounds: tuple[tuple[float, float], tuple[float, float]] | None = None,
) -> str:
    """Lines (or points) of ``(label, xs, ys)`` series on shared axes, with a legend."""
    if bounds is None:
        xs = [v for _, sx, _ in series for v in sx] or [0.0, 1.0]
        ys = [v for _, _, sy in series for v in sy] or [0.0, 1.0]
        lo, hi = (min(xs), min(ys)), (max(xs), max(ys))
    else:
        lo, hi = bounds
    fx, fy = _scale(lo, hi)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" role="img">']
    parts.append(_axes(x_label, y_label, lo, hi))
    if diagonal:
        parts.append(
            f'<line x1="{fx(lo[0]):.1f}" y1="{fy(lo[1]):.1f}" x2="{fx(hi[0]):.1f}" '
            f'y2="{fy(hi[1]):.1f}" stroke="#8c959f" stroke-dasharray="4 3"/>'
        )
    for i, (label, sx, sy) in enumerate(series):
        color = COLORS[i % len(COLORS)]
        if points:
            parts.extend(
                f'<circle cx="{fx(x):.1f}" cy="{fy(y):.1f}" r="2" fill="{color}" '
                'fill-opacity="0.6"/>'
                for x, y in zip(sx, sy, strict=False)
            )
        else:
            path = " ".join(f"{fx(x):.1f},{fy(y):.1f}" for x, y in zip(sx, sy, strict=False))
            parts.append(
                f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>'
            )
        ly = _MT + 14 + 14 * i
        parts.append(
            f'<rect x="{_ML + 8}" y="{ly - 9}" width="10" height="10" fill="{color}"/>'
            f'<text x="{_ML + 22}" y="{ly}">{_e(label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def svg_bars(items: Sequence[tuple[str, float, float | None]], *, x_label: str) -> str:
    """Horizontal bars of ``(label, value, error)``, largest first as given."""
    row, left, width = 18, 170, 560
    height = _MT + row * max(len(items), 1) + 34
    top = max([abs(v) + (e or 0) for _, v, e in items] or [1.0]) or 1.0
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">'
    ]
    span = width - left - 60
    for i, (label, value, error) in enumerate(items):
        y = _MT + i * row
        w = max(0.0, value) / top * span
        short = label if len(label) <= 26 else label[:25] + "…"
        parts.append(
            f'<text x="{left - 6}" y="{y + 12}" text-anchor="end">{_e(short)}<title>{_e(label)}'
            f'</title></text><rect x="{left}" y="{y + 2}" width="{w:.1f}" height="{row - 5}" '
            f'fill="{COLORS[0]}"/><text x="{left + w + 4:.1f}" y="{y + 12}">{value:.4g}</text>'
        )
        if error:
            e0, e1 = (
                left + max(0.0, value - error) / top * span,
                left + (value + error) / top * span,
            )
            parts.append(
                f'<line x1="{e0:.1f}" y1="{y + 8}" x2="{e1:.1f}" y2="{y + 8}" stroke="#1f2328"/>'
            )
    parts.append(
        f'<text x="{left + span / 2}" y="{height - 8}" text-anchor="middle">{_e(x_label)}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def _confusion(confusion: Mapping[str, Any]) -> str:
    labels, matrix = confusion["labels"], confusion["matrix"]
    top = max([max(r) for r in matrix if r] or [1]) or 1
    head = "<th>actual \\ predicted</th>" + "".join(f"<th>{_e(c)}</th>" for c in labels)
    rows = []
    for label, counts in zip(labels, matrix, strict=True):
        cells = "".join(
            f'<td class="num" style="background:rgba(76,120,168,{0.08 + 0.7 * n / top:.2f})">'
            f"{int(n)}</td>"
            for n in counts
        )
        rows.append(f"<tr><th>{_e(label)}</th>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _figure(caption: str, svg: str) -> str:
    return f"<figure><figcaption>{_e(caption)}</figcaption>{svg}</figure>"


# -- the evaluation report --------------------------------------------------------------------


def _curves(doc: Mapping[str, Any]) -> list[str]:
    """ROC, PR and calibration figures, the champion's drawn beside this model's."""
    mine = doc.get("diagnostics", {})
    champ = (doc.get("champion") or {}).get("diagnostics", {})
    name, other = str(doc.get("model", "model")), str((doc.get("champion") or {}).get("model", ""))
    unit = ((0.0, 0.0), (1.0, 1.0))
    figures = []
    if "roc" in mine:
        series = [
            (f"{name} (AUC {mine['roc']['auc']:.3f})", mine["roc"]["fpr"], mine["roc"]["tpr"])
        ]
        if "roc" in champ:
            series.append(
                (
                    f"{other} (AUC {champ['roc']['auc']:.3f})",
                    champ["roc"]["fpr"],
                    champ["roc"]["tpr"],
                )
            )
        svg = svg_lines(
            series,
            x_label="false positive rate",
            y_label="true positive rate",
            diagonal=True,
            bounds=unit,
        )
        figures.append(_figure(f"ROC curve (positive class {mine.get('positive')})", svg))
    if "pr" in mine:
        pr = mine["pr"]
        series = [(f"{name} (AP {pr['average_precision']:.3f})", pr["recall"], pr["precision"])]
        if "pr" in champ:
            cp = champ["pr"]
            series.append(
                (f"{other} (AP {cp['average_precision']:.3f})", cp["recall"], cp["precision"])
            )
        svg = svg_lines(series, x_label="recall", y_label="precision", bounds=unit)
        figures.append(_figure(f"precision-recall curve (base rate {pr['base_rate']:.3f})", svg))
    if mine.get("calibration"):
        series = [
            (
                name,
                [b["predicted"] for b in mine["calibration"]],
                [b["observed"] for b in mine["calibration"]],
            )
        ]
        if champ.get("calibration"):
            series.append(
                (
                    other,
                    [b["predicted"] for b in champ["calibration"]],
                    [b["observed"] for b in champ["calibration"]],
                )
            )
        svg = svg_lines(
            series,
            x_label="mean predicted probability",
            y_label="fraction positive",
            diagonal=True,
            bounds=unit,
        )
        figures.append(_figure("calibration (10 bins)", svg))
    if "scatter" in mine:
        sc = mine["scatter"]
        both = [*sc["actual"], *sc["predicted"]] or [0.0, 1.0]
        box = ((min(both), min(both)), (max(both), max(both)))
        svg = svg_lines(
            [(name, sc["actual"], sc["predicted"])],
            x_label="actual",
            y_label="predicted",
            diagonal=True,
            points=True,
            bounds=box,
        )
        figures.append(_figure("predicted against actual (a sample of rows)", svg))
    return [f'<div class="grid">{"".join(figures)}</div>'] if figures else []


def _slices(slices: Any) -> list[str]:
    """The run's metric per slice (``loopml.evaluate.slices``), flagged slices marked."""
    if not isinstance(slices, Mapping) or not slices.get("columns"):
        return []
    metric = str(slices.get("metric", "metric"))
    rule = slices.get("rule") or {}
    out = [
        "<h2>Metric per slice</h2>",
        f'<p class="note">{_e(metric)} on the whole holdout: {_e(_v(slices.get("overall")))}; '
        f"a slice is flagged when it is worse by more than {_e(rule.get('worse_by', '-'))} "
        f"with at least {_e(rule.get('min_rows', '-'))} rows</p>",
    ]
    for column, rows in slices["columns"].items():
        rows = [r for r in rows if isinstance(r, Mapping)]
        out.append(f"<h3>{_e(column)}</h3>")
        out.append(
            _table(
                ["slice", "rows", metric, "difference", "flagged"],
                [
                    [
                        r.get("slice"),
                        r.get("rows"),
                        r.get("value"),
                        r.get("delta"),
                        "yes" if r.get("flagged") else "",
                    ]
                    for r in rows
                ],
                ["differs" if r.get("flagged") else "" for r in rows],
            )
        )
    return out


def render_evaluation_html(doc: Mapping[str, Any]) -> str:
    """The report of one evaluation (or training run): a self-contained HTML page."""
    title = str(doc.get("title") or f"evaluation of {doc.get('model', 'a model')}")
    body: list[str] = []
    context = [
        (k, doc[k])
        for k in ("model", "run_id", "data", "rows", "split", "task")
        if doc.get(k) is not None
    ]
    body.append(_table(["", ""], context))
    body.extend(f'<p class="warning">{_e(w)}</p>' for w in doc.get("warnings", []))
    metrics = doc.get("metrics", {})
    champion = doc.get("champion") or {}
    body.append("<h2>Metrics</h2>")
    if champion:
        theirs = champion.get("metrics", {})
        keys = sorted(set(metrics) | set(theirs))
        body.append(
            _table(
                [
                    "metric",
                    str(doc.get("model", "this version")),
                    str(champion.get("model")),
                    "difference",
                ],
                [
                    [
                        k,
                        metrics.get(k),
                        theirs.get(k),
                        metrics[k] - theirs[k]
                        if isinstance(metrics.get(k), float | int)
                        and isinstance(theirs.get(k), float | int)
                        else None,
                    ]
                    for k in keys
                ],
            )
        )
        body.append(
            f'<p class="note">champion and this version scored on the same '
            f"{_e(doc.get('rows', ''))} rows</p>"
        )
    else:
        body.append(_table(["metric", "value"], sorted(metrics.items())))
    diagnostics = doc.get("diagnostics", {})
    body.extend(_curves(doc))
    if "confusion" in diagnostics:
        body.append("<h2>Confusion matrix</h2>" + _confusion(diagnostics["confusion"]))
    if "residual_quantiles" in diagnostics:
        body.append("<h2>Residuals (actual - predicted)</h2>")
        body.append(
            _table(["quantile", "residual"], sorted(diagnostics["residual_quantiles"].items()))
        )
    importances = doc.get("importances", {})
    if importances.get("permutation"):
        perm = importances["permutation"]
        body.append("<h2>Permutation importance</h2>")
        body.append(f'<p class="note">{_e(importances.get("permutation_note", ""))}</p>')
        body.append(
            svg_bars(
                [(p["feature"], p["mean"], p["std"]) for p in perm],
                x_label="drop in score when shuffled",
            )
        )
    if importances.get("native"):
        native = importances["native"]
        body.append(f"<h2>Model importances ({_e(native[0]['kind'])})</h2>")
        body.append(
            svg_bars(
                [(n["feature"], n["value"], None) for n in native], x_label=str(native[0]["kind"])
            )
        )
    body.extend(_selection(doc.get("feature_selection")))
    body.extend(_slices(doc.get("slices")))
    return _page(title, body)


def _selection(selection: Mapping[str, Any] | None) -> list[str]:
    """The selection step's scores as bars, best first (at most 30), kept ones marked."""
    if not selection or not selection.get("scores"):
        return []
    kept = set(selection.get("kept", []))
    scores = sorted(selection["scores"].items(), key=lambda kv: -float(kv[1]))
    items = [(f"{'✓' if n in kept else '✗'} {n}", float(v), None) for n, v in scores[:30]]
    return [
        f"<h2>Feature selection ({_e(str(selection.get('method', '')))}): "
        f"{len(kept)} kept, {len(selection.get('dropped', []))} dropped</h2>",
        svg_bars(items, x_label="score (✓ kept, ✗ dropped)"),
    ]


# -- runs side by side ------------------------------------------------------------------------


def render_comparison_html(comparison: RunComparison, title: str = "runs compared") -> str:
    """Runs side by side: parameters and metrics, rows whose values differ highlighted."""
    heads = ["", *(f"{r.id[:12]} ({r.name})" for r in comparison.runs)]
    body = [
        _table(
            ["run", "model", "status", "dataset", "version"],
            [
                [r.id, r.name, r.status, f"{r.dataset_name}@{r.dataset_version}", r.model_version]
                for r in comparison.runs
            ],
        )
    ]
    for section, rows in (("Metrics", comparison.metrics), ("Parameters", comparison.params)):
        marks = ["differs" if comparison.differs(v) else "" for _, v in rows]
        body.append(f"<h2>{section}</h2>")
        body.append(_table(heads, [[k, *v] for k, v in rows], marks))
    body.append('<p class="note">highlighted rows differ between the runs</p>')
    return _page(title, body)
