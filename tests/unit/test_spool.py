"""The prediction log spool: framing, torn tails, exactly-once compaction."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loopml import spool
from loopml.predictions import (
    PredictionLogger,
    compact_segment,
    compact_spool,
    read_prediction_log,
    spooled_ids,
)
from loopml.registry.bundle import Prediction
from loopml.workspace import Workspace


def rows(n: int, start: int = 0) -> tuple[pd.DataFrame, Prediction, list[str]]:
    frame = pd.DataFrame({"x": np.arange(start, start + n, dtype=np.float64)})
    proba = np.column_stack([np.full(n, 0.4), np.full(n, 0.6)])
    ids = [f"{start + i:032x}" for i in range(n)]
    return frame, Prediction(np.array(["y"] * n, dtype=object), proba, ["n", "y"]), ids


def test_torn_tail_is_ignored(tmp_path: Path) -> None:
    writer = spool.SegmentWriter(tmp_path, segment_bytes=1 << 20)
    writer.write([b"one", b"two"])
    sealed = writer.seal()
    assert sealed is not None
    whole = sealed.read_bytes()
    data = spool.read_segment(sealed)
    assert data.records == [b"one", b"two"] and not data.torn
    for cut in range(len(whole) - 1, len(whole) - len(spool.frame(b"two")), -1):
        sealed.write_bytes(whole[:cut])  # a crash in the middle of the second write
        data = spool.read_segment(sealed)
        assert data.records == [b"one"] and data.torn
    corrupt = bytearray(whole)
    corrupt[-1] ^= 0xFF  # a flipped bit in the last payload fails its checksum
    sealed.write_bytes(bytes(corrupt))
    assert spool.read_segment(sealed).records == [b"one"]


def test_rotation_by_size(tmp_path: Path) -> None:
    writer = spool.SegmentWriter(tmp_path, segment_bytes=100)
    for _ in range(5):
        writer.write([b"x" * 60])
    writer.seal()
    segments = spool.sealed_segments(tmp_path)
    assert len(segments) == 5
    assert [r for s in segments for r in spool.read_segment(s).records] == [b"x" * 60] * 5


def test_compaction_is_exactly_once_across_a_crash(workspace: Workspace) -> None:
    folder = Path(workspace.root) / "spool" / "w"
    logger = PredictionLogger(workspace.lake, folder, seal_seconds=60)
    logger.log("m", 1, *rows(3), latency_ms=1.0)
    logger.log("m", 1, *rows(2, start=3), latency_ms=1.0)
    # stop the logger without compacting: seal, then kill its threads' work by hand
    logger._stop.set()
    with logger._cond:
        logger._cond.notify()
    logger._write_thread.join(5)
    logger._lock_file.release()
    (segment,) = spool.sealed_segments(folder)
    assert spooled_ids(Path(workspace.root) / "spool", {f"{i:032x}" for i in (0, 4, 9)}) == {
        f"{0:032x}",
        f"{4:032x}",
    }
    copy = segment.read_bytes()
    assert compact_segment(workspace.lake, segment) == 5
    # a crash after the parts were written but before the segment was removed: rewriting
    # it lands on the same part names
    segment.write_bytes(copy)
    assert compact_spool(workspace.lake, folder) == 5
    log = read_prediction_log(workspace.lake, "m")
    assert sorted(log["prediction_id"]) == [f"{i:032x}" for i in range(5)]
    # a crash after the marker: the segment is only removed
    segment.write_bytes(copy)
    segment.with_suffix(spool.DONE).touch()
    assert compact_spool(workspace.lake, folder) == 0
    assert not spool.all_segments(folder)
    assert len(read_prediction_log(workspace.lake, "m")) == 5


def test_open_segment_with_torn_tail_is_recovered_at_start(workspace: Workspace) -> None:
    folder = Path(workspace.root) / "spool" / "w"
    logger = PredictionLogger(workspace.lake, folder, seal_seconds=60, fsync="always")
    logger.log("t", 1, *rows(4), latency_ms=1.0)
    logger._stop.set()
    logger._lock_file.release()
    (open_seg,) = [p for p in folder.iterdir() if p.suffix == spool.OPEN]
    with open(open_seg, "ab") as fh:  # half a record written when the process died
        fh.write(spool.frame(b"never finished")[:9])
    os.sync()
    again = PredictionLogger(workspace.lake, folder, seal_seconds=60)
    again.close()
    assert sorted(read_prediction_log(workspace.lake, "t")["prediction_id"]) == rows(4)[2]


def test_fsync_policies(workspace: Workspace, monkeypatch: Any) -> None:
    calls: list[int] = []
    real = spool.SegmentWriter.fsync

    def counting(self: spool.SegmentWriter) -> None:
        calls.append(self.size)
        real(self)

    monkeypatch.setattr(spool.SegmentWriter, "fsync", counting)
    real_handle = spool.SegmentWriter.fsync_handle

    def counting_handle(self: spool.SegmentWriter) -> int:  # the interval policy's fsync
        fd = real_handle(self)
        if fd >= 0:
            calls.append(self.size)
        return fd

    monkeypatch.setattr(spool.SegmentWriter, "fsync_handle", counting_handle)
    root = Path(workspace.root) / "spool"
    for policy in ("always", "never"):
        calls.clear()
        logger = PredictionLogger(workspace.lake, root / policy, fsync=policy, seal_seconds=60)
        try:
            logger.log("p", 1, *rows(2), latency_ms=1.0)
            # always: fsynced before log() returned; never: left to the OS
            assert (len(calls) >= 1) == (policy == "always"), policy
        finally:
            logger.close()
    calls.clear()
    logger = PredictionLogger(
        workspace.lake, root / "interval", fsync="interval", fsync_ms=20, seal_seconds=60
    )
    try:
        logger.log("p", 1, *rows(2), latency_ms=1.0)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not calls:
            time.sleep(0.01)
        assert calls  # the writer thread fsynced within the interval
    finally:
        logger.close()


def test_a_spool_no_worker_holds_is_adopted(workspace: Workspace) -> None:
    root = Path(workspace.root) / "spool"
    gone = PredictionLogger(workspace.lake, root / "worker-1", seal_seconds=60)
    gone.log("o", 1, *rows(3), latency_ms=1.0)
    gone._stop.set()  # worker 1 of an earlier --workers 2 run died
    gone._lock_file.release()
    live = PredictionLogger(workspace.lake, root / "worker-2", seal_seconds=60)  # holds its own
    live.log("o", 1, *rows(2, start=10), latency_ms=1.0)
    logger = PredictionLogger(workspace.lake, root / "worker-0", seal_seconds=0.05)
    logger.adopt_after = 0.0
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(read_prediction_log(workspace.lake, "o")) < 3:
            time.sleep(0.02)
        assert sorted(read_prediction_log(workspace.lake, "o")["prediction_id"]) == rows(3)[2]
        assert spool.all_segments(root / "worker-2")  # a live worker's spool is left alone
    finally:
        logger.close()
        live.close()
    assert len(read_prediction_log(workspace.lake, "o")) == 5
