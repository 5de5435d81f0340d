"""Batched ingestion: parts, the content hash, modes, partitions, positions, streams."""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.datasets import load_breast_cancer

from loopml.data import (
    Source,
    StreamingStats,
    compute_stats,
    content_sha256,
    ingest,
    ingest_stream,
    load_table,
    normalize,
    version_urls,
)
from loopml.data.engine import SchemaChangeError
from loopml.data.sources import CsvSource
from loopml.errors import InvalidInputError
from loopml.workspace import Workspace

engine = importlib.import_module("loopml.data.engine")


def frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "id": np.arange(n),
            "x": rng.normal(size=n),
            "c": rng.choice(["a", "b", "c"], n),
            "day": pd.to_datetime("2024-01-01") + pd.to_timedelta(rng.integers(0, 3, n), "D"),
        }
    )


class Pieces(Source):
    """A source that yields a table in pieces of ``size`` rows (as a database cursor does)."""

    format = "pieces"

    def __init__(self, table: pa.Table, size: int) -> None:
        self.table = table
        self.size = size

    def describe(self) -> str:
        return f"pieces of {self.size}"

    def read(self) -> pa.Table:
        return self.table

    def batches(self) -> Any:
        for start in range(0, self.table.num_rows, self.size):
            yield self.table.slice(start, self.size)


def test_the_hash_does_not_depend_on_how_the_rows_were_cut(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "CANON_ROWS", 1000)
    table = pa.Table.from_pandas(frame(3500), preserve_index=False)
    a = ingest(workspace, Pieces(table, 7), "a").dataset
    b = ingest(workspace, Pieces(table, 1234), "b").dataset
    c = ingest(workspace, table, "c").dataset
    assert a.sha256 == b.sha256 == c.sha256
    # the same content again is the same version, whatever the cut
    again = ingest(workspace, Pieces(table, 500), "a")
    assert not again.created and again.dataset.version == 1


def test_a_small_table_keeps_the_hash_it_always_had(workspace: Workspace) -> None:
    table = normalize(pa.Table.from_pandas(frame(50), preserve_index=False))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    import hashlib

    before = hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()  # the old formula
    assert content_sha256(table) == before
    assert ingest(workspace, table, "t").dataset.sha256 == before


def test_big_inputs_become_several_parts_and_read_back_whole(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "PART_BYTES", 20_000)
    data = frame(5000)
    dv = ingest(workspace, Pieces(pa.Table.from_pandas(data, preserve_index=False), 600), "p")
    parts = dv.dataset.parts
    assert len(parts) > 3
    assert parts == sorted(parts)
    assert all(p.startswith("datasets/p/v=1/part-") for p in parts)
    back = load_table(workspace, "p", verify=True).to_pandas()
    pd.testing.assert_frame_equal(back, data, check_dtype=False)
    # other readers: the URLs are plain Parquet files
    urls = version_urls(workspace, dv.dataset)
    assert sum(pq.read_metadata(u.removeprefix("file://")).num_rows for u in urls) == 5000


def test_a_csv_is_read_in_blocks(workspace: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    frame(20_000).to_csv(path, index=False)
    src = CsvSource(path)
    src.block_bytes = 64 << 10
    pieces = list(src.batches())
    assert len(pieces) > 5
    assert sum(p.num_rows for p in pieces) == 20_000
    whole = ingest(workspace, path, "whole").dataset
    blocks = ingest(workspace, src, "blocks").dataset
    assert whole.sha256 == blocks.sha256
    assert whole.stats["x"]["mean"] == pytest.approx(blocks.stats["x"]["mean"])


def test_append_adds_rows_without_rewriting_the_parent(workspace: Workspace) -> None:
    first = ingest(workspace, frame(100), "a").dataset
    before = {p: workspace.lake.read_bytes(p) for p in first.parts}
    second = ingest(workspace, frame(30, seed=1), "a", mode="append").dataset
    assert (second.version, second.parent, second.mode) == (2, 1, "append")
    assert second.num_rows == 130
    assert second.parts[: len(first.parts)] == first.parts
    assert {p: workspace.lake.read_bytes(p) for p in first.parts} == before
    table = load_table(workspace, "a", verify=True)
    assert table.column("id").to_pylist() == list(range(100)) + list(range(30))
    exact = compute_stats(table)
    assert second.stats["x"]["mean"] == pytest.approx(exact["x"]["mean"])
    assert second.stats["x"]["std"] == pytest.approx(exact["x"]["std"])
    assert second.stats["id"]["distinct"] == exact["id"]["distinct"] == 100
    # appending the same rows again adds nothing
    again = ingest(workspace, frame(30, seed=1), "a", mode="append")
    assert not again.created and again.dataset.version == 2
    manifest = json.loads(workspace.lake.read_bytes(f"{second.path}/_manifest.json"))
    assert manifest["parts"] == second.parts and manifest["parent"] == 1
    assert load_table(workspace, "a", 1).num_rows == 100


def test_append_refuses_other_columns(workspace: Workspace) -> None:
    ingest(workspace, pd.DataFrame({"x": [1.5, 2.5]}), "a")
    # whole numbers into a float column: kept a float
    dv = ingest(workspace, pd.DataFrame({"x": [3, 4]}), "a", mode="append").dataset
    assert dv.schema[0]["type"] == "double"
    with pytest.raises(
        SchemaChangeError, match=r"cannot append to a@2: column 'x' arrives as string, but it is"
    ):
        ingest(workspace, pd.DataFrame({"x": ["z"]}), "a", mode="append")
    # (an added column is schema evolution: tests/unit/data/test_evolution.py)
    assert workspace.metadata.latest_dataset_version("a") == 2
    assert not [p for p in workspace.lake.list() if "v=3" in p]


def test_a_type_change_between_versions_needs_consent(workspace: Workspace) -> None:
    ingest(workspace, pd.DataFrame({"x": [1, 2]}), "t")
    with pytest.raises(SchemaChangeError, match=r"x: int64 -> string") as info:
        ingest(workspace, pd.DataFrame({"x": ["a", "b"]}), "t")
    assert info.value.changes == [
        {"column": "x", "change": "type", "old": "int64", "new": "string"}
    ]
    dv = ingest(workspace, pd.DataFrame({"x": ["a", "b"]}), "t", allow_schema_change=True)
    assert dv.dataset.version == 2 and dv.dataset.schema[0]["type"] == "string"
    # a column added in a replace is not a type change
    assert ingest(workspace, pd.DataFrame({"x": ["c"], "y": [1]}), "t").dataset.version == 3


def test_partitions_are_hive_folders(workspace: Workspace) -> None:
    data = frame(300)
    dv = ingest(workspace, data, "p", partition_by="c").dataset
    assert dv.partition_by == ["c"]
    folders = sorted({p.split("/")[3] for p in dv.parts})
    assert folders == ["c=a", "c=b", "c=c"]
    back = load_table(workspace, "p", verify=True).to_pandas()
    assert len(back) == 300
    for value in "abc":  # each folder holds its rows, in their order
        part = [p for p in dv.parts if f"/c={value}/" in p]
        rows = pd.concat([workspace.lake.read_table(p).to_pandas() for p in part])
        assert list(rows["id"]) == list(data.loc[data["c"] == value, "id"])
    again = ingest(workspace, data, "p", partition_by="c")
    assert not again.created
    appended = ingest(workspace, frame(10, seed=3), "p", mode="append").dataset
    assert appended.partition_by == ["c"] and appended.num_rows == 310
    with pytest.raises(InvalidInputError, match="no such column"):
        ingest(workspace, data, "q", partition_by="nope")
    with pytest.raises(InvalidInputError, match="floats"):
        ingest(workspace, data, "q", partition_by="x")


def test_a_failure_mid_way_leaves_nothing(workspace: Workspace) -> None:
    good = pa.table({"x": pa.array(range(10), pa.int64())})

    class Breaks(Pieces):
        def batches(self) -> Any:
            yield from super().batches()
            raise InvalidInputError("page 3 is not JSON", where={"page": 3}, hint="fix it")

    with pytest.raises(InvalidInputError, match="page 3"):
        ingest(workspace, Breaks(good, 4), "b")
    assert workspace.metadata.list_dataset_versions() == []
    assert [p for p in workspace.lake.list() if not p.endswith("/")] == []


class Cursor(Source):
    """A resumable source: rows past the stored position (as an incremental SQL read)."""

    format = "cursor"

    def __init__(self, rows: list[int], fail_after: int | None = None) -> None:
        self.rows = rows
        self.key = "cursor:test"
        self.start = 0
        self.done = 0
        self.fail_after = fail_after
        self.acked: list[dict[str, Any]] = []

    def describe(self) -> str:
        return "cursor"

    def read(self) -> pa.Table:
        raise AssertionError("read in batches")

    def resume(self, position: dict[str, Any] | None) -> None:
        self.start = self.done = 0 if position is None else int(position["after"])

    def batches(self) -> Any:
        new = [r for r in self.rows if r > self.start]
        for i in range(0, len(new), 2):
            if self.fail_after is not None and i >= self.fail_after:
                raise InvalidInputError("connection lost", where={"row": i}, hint="retry")
            chunk = new[i : i + 2]
            self.done = chunk[-1]
            yield pa.table({"n": pa.array(chunk, pa.int64())})

    def position(self) -> dict[str, Any] | None:
        return {"after": self.done}

    def committed(self, position: dict[str, Any]) -> None:
        self.acked.append(position)


def test_a_resumable_source_moves_its_position_with_the_version(workspace: Workspace) -> None:
    src = Cursor([1, 2, 3])
    first = ingest(workspace, src, "c").dataset
    assert workspace.metadata.get_source_position("c", "cursor:test") == {"after": 3}
    assert src.acked == [{"after": 3}]
    # nothing new: no version, the position stays
    same = ingest(workspace, Cursor([1, 2, 3]), "c")
    assert not same.created and same.dataset.version == 1
    # new rows: appended (the default for a resumable source with a version)
    grown = Cursor([1, 2, 3, 4, 5, 6, 7])
    dv = ingest(workspace, grown, "c").dataset
    assert (dv.version, dv.mode, dv.num_rows) == (2, "append", 7)
    assert load_table(workspace, "c").column("n").to_pylist() == [1, 2, 3, 4, 5, 6, 7]
    # a run that fails records nothing and moves nothing
    broken = Cursor([*range(1, 8), 8, 9, 10, 11], fail_after=2)
    with pytest.raises(InvalidInputError, match="connection lost"):
        ingest(workspace, broken, "c")
    assert broken.acked == []
    assert workspace.metadata.get_source_position("c", "cursor:test") == {"after": 7}
    assert workspace.metadata.latest_dataset_version("c") == 2
    assert first.num_rows == 3


class Stream(Source):
    """A streaming source over a list of messages; acknowledges what was committed."""

    format = "stream"
    streaming = True

    def __init__(self, messages: list[dict[str, Any]], interrupt_at: int | None = None) -> None:
        self.messages = messages
        self.key = "stream:test"
        self.offset = 0
        self.acked = 0
        self.interrupt_at = interrupt_at

    def describe(self) -> str:
        return "stream"

    def read(self) -> pa.Table:
        raise AssertionError("polled")

    def resume(self, position: dict[str, Any] | None) -> None:
        self.offset = 0 if position is None else int(position["offset"])

    def poll(self, max_records: int, timeout: float) -> pa.Table | None:
        if self.interrupt_at is not None and self.offset >= self.interrupt_at:
            raise KeyboardInterrupt
        got = self.messages[self.offset : self.offset + min(max_records, 3)]
        if not got:
            return None
        self.offset += len(got)
        return pa.Table.from_pylist(got)

    def position(self) -> dict[str, Any] | None:
        return {"offset": self.offset}

    def committed(self, position: dict[str, Any]) -> None:
        self.acked = int(position["offset"])


def test_a_stream_is_appended_in_micro_batches_and_resumes(workspace: Workspace) -> None:
    messages = [{"sensor": "s1", "value": float(i)} for i in range(25)]
    killed = Stream(messages, interrupt_at=14)
    with pytest.raises(KeyboardInterrupt):
        ingest_stream(workspace, killed, "events", micro_batch_rows=5, idle_timeout=0.2)
    # whole micro-batches are in; the one in progress is not, and was not acknowledged
    recorded = workspace.metadata.get_source_position("events", "stream:test")
    assert recorded is not None and recorded["offset"] % 5 == 0
    assert killed.acked == recorded["offset"]
    rest = Stream(messages)
    results = ingest_stream(workspace, rest, "events", micro_batch_rows=5, idle_timeout=0.2)
    assert results and all(r.created for r in results)
    values = load_table(workspace, "events", verify=True).column("value").to_pylist()
    assert values == [float(i) for i in range(25)]  # nothing lost, nothing twice
    bounded = ingest_stream(
        workspace,
        Stream(messages + [{"sensor": "s2", "value": 99.0}] * 9),
        "events",
        max_records=4,
        idle_timeout=0.2,
    )
    assert sum(r.dataset.num_rows for r in bounded) == 29


def test_a_stream_is_needed_for_ingest_stream(workspace: Workspace) -> None:
    with pytest.raises(InvalidInputError, match="not a stream"):
        ingest_stream(workspace, pd.DataFrame({"x": [1]}), "x")


def test_streaming_statistics_match_the_exact_ones_on_small_data() -> None:
    data = load_breast_cancer(as_frame=True).frame
    table = pa.Table.from_pandas(data, preserve_index=False)
    stats = StreamingStats(table.schema)
    for batch in table.to_batches(max_chunksize=97):
        stats.update(batch)
    got, exact = stats.result(), compute_stats(table)
    for col in table.column_names:
        for key, value in exact[col].items():
            assert math.isclose(got[col][key], value, rel_tol=1e-9, abs_tol=1e-12), (col, key)
        assert "approximate" not in got[col]
        assert sum(got[col]["histogram"]["counts"]) == len(data)


def test_streaming_statistics_estimate_big_data_and_say_so(monkeypatch: pytest.MonkeyPatch) -> None:
    stats_module = importlib.import_module("loopml.data.stats")
    monkeypatch.setattr(stats_module, "SAMPLE_SIZE", 2000)
    monkeypatch.setattr(stats_module, "DISTINCT_EXACT", 1000)
    rng = np.random.default_rng(0)
    n = 50_000
    table = pa.table({"x": rng.normal(10, 2, n), "s": [f"v{i % 5000}" for i in range(n)]})
    stats = StreamingStats(table.schema)
    for batch in table.to_batches(max_chunksize=4096):
        stats.update(batch)
    got, exact = stats.result(), compute_stats(table)
    x = got["x"]
    assert x["mean"] == pytest.approx(exact["x"]["mean"], rel=1e-9)  # exact
    assert x["std"] == pytest.approx(exact["x"]["std"], rel=1e-9)
    assert x["p50"] == pytest.approx(exact["x"]["p50"], abs=0.15)  # a sample
    assert set(x["approximate"]) >= {"distinct", "p50", "histogram"}
    assert sum(x["histogram"]["counts"]) == n
    assert got["s"]["distinct"] == pytest.approx(5000, rel=0.05)  # HyperLogLog
    assert "distinct" in got["s"]["approximate"]
    # the saved state merges on: same result as seeing everything at once
    restored = StreamingStats.from_bytes(stats.to_bytes(), table.schema)
    assert restored.result() == got


def test_schemes_dispatch_to_registered_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    sources = importlib.import_module("loopml.data.sources")
    monkeypatch.setattr(sources, "SCHEMES", dict(sources.SCHEMES))
    made: list[tuple[str, dict[str, Any]]] = []

    def factory(uri: str, format: str | None = None, **options: Any) -> Source:
        made.append((uri, options))
        return Pieces(pa.table({"x": [1]}), 1)

    sources.register_scheme("demo://", factory)
    got = sources.source_for("demo+v2://host/thing", table="t")
    assert isinstance(got, Pieces)
    assert made == [("demo+v2://host/thing", {"table": "t"})]
    assert isinstance(sources.source_for("x.csv"), CsvSource)  # files are not schemes
    monkeypatch.setitem(sources.LAZY_SCHEMES, "nowhere", "loopml.data.no_such_module:make")
    with pytest.raises(InvalidInputError, match="cannot read nowhere://u:\\*\\*\\*@h/db"):
        sources.source_for("nowhere://u:secret@h/db")


def test_a_csv_column_that_changes_type_late_needs_consent(
    workspace: Workspace, tmp_path: Path
) -> None:
    path = tmp_path / "late.csv"
    rows = [f"{i},{i * 2}" for i in range(20_000)] + ["20000,x7", "20001,7"]
    path.write_text("id,code\n" + "\n".join(rows) + "\n")

    def source() -> CsvSource:
        src = CsvSource(path)
        src.block_bytes = 64 << 10  # the first block holds numbers only
        return src

    with pytest.raises(InvalidInputError, match=r"column 'code' was read as int64") as info:
        ingest(workspace, source(), "late")
    assert "--allow-schema-change" in (info.value.hint or "")
    assert not [p for p in workspace.lake.list() if p.endswith(".parquet")]  # nothing left
    dv = ingest(workspace, source(), "late", allow_schema_change=True).dataset
    assert {c["name"]: c["type"] for c in dv.schema} == {"id": "int64", "code": "string"}
    codes = load_table(workspace, "late").column("code").to_pylist()
    assert codes[-2:] == ["x7", "7"] and len(codes) == 20_002
