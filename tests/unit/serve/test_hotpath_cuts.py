"""The per-request shortcuts of the serving hot path give what the long way gives: the small
records check (Python's builtins, not NumPy's reductions), a call's per-request prediction
slices, the bulk memory of spooled ids, and the single-row V1 answer."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from loopml.predictions import PredictionLogger, _Entry
from loopml.registry.bundle import Prediction
from loopml.registry.limits import FLOAT32_MAX
from loopml.serve import records
from loopml.serve.batching import slice_prediction
from loopml.serve.records import plain_block
from loopml.workspace import Workspace

from .test_serve_app import cancer_bundle
from .test_serve_app import records as rows_of

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

NAMES = ("a", "b", "c")
SPECIAL: list[Any] = [
    0,
    1,
    -7,
    0.5,
    -2.25,
    FLOAT32_MAX,
    -FLOAT32_MAX,
    1e39,
    -1e39,
    math.inf,
    -math.inf,
    math.nan,
    2**128,  # an int beyond float32
    -(2**128),
    10**400,  # an int beyond float64
    3.4e38,
]


def numpy_reference(flat: list[Any], rows: int) -> np.ndarray | None:
    """What plain_block answered before (one NumPy pass each for finiteness and range)."""
    try:
        block = np.array(flat, dtype=np.float64)
    except OverflowError:
        return None
    if not np.isfinite(block).all() or np.abs(block).max() > FLOAT32_MAX:
        return None
    return block.reshape(rows, len(NAMES))


@pytest.mark.parametrize("seed", range(4))
def test_small_records_check_accepts_and_refuses_what_numpy_does(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(400):
        rows = int(rng.integers(1, 4))
        flat: list[Any] = [float(v) for v in rng.normal(size=rows * len(NAMES))]
        for at in rng.choice(len(flat), size=int(rng.integers(0, 3)), replace=False):
            flat[int(at)] = SPECIAL[int(rng.integers(len(SPECIAL)))]
        got = plain_block(flat, rows, NAMES)
        want = numpy_reference(flat, rows)
        if want is None:
            assert got is None, flat
        else:
            assert got is not None, flat
            assert got.block.dtype == np.float64
            assert got.block.shape == (rows, len(NAMES))
            assert got.block.tobytes() == want.tobytes()


@pytest.mark.parametrize("where", [0, 1, 2])
def test_a_nan_anywhere_in_a_small_request_is_left_to_the_general_reader(where: int) -> None:
    # max() and min() skip a NaN that is not first: the sum must catch it
    flat: list[Any] = [1.0, 2.0, 3.0]
    flat[where] = math.nan
    assert plain_block(flat, 1, NAMES) is None


def test_large_tensors_take_the_numpy_check() -> None:
    rows = records.SMALL // len(NAMES) + 1
    flat: list[Any] = [0.25] * (rows * len(NAMES))
    got = plain_block(flat, rows, NAMES)
    assert got is not None and got.block.shape == (rows, len(NAMES))
    flat[-1] = math.nan
    assert plain_block(flat, rows, NAMES) is None
    flat[-1] = 1e39
    assert plain_block(flat, rows, NAMES) is None


def test_a_calls_slice_is_the_prediction_the_constructor_makes() -> None:
    proba = np.random.default_rng(0).random((6, 2))
    whole = Prediction(np.arange(6), proba, ["x", "y"], positive_index=0)
    part = slice_prediction(whole, 2, 5)
    want = Prediction(np.arange(6)[2:5], proba[2:5], ["x", "y"], positive_index=0)
    assert type(part) is Prediction
    assert part.labels.tolist() == want.labels.tolist()
    assert part.probabilities is not None and want.probabilities is not None
    assert part.probabilities.tobytes() == want.probabilities.tobytes()
    assert (part.classes, part.positive_index, part.unknown_fields) == (["x", "y"], 0, None)
    assert part.scores.tolist() == want.scores.tolist()
    assert repr(part) == repr(want)
    with pytest.raises(AttributeError):  # still frozen
        part.labels = np.arange(3)  # type: ignore[misc]
    regression = Prediction(np.arange(4.0), None, None)
    assert slice_prediction(regression, 1, 3).probabilities is None


def _entry(ids: list[str]) -> _Entry:
    n = len(ids)
    return _Entry("m", 1, 0, {"a": np.zeros(n)}, np.zeros(n), np.zeros(n), ids, 1.0)


def test_spooled_ids_are_remembered_once_each_and_forgotten_oldest_first(
    tmp_path: Path, workspace: Workspace
) -> None:
    logger = PredictionLogger(workspace.lake, tmp_path / "spool")
    try:
        logger.recent_limit = 5
        logger._remember([_entry(["a", "b"]), _entry(["c", "c", "d"])])  # repeated within
        assert list(logger._recent) == ["a", "b", "c", "d"]
        logger._remember([_entry(["b", "e"])])  # one seen already
        assert list(logger._recent) == ["a", "b", "c", "d", "e"]
        logger._remember([_entry(["f", "g"])])
        assert list(logger._recent) == ["c", "d", "e", "f", "g"]
        assert logger._recent_set == {"c", "d", "e", "f", "g"}
        assert logger.seen({"a", "b", "c", "g", "z"}) == {"c", "g"}
    finally:
        logger.close()


def test_a_single_row_answer_has_the_layout_of_a_multi_row_one(workspace: Workspace) -> None:
    from loopml.registry import register_model, set_alias
    from loopml.serve import create_app

    bundle, x = cancer_bundle(seed=0)
    mv = register_model(workspace, "cancer", bundle)
    set_alias(workspace, "cancer", "champion", mv.version)
    app = create_app(workspace, reload_interval=0)
    headers = {"content-type": "application/json"}
    with TestClient(app, base_url="http://127.0.0.1") as client:
        url = "/v1/models/cancer:predict"
        one = client.post(url, json={"instances": rows_of(x, 1)}, headers=headers)
        two = client.post(url, json={"instances": rows_of(x, 2)}, headers=headers)
    assert one.status_code == two.status_code == 200
    a, b = one.json(), two.json()
    assert a.keys() == b.keys() == {"model", "version", "predictions"}
    assert (a["model"], a["version"]) == (b["model"], b["version"])
    assert len(a["predictions"]) == 1
    first, again = a["predictions"][0], b["predictions"][0]
    assert list(first) == list(again) == ["prediction_id", "prediction", "probabilities"]
    assert first["prediction"] == again["prediction"]
    assert first["probabilities"].keys() == again["probabilities"].keys()
    for k, p in first["probabilities"].items():
        assert p == pytest.approx(again["probabilities"][k], abs=1e-12)
    assert first["prediction_id"] != again["prediction_id"]
    assert one.headers["x-loopml-version"] == str(mv.version)


def test_a_compiled_models_calls_go_as_one_block_and_are_logged_whole(
    workspace: Workspace,
) -> None:
    import asyncio

    from loopml.predictions import read_prediction_log
    from loopml.registry import load_model, register_model, set_alias
    from loopml.serve import create_app
    from loopml.serve.records import RowBlock

    bundle, x = cancer_bundle(seed=0)
    mv = register_model(workspace, "cancer", bundle)
    set_alias(workspace, "cancer", "champion", mv.version)
    app = create_app(workspace, reload_interval=0)
    server = app.state.server
    seen: list[Any] = []

    async def main() -> list[Any]:
        async with server.lifespan(app):
            runtime = server.models.runtime("cancer")
            assert runtime.predictor_kind == "onnx"
            assert runtime.batcher._blocks  # the graph's one input is the whole block
            predict = runtime.batcher._predict

            def spy(columns: Any) -> Any:
                seen.append(columns)
                return predict(columns)

            runtime.batcher._predict = spy
            return await asyncio.gather(
                *(
                    server.infer("cancer", None, rows_of(x, 2, start=2 * i), endpoint="t")
                    for i in range(8)
                )
            )

    results = asyncio.run(main())
    assert seen and all(type(c) is RowBlock for c in seen)
    assert sum(len(c) for c in seen) == 16
    assert len(seen) < 8  # concurrent requests shared calls
    expected = load_model(workspace, "cancer").predict(x.iloc[:16])
    assert expected.probabilities is not None
    got = np.concatenate([r.prediction.probabilities for r in results])
    np.testing.assert_allclose(got, expected.probabilities, rtol=0, atol=1e-6)
    ids = [i for r in results for i in r.ids]
    log = read_prediction_log(workspace.lake, "cancer").set_index("prediction_id")
    assert sorted(log.index) == sorted(ids)
    first = x.columns[0]
    logged = log.loc[ids, f"{first}"] if first in log.columns else log.loc[ids, f"feature_{first}"]
    np.testing.assert_array_equal(logged.to_numpy(), x[first].to_numpy()[:16])


def test_a_row_block_gives_a_features_values_as_columns_do() -> None:
    from loopml.serve.records import RowBlock

    block = np.arange(6.0).reshape(3, 2)
    rows = RowBlock(block, ("a", "b"))
    assert rows["b"].tolist() == [1.0, 3.0, 5.0]
    assert rows["a"].tolist() == rows.columns()["a"].tolist()
    with pytest.raises(KeyError):
        rows["c"]


def test_a_block_of_rows_and_plain_columns_of_one_version_are_spooled_together() -> None:
    # a call of plain rows (a RowBlock) and one through the general reader (columns) meet
    # in one write of the log's writer thread (fsync "always"): both keep their rows
    from loopml.predictions import _encode, _groups, _segment_tables
    from loopml.serve.records import RowBlock

    block = RowBlock(np.array([[1.0, 2.0, 3.0]]), NAMES)
    columns = {"a": np.array([4.0]), "b": np.array([5.0]), "c": np.array([6.0])}
    entries = [
        _Entry("m", 1, 0, block, np.array([1]), np.array([0.25]), ["id-1"], 1.0),
        _Entry("m", 1, 0, columns, np.array([0]), np.array([0.75]), ["id-2"], 1.0),
    ]
    (group,) = _groups(entries)
    (table,) = _segment_tables([_encode(group)])
    assert table["prediction_id"].to_pylist() == ["id-1", "id-2"]
    assert table["a"].to_pylist() == [1.0, 4.0]
    assert table["c"].to_pylist() == [3.0, 6.0]
    assert table["score"].to_pylist() == [0.25, 0.75]
