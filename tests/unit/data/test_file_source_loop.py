"""A file format reads through one loop: :meth:`FileSource._batches`, which ``read`` collects;
a format with only a whole-file parser streams that parser's table."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loopml.data.sources import FileSource, ParquetSource
from loopml.errors import InvalidInputError


class Pieces(FileSource):
    format = "pieces"

    def _batches(self) -> Iterator[pa.RecordBatch]:
        for start in (0, 3):
            yield pa.record_batch({"a": list(range(start, start + 3))})


class Whole(FileSource):
    format = "whole"

    def _read(self) -> pa.Table:
        return pa.table({"a": [1, 2]})


def test_read_collects_the_batches_and_batches_stream_a_whole_parser(tmp_path: Path) -> None:
    path = tmp_path / "x.bin"
    path.write_bytes(b"x")
    assert Pieces(path).read().column("a").to_pylist() == [0, 1, 2, 3, 4, 5]
    assert [b.num_rows for b in Whole(path).batches()] == [2]

    class Neither(FileSource):
        format = "neither"

    with pytest.raises(NotImplementedError, match="neither _batches nor _read"):
        Neither(path).read()


def test_parquet_reads_whole_and_in_batches_through_one_loop(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"a": list(range(10)), "b": ["x"] * 10}), path, row_group_size=4)
    src = ParquetSource(path)
    src.batch_rows = 3
    assert [b.num_rows for b in src.batches()] == [3, 3, 3, 1]
    assert src.read().to_pydict() == {"a": list(range(10)), "b": ["x"] * 10}
    empty = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"a": pa.array([], pa.int64())}), empty)
    with pytest.raises(InvalidInputError, match="has no rows"):
        ParquetSource(empty).read()
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not really")
    with pytest.raises(InvalidInputError, match="is not a readable Parquet file"):
        ParquetSource(broken).read()
