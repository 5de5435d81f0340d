"""CSV files read in small blocks after the first: bounded read-ahead, the same types and
content as one block of ``block_bytes`` gives."""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pytest

from loopml.data.ingest import ingest, load_table
from loopml.data.sources import CsvSource
from loopml.errors import InvalidInputError
from loopml.workspace import Workspace


class _Counting:
    """A file that counts the bytes read from it."""

    def __init__(self, fh: IO[bytes], owner: CountingCsv) -> None:
        self._fh = fh
        self._owner = owner

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        self._owner.taken += len(data)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)


class CountingCsv(CsvSource):
    taken = 0

    @contextmanager
    def _open(self) -> Iterator[IO[bytes]]:
        with super()._open() as fh:
            yield _Counting(fh, self)  # type: ignore[misc]


def _write(path: Path, rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    lines = ["id,x,label"]
    labels = np.array(["red", "green", "blue"])[rng.integers(0, 3, rows)]
    for i, (x, label) in enumerate(zip(rng.normal(size=rows), labels, strict=True)):
        lines.append(f"{i},{x:.6f},{label}")
    path.write_text("\n".join(lines) + "\n")


def _settled(src: CountingCsv) -> int:
    """The bytes read once the background reader has stopped reading ahead."""
    last, still, deadline = -1, 0, time.monotonic() + 10
    while still < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
        still = still + 1 if src.taken == last else 0
        last = src.taken
    return src.taken


def test_the_reader_reads_ahead_in_small_blocks(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    _write(path, 300_000)  # about 6 MB
    size = path.stat().st_size
    src = CountingCsv(path, delimiter=",", decimal=".")
    src.block_bytes = 256 << 10
    src.read_bytes = 16 << 10
    batches = src.batches()
    first = next(batches)
    # pyarrow queues up to 32 blocks read ahead: of 256 KiB each (the whole file) before
    bound = (256 << 10) + 48 * (16 << 10)  # the first block, then small reads
    assert _settled(src) <= bound < size
    rest = list(batches)
    assert first.num_rows + sum(b.num_rows for b in rest) == 300_000
    assert src.taken == size
    # the batches are joined back to about a block each, not one per small read
    assert len(rest) + 1 <= 2 * size // src.block_bytes


def test_small_blocks_keep_the_types_of_the_first_block(
    workspace: Workspace, tmp_path: Path
) -> None:
    # 'x' holds whole numbers for the first ~100 KB and a decimal within the first block:
    # inferred from the first small block alone it would be int64, then fail on the decimal
    path = tmp_path / "late.csv"
    rows = [f"{i},{i % 7},{'ab'[i % 2]}" for i in range(20_000)]
    rows += [f"{20_000 + i},{i}.5,a" for i in range(20_000)]
    path.write_text("id,x,label\n" + "\n".join(rows) + "\n")

    def source(read_bytes: int) -> CsvSource:
        src = CsvSource(path)
        src.block_bytes = 1 << 20
        src.read_bytes = read_bytes
        return src

    small = ingest(workspace, source(8 << 10), "small").dataset
    whole = ingest(workspace, source(1 << 20), "whole").dataset
    assert {c["name"]: c["type"] for c in small.schema}["x"] == "double"
    assert small.sha256 == whole.sha256
    assert small.stats == whole.stats
    assert load_table(workspace, "small").num_rows == 40_000


def test_a_compressed_file_in_small_blocks_reads_whole(
    workspace: Workspace, tmp_path: Path
) -> None:
    plain = tmp_path / "rows.csv"
    _write(plain, 60_000, seed=1)
    packed = tmp_path / "rows.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    src = CsvSource(packed)
    src.block_bytes = 128 << 10
    src.read_bytes = 8 << 10
    got = ingest(workspace, src, "packed").dataset
    want = ingest(workspace, CsvSource(plain), "plain").dataset
    assert got.sha256 == want.sha256
    assert got.num_rows == 60_000


def test_a_file_smaller_than_a_block_and_repeated_names(tmp_path: Path) -> None:
    path = tmp_path / "small.csv"
    path.write_text("a,b\n1,x\n2,y\n")
    src = CsvSource(path)
    src.read_bytes = 1
    assert pa.Table.from_batches(list(src.batches())).to_pydict() == {
        "a": [1, 2],
        "b": ["x", "y"],
    }
    twice = tmp_path / "twice.csv"
    twice.write_text("a,a\n" + "".join(f"{i},{i}\n" for i in range(5000)))
    src = CsvSource(twice)
    src.block_bytes = 4 << 10
    src.read_bytes = 1 << 10
    with pytest.raises(InvalidInputError, match=r"column name 'a' appears twice"):
        list(src.batches())
