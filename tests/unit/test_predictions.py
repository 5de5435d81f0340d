"""The prediction log against the workspace's real lake."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from loopml import spool
from loopml.errors import ConflictError, InvalidInputError, NotFoundError
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


def new_logger(workspace: Workspace, **kwargs: Any) -> PredictionLogger:
    kwargs.setdefault("seal_seconds", 60)
    return PredictionLogger(workspace.lake, Path(workspace.root) / "spool" / "t", **kwargs)


def test_log_flush_and_read_back(workspace: Workspace) -> None:
    logger = new_logger(workspace)
    try:
        frame, pred, ids = classified(3)
        frame.loc[1, "color"] = np.nan
        logger.log("m", 2, frame, pred, ids, latency_ms=1.5)
        assert read_prediction_log(workspace.lake, "m").empty  # only spooled so far
        assert logger.spool_bytes > 0
        assert logger.flush() == 3
        assert logger.spool_bytes == 0
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


def test_columns_from_the_hot_path_are_logged_like_frames(workspace: Workspace) -> None:
    logger = new_logger(workspace)
    frame, pred, ids = classified(2)
    columns = {
        "x": frame["x"].to_numpy(),
        "color": np.array(["red", None], dtype=object),
        "score": frame["score"].to_numpy(),
    }

    async def go() -> None:
        await logger.append("c", 1, columns, pred, ids, 2.0, key="user-1")

    asyncio.run(go())
    logger.close()
    log = read_prediction_log(workspace.lake, "c")
    assert log["prediction_id"].tolist() == ids
    assert log["color"].tolist()[0] == "red" and pd.isna(log["color"].iloc[1])
    assert log["feature_score"].tolist() == [0.0, 0.1]


def test_regression_rows_and_versions_with_other_features(workspace: Workspace) -> None:
    logger = new_logger(workspace)
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


def test_background_seal_and_compaction_by_time(workspace: Workspace) -> None:
    logger = new_logger(workspace, seal_seconds=0.05)
    try:
        logger.log("time", 1, *classified(5)[:3], latency_ms=1.0)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(read_prediction_log(workspace.lake, "time")) < 5:
            time.sleep(0.02)
        assert len(read_prediction_log(workspace.lake, "time")) == 5
    finally:
        logger.close()


def test_group_commit_one_write_per_batch(workspace: Workspace, monkeypatch: Any) -> None:
    """Appends waiting together reach the spool with one write call."""
    writes: list[int] = []
    real = spool.SegmentWriter.write

    def counting(self: spool.SegmentWriter, payloads: Any) -> int:
        n = real(self, payloads)
        writes.append(n)
        return n

    monkeypatch.setattr(spool.SegmentWriter, "write", counting)
    logger = new_logger(workspace, fsync="always")

    async def go() -> None:
        await asyncio.gather(
            *(
                logger.append("g", 1, *classified(1, start=k)[:3], latency_ms=1.0)
                for k in range(200)
            )
        )

    asyncio.run(go())
    assert len(writes) < 200  # appends queued while a write ran shared the next one
    logger.close()
    assert len(read_prediction_log(workspace.lake, "g")) == 200


def test_spool_is_bounded_dropping_new_rows(workspace: Workspace) -> None:
    metrics = Metrics()
    blocker = Path(workspace.root) / "lake" / "predictions" / "b"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("a file where the model's folder should be: the lake is down")
    logger = new_logger(workspace, max_spool_bytes=8000, seal_seconds=0.05, metrics=metrics)
    try:
        start = time.monotonic()
        for k in range(60):
            logger.log("b", 1, *classified(3, start=10 * k)[:3], latency_ms=1.0)
        assert time.monotonic() - start < 10  # never blocked on the lake
        assert metrics.log_dropped.value() > 0
        assert logger.spool_bytes <= 8000
        assert "loopml_prediction_log_spool_bytes " in metrics.render()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and metrics.log_errors.value() == 0:
            time.sleep(0.02)
        assert metrics.log_errors.value() > 0  # compaction failed and was counted
        blocker.unlink()  # the lake is back: compaction resumes
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and logger.spool_bytes > 0:
            time.sleep(0.05)
    finally:
        logger.close()
    kept = read_prediction_log(workspace.lake, "b")
    assert len(kept) + metrics.log_dropped.value() == 180
    assert kept["prediction_id"].is_unique
    assert metrics.log_written.value() == len(kept)
    logger.log("b", 1, *classified(2)[:3], latency_ms=1.0)  # after close: counted, not raised
    assert len(kept) + metrics.log_dropped.value() == 182


def test_lake_down_keeps_rows_in_the_spool_across_restarts(workspace: Workspace) -> None:
    metrics = Metrics()
    logger = new_logger(workspace, metrics=metrics)
    blocker = Path(workspace.root) / "lake" / "predictions" / "f"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("a file where the model's folder should be")
    logger.log("f", 1, *classified(4)[:3], latency_ms=1.0)
    with pytest.raises(Exception):  # noqa: B017 - the lake's own error
        logger.flush()
    logger.close()  # nothing dropped: the rows wait in the spool
    assert metrics.log_dropped.value() == 0
    assert spool.sealed_segments(Path(workspace.root) / "spool" / "t")
    blocker.unlink()
    again = new_logger(workspace)  # compacts leftovers at start
    again.close()
    assert len(read_prediction_log(workspace.lake, "f")) == 4


def test_read_window_and_errors(workspace: Workspace) -> None:
    assert read_prediction_log(workspace.lake, "nothing").empty
    assert list(read_prediction_log(workspace.lake, "nothing").columns)[:2] == [
        "prediction_id",
        "timestamp",
    ]
    logger = new_logger(workspace)
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


def test_invalid_settings_and_a_spool_in_use(workspace: Workspace) -> None:
    with pytest.raises(InvalidInputError, match="log_fsync"):
        new_logger(workspace, fsync="sometimes")
    with pytest.raises(InvalidInputError, match="max_spool_bytes"):
        new_logger(workspace, max_spool_bytes=0)
    logger = new_logger(workspace)
    try:
        with pytest.raises(ConflictError, match="in use"):
            new_logger(workspace)
        frame, pred, ids = classified(3)
        with pytest.raises(InvalidInputError, match="3 predictions for 2 ids"):
            logger.log("m", 1, frame, pred, ids[:2], 1.0)
    finally:
        logger.close()


# -- batch predictions, old parts, finding by prefix ----------------------------------------


def test_batch_predictions_are_written_at_once_and_marked(workspace: Workspace) -> None:
    frame, pred, _ = classified(3)
    ids = [f"{i:032x}" for i in range(3)]
    paths = write_predictions(
        workspace.lake, "m", 4, frame, pred, ids, latency_ms=12.5, input_file="/data/in.csv"
    )
    assert len(paths) == 1 and paths[0].startswith("predictions/m/date=")
    logger = new_logger(workspace)
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
