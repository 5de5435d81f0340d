"""The HTML drift report: well-formed, self-contained, escaped, one plot per drifting feature."""

from __future__ import annotations

from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from loopml.monitor.drift import DriftReport, compute_drift
from loopml.monitor.report import render_html, render_svg_histogram

VOID = {"meta", "br", "hr", "img", "input", "link"}
SVG_SELF_CLOSING = {"line", "rect"}


class _Collector(HTMLParser):
    """Records tags and text, and checks that every element that opens also closes."""

    def __init__(self) -> None:
        super().__init__()
        self.starts: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.starts.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.starts.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def tags(self, name: str) -> list[dict[str, str | None]]:
        return [attrs for tag, attrs in self.starts if tag == name]


def _parse(page: str) -> _Collector:
    parser = _Collector()
    parser.feed(page)
    parser.close()
    assert parser.errors == []
    assert parser.stack == []
    return parser


@pytest.fixture(scope="module")
def report() -> DriftReport:
    rng = np.random.default_rng(0)
    ref = pd.DataFrame(
        {
            "<b>": rng.normal(size=1000),
            "steady": rng.normal(size=1000),
            "city": rng.choice(["Paris", "Oslo", "Lima"], size=1000),
            "plan": rng.choice(["free", "pro"], size=1000),
        }
    )
    cur = pd.DataFrame(
        {
            "<b>": rng.normal(1.5, size=400),
            "steady": rng.normal(size=400),
            "city": rng.choice(
                ["Paris", "Oslo", "Lima", "<script>"], p=[0.1, 0.1, 0.2, 0.6], size=400
            ),
            "plan": rng.choice(["free", "pro"], size=400),
        }
    )
    features = {"<b>": "numeric", "steady": "numeric", "city": "categorical", "plan": "categorical"}
    return compute_drift(ref, cur, features)


def test_page_parses_and_has_one_svg_per_drifting_feature(report: DriftReport) -> None:
    assert sorted(report.drifted_features) == ["<b>", "city"]
    page = render_html(report, title="Drift: fraud@3", context={"model": "fraud@3"})
    parsed = _parse(page)
    assert len(parsed.tags("svg")) == 2
    assert page.startswith("<!DOCTYPE html>")
    text = "".join(parsed.text)
    assert "Dataset drift detected" in text
    assert "fraud@3" in text
    assert "model" in text
    # both drifting rows highlighted, the table has a row per feature
    rows = parsed.tags("tr")
    assert sum(1 for r in rows if r.get("class") == "drift") == 2
    assert len(parsed.tags("tbody")) == 1
    # drifting feature names link to their plots
    links = [a["href"] for a in parsed.tags("a")]
    ids = [f["id"] for f in parsed.tags("figure")]
    assert links == ["#plot-0", "#plot-1"]
    assert ids == ["plot-0", "plot-1"]


def test_text_is_escaped(report: DriftReport) -> None:
    page = render_html(report, title="<i>title</i>", context={"<k>": "<script>alert(1)</script>"})
    parsed = _parse(page)
    assert parsed.tags("b") == []
    assert parsed.tags("i") == []
    assert parsed.tags("script") == []
    text = "".join(parsed.text)
    assert "<b>" in text  # the feature name, shown as text
    assert "<script>alert(1)</script>" in text
    assert "<script>" in text  # the unseen category, listed as text
    assert "&lt;b&gt;" in page


def test_page_is_self_contained(report: DriftReport) -> None:
    page = render_html(report, title="t", context={})
    parsed = _parse(page)
    for tag in ("script", "link", "img", "iframe"):
        assert parsed.tags(tag) == []
    for _, attrs in parsed.starts:
        for name, value in attrs.items():
            if name == "src" or (name == "href" and not (value or "").startswith("#")):
                pytest.fail(f"external reference {name}={value}")


def test_no_drift_page_has_no_plots() -> None:
    rng = np.random.default_rng(1)
    ref = pd.DataFrame({"x": rng.normal(size=500)})
    cur = pd.DataFrame({"x": rng.normal(size=200)})
    report = compute_drift(ref, cur, {"x": "numeric"})
    assert not report.drifted
    parsed = _parse(render_html(report, title="t", context={"window": "last hour"}))
    assert parsed.tags("svg") == []
    text = "".join(parsed.text)
    assert "No dataset drift" in text
    assert "No feature drifted" in text
    assert "last hour" in text


def test_untested_feature_renders_dashes() -> None:
    ref = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    cur = pd.DataFrame({"x": [np.nan]})
    parsed = _parse(render_html(compute_drift(ref, cur, {"x": "numeric"}), title="t", context={}))
    assert "no values in the current data" in "".join(parsed.text)


def test_numeric_svg_overlays_one_bar_per_bin_and_side(report: DriftReport) -> None:
    feature = report.features[0]
    hist = feature.histogram
    svg = render_svg_histogram(hist, feature=feature.feature, width=500, height=260)
    parsed = _parse(svg)
    (root,) = parsed.tags("svg")
    assert root["width"] == "500"
    assert root["height"] == "260"
    bars = [r for r in parsed.tags("rect") if r.get("fill-opacity") == "0.55"]
    assert len(bars) == 2 * len(hist.reference)
    # overlaid: the reference bar and the current bar of a bin start at the same x
    n = len(hist.reference)
    assert [b["x"] for b in bars[:n]] == [b["x"] for b in bars[n:]]
    text = "".join(parsed.text)
    assert "share of rows" in text
    assert "<b> (value)" in text
    assert "reference" in text
    assert "current" in text
    # taller share, taller bar
    heights = [float(b["height"] or 0) for b in bars[:n]]
    assert heights.index(max(heights)) == int(np.argmax(hist.reference))


def test_categorical_svg_groups_bars_side_by_side(report: DriftReport) -> None:
    city = next(f for f in report.features if f.feature == "city")
    parsed = _parse(render_svg_histogram(city.histogram, feature="city"))
    bars = [r for r in parsed.tags("rect") if r.get("fill-opacity") == "0.55"]
    k = len(city.histogram.categories or [])
    assert k == 4  # three seen categories and the unseen bucket
    assert len(bars) == 2 * k
    xs = [float(b["x"] or 0) for b in bars]
    assert all(xs[2 * i] < xs[2 * i + 1] for i in range(k))  # side by side
    text = "".join(parsed.text)
    assert "city (category)" in text
    assert "(unseen)" in text
    assert "Paris" in text


def test_summary_and_warnings_are_on_the_page_escaped(report: DriftReport) -> None:
    page = render_html(
        report,
        title="t",
        context={},
        summary="drift: 2 of 4 features (<b>, city); predictions: no",
        warnings=["scores compared with <training rows>"],
    )
    parsed = _parse(page)
    text = "".join(parsed.text)
    assert "drift: 2 of 4 features (<b>, city); predictions: no" in text
    assert "scores compared with <training rows>" in text
    assert "<training rows>" not in page  # escaped


def test_a_window_too_small_says_insufficient_data_and_the_minimum() -> None:
    rng = np.random.default_rng(2)
    ref = pd.DataFrame({"x": rng.normal(size=500)})
    cur = pd.DataFrame({"x": rng.normal(4, size=10)})
    parsed = _parse(render_html(compute_drift(ref, cur, {"x": "numeric"}), title="t", context={}))
    text = " ".join(" ".join(parsed.text).split())
    assert "Insufficient data" in text
    assert "at least 30 rows" in text
    assert "Dataset drift detected" not in text and "No dataset drift" not in text
