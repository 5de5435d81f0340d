"""JSON Lines files read in small blocks after the first: bounded read-ahead, the types of one
block of ``block_bytes``, and lines longer than a block read again in larger blocks."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pytest

from loopml.data.ingest import ingest, load_table
from loopml.data.sources import JsonLinesSource
from loopml.errors import InvalidInputError
from loopml.workspace import Workspace


class _Counting:
    """A file that counts the bytes read from it."""

    def __init__(self, fh: IO[bytes], owner: CountingJsonl) -> None:
        self._fh = fh
        self._owner = owner

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        self._owner.taken += len(data)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)


class CountingJsonl(JsonLinesSource):
    taken = 0

    @contextmanager
    def _open(self) -> Iterator[IO[bytes]]:
        with super()._open() as fh:
            yield _Counting(fh, self)  # type: ignore[misc]


_UNIT = 'a "b"\n\\ '  # 12 bytes in JSON


def _write(path: Path, rows: int, long: dict[int, int] | None = None) -> Path:
    """``rows`` objects; those numbered in ``long`` hold a text of more than that many bytes
    (in the file: quotes, newlines and backslashes escaped)."""
    long = long or {}
    with path.open("w") as fh:
        for i in range(rows):
            text = _UNIT * (long[i] // 10) if i in long else f"row {i}"
            fh.write(json.dumps({"id": i, "x": i * 0.25, "label": "rgb"[i % 3], "text": text}))
            fh.write("\n")
    return path


def _settled(src: CountingJsonl) -> int:
    """The bytes read once the background reader has stopped reading ahead."""
    last, still, deadline = -1, 0, time.monotonic() + 10
    while still < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
        still = still + 1 if src.taken == last else 0
        last = src.taken
    return src.taken


def test_the_reader_reads_ahead_in_small_blocks(tmp_path: Path) -> None:
    path = _write(tmp_path / "big.jsonl", 100_000)  # about 6 MB
    size = path.stat().st_size
    src = CountingJsonl(path)
    src.block_bytes = 256 << 10
    src.read_bytes = 16 << 10
    batches = src.batches()
    first = next(batches)
    # pyarrow queues blocks read ahead: of 256 KiB each (the whole file) before
    bound = (256 << 10) + 48 * (16 << 10)  # the first block, then small reads
    assert _settled(src) <= bound < size
    rest = list(batches)
    assert first.num_rows + sum(b.num_rows for b in rest) == 100_000
    assert src.taken == size
    # the batches are joined back to about a block each, not one per small read
    assert len(rest) + 1 <= 2 * size // src.block_bytes


def test_small_blocks_keep_the_types_of_the_first_block(
    workspace: Workspace, tmp_path: Path
) -> None:
    # 'x' holds whole numbers for the first ~100 KB and a decimal within the first block:
    # inferred from the first small block alone it would be int64, then fail on the decimal
    path = tmp_path / "late.jsonl"
    rows = [{"id": i, "x": i % 7, "label": "ab"[i % 2]} for i in range(4_000)]
    rows += [{"id": 4_000 + i, "x": i + 0.5, "label": "a"} for i in range(20_000)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def source(read_bytes: int) -> JsonLinesSource:
        src = JsonLinesSource(path)
        src.block_bytes = 1 << 20
        src.read_bytes = read_bytes
        return src

    small = ingest(workspace, source(8 << 10), "small").dataset
    whole = ingest(workspace, source(1 << 20), "whole").dataset
    assert {c["name"]: c["type"] for c in small.schema}["x"] == "double"
    assert small.sha256 == whole.sha256
    assert small.stats == whole.stats
    assert load_table(workspace, "small").num_rows == 24_000


def test_a_type_change_after_the_first_block_is_still_explained(tmp_path: Path) -> None:
    path = tmp_path / "change.jsonl"
    rows = [{"id": i, "code": None} for i in range(20_000)] + [{"id": 1, "code": "x"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    src = JsonLinesSource(path)
    src.block_bytes = 64 << 10
    src.read_bytes = 8 << 10
    with pytest.raises(InvalidInputError, match=r"cannot read .* as JSON Lines: .*changed from"):
        list(src.batches())


def test_a_compressed_file_in_small_blocks_reads_whole(
    workspace: Workspace, tmp_path: Path
) -> None:
    plain = _write(tmp_path / "rows.jsonl", 30_000)
    packed = tmp_path / "rows.jsonl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    src = JsonLinesSource(packed)
    src.block_bytes = 128 << 10
    src.read_bytes = 8 << 10
    got = ingest(workspace, src, "packed").dataset
    want = ingest(workspace, JsonLinesSource(plain), "plain").dataset
    assert got.sha256 == want.sha256
    assert got.num_rows == 30_000


def test_lines_longer_than_a_read_block_early_and_late(tmp_path: Path) -> None:
    path = _write(tmp_path / "long.jsonl", 30_000, {100: 60 << 10, 20_000: 100 << 10})

    def rows(read_bytes: int) -> pa.Table:
        src = JsonLinesSource(path)
        src.block_bytes = 256 << 10
        src.read_bytes = read_bytes
        return pa.Table.from_batches(list(src.batches()))

    small, whole = rows(16 << 10), rows(256 << 10)  # 16 KiB blocks straddle both
    assert small.equals(whole)
    assert small.column("id").to_pylist() == list(range(30_000))
    assert small.column("text")[20_000].as_py() == _UNIT * ((100 << 10) // 10)


def test_a_line_over_the_hard_maximum_names_the_file_the_line_and_the_fix(
    workspace: Workspace, tmp_path: Path
) -> None:
    path = _write(tmp_path / "huge.jsonl", 10_000, {6_000: 300 << 10})
    src = JsonLinesSource(path)
    src.block_bytes = 128 << 10
    src.read_bytes = 16 << 10
    src.max_row_bytes = 64 << 10
    before = (workspace.metadata.list_dataset_versions(), workspace.lake.list())
    with pytest.raises(InvalidInputError) as info:
        ingest(workspace, src, "huge")
    line = info.value.where["line"]
    assert 5_000 <= line <= 6_001
    assert f"{path}: a row near line {line} is longer than 64 KiB" in str(info.value)
    assert "Keep each row under 64 KiB" in info.value.hint
    assert (workspace.metadata.list_dataset_versions(), workspace.lake.list()) == before
