"""A CSV row longer than the parser's blocks (pyarrow: "straddling object") is read again in
larger blocks, the rows already handed on skipped, up to a hard maximum that is reported."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from loopml.data.ingest import ingest, load_table
from loopml.data.sources import CsvSource
from loopml.errors import InvalidInputError
from loopml.workspace import Workspace


def _rows(count: int, long: dict[int, int]) -> list[str]:
    """``count`` rows; those numbered in ``long`` hold a text of that many bytes."""
    return [_long(i, long[i]) if i in long else f"{i},{i * 0.25},row {i}" for i in range(count)]


def _long(i: int, size: int) -> str:
    """A row holding a quoted text of ``size`` bytes, with delimiters, newlines and quotes."""
    unit = 'ab,c\nd""e '  # 10 characters in the file, 9 in the value
    return f'{i},0.5,"{unit * (size // len(unit))}"'


def _file(path: Path, lines: list[str]) -> Path:
    path.write_text("id,x,text\n" + "\n".join(lines) + "\n")
    return path


def test_a_row_longer_than_a_read_block_ingests_early_and_late(
    workspace: Workspace, tmp_path: Path
) -> None:
    # at the default sizes: 16 MiB to infer types from, then 4 MiB blocks; a 9 MiB text (no
    # two 4 MiB blocks hold it, wherever it starts) early, within the first block, and one
    # after more than 16 MiB of ordinary rows
    lines = _rows(901_000, {1_000: 9 << 20, 900_000: 9 << 20})
    path = _file(tmp_path / "long.csv", lines)
    assert path.stat().st_size > (16 << 20) + (18 << 20)
    src = CsvSource(path)
    assert 2 * src.read_bytes < 9 << 20 < src.block_bytes  # the case of the regression
    got = ingest(workspace, src, "long").dataset
    assert got.num_rows == 901_000
    table = load_table(workspace, "long")
    assert table.column("id").to_pylist() == list(range(901_000))
    texts = table.column("text")
    unit = 'ab,c\nd"e '
    want = unit * ((9 << 20) // 10)
    assert texts[1_000].as_py() == want
    assert texts[900_000].as_py() == want
    assert texts[900_001].as_py() == "row 900001"
    assert {c["name"]: c["type"] for c in got.schema}["x"] == "double"


def test_the_batches_after_a_long_row_are_those_of_one_read(tmp_path: Path) -> None:
    lines = _rows(40_000, {20_000: 100 << 10})
    path = _file(tmp_path / "late.csv", lines)

    def rows(read_bytes: int) -> pa.Table:
        src = CsvSource(path)
        src.block_bytes = 256 << 10
        src.read_bytes = read_bytes
        return pa.Table.from_batches(list(src.batches()))

    small, whole = rows(16 << 10), rows(256 << 10)  # 16 KiB blocks straddle the 100 KB row
    assert small.schema == whole.schema
    assert small.equals(whole)
    assert small.num_rows == 40_000


def test_a_row_over_the_hard_maximum_names_the_file_the_row_and_the_fix(
    workspace: Workspace, tmp_path: Path
) -> None:
    lines = _rows(30_000, {20_000: 300 << 10})
    path = _file(tmp_path / "huge.csv", lines)
    src = CsvSource(path)
    src.block_bytes = 128 << 10
    src.read_bytes = 16 << 10
    src.max_row_bytes = 64 << 10  # 16, 32, then 64 KiB blocks: the 300 KB row fits none
    before = (workspace.metadata.list_dataset_versions(), workspace.lake.list())
    with pytest.raises(InvalidInputError) as info:
        ingest(workspace, src, "huge")
    message = str(info.value)
    assert str(path) in message
    # about the row: the parser stops at the last whole row of the block before it
    row = info.value.where["row"]
    assert 19_000 <= row <= 20_001
    assert f"near data row {row} is longer than 64 KiB" in message
    assert "Keep each row under 64 KiB" in info.value.hint
    assert "Parquet" in info.value.hint
    # nothing half-written: no version, no files left in the lake
    assert (workspace.metadata.list_dataset_versions(), workspace.lake.list()) == before
