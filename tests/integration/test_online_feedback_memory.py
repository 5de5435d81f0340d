"""The ``feedback:<model>`` stream's memory is bounded however long the stream: it keeps the
log parts it read lately (at most ``cache_rows`` rows), not every logged prediction's
inputs nor every other model's ids; and it still joins each label to its inputs, passes
over other models' labels and waits for a prediction not logged yet."""

from __future__ import annotations

import gc
import tracemalloc
import uuid
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from loopml.stores.records import Feedback
from loopml.utils import utcnow
from loopml.workspace import Workspace


class _Scored:
    def __init__(self, n: int) -> None:
        self.labels = np.zeros(n, dtype=int)
        self.scores = np.full(n, 0.5)


def _log(ws: Workspace, model: str, parts: int, rows: int, seed: int) -> list[tuple[str, dict]]:
    """``parts`` log parts of ``rows`` predictions of ``model``; (id, inputs) of each."""
    from loopml.predictions import write_predictions

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(parts):
        frame = pd.DataFrame(rng.normal(size=(rows, 8)), columns=[f"f{k}" for k in range(8)])
        ids = [uuid.uuid4().hex for _ in range(rows)]
        write_predictions(ws.lake, model, 1, frame, _Scored(rows), ids, latency_ms=1.0)
        out += list(zip(ids, frame.to_dict("records"), strict=True))
    return out


def _expected(ws: Workspace, inputs: dict[str, dict]) -> list[dict[str, Any]]:
    """The events of the stream: the labels of ``inputs``' ids in the order the store
    numbered them, each with its logged inputs."""
    rows = ws.metadata.list_feedback_after(0, 100_000)
    return [
        {**inputs[fb.prediction_id], "y": fb.label} for _, fb in rows if fb.prediction_id in inputs
    ]


def test_the_feedback_stream_keeps_bounded_memory_over_a_long_stream(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loopml.train.online.events import FeedbackEvents

    monkeypatch.setattr(FeedbackEvents, "settle", 0.0)
    monkeypatch.setattr(FeedbackEvents, "cache_rows", 2_000, raising=False)
    mine = _log(workspace, "toy", 24, 500, 1)  # 12,000 predictions
    other = _log(workspace, "other", 4, 500, 2)
    at = utcnow() - timedelta(seconds=5)
    feedback = [Feedback(pid, i % 3, None, at, "t") for i, (pid, _) in enumerate(mine)]
    for k in range(0, len(other), 100):  # other models' labels among them: passed over
        feedback.insert(k * 5, Feedback(other[k][0], 1, None, at, "t"))
    workspace.metadata.add_feedback(feedback)
    expected = _expected(workspace, dict(mine))
    stream = FeedbackEvents(workspace, "toy", "y")
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        matched = 0  # events checked against the expected ones as they come, then dropped
        while batch := stream.read_events(500, 0.0):
            got = [e.record for e in batch]
            assert got == expected[matched : matched + len(got)]  # each label with its inputs
            matched += len(got)
        del batch, got
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before  # held by the stream now
    finally:
        tracemalloc.stop()
    assert matched == len(expected) == len(mine)
    # every logged prediction's inputs as dicts took ~10 MB here (12,000 x ~800 bytes)
    assert kept < 1_500_000, f"the feedback stream holds {kept:,} bytes after the stream"
    assert stream._cached_rows <= 2_000


def test_a_label_waits_for_its_prediction_and_new_parts_are_searched(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loopml.train.online.events import FeedbackEvents

    monkeypatch.setattr(FeedbackEvents, "settle", 0.0)
    logged = _log(workspace, "toy", 2, 50, 3)
    at = utcnow() - timedelta(seconds=5)
    late = uuid.uuid4().hex
    workspace.metadata.add_feedback(
        [Feedback(late, 0, None, at, "t")]
        + [Feedback(pid, 1, None, at, "t") for pid, _ in logged[:4]]
    )
    stream = FeedbackEvents(workspace, "toy", "y")
    first = stream.read_events(100, 0.0)
    assert stream.read_events(100, 0.0) == []  # waiting for the late prediction, in order
    assert stream._absent == {late}
    from loopml.predictions import write_predictions

    frame = pd.DataFrame([{f"f{k}": float(k) for k in range(8)}])
    write_predictions(workspace.lake, "toy", 1, frame, _Scored(1), [late], latency_ms=1.0)
    got = [e.record for e in first + stream.read_events(100, 0.0)]
    assert got == _expected(workspace, {**dict(logged), late: frame.iloc[0].to_dict()})
    assert len(got) == 5 and stream._absent == set()
