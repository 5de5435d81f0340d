"""The monitoring page: drift and the metric over time, and every feature's histogram."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from loopml.errors import ConfigError, InvalidInputError
from loopml.monitor.check import monitor_report
from loopml.monitor.report import render_svg_lines
from loopml.workspace import Workspace

from .logparts import cancer, label, labels_of, log_rows, train_cancer

NOW = datetime(2026, 11, 5, 12, tzinfo=UTC)


@pytest.fixture
def three_days(workspace: Workspace) -> Workspace:
    train_cancer(workspace)
    data = cancer()
    days = [data.iloc[:190], data.iloc[190:380], data.iloc[380:]]
    for i, part in enumerate(days):
        at = NOW - timedelta(days=3 - i)
        x = part.drop(columns=["target"])
        ids = log_rows(workspace, "cancer", x * (1.6 if i == 2 else 1.0), at)
        truth = labels_of(part)
        sent = [1 - v for v in truth] if i == 2 else truth  # type: ignore[operator]
        label(workspace, ids, sent, at + timedelta(hours=1))
    return workspace


def test_the_page_plots_drift_and_the_metric_per_day(three_days: Workspace) -> None:
    rep = monitor_report(three_days, "cancer", window="7d", now=NOW)
    assert rep.periods == ["2026-11-02", "2026-11-03", "2026-11-04"]
    assert rep.metric == "roc_auc"
    first, _, last = rep.metric_values
    assert first is not None and first > 0.9 and last is not None and last < 0.2
    shares = rep.drift_share
    assert shares[0] is not None and shares[2] is not None and shares[2] > shares[0]
    html = three_days.lake.read_bytes(rep.url.split("/lake/", 1)[1]).decode()
    assert html.count("<polyline") >= 3  # drift share, per-feature PSI, the metric
    assert html.count("<figure") == 31  # 30 features and the scores, reference vs current
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org", "")
    assert "at training (holdout)" in html


def test_bad_input(three_days: Workspace) -> None:
    with pytest.raises(InvalidInputError, match="holds no predictions"):
        monitor_report(three_days, "cancer", window="2025-01-01..2025-01-02")
    with pytest.raises(ConfigError, match="unknown classification metric"):
        monitor_report(three_days, "cancer", window="7d", now=NOW, metric="auc")
    with pytest.raises(InvalidInputError, match="by must be day or week"):
        monitor_report(three_days, "cancer", by="hour")  # type: ignore[arg-type]


def test_lines_break_where_nothing_was_measured() -> None:
    svg = render_svg_lines(
        ["a", "b", "c", "d"], {"m": [0.5, None, 0.7, 0.8]}, title="t<", y_label="v"
    )
    assert svg.count("<circle") == 3
    assert len(re.findall(r"<polyline", svg)) == 1  # only c-d is a line; a stands alone
    assert "t&lt;" in svg
