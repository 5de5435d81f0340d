"""The prediction log against the workspace's real lake."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from loopml.errors import InvalidInputError, NotFoundError
from loopml.predictions import (
    PredictionLogger,
    find_prediction,
    read_prediction_log,
    write_predictions,
)
from loopml.registry.bundle import Prediction
from loopml.serve.metrics import Metrics
from loopml.workspace import Workspace


def classified(n: int, start: float = 0.0) -> tuple[pd.DataFrame, Prediction, list[str]]:
    x = np.arange(n, dtype=np.float64) + start
    frame = pd.DataFrame(
        {
            "x": x,
            "color": np.array([["red", "blue"][i % 2] for i in range(n)], dtype=object),
            "score": x / 10,  # a feature named like a log column
        }
    )
    proba = np.column_stack([np.full(n, 0.25), np.full(n, 0.75)])
    labels = np.array(["yes"] * n, dtype=object)
    ids = [f"{int(start)}-{i}" for i in range(n)]
    return frame, Prediction(labels, proba, ["no", "yes"]), ids


def test_log_flush_and_read_back(workspace: Workspace) -> None:
    logger = PredictionLogger(workspace.lake, flush_rows=1000, flush_seconds=60)
    try:
        frame, pred, ids = classified(3)
        frame.loc[1, "color"] = np.nan
        logger.log("m", 2, frame, pred, ids, latency_ms=1.5)
        assert read_prediction_log(workspace.lake, "m").empty  # only buffered so far
        assert logger.buffered_rows == 3
        assert logger.flush() == 3
    finally:
        logger.close()
    log = read_prediction_log(workspace.lake, "m")
    assert list(log.columns) == [
        "prediction_id", "timestamp", "model", "version", "latency_ms", "source", "input_file",
        "x", "color", "feature_score", "prediction", "score",
    ]  # fmt: skip
    assert log["source"].tolist() == ["server"] * 3
    assert log["input_file"].isna().all()
    assert log["prediction_id"].tolist() == ids
    assert str(log["timestamp"].dtype) == "datetime64[us, UTC]"
    assert (log["model"] == "m").all()
    assert log["version"].tolist() == [2, 2, 2]
    assert log["latency_ms"].tolist() == [1.5, 1.5, 1.5]
    assert log["x"].tolist() == [0.0, 1.0, 2.0]
    assert log["color"].tolist()[0] == "red"
    assert pd.isna(log["color"].iloc[1])
    assert log["feature_score"].tolist() == [0.0, 0.1, 0.2]
    assert log["prediction"].tolist() == ["yes"] * 3
    assert log["score"].tolist() == [0.75] * 3
    age = datetime.now(UTC) - log["timestamp"].iloc[0].to_pydatetime()
    assert timedelta(0) <= age < timedelta(minutes=1)
    files = workspace.lake.list("predictions/m/")
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert len(files) == 1
    assert f"date={today}/part-" in files[0]


def test_regression_rows_and_versions_with_other_features(workspace: Workspace) -> None:
    logger = PredictionLogger(workspace.lake, flush_seconds=60)
    logger.log(
        "r",
        1,
        pd.DataFrame({"x": [1.0, 2.0]}),
        Prediction(np.array([3.5, 4.25]), None, None),
        ["a", "b"],
        2.0,
    )
    logger.log(
        "r",
        2,
        pd.DataFrame({"x": [5.0], "c": np.array(["k"], dtype=object)}),
        Prediction(np.array([1e-3]), None, None),
        ["c"],
        2.0,
    )
    logger.close()
    log = read_prediction_log(workspace.lake, "r")
    assert log["prediction"].tolist() == ["3.5", "4.25", "0.001"]
    assert log["score"].tolist() == [3.5, 4.25, 0.001]
    assert log["c"].isna().tolist() == [True, True, False]
    only = read_prediction_log(workspace.lake, "r", version=2)
    assert only["prediction_id"].tolist() == ["c"]


def test_background_flush_by_rows_and_by_time(workspace: Workspace) -> None:
    by_rows = PredictionLogger(workspace.lake, flush_rows=5, flush_seconds=60)
    by_time = PredictionLogger(workspace.lake, flush_rows=1000, flush_seconds=0.05)
    try:
        frame, pred, ids = classified(5)
        by_rows.log("rows", 1, frame, pred, ids, 1.0)
        by_time.log("time", 1, *classified(1)[:3], latency_ms=1.0)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if (
                len(read_prediction_log(workspace.lake, "rows")) == 5
                and len(read_prediction_log(workspace.lake, "time")) == 1
            ):
                break
            time.sleep(0.02)
        assert len(read_prediction_log(workspace.lake, "rows")) == 5
        assert len(read_prediction_log(workspace.lake, "time")) == 1
    finally:
        by_rows.close()
        by_time.close()


def test_buffer_is_bounded_dropping_oldest(workspace: Workspace) -> None:
    metrics = Metrics()
    logger = PredictionLogger(
        workspace.lake, flush_rows=10, flush_seconds=60, max_buffer_rows=10, metrics=metrics
    )
    for k in range(4):
        frame, pred, ids = classified(3, start=10 * k)
        logger.log("b", 1, frame, pred, ids, 1.0)
    assert metrics.log_dropped.value() == 3
    assert logger.buffered_rows == 9
    logger.close()
    log = read_prediction_log(workspace.lake, "b")
    assert len(log) == 9
    assert not log["prediction_id"].str.startswith("0-").any()
    assert metrics.log_written.value() == 9
    logger.log("b", 1, *classified(2)[:3], latency_ms=1.0)  # after close: counted, not raised
    assert metrics.log_dropped.value() == 5


def test_failed_write_is_counted_and_retried(workspace: Workspace) -> None:
    metrics = Metrics()
    logger = PredictionLogger(workspace.lake, flush_seconds=60, metrics=metrics)
    blocker = Path(workspace.root) / "lake" / "predictions" / "f"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("a file where the model's folder should be")
    try:
        logger.log("f", 1, *classified(4)[:3], latency_ms=1.0)
        assert logger.flush() == 0
        assert metrics.log_errors.value() == 1
        assert logger.buffered_rows == 4  # kept for the next flush
        blocker.unlink()
        assert logger.flush() == 4
        assert metrics.log_written.value() == 4
        assert logger.buffered_rows == 0
    finally:
        logger.close()
    assert len(read_prediction_log(workspace.lake, "f")) == 4


def test_read_window_and_errors(workspace: Workspace) -> None:
    assert read_prediction_log(workspace.lake, "nothing").empty
    assert list(read_prediction_log(workspace.lake, "nothing").columns)[:2] == [
        "prediction_id",
        "timestamp",
    ]
    logger = PredictionLogger(workspace.lake, flush_seconds=60)
    logger.log("w", 1, *classified(2)[:3], latency_ms=1.0)
    logger.close()
    now = datetime.now(UTC)
    assert len(read_prediction_log(workspace.lake, "w", since=now - timedelta(hours=1))) == 2
    assert read_prediction_log(workspace.lake, "w", since=now + timedelta(seconds=5)).empty
    assert read_prediction_log(workspace.lake, "w", until=now - timedelta(hours=1)).empty
    naive = datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=1)
    assert len(read_prediction_log(workspace.lake, "w", since=naive)) == 2
    assert read_prediction_log(
        workspace.lake, "w", since=now - timedelta(days=3), until=now - timedelta(days=2)
    ).empty
    with pytest.raises(InvalidInputError, match="before since"):
        read_prediction_log(workspace.lake, "w", since=now, until=now - timedelta(1))
    with pytest.raises(InvalidInputError):
        read_prediction_log(workspace.lake, "../etc")


def test_invalid_settings(workspace: Workspace) -> None:
    with pytest.raises(InvalidInputError, match="flush_rows"):
        PredictionLogger(workspace.lake, flush_rows=0)


# -- batch predictions, old parts, finding by prefix ----------------------------------------


def test_batch_predictions_are_written_at_once_and_marked(workspace: Workspace) -> None:
    frame, pred, _ = classified(3)
    ids = [f"{i:032x}" for i in range(3)]
    paths = write_predictions(
        workspace.lake, "m", 4, frame, pred, ids, latency_ms=12.5, input_file="/data/in.csv"
    )
    assert len(paths) == 1 and paths[0].startswith("predictions/m/date=")
    logger = PredictionLogger(workspace.lake, flush_seconds=60)
    logger.log("m", 4, *classified(2, start=5)[:3], latency_ms=1.0)
    logger.close()
    log = read_prediction_log(workspace.lake, "m")
    assert log["source"].tolist() == ["batch"] * 3 + ["server"] * 2
    assert log["input_file"].tolist()[:3] == ["/data/in.csv"] * 3
    assert log["input_file"].iloc[3:].isna().all()
    assert log["prediction_id"].tolist()[:3] == ids
    assert log["latency_ms"].tolist()[:3] == [12.5] * 3
    batch = read_prediction_log(workspace.lake, "m", source="batch")
    assert batch["prediction_id"].tolist() == ids
    assert len(read_prediction_log(workspace.lake, "m", source="server")) == 2
    with pytest.raises(InvalidInputError, match="source"):
        read_prediction_log(workspace.lake, "m", source="nope")
    with pytest.raises(InvalidInputError, match="3 predictions for 2 ids"):
        write_predictions(workspace.lake, "m", 4, frame, pred, ids[:2], latency_ms=1.0)


def _old_part(workspace: Workspace, ids: list[str]) -> None:
    """A part as the log wrote it before it had source columns, with a feature 'source'."""
    n = len(ids)
    table = pa.table(
        {
            "prediction_id": pa.array(ids, pa.string()),
            "timestamp": pa.array(
                [datetime.now(UTC) - timedelta(minutes=5)] * n, pa.timestamp("us", tz="UTC")
            ),
            "model": pa.array(["m"] * n),
            "version": pa.array([1] * n, pa.int64()),
            "latency_ms": pa.array([1.0] * n),
            "source": pa.array(["web"] * n),  # a feature, then not a reserved name
            "prediction": pa.array(["yes"] * n),
            "score": pa.array([0.5] * n),
        }
    )
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    workspace.lake.write_table(f"predictions/m/date={day}/part-old.parquet", table)


def test_old_parts_read_as_server_rows(workspace: Workspace) -> None:
    _old_part(workspace, ["a" * 32, "b" * 32])
    frame, pred, _ = classified(1)
    write_predictions(workspace.lake, "m", 1, frame, pred, ["c" * 32], latency_ms=1.0)
    log = read_prediction_log(workspace.lake, "m")
    assert log["source"].tolist() == ["server", "server", "batch"]
    assert log["feature_source"].tolist()[:2] == ["web", "web"]
    row, path = find_prediction(workspace.lake, "a" * 12)
    assert row["source"] == "server" and row["feature_source"] == "web"
    assert row["input_file"] is None
    assert path.endswith("part-old.parquet")


def test_find_prediction_by_unique_prefix(workspace: Workspace) -> None:
    frame, pred, _ = classified(3)
    ids = ["abcd" + "0" * 28, "abcd" + "1" * 28, "abce" + "2" * 28]
    write_predictions(workspace.lake, "m", 1, frame, pred, ids, latency_ms=1.0)
    for ref in (ids[0], ids[1][:12], "ABCE", ids[2][:5].upper()):
        row, _ = find_prediction(workspace.lake, ref)
        assert row["prediction_id"] in ids and row["prediction_id"].startswith(ref.lower())
    with pytest.raises(InvalidInputError, match="ambiguous") as info:
        find_prediction(workspace.lake, "abcd")
    assert ids[0] in str(info.value) and ids[1] in str(info.value)
    assert info.value.code == "ambiguous_id"
    with pytest.raises(NotFoundError, match="no prediction id starts with 'abcf'"):
        find_prediction(workspace.lake, "abcf")
    with pytest.raises(NotFoundError, match="not in the prediction log"):
        find_prediction(workspace.lake, "f" * 32)
    for bad in ("abc", "nope", "abcd%", "a" * 65, ""):
        with pytest.raises(InvalidInputError):
            find_prediction(workspace.lake, bad)
