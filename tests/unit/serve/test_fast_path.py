"""The serving hot path's cheap forms: the compiled graph takes the numeric features as one
block (ONNX Runtime's binding costs microseconds per input), validated rows keep their block
through batching, prediction and the log, concurrent requests of one event-loop tick share a
model call, and prediction ids come from a per-process prefix and a counter."""

from __future__ import annotations

import asyncio
import os
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from loopml.registry.compiled import CompiledModel, compile_bundle, fuse_numeric_inputs
from loopml.registry.onnx_graph import OUTPUT
from loopml.registry.signature import BlockColumns, Columns
from loopml.serve.batching import MicroBatcher, concat_columns, slice_columns
from loopml.serve.ids import new_prediction_ids

from .test_batching_correctness import Model, cols
from .test_serve_app import cancer_bundle, pets_bundle, records


def _plain_session(data: bytes) -> Any:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])


def test_numeric_inputs_are_fed_as_one_block_with_the_same_numbers() -> None:
    bundle, x = cancer_bundle()
    compiled = compile_bundle(bundle)
    assert isinstance(compiled, CompiledModel)
    assert compiled.block_input
    names = bundle.signature.names
    rows = x.iloc[:50]
    columns = {n: rows[n].to_numpy(dtype=np.float64) for n in names}
    # the graph as compiled, one [N, 1] input per feature: exactly the same output
    plain = _plain_session(compiled.onnx_bytes)
    feeds = {n: columns[n].reshape(-1, 1) for n in names}
    expected = plain.run([OUTPUT], feeds)[0]
    got = compiled.predict_columns(columns)
    assert got.probabilities is not None
    np.testing.assert_array_equal(got.probabilities, np.asarray(expected, dtype=np.float64))
    # and through the validated block columns of the server's hot path
    checked = bundle.signature.check_records_columns(records(x, 50))
    assert isinstance(checked.columns, BlockColumns)
    via_block = compiled.predict_columns(checked.columns)
    assert via_block.probabilities is not None
    np.testing.assert_allclose(via_block.probabilities, got.probabilities, atol=1e-12)
    native = bundle.predict_frame(rows)
    assert native.probabilities is not None
    np.testing.assert_allclose(got.probabilities, native.probabilities, atol=1e-6)


def test_a_mixed_graph_fuses_only_what_it_can_and_matches_native() -> None:
    bundle, x = pets_bundle("classification")
    compiled = compile_bundle(bundle)
    if not isinstance(compiled, CompiledModel):
        pytest.skip(f"this model is served natively here: {compiled.reason}")
    checked = bundle.signature.check_records_columns(records(x, 40))
    got = compiled.predict_columns(checked.columns)
    native = bundle.predict_frame(x.iloc[:40])
    assert got.probabilities is not None and native.probabilities is not None
    np.testing.assert_allclose(got.probabilities, native.probabilities, atol=1e-6)
    assert list(got.labels) == list(native.labels)


def test_fusing_refuses_inputs_used_beyond_one_concat() -> None:
    from onnx import TensorProto, helper

    a = helper.make_tensor_value_info("a", TensorProto.DOUBLE, [None, 1])
    b = helper.make_tensor_value_info("b", TensorProto.DOUBLE, [None, 1])
    out = helper.make_tensor_value_info("out", TensorProto.DOUBLE, [None, 2])
    extra = helper.make_tensor_value_info("z", TensorProto.DOUBLE, [None, 1])
    concat = helper.make_node("Concat", ["a", "b"], ["y"], axis=1)
    ident = helper.make_node("Identity", ["y"], ["out"])
    graph = helper.make_graph([concat, ident], "g", [a, b], [out])
    fused = fuse_numeric_inputs(helper.make_model(graph).SerializeToString())
    assert fused is not None and fused[1:] == ("y", ["a", "b"])
    block = np.array([[1.0, 2.0], [3.0, 4.0]])
    got = _plain_session(fused[0]).run(["out"], {"y": block})[0]
    np.testing.assert_array_equal(got, block)
    # "a" also feeds another node: the graph stays as it is
    neg = helper.make_node("Neg", ["a"], ["z"])
    graph2 = helper.make_graph([concat, ident, neg], "g", [a, b], [out, extra])
    assert fuse_numeric_inputs(helper.make_model(graph2).SerializeToString()) is None


def test_block_columns_survive_batching_in_row_order() -> None:
    names = ("p", "q")
    parts: list[Columns] = [
        BlockColumns(np.arange(k * 2, dtype=np.float64).reshape(k, 2) + 100 * k, names)
        for k in (1, 3, 2)
    ]
    joined = concat_columns(parts)
    assert isinstance(joined, BlockColumns)
    assert joined.block.shape == (6, 2)
    np.testing.assert_array_equal(joined["p"], np.concatenate([p["p"] for p in parts]))
    np.testing.assert_array_equal(joined["q"], np.concatenate([p["q"] for p in parts]))
    part = slice_columns(joined, 1, 4)
    assert isinstance(part, BlockColumns)
    np.testing.assert_array_equal(part["q"], joined["q"][1:4])
    # mixed with plain columns: per feature, as before
    plain = concat_columns([parts[0], {"p": np.array([7.0]), "q": np.array([8.0])}])
    assert not isinstance(plain, BlockColumns)
    assert plain["q"].tolist() == [parts[0]["q"][0], 8.0]


def test_requests_of_one_tick_share_one_model_call() -> None:
    """The fast path used to predict a lone request at once: at 32 connections each call
    served 1.4 requests. Requests that reach the batcher in one event-loop iteration now go
    in one call (within max_batch), in order."""
    model = Model()

    async def main() -> list[Any]:
        with ThreadPoolExecutor(1) as pool:
            b = MicroBatcher(model, pool, max_batch=16, max_wait_ms=5)
            await b.submit(cols([0]))  # timed: now known to be fast (inline)
            model.calls.clear()
            out = await asyncio.gather(*(b.submit(cols([i])) for i in range(40)))
            await b.aclose()
            return list(out)

    preds = asyncio.run(main())
    assert model.calls == [16, 16, 8]
    assert [float(p.labels[0]) for p in preds] == [3.0 * i for i in range(40)]


def test_a_few_slow_calls_do_not_send_a_fast_model_to_the_thread() -> None:
    with ThreadPoolExecutor(1) as pool:
        b = MicroBatcher(Model(), pool)
        for seconds in (1e-4, 5e-2, 1e-4, 1e-4, 9e-2, 1e-4, 1e-4):  # two preempted calls
            b._observe(seconds)
        assert b.call_seconds == pytest.approx(1e-4)
        for seconds in (5e-3,) * 9:  # really slow now: the thread
            b._observe(seconds)
        assert b.call_seconds == pytest.approx(5e-3)


def test_prediction_ids_are_unique_hex_and_differ_across_processes() -> None:
    ids = new_prediction_ids(50_000) + new_prediction_ids(3)
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids[:1000])
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # a forked worker draws its own prefix
        try:
            os.write(write, new_prediction_ids(1)[0].encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert re.fullmatch(r"[0-9a-f]{32}", child)
    assert child[:16] != ids[0][:16]
    assert child not in set(ids)


def test_validated_numeric_records_keep_their_block() -> None:
    bundle, x = cancer_bundle()
    checked = bundle.signature.check_records_columns(records(x, 3))
    columns = checked.columns
    assert isinstance(columns, BlockColumns)
    assert columns.block.flags.c_contiguous
    frame = pd.DataFrame({n: columns[n] for n in bundle.signature.names})
    np.testing.assert_allclose(frame.to_numpy(), x.iloc[:3][bundle.signature.names].to_numpy())


def test_a_request_of_many_chunks_never_holds_the_loop_for_more_than_one_call() -> None:
    model = Model()

    async def main() -> tuple[list[int], Any]:
        with ThreadPoolExecutor(1) as pool:
            b = MicroBatcher(model, pool, max_batch=64, max_wait_ms=5)
            await b.submit(cols([0]))  # timed: fast (inline)
            model.calls.clear()
            seen: list[int] = []
            done = False

            async def ticker() -> None:
                while not done:
                    seen.append(len(model.calls))
                    await asyncio.sleep(0)

            task = asyncio.ensure_future(ticker())
            pred = await b.submit(cols(np.arange(640)))
            done = True
            await task
            await b.aclose()
            return seen, pred

    seen, pred = asyncio.run(main())
    assert model.calls == [64] * 10
    assert any(0 < n < 10 for n in seen)  # the loop ran between the chunks
    assert pred.labels.tolist() == (np.arange(640) * 3.0).tolist()
