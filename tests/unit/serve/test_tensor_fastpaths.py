"""The cuts of the 32-image V2 path (docs/serving-hotpath.md, 2026-12-08), each against the
slow form it replaced: the tensor's conversion without NumPy's dtype discovery, ids made in
runs, label texts from a table, and the log part's Parquet options."""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loopml import predictions
from loopml.registry.limits import FLOAT32_MAX
from loopml.serve import ids as ids_module
from loopml.serve.records import RowBlock, plain_block

NAMES = tuple(f"p{j}" for j in range(64))


def _reference(flat: list[Any], rows: int, dtype: Any) -> RowBlock | None:
    """plain_block's no-bools path as it was: NumPy's discovery, then the float32 bound."""
    if not flat or len(flat) != rows * len(NAMES):
        return None
    try:
        block = np.array(flat)
    except (ValueError, TypeError, OverflowError):
        return None
    if block.ndim != 1 or block.dtype.kind not in "fi":
        return None
    block = block if block.dtype == np.float64 else block.astype(np.float64)
    if not (block.min() >= -FLOAT32_MAX and block.max() <= FLOAT32_MAX):
        return None
    if dtype is not None:
        block = block.astype(dtype)
    return RowBlock(block.reshape(rows, len(NAMES)), NAMES)


ODD = [
    None,
    "1.5",
    [1.0],
    {"a": 1},
    2**63,
    2**63 - 1,
    -(2**63),
    -(2**63) + 1,
    2**64,
    10**30,
    10**400,
    1e39,
    -1e39,
    float(FLOAT32_MAX),
    -float(FLOAT32_MAX),
    3.4028235677973366e38,  # just beyond float32's largest
    1e19,
    -0.0,
    5e-324,
    0,
    7,
]


@pytest.mark.parametrize("seed", range(60))
def test_tensor_block_equals_numpys_discovery(seed: int) -> None:
    rng = random.Random(seed)
    rows = rng.choice([9, 16, 32])
    n = rows * len(NAMES)
    kind = seed % 3
    if kind == 0:  # floats
        flat: list[Any] = [rng.uniform(-100, 100) for _ in range(n)]
    elif kind == 1:  # ints (an int64 block before)
        flat = [rng.randint(-(2**40), 2**40) for _ in range(n)]
    else:  # mixed
        flat = [rng.choice([rng.random(), rng.randint(0, 16)]) for _ in range(n)]
    if seed >= 6:  # one or two odd values somewhere
        for _ in range(rng.choice([1, 2])):
            flat[rng.randrange(n)] = rng.choice(ODD)
    for dtype in (None, np.float32):
        got = plain_block(list(flat), rows, NAMES, dtype, no_bools=True)
        want = _reference(list(flat), rows, dtype)
        assert (got is None) == (want is None), (seed, dtype)
        if got is not None and want is not None:
            assert got.block.dtype == want.block.dtype
            assert got.block.shape == want.block.shape
            np.testing.assert_array_equal(got.block, want.block)
            assert np.array_equal(np.signbit(got.block), np.signbit(want.block))


def test_ids_are_the_counters_in_hex_across_runs_of_256() -> None:
    source = ids_module._IdSource()
    for start in (0, 255, 256, 2**48 - 3, (5 << 8) | 0xFE, 2**64 - 600):
        for n in (0, 1, 2, 64, 255, 256, 257, 600):
            source._next = start
            got = source.take(n)
            assert got == [f"{source._prefix}{c:016x}" for c in range(start, start + n)]
            assert source._next == start + n


def test_ids_taken_from_threads_are_unique() -> None:
    out: list[list[str]] = []

    def take() -> None:
        mine = []
        for _ in range(300):
            mine.extend(ids_module.new_prediction_ids(37))
        out.append(mine)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for part in out for i in part]
    assert len(set(every)) == len(every) == 4 * 300 * 37


@pytest.mark.parametrize(
    "labels",
    [
        np.array([0, 1, 9, 1, -3], dtype=np.int64),
        np.array([1, 2, 300], dtype=np.uint16),
        np.array([1.0, 0.5, 2.0]),  # after ints 1 and 2 are cached: "1.0", not "1"
        np.array([True, False, True]),  # True == 1: never the int's text
        np.array(["a", "b"], dtype=object),
        np.array(["x", "y"]),
        np.array([], dtype=np.int64),
    ],
)
def test_label_texts_equal_str_of_each(labels: np.ndarray) -> None:
    predictions._label_texts(np.array([1, 2, 0], dtype=np.int64))  # fill the table
    assert predictions._label_texts(labels) == [str(v) for v in labels.tolist()]


def _log_table(tensor: bool) -> pa.Table:
    n = 300
    cols: dict[str, pa.Array] = {
        "prediction_id": pa.array([f"{i:032x}" for i in range(n)]),
        "model": pa.array(["cnn"] * n),
        "prediction": pa.array([str(i % 3) for i in range(n)]),
        "colour": pa.array([["red", "blue"][i % 2] for i in range(n)]),  # a text feature
        "score": pa.array(np.linspace(0, 1, n)),
    }
    if tensor:
        rows = np.arange(n * 4, dtype=np.float32).reshape(n, 4)
        cols[predictions.TENSOR_COLUMN] = pa.Array.from_buffers(
            pa.binary(16), n, [None, pa.py_buffer(rows)]
        )
    return pa.table(cols).replace_schema_metadata({predictions.LAYOUT_KEY: predictions.LAYOUT})


@pytest.mark.parametrize("tensor", [False, True])
def test_a_log_part_reads_back_the_same_without_id_dictionary_or_tensor_stats(
    tensor: bool, tmp_path: Path
) -> None:
    from loopml.workspace import init

    path = "predictions/cnn/date=2026-12-08/part-x.parquet"
    table = _log_table(tensor)
    with init(tmp_path / "ws") as ws:  # the workspace's own lake (local files)
        predictions._write_part(ws.lake, path, table)
        data = ws.lake.read_bytes(path)
    back = pq.read_table(pa.BufferReader(data))
    assert back.equals(table, check_metadata=True)
    meta = pq.ParquetFile(pa.BufferReader(data)).metadata.row_group(0)
    by_name = {meta.column(i).path_in_schema: meta.column(i) for i in range(meta.num_columns)}
    assert not any("DICTIONARY" in e for e in by_name["prediction_id"].encodings)
    for name in ("model", "prediction", "colour"):
        assert any("DICTIONARY" in e for e in by_name[name].encodings), name
    assert by_name["prediction_id"].is_stats_set
    if tensor:
        assert not by_name[predictions.TENSOR_COLUMN].is_stats_set


def test_raw_table_gives_each_row_its_requests_model_source_and_file() -> None:
    entries = [
        [1_000, 2, 0.5, "server", None],
        [2_000, 3, 0.7, "batch", "f.csv"],
        [3_000, 1, 0.1, "server", "g"],
    ]
    head = {
        "model": "cnn",
        "version": 3,
        "columns": ["a", "b"],
        "numeric": ["a", "b"],
        "text": {},
        "ids": [f"{i:032x}" for i in range(6)],
        "labels": ["0", "1", "0", "1", "1", "0"],
        "entries": entries,
    }
    block = np.arange(12, dtype=np.float64).reshape(2, 6)  # feature-major
    table = predictions._raw_table([(head, block, np.linspace(0, 1, 6))])
    assert table["model"].to_pylist() == ["cnn"] * 6
    assert table["model"].type == pa.string()
    assert table["source"].to_pylist() == ["server"] * 2 + ["batch"] * 3 + ["server"]
    assert table["input_file"].to_pylist() == [None, None, "f.csv", "f.csv", "f.csv", "g"]
    assert table["source"].type == table["input_file"].type == pa.string()
    assert table["latency_ms"].to_pylist() == [0.5, 0.5, 0.7, 0.7, 0.7, 0.1]
