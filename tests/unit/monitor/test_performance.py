"""Performance from delayed labels: feedback joined to the prediction log by id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sklearn.metrics import roc_auc_score

from loopml.errors import ConfigError, InvalidInputError
from loopml.monitor.performance import performance
from loopml.workspace import Workspace

from .logparts import cancer, label, labels_of, log_rows, train_cancer

DAY1 = datetime(2026, 11, 2, 10, tzinfo=UTC)
DAY2 = datetime(2026, 11, 3, 10, tzinfo=UTC)


@pytest.fixture
def logged(workspace: Workspace) -> tuple[Workspace, list[str], list[str]]:
    train_cancer(workspace)
    data = cancer()
    first, second = data.iloc[:300], data.iloc[300:]
    ids1 = log_rows(workspace, "cancer", first.drop(columns=["target"]), DAY1)
    ids2 = log_rows(workspace, "cancer", second.drop(columns=["target"]), DAY2)
    # day 1: 80% labelled, an hour later, truthfully; day 2: every label flipped, 2 h later
    n1 = 240
    label(workspace, ids1[:n1], labels_of(first)[:n1], DAY1 + timedelta(hours=1))
    flipped = [1 - v for v in labels_of(second)]  # type: ignore[operator]
    label(workspace, ids2, flipped, DAY2 + timedelta(hours=2))
    return workspace, ids1, ids2


def test_metric_per_day_with_coverage_delay_and_training_value(
    logged: tuple[Workspace, list[str], list[str]],
) -> None:
    ws, _, _ = logged
    report = performance(ws, "cancer", by="day", window="2026-11-01..2026-11-05")
    assert report.metric == "roc_auc" and report.higher_is_better
    holdout = ws.metadata.get_model_version("cancer", 1).metrics["holdout"]["roc_auc"]
    assert report.training == pytest.approx(holdout)
    day1, day2 = report.rows
    assert (day1.n_predictions, day1.n_labelled) == (300, 240)
    assert day1.coverage == pytest.approx(0.8)
    assert day1.delay_p50_s == pytest.approx(3600) and day1.delay_p90_s == pytest.approx(3600)
    assert day1.value is not None and day1.value > 0.95
    assert day2.value is not None and day2.value < 0.05  # flipped labels
    assert day2.delay_p50_s == pytest.approx(7200)
    assert day2.delta == pytest.approx(day2.value - holdout)
    assert day1.start == datetime(2026, 11, 2, tzinfo=UTC)
    assert day1.end == datetime(2026, 11, 3, tzinfo=UTC)
    overall = report.overall
    assert overall.n_predictions == 569 and overall.n_labelled == 240 + 269
    assert report.degraded_by is not None and report.degraded_by > 0.3
    doc = report.to_dict()
    assert doc["rows"][0]["start"] == "2026-11-02T00:00:00+00:00"


def test_the_value_is_the_metric_of_the_joined_rows(
    logged: tuple[Workspace, list[str], list[str]],
) -> None:
    ws, _, _ = logged
    from loopml.predictions import read_prediction_log

    log = read_prediction_log(ws.lake, "cancer", until=DAY1 + timedelta(hours=1))
    truth = cancer()["target"].to_numpy()[:240]
    want = roc_auc_score(truth, log["score"].to_numpy()[:240])
    report = performance(ws, "cancer", window="2026-11-02..2026-11-03")
    assert report.overall.value == pytest.approx(want)
    assert "accuracy" in report.overall.metrics and "log_loss" in report.overall.metrics


def test_other_metric_version_and_last_n(logged: tuple[Workspace, list[str], list[str]]) -> None:
    ws, _, _ = logged
    report = performance(ws, "cancer@1", window="last 269", metric="log_loss")
    assert report.version == 1 and not report.higher_is_better
    assert report.overall.n_predictions == 269 and report.overall.n_labelled == 269
    assert report.overall.value is not None and report.overall.value > 1.0


def test_bad_input_is_a_clear_error(logged: tuple[Workspace, list[str], list[str]]) -> None:
    ws, _, _ = logged
    with pytest.raises(ConfigError, match="unknown classification metric 'auc'") as exc:
        performance(ws, "cancer", metric="auc")
    assert "roc_auc" in (exc.value.hint or "")
    with pytest.raises(InvalidInputError, match="holds no"):
        performance(ws, "cancer", window="2025-01-01..2025-02-01")
    with pytest.raises(InvalidInputError, match="dataset version"):
        performance(ws, "cancer", window="cancer@1")
    with pytest.raises(InvalidInputError, match="by must be"):
        performance(ws, "cancer", by="month")  # type: ignore[arg-type]


def test_labels_that_are_no_class_are_left_out_with_a_warning(workspace: Workspace) -> None:
    train_cancer(workspace)
    data = cancer().iloc[:50]
    ids = log_rows(workspace, "cancer", data.drop(columns=["target"]), DAY1)
    label(workspace, ids[:40], labels_of(data)[:40], DAY1 + timedelta(minutes=5))
    label(workspace, ids[40:], ["maybe"] * 10, DAY1 + timedelta(minutes=5))
    report = performance(workspace, "cancer")
    assert report.overall.n_labelled == 40
    assert any("10 labels are not classes of the model (maybe)" in w for w in report.warnings)


def test_too_few_labels_is_no_value(workspace: Workspace) -> None:
    train_cancer(workspace)
    data = cancer().iloc[:50]
    ids = log_rows(workspace, "cancer", data.drop(columns=["target"]), DAY1)
    report = performance(workspace, "cancer")
    assert report.overall.value is None and report.overall.n_labelled == 0
    assert any("no prediction" in w for w in report.warnings)
    label(workspace, ids[:5], labels_of(data)[:5], DAY1)
    row = performance(workspace, "cancer").overall
    assert row.value is None and row.note is not None and "at least 10" in row.note
