"""The drift report as one self-contained HTML page: inline CSS and SVG, no scripts, no assets.

Every piece of text that comes from data (feature names, categories, context values, the
title) goes through :func:`html.escape`.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from loopml.kinds import NUMERIC
from loopml.monitor.drift import DriftReport, FeatureDrift, Histogram

_Scale = Callable[[float], float]

REFERENCE_COLOR = "#4c78a8"
CURRENT_COLOR = "#f58518"
_MARGIN_LEFT = 64
_MARGIN_RIGHT = 16
_MARGIN_TOP = 34
_LABEL_CHARS = 14
_TAG_YES = '<span class="tag yes">drift</span>'
_TAG_NO = '<span class="tag no">no</span>'

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;
max-width:1100px;padding:0 1rem;color:#1f2328;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.3rem}h2{font-size:1.2rem;margin-top:2rem}
.verdict{display:inline-block;padding:.4rem .8rem;border-radius:6px;font-weight:600}
.verdict.yes{background:#ffebe9;color:#a40e26;border:1px solid #ff8182}
.verdict.no{background:#dafbe1;color:#116329;border:1px solid #4ac26b}
.verdict.insufficient{background:#fff8c5;color:#7d4e00;border:1px solid #d4a72c}
.summary-line{font-weight:600}
.warning{background:#fff8c5;border-left:4px solid #d4a72c;padding:.4rem .8rem;margin:.4rem 0}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}
th,td{border-bottom:1px solid #d0d7de;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f6f8fa;cursor:default;white-space:nowrap}
th.sorted::after{content:" \\25BE";color:#57606a}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.drift td{background:#fff5f5}tr.drift td:first-child{border-left:4px solid #cf222e}
.tag{display:inline-block;padding:0 .4rem;border-radius:4px;font-size:.8rem;font-weight:600}
.tag.yes{background:#cf222e;color:#fff}.tag.no{background:#eaeef2;color:#57606a}
.note{color:#57606a;font-size:.8rem}
figure{margin:1.2rem 0;padding:.6rem;border:1px solid #d0d7de;border-radius:6px}
figcaption{font-size:.9rem;color:#57606a;margin-bottom:.3rem}
svg text{font-family:inherit}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _num(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if value >= 1e-3 else f"{value:.2e}"


def _pct(share: float) -> str:
    return f"{share * 100:.1f}%"


def _tick(value: float) -> str:
    if value == 0:
        return "0"
    return f"{value:.3g}"


# ---------------------------------------------------------------------------------------------
# SVG
# ---------------------------------------------------------------------------------------------


def render_svg_histogram(
    histogram: Histogram, *, feature: str, width: int = 640, height: int = 300
) -> str:
    """An inline SVG comparing the reference and current distributions of one feature.

    Numeric features get overlaid, semi-transparent histogram bars on a value axis;
    categorical features get grouped bars, one pair per category. Both axes are labelled and
    every bar carries a tooltip (an SVG ``<title>``) with its exact share.
    """
    categorical = histogram.kind != NUMERIC
    n_groups = len(histogram.reference)
    rotate = categorical and n_groups > 6
    bottom = 96 if rotate else 56
    pw = width - _MARGIN_LEFT - _MARGIN_RIGHT
    ph = height - _MARGIN_TOP - bottom
    peak = max([*histogram.reference, *histogram.current, 0.0])
    ymax = min(_nice_ceiling(peak * 1.05), 1.0) if peak > 0 else 1.0

    def sy(share: float) -> float:
        return _MARGIN_TOP + ph - share / ymax * ph

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{_e(f"distribution of {feature}: reference vs current")}">'
    ]
    # y axis: grid, ticks, label
    for i in range(5):
        share = ymax * i / 4
        y = sy(share)
        parts.append(
            f'<line x1="{_MARGIN_LEFT}" y1="{y:.1f}" x2="{_MARGIN_LEFT + pw}" y2="{y:.1f}" '
            'stroke="#eaeef2"/>'
            f'<text x="{_MARGIN_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#57606a">{_e(_pct(share))}</text>'
        )
    mid_y = _MARGIN_TOP + ph / 2
    parts.append(
        f'<text x="14" y="{mid_y:.1f}" transform="rotate(-90 14 {mid_y:.1f})" '
        'text-anchor="middle" font-size="12">share of rows</text>'
    )
    if categorical:
        parts.extend(_categorical_bars(histogram, pw, ph, sy, rotate))
    else:
        parts.extend(_numeric_bars(histogram, pw, ph, sy))
    axis_y = _MARGIN_TOP + ph
    parts.append(
        f'<line x1="{_MARGIN_LEFT}" y1="{axis_y:.1f}" x2="{_MARGIN_LEFT + pw}" '
        f'y2="{axis_y:.1f}" stroke="#57606a"/>'
        f'<line x1="{_MARGIN_LEFT}" y1="{_MARGIN_TOP}" x2="{_MARGIN_LEFT}" y2="{axis_y:.1f}" '
        'stroke="#57606a"/>'
        f'<text x="{_MARGIN_LEFT + pw / 2:.1f}" y="{height - 8}" text-anchor="middle" '
        f'font-size="12">{_e(feature)}{" (category)" if categorical else " (value)"}</text>'
    )
    parts.extend(_legend(width))
    parts.append("</svg>")
    return "".join(parts)


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10^k at or above ``value``."""
    exp = math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        candidate = step * 10.0**exp
        if candidate >= value:
            return candidate
    return value


def _legend(width: int) -> list[str]:
    x = width - _MARGIN_RIGHT - 170
    out = []
    for i, (name, color) in enumerate((("reference", REFERENCE_COLOR), ("current", CURRENT_COLOR))):
        xi = x + i * 90
        out.append(
            f'<rect x="{xi}" y="10" width="12" height="12" fill="{color}" fill-opacity="0.6"/>'
            f'<text x="{xi + 17}" y="20" font-size="12">{name}</text>'
        )
    return out


def _bar(x: float, y: float, w: float, h: float, color: str, tip: str) -> str:
    return (
        f'<rect x="{x:.2f}" y="{y:.2f}" width="{max(w, 0.0):.2f}" height="{max(h, 0.0):.2f}" '
        f'fill="{color}" fill-opacity="0.55"><title>{_e(tip)}</title></rect>'
    )


def _numeric_bars(histogram: Histogram, pw: float, ph: float, sy: _Scale) -> list[str]:
    edges = histogram.edges or []
    lo, hi = edges[0], edges[-1]
    span = hi - lo if hi > lo else 1.0

    def sx(value: float) -> float:
        return _MARGIN_LEFT + (value - lo) / span * pw

    out: list[str] = []
    last = len(edges) - 2
    for side, shares, color in (
        ("reference", histogram.reference, REFERENCE_COLOR),
        ("current", histogram.current, CURRENT_COLOR),
    ):
        for i, share in enumerate(shares):
            left, right = edges[i], edges[i + 1]
            x0, x1 = sx(left), sx(right)
            where = f"({_tick(left)}, {_tick(right)}]"
            if i == 0:
                where = f"≤ {_tick(right)}"
            if i == last:
                where = f"> {_tick(left)}"
            y = sy(share)
            out.append(
                _bar(
                    x0,
                    y,
                    x1 - x0 - 0.5,
                    _MARGIN_TOP + ph - y,
                    color,
                    f"{side}: {_pct(share)} of rows {where}",
                )
            )
    axis_y = _MARGIN_TOP + ph
    for i in range(6):
        value = lo + span * i / 5
        x = sx(value)
        out.append(
            f'<line x1="{x:.1f}" y1="{axis_y:.1f}" x2="{x:.1f}" y2="{axis_y + 4:.1f}" '
            'stroke="#57606a"/>'
            f'<text x="{x:.1f}" y="{axis_y + 17:.1f}" text-anchor="middle" font-size="11" '
            f'fill="#57606a">{_e(_tick(value))}</text>'
        )
    return out


def _categorical_bars(
    histogram: Histogram, pw: float, ph: float, sy: _Scale, rotate: bool
) -> list[str]:
    labels = histogram.categories or []
    k = max(len(labels), 1)
    group = pw / k
    bar = group * 0.38
    axis_y = _MARGIN_TOP + ph
    out: list[str] = []
    for i, label in enumerate(labels):
        gx = _MARGIN_LEFT + i * group + group * 0.12
        for j, (side, shares, color) in enumerate(
            (
                ("reference", histogram.reference, REFERENCE_COLOR),
                ("current", histogram.current, CURRENT_COLOR),
            )
        ):
            y = sy(shares[i])
            out.append(
                _bar(
                    gx + j * bar,
                    y,
                    bar,
                    axis_y - y,
                    color,
                    f"{label} — {side}: {_pct(shares[i])} of rows",
                )
            )
        short = label if len(label) <= _LABEL_CHARS else label[: _LABEL_CHARS - 1] + "…"
        cx = _MARGIN_LEFT + (i + 0.5) * group
        ty = axis_y + 15
        transform = f' transform="rotate(-35 {cx:.1f} {ty:.1f})"' if rotate else ""
        anchor = "end" if rotate else "middle"
        out.append(
            f'<text x="{cx:.1f}" y="{ty:.1f}" text-anchor="{anchor}" font-size="11" '
            f'fill="#57606a"{transform}><title>{_e(label)}</title>{_e(short)}</text>'
        )
    return out


# ---------------------------------------------------------------------------------------------
# Page
# ---------------------------------------------------------------------------------------------


def _tensor_section(report: DriftReport) -> list[str]:
    """Each tensor input's summaries (monitor/tensors.py): one line and its histogram."""
    out: list[str] = []
    for t in report.tensors:
        out += [f"<h2>Tensor {_e(t.name)} {_e(str(t.shape))}</h2>", *_tensor_histogram(t)]
    return out


def _tensor_histogram(t: Any) -> list[str]:
    """A tensor's one line (:attr:`~loopml.monitor.tensors.TensorDrift.line`) and its
    intensity histogram, reference against current, as a table."""
    h = t.histogram
    rows = [
        (f"{lo:.3g}..{hi:.3g}", f"{r:.3f}", f"{c:.3f}")
        for lo, hi, r, c in zip(
            h["edges"][:-1], h["edges"][1:], h["reference"], h["current"], strict=True
        )
    ]
    return [
        f"<p>{_e(t.line)}</p>",
        "<table><tr><th>intensity</th><th>reference share</th><th>current share</th></tr>",
        *(f"<tr><td>{_e(a)}</td><td>{b}</td><td>{c}</td></tr>" for a, b, c in rows),
        "</table>",
    ]


def _tensors_over_time(
    current: DriftReport, labels: Sequence[str], over_time: Sequence[DriftReport | None]
) -> list[str]:
    """Each tensor input of the monitoring page: its histogram PSI and JS distance per
    period (a line chart), a table of its summaries per period, and the whole window's
    summaries and intensity histogram (as on the drift report)."""
    out: list[str] = []
    for whole in current.tensors:
        per: list[Any] = []
        for r in over_time:
            found = [t for t in (r.tensors if r is not None else []) if t.name == whole.name]
            per.append(found[0] if found else None)
        out.append(f"<h2>Tensor {_e(whole.name)} {_e(str(whole.shape))} over time</h2>")
        if labels:
            out.append(
                render_svg_lines(
                    list(labels),
                    {
                        "histogram PSI": [None if t is None else t.histogram["psi"] for t in per],
                        "JS distance": [
                            None if t is None else t.histogram["js_distance"] for t in per
                        ],
                    },
                    title=f"tensor {whole.name}: intensity histogram against the reference, "
                    "per period",
                    y_label="PSI / JS",
                    reference=current.psi_threshold,
                    reference_label="PSI threshold",
                )
            )
        head = (
            '<table class="tensors"><thead><tr><th>period</th><th>images</th>'
            "<th>mean intensity</th><th>std</th><th>histogram PSI</th><th>JS distance</th>"
            "<th>p-value</th><th>drift</th></tr></thead><tbody>"
        )
        rows = [
            head,
            f'<tr><td>reference (training)</td><td class="num">{whole.n_reference}</td>'
            f'<td class="num">{_num(whole.mean["reference"], 3)}</td>'
            f'<td class="num">{_num(whole.std["reference"], 3)}</td>'
            '<td colspan="4"></td></tr>',
        ]
        for label, t in zip(labels, per, strict=True):
            rows.append(_tensor_row(label, t))
        rows.append(_tensor_row("whole window", whole))
        rows.append("</tbody></table>")
        out.append("".join(rows))
        out += ["<h3>The whole window</h3>", *_tensor_histogram(whole)]
    return out


def _tensor_row(label: str, t: Any) -> str:
    if t is None:
        return f'<tr><td>{_e(label)}</td><td colspan="7" class="note">no images</td></tr>'
    h = t.histogram
    if t.note:
        tag = f'<span class="note">{_e(t.note)}</span>'
    else:
        tag = _TAG_YES if t.drifted else _TAG_NO
    cls = ' class="drift"' if t.drifted else ""
    reasons = "".join(f'<div class="note">{_e(r)}</div>' for r in t.reasons)
    return (
        f'<tr{cls}><td>{_e(label)}{reasons}</td><td class="num">{t.n_current}</td>'
        f'<td class="num">{_num(t.mean["current"], 3)}</td>'
        f'<td class="num">{_num(t.std["current"], 3)}</td>'
        f'<td class="num">{_num(h.get("psi"))}</td>'
        f'<td class="num">{_num(h.get("js_distance"))}</td>'
        f'<td class="num">{_p(h.get("p_value"))}</td><td>{tag}</td></tr>'
    )


def render_html(
    report: DriftReport,
    *,
    title: str,
    context: Mapping[str, str],
    extra: Sequence[FeatureDrift] = (),
    summary: str | None = None,
    warnings: Sequence[str] = (),
) -> str:
    """The whole report page: verdict, thresholds, context, feature table, plots of drifters.

    ``extra`` rows (e.g. the drift of the model's scores) are shown and plotted with the
    features but do not count towards the dataset verdict. ``summary`` (which features and
    whether the predictions drift) and ``warnings`` are shown under the verdict.
    """
    n = len(report.features)
    n_drifted = len(report.drifted_features)
    verdict = "yes" if report.drifted else "no"
    verdict_text = "Dataset drift detected" if report.drifted else "No dataset drift"
    if report.insufficient is not None:
        verdict, verdict_text = "insufficient", "Insufficient data"
    said = (
        f"Nothing is decided: {_e(report.insufficient)}."
        if report.insufficient is not None
        else f"{n_drifted} of {n} feature{'s' if n != 1 else ''} drifted "
        f"({_e(_pct(report.share_drifted))}; the dataset drifts at "
        f"{_e(_pct(report.drift_share))} or more)."
    )
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p><span class="verdict {verdict}">{verdict_text}</span> {said}</p>',
        *([f'<p class="summary-line">{_e(summary)}</p>'] if summary else []),
        *(f'<p class="warning">{_e(w)}</p>' for w in warnings),
        "<h2>Summary</h2>",
        _key_values(
            [
                ("dataset drift", report.verdict),
                ("share of drifting features", _pct(report.share_drifted)),
                ("PSI threshold", f"{report.psi_threshold:g}"),
                ("alpha", f"{report.alpha:g} ({report.alpha_adjusted:.3g} per feature)"),
                ("drift share threshold", _pct(report.drift_share)),
                ("numeric PSI bins", str(report.bins)),
                ("rows needed to decide", str(report.min_rows)),
                ("reference rows", str(report.n_reference_rows)),
                ("current rows", str(report.n_current_rows)),
                *context.items(),
            ]
        ),
        '<p class="note">A feature drifts when its test (Kolmogorov–Smirnov for numeric '
        "features, chi-square for categorical ones) rejects equal distributions at the "
        "Bonferroni-corrected level <em>and</em> its population stability index reaches the "
        "PSI threshold. JS is the Jensen–Shannon divergence (base 2).</p>",
        *_tensor_section(report),
        "<h2>Features</h2>",
        _feature_table([*report.features, *extra]),
        "<h2>Drifting features</h2>",
    ]
    drifting = [f for f in [*report.features, *extra] if f.drifted]
    if not drifting:
        out.append("<p>No feature drifted.</p>")
    for i, f in enumerate(_sorted(drifting)):  # same order as the table: row i links here
        caption = (
            f"{f.feature}: PSI {_num(f.psi)}, {f.statistic_name} {_num(f.statistic)}, "
            f"p-value {_p(f.p_value)}"
        )
        out.append(
            f'<figure id="plot-{i}"><figcaption>{_e(caption)}</figcaption>'
            f"{render_svg_histogram(f.histogram, feature=f.feature)}</figure>"
        )
    out.append("</body></html>")
    return "\n".join(out)


def _key_values(items: Sequence[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in items)
    return f'<table class="summary">{rows}</table>'


def _sorted(features: Sequence[FeatureDrift]) -> list[FeatureDrift]:
    """Drifting first, then by PSI, largest first; untested features last."""
    return sorted(
        features,
        key=lambda f: (not f.drifted, f.psi is None, -(f.psi or 0.0), f.feature),
    )


def _feature_table(features: Sequence[FeatureDrift]) -> str:
    head = (
        "<thead><tr><th>feature</th><th>type</th><th>test</th><th>statistic</th>"
        '<th>p-value</th><th class="sorted">PSI</th><th>JS</th><th>reference n</th>'
        "<th>current n</th><th>current nulls</th><th>drift</th></tr></thead>"
    )
    rows = []
    for i, f in enumerate(_sorted(features)):
        notes = []
        if f.note:
            notes.append(f.note)
        if f.unseen_categories:
            notes.append("unseen: " + ", ".join(f.unseen_categories))
        note = "".join(f'<div class="note">{_e(t)}</div>' for t in notes)
        tag = (
            '<span class="tag yes">drift</span>' if f.drifted else '<span class="tag no">no</span>'
        )
        cls = ' class="drift"' if f.drifted else ""
        name = f'<a href="#plot-{i}">{_e(f.feature)}</a>' if f.drifted else _e(f.feature)
        rows.append(
            f"<tr{cls}><td>{name}{note}</td><td>{_e(f.kind)}</td>"
            f'<td>{_e(f.statistic_name)}</td><td class="num">{_num(f.statistic)}</td>'
            f'<td class="num">{_p(f.p_value)}</td><td class="num">{_num(f.psi)}</td>'
            f'<td class="num">{_num(f.js)}</td><td class="num">{f.n_reference}</td>'
            f'<td class="num">{f.n_current}</td><td class="num">{f.nulls_current}</td>'
            f"<td>{tag}</td></tr>"
        )
    return f'<table class="features">{head}<tbody>{"".join(rows)}</tbody></table>'


# -- the monitoring page: drift and the metric over time ---------------------------------------

_LINE_COLORS = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#9d755d")


def render_svg_lines(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    title: str,
    y_label: str,
    reference: float | None = None,
    reference_label: str = "threshold",
    width: int = 760,
    height: int = 300,
) -> str:
    """An inline SVG line chart: one line per entry of ``series`` over the ``labels`` (periods).

    ``None`` values break a line (nothing measured there). ``reference`` draws a dashed
    horizontal line (a threshold, or the value at training). Every point has a tooltip.
    """
    bottom = 56
    pw = width - _MARGIN_LEFT - _MARGIN_RIGHT - 150
    ph = height - _MARGIN_TOP - bottom
    values = [v for vs in series.values() for v in vs if v is not None and math.isfinite(v)]
    if reference is not None:
        values.append(reference)
    lo = min([0.0, *values]) if values else 0.0
    hi = max(values) if values else 1.0
    top = _nice_ceiling(hi * 1.05) if hi > 0 else 1.0
    span = (top - lo) or 1.0
    n = max(len(labels), 1)

    def sx(i: int) -> float:
        return _MARGIN_LEFT + (pw * (i + 0.5) / n)

    def sy(value: float) -> float:
        return _MARGIN_TOP + ph - (value - lo) / span * ph

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{_e(title)}">',
        f'<text x="{_MARGIN_LEFT}" y="20" font-size="13" font-weight="600">{_e(title)}</text>',
    ]
    for i in range(5):
        value = lo + span * i / 4
        y = sy(value)
        parts.append(
            f'<line x1="{_MARGIN_LEFT}" y1="{y:.1f}" x2="{_MARGIN_LEFT + pw}" y2="{y:.1f}" '
            'stroke="#eaeef2"/>'
            f'<text x="{_MARGIN_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#57606a">{_e(_tick(value))}</text>'
        )
    mid_y = _MARGIN_TOP + ph / 2
    parts.append(
        f'<text x="14" y="{mid_y:.1f}" transform="rotate(-90 14 {mid_y:.1f})" '
        f'text-anchor="middle" font-size="12">{_e(y_label)}</text>'
    )
    step = max(1, math.ceil(len(labels) / 8))
    axis_y = _MARGIN_TOP + ph
    for i, label in enumerate(labels):
        if i % step == 0:
            parts.append(
                f'<text x="{sx(i):.1f}" y="{axis_y + 16:.1f}" text-anchor="middle" '
                f'font-size="11" fill="#57606a">{_e(label)}</text>'
            )
    if reference is not None:
        y = sy(reference)
        parts.append(
            f'<line x1="{_MARGIN_LEFT}" y1="{y:.1f}" x2="{_MARGIN_LEFT + pw}" y2="{y:.1f}" '
            f'stroke="#57606a" stroke-dasharray="5 4"><title>{_e(reference_label)}: '
            f"{_e(_tick(reference))}</title></line>"
        )
    for k, (name, vs) in enumerate(series.items()):
        color = _LINE_COLORS[k % len(_LINE_COLORS)]
        runs: list[list[tuple[float, float]]] = [[]]
        for i, v in enumerate(vs):
            if v is None or not math.isfinite(v):
                runs.append([])
                continue
            runs[-1].append((sx(i), sy(v)))
            tip = f"{name} {labels[i] if i < len(labels) else i}: {v:.4g}"
            parts.append(
                f'<circle cx="{sx(i):.1f}" cy="{sy(v):.1f}" r="3" fill="{color}">'
                f"<title>{_e(tip)}</title></circle>"
            )
        for run in runs:
            if len(run) > 1:
                pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
                parts.append(
                    f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"/>'
                )
        ly = _MARGIN_TOP + 14 * k
        lx = _MARGIN_LEFT + pw + 12
        parts.append(
            f'<rect x="{lx}" y="{ly}" width="10" height="10" fill="{color}"/>'
            f'<text x="{lx + 15}" y="{ly + 9}" font-size="11">{_e(name[: _LABEL_CHARS + 6])}</text>'
        )
    parts.append(
        f'<line x1="{_MARGIN_LEFT}" y1="{axis_y:.1f}" x2="{_MARGIN_LEFT + pw}" '
        f'y2="{axis_y:.1f}" stroke="#57606a"/>'
        f'<line x1="{_MARGIN_LEFT}" y1="{_MARGIN_TOP}" x2="{_MARGIN_LEFT}" y2="{axis_y:.1f}" '
        'stroke="#57606a"/></svg>'
    )
    return "".join(parts)


def render_monitor_html(
    *,
    title: str,
    context: Mapping[str, str],
    current: DriftReport,
    prediction: Sequence[FeatureDrift],
    periods: Sequence[str],
    drift_over_time: Sequence[DriftReport | None],
    prediction_over_time: Sequence[float | None],
    metric: str | None,
    metric_over_time: Sequence[float | None],
    metric_training: float | None,
    warnings: Sequence[str] = (),
    top: int = 6,
) -> str:
    """The monitoring page of a model: drift scores and the metric over time (one point per
    period); for a model with a tensor input (a CNN's image, :mod:`loopml.monitor.tensors`),
    its summaries per period and over the whole window; then the histograms of every
    feature, reference against the whole window."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        *(f'<p class="warning">{_e(w)}</p>' for w in warnings),
        _key_values(list(context.items())),
        "<h2>Drift over time</h2>",
    ]
    labels = list(periods)
    if labels:
        share = [None if r is None or r.insufficient else r.share_drifted for r in drift_over_time]
        out.append(
            render_svg_lines(
                labels,
                {"share of features drifting": share, "prediction PSI": list(prediction_over_time)},
                title="share of drifting features, and the PSI of the model's scores",
                y_label="share / PSI",
                reference=current.drift_share,
                reference_label="dataset drift threshold",
            )
        )
        peak: dict[str, float] = {}
        for r in drift_over_time:
            for f in r.features if r is not None else []:
                if f.psi is not None:
                    peak[f.feature] = max(peak.get(f.feature, 0.0), f.psi)
        names = sorted(peak, key=lambda k: -peak[k])[:top]
        per_feature: dict[str, list[float | None]] = {}
        for name in names:
            line: list[float | None] = []
            for r in drift_over_time:
                fd = None if r is None else next((f for f in r.features if f.feature == name), None)
                line.append(None if fd is None else fd.psi)
            per_feature[name] = line
        if per_feature:
            out.append(
                render_svg_lines(
                    labels,
                    per_feature,
                    title=f"PSI per period of the {len(names)} features that moved most",
                    y_label="PSI",
                    reference=current.psi_threshold,
                    reference_label="PSI threshold",
                )
            )
    else:
        out.append("<p>No period of the window holds predictions.</p>")
    out.append("<h2>Performance over time</h2>")
    if metric is not None and any(v is not None for v in metric_over_time):
        out.append(
            render_svg_lines(
                labels,
                {metric: list(metric_over_time)},
                title=f"{metric} on labelled predictions (dashed: at training)",
                y_label=metric,
                reference=metric_training,
                reference_label="at training (holdout)",
            )
        )
    else:
        out.append("<p>No labelled predictions in this window yet (send feedback).</p>")
    out += _tensors_over_time(current, labels, drift_over_time)
    out.append("<h2>Features: reference against the whole window</h2>")
    out.append(_feature_table([*current.features, *prediction]))
    for i, f in enumerate(_sorted([*current.features, *prediction])):
        caption = f"{f.feature}: PSI {_num(f.psi)}, {f.statistic_name} {_num(f.statistic)}"
        out.append(
            f'<figure id="plot-{i}"><figcaption>{_e(caption)}</figcaption>'
            f"{render_svg_histogram(f.histogram, feature=f.feature)}</figure>"
        )
    out.append("</body></html>")
    return "\n".join(out)


__all__ = ["render_html", "render_monitor_html", "render_svg_histogram", "render_svg_lines"]
