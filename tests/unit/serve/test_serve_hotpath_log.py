"""The hot path after the per-call log: the compiled records reader, the batcher giving ids
and spooling each model call before answering, the log's per-request latencies, the
garbage-collector policy, and the ``loopml serve`` options that reach the server."""

from __future__ import annotations

import asyncio
import gc
import math
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from loopml.errors import InvalidInputError
from loopml.predictions import PredictionLogger, read_prediction_log
from loopml.registry.bundle import Prediction
from loopml.registry.limits import FLOAT32_MAX
from loopml.registry.signature import BlockColumns, Columns, FeatureField, Signature
from loopml.serve import gcpolicy
from loopml.serve.batching import MicroBatcher
from loopml.serve.gcpolicy import GcPolicy
from loopml.serve.ids import new_prediction_ids
from loopml.serve.records import RowBlock, compile_reader
from loopml.workspace import Workspace

NAMES = ("a", "b", "c")


def numeric_signature(**extra: Any) -> Signature:
    fields = [FeatureField(n, "numeric", "float64", min=-10.0, max=10.0) for n in NAMES]
    return Signature(fields, "y", "classification", [0, 1], extra=dict(extra))


# -- the records reader ---------------------------------------------------------------------


def test_reader_gives_the_general_readers_numbers_bit_for_bit() -> None:
    sig = numeric_signature()
    reader = compile_reader(sig)
    assert reader is not None
    rng = np.random.default_rng(0)
    records = [
        {"a": float(x), "b": int(k), "c": float(y)}
        for x, k, y in zip(
            rng.normal(size=50), rng.integers(-5, 5, 50), rng.random(50), strict=True
        )
    ]
    for rows in (records[:1], records):
        got = reader.read(rows)
        assert isinstance(got, RowBlock)
        want = sig.check_records_columns(rows)
        assert isinstance(want.columns, BlockColumns)
        assert got.names == want.columns.names
        assert got.block.dtype == np.float64
        assert got.block.tobytes() == want.columns.block.tobytes()
        assert got.columns().block.tobytes() == want.columns.block.tobytes()


@pytest.mark.parametrize(
    "rows",
    [
        [],
        [{"a": 1.0, "b": 2.0}],  # missing
        [{"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}],  # extra (ignored by the general reader)
        [{"a": 1.0, "b": 2.0, "d": 3.0}],  # as many keys, one misspelt
        [{"a": 1.0, "b": 2.0, "c": 3.0}, {"a": 1.0, "x": 2.0, "c": 3.0}],  # in a later row
        [{"a": True, "b": 2.0, "c": 3.0}],  # bool is not a number here
        [{"a": None, "b": 2.0, "c": 3.0}],
        [{"a": "1", "b": 2.0, "c": 3.0}],
        [{"a": math.nan, "b": 2.0, "c": 3.0}],  # missing (Python API records)
        [{"a": 1e39, "b": 2.0, "c": 3.0}],  # beyond float32
        [{"a": -1e39, "b": 2.0, "c": 3.0}],
        [{"a": math.inf, "b": 2.0, "c": 3.0}],
        [{"a": 10**400, "b": 2.0, "c": 3.0}],  # beyond float64
        [{"a": 1.0, "b": 2.0, "c": 3.0}, [1.0, 2.0, 3.0]],  # a row that is no object
    ],
)
def test_reader_leaves_everything_but_the_plain_case_to_the_general_reader(
    rows: list[Any],
) -> None:
    reader = compile_reader(numeric_signature())
    assert reader is not None
    assert reader.read(rows) is None


def test_reader_is_only_built_for_numeric_signatures_with_a_known_policy() -> None:
    assert compile_reader(numeric_signature(unknown="flag")) is not None
    assert compile_reader(numeric_signature(unknown="bogus")) is None
    mixed = Signature(
        [
            FeatureField("a", "numeric", "float64"),
            FeatureField("k", "categorical", "object", categories=["x", "y"]),
        ],
        "y",
        "classification",
        [0, 1],
    )
    assert compile_reader(mixed) is None


def test_float32_bound_itself_is_accepted_as_the_general_reader_does() -> None:
    sig = numeric_signature()
    reader = compile_reader(sig)
    assert reader is not None
    rows = [{"a": FLOAT32_MAX, "b": -FLOAT32_MAX, "c": 0}]
    got = reader.read(rows)
    assert got is not None
    assert got.block.tobytes() == sig.check_records_columns(rows).columns.block.tobytes()


# -- the batcher: ids and the log of each call ----------------------------------------------


class Model:
    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, columns: Columns) -> Prediction:
        x = np.asarray(columns["a"], dtype=np.float64)
        self.calls.append(len(x))
        proba = np.column_stack([1 / (1 + np.abs(x)), np.abs(x) / (1 + np.abs(x))])
        return Prediction(x * 3.0, proba, [0, 1])


def rows(*values: float) -> RowBlock:
    block = np.array([[v, 0.0, 0.0] for v in values], dtype=np.float64)
    return RowBlock(block, NAMES)


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2, thread_name_prefix="test-predict") as pool:
        yield pool


class Seen:
    """An ``answered`` hook recording each call; its requests must still be waiting."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[float], list[str], list[int]]] = []
        self.waiting: list[bool] = []
        self.futures: dict[float, asyncio.Future[Any]] = {}  # a row's value -> its request

    def __call__(
        self,
        columns: Columns,
        pred: Prediction,
        ids: list[str],
        requests: Sequence[tuple[float, int]],
    ) -> Future[None] | None:
        self.calls.append((list(columns["a"]), list(ids), [r for _, r in requests]))
        mine = [self.futures[v] for v in columns["a"] if v in self.futures]
        self.waiting.append(not any(f.done() for f in mine))
        return None


def test_every_call_is_logged_once_before_its_requests_are_answered(
    executor: ThreadPoolExecutor,
) -> None:
    model = Model()
    seen = Seen()

    async def main() -> list[tuple[Prediction, list[str]]]:
        b = MicroBatcher(model, executor, max_batch=4, ids=new_prediction_ids, answered=seen)
        await b.submit_ids(rows(0.0))  # timed: fast, so later calls batch inline
        seen.calls.clear()
        seen.waiting.clear()
        parts = [rows(float(i)) for i in range(1, 6)] + [rows(6.0, 7.0, 8.0, 9.0, 10.0)]
        futures = [asyncio.ensure_future(b.submit_ids(p, len(p))) for p in parts]
        seen.futures = {
            float(v): f for p, f in zip(parts, futures, strict=True) for v in p.block[:, 0]
        }
        out = await asyncio.gather(*futures)
        assert b.queued_rows == 0
        return out

    answers = asyncio.run(main())
    assert max(model.calls) <= 4
    assert all(seen.waiting)  # logged before any of the call's requests was answered
    logged = [i for _, ids, _ in seen.calls for i in ids]
    answered = [i for _, ids in answers for i in ids]
    assert sorted(logged) == sorted(answered)  # every answered id logged, exactly once
    assert len(set(answered)) == len(answered) == 10
    for (pred, ids), want in zip(answers, [[1], [2], [3], [4], [5], [6, 7, 8, 9, 10]], strict=True):
        assert pred.labels.tolist() == [3.0 * v for v in want]
        assert len(ids) == len(want)
    for values, ids, counts in seen.calls:  # a call's ids are its rows', in order
        assert len(values) == len(ids) == sum(counts)


def test_answers_wait_for_the_logs_future_and_a_failing_log_fails_the_call(
    executor: ThreadPoolExecutor,
) -> None:
    gate: Future[None] = Future()
    state = {"fail": False}

    def answered(
        columns: Columns, pred: Prediction, ids: list[str], requests: Sequence[tuple[float, int]]
    ) -> Future[None] | None:
        if state["fail"]:
            raise OSError("disk gone")
        return gate

    async def main() -> None:
        b = MicroBatcher(Model(), executor, ids=new_prediction_ids, answered=answered)
        task = asyncio.ensure_future(b.submit_ids(rows(1.0)))
        await asyncio.sleep(0.05)
        assert not task.done()  # the fsync has not happened: no answer yet
        threading.Timer(0.01, gate.set_result, (None,)).start()
        pred, ids = await asyncio.wait_for(task, 5)
        assert pred.labels.tolist() == [3.0] and len(ids) == 1
        state["fail"] = True
        with pytest.raises(OSError, match="disk gone"):
            await b.submit_ids(rows(2.0))
        assert b.queued_rows == 0

    asyncio.run(main())


def test_the_next_call_is_predicted_while_a_calls_log_record_is_pending(
    executor: ThreadPoolExecutor,
) -> None:
    """The overlap under ``log_fsync=always``: while call k waits for its record's fsync (in
    the writer thread), call k+1 is predicted and spooled; each call is answered as soon as
    its own record is durable, never before."""
    model = Model()
    gates: list[Future[None]] = []

    def answered(
        columns: Columns, pred: Prediction, ids: list[str], requests: Sequence[tuple[float, int]]
    ) -> Future[None] | None:
        gates.append(Future())
        return gates[-1]

    async def main() -> None:
        b = MicroBatcher(model, executor, ids=new_prediction_ids, answered=answered)
        warm = asyncio.ensure_future(b.submit_ids(rows(0.0)))  # timed: fast, inline after
        await asyncio.sleep(0.01)
        gates[0].set_result(None)
        await asyncio.wait_for(warm, 5)
        model.calls.clear()
        first = asyncio.ensure_future(b.submit_ids(rows(1.0)))
        await asyncio.sleep(0.01)
        assert model.calls == [1] and not first.done()  # predicted, its record pending
        second = asyncio.ensure_future(b.submit_ids(rows(2.0)))
        await asyncio.sleep(0.01)
        assert model.calls == [1, 1]  # predicted meanwhile, not after the first's fsync
        assert not first.done() and not second.done()
        gates[2].set_result(None)  # the second record is durable first
        pred, _ = await asyncio.wait_for(second, 5)
        assert pred.labels.tolist() == [6.0]
        await asyncio.sleep(0.01)
        assert not first.done()  # still waiting for its own record
        gates[1].set_result(None)
        pred, _ = await asyncio.wait_for(first, 5)
        assert pred.labels.tolist() == [3.0]
        assert b.queued_rows == 0

    asyncio.run(main())


def test_a_request_whose_client_went_away_is_neither_predicted_nor_logged(
    executor: ThreadPoolExecutor,
) -> None:
    model = Model()
    seen = Seen()

    async def main() -> None:
        b = MicroBatcher(model, executor, ids=new_prediction_ids, answered=seen)
        await b.submit_ids(rows(0.0))
        seen.calls.clear()
        model.calls.clear()
        gone = asyncio.ensure_future(b.submit_ids(rows(5.0)))
        kept = asyncio.ensure_future(b.submit_ids(rows(6.0)))
        gone.cancel()  # both are queued for the end of this tick
        pred, _ = await kept
        assert pred.labels.tolist() == [18.0]
        assert b.queued_rows == 0

    asyncio.run(main())
    assert model.calls == [1]
    assert [values for values, _, _ in seen.calls] == [[6.0]]


# -- the log of one call ---------------------------------------------------------------------


def test_log_call_keeps_each_requests_latency_and_the_rows_in_order(
    workspace: Workspace, tmp_path: Path
) -> None:
    logger = PredictionLogger(workspace.lake, tmp_path / "spool", seal_seconds=60)
    block = np.arange(18, dtype=np.float64).reshape(6, 3)
    proba = np.column_stack([np.linspace(0, 1, 6), 1 - np.linspace(0, 1, 6)])
    pred = Prediction(np.array([0, 1, 0, 1, 0, 1]), proba, [0, 1])
    ids = new_prediction_ids(6)
    now = time.perf_counter()
    arrivals = [(now - 0.5, 1), (now - 0.25, 2), (now - 0.001, 3)]

    async def main() -> None:
        assert logger.log_call("m", 3, BlockColumns(block, NAMES), pred, ids, arrivals) is None

    asyncio.run(main())
    with pytest.raises(InvalidInputError, match="request rows"):
        logger.log_call("m", 3, BlockColumns(block, NAMES), pred, ids, [(now, 5)])
    logger.flush()
    logger.close()
    frame = read_prediction_log(workspace.lake, "m").sort_values("a")
    assert frame["prediction_id"].tolist() == ids
    assert frame["a"].tolist() == block[:, 0].tolist()
    assert frame["score"].tolist() == pytest.approx(proba[:, 1].tolist())
    latency = frame["latency_ms"].to_numpy()
    assert latency[0] >= 500.0
    assert 250.0 <= latency[1] == latency[2] < 500.0
    assert latency[3] == latency[4] == latency[5] < 250.0
    assert frame["timestamp"].nunique() == 1  # one call, one moment


# -- the garbage collector -------------------------------------------------------------------


def test_gc_policy_freezes_raises_the_threshold_refreezes_and_restores() -> None:
    before = gc.get_threshold()
    off = GcPolicy(False)
    off.start()
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
    policy = GcPolicy(True)
    try:

        async def main() -> None:
            policy.start()
            assert gc.get_freeze_count() > 0
            assert gc.get_threshold()[0] == gcpolicy.GEN0_THRESHOLD
            policy.swapped()
            policy.swapped()  # debounced: one refreeze
            assert policy._pending is not None
            policy._pending.cancel()
            policy.refreeze()
            assert policy.refreezes == 1 and gc.get_freeze_count() > 0

        asyncio.run(main())
    finally:
        policy.stop()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


# -- loopml serve's options -----------------------------------------------------------------


def test_serve_options_reach_the_server(
    monkeypatch: pytest.MonkeyPatch, workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    import loopml.serve as serve_pkg
    from loopml.cli.main import main

    got: dict[str, Any] = {}
    monkeypatch.setattr(serve_pkg, "run_server", lambda ws, **kw: got.update(kw))
    options = ["--max-batch", "8", "--max-wait-ms", "0.5", "--queue-rows", "100"]
    code = main(["serve", "-w", str(workspace.root), *options, "--drain-seconds", "2.5"])
    assert code == 0, capsys.readouterr().err
    assert got["max_batch"] == 8 and got["max_wait_ms"] == 0.5
    assert got["queue_rows"] == 100 and got["drain_seconds"] == 2.5
    code = main(["serve", "-w", str(workspace.root), "--drain-seconds", "-1"])
    assert code == 2
    assert "--drain-seconds" in capsys.readouterr().err


def test_run_server_refuses_a_negative_drain(workspace: Workspace) -> None:
    from loopml.serve import run_server

    with pytest.raises(InvalidInputError, match="drain_seconds") as info:
        run_server(workspace, port=0, drain_seconds=-1.0)
    assert info.value.where == {"field": "drain_seconds"}


def test_fsync_always_answers_after_the_fsync_and_logs_every_id(workspace: Workspace) -> None:
    import warnings

    from loopml.serve import create_app

    from .test_serve_app import cancer_bundle, records, register

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    bundle, x = cancer_bundle()
    register(workspace, "cancer", bundle)
    settings = workspace.settings.model_copy(update={"log_fsync": "always"})
    own = Workspace(workspace.root, settings)
    try:
        app = create_app(own, reload_interval=0)
        ids: list[str] = []
        with TestClient(app, base_url="http://127.0.0.1") as client:
            for start, n in ((0, 1), (1, 5), (6, 1)):
                r = client.post(
                    "/v1/models/cancer:predict", json={"instances": records(x, n, start=start)}
                )
                assert r.status_code == 200, r.text
                ids += [p["prediction_id"] for p in r.json()["predictions"]]
            server = app.state.server
            assert server.logger is not None and server.logger.fsync == "always"
            server.logger.flush()
        logged = read_prediction_log(own.lake, "cancer")
        assert sorted(logged["prediction_id"]) == sorted(ids)
        assert len(set(ids)) == 7
    finally:
        own.close()
