"""Ingestion into a real embedded workspace: versions, idempotency, reading back, bad input."""

from __future__ import annotations

import importlib
import itertools
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from subprocess import PIPE

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_breast_cancer

from loopml.data import (
    CsvSource,
    IngestResult,
    content_sha256,
    get_dataset,
    ingest,
    list_datasets,
    load_dataset,
    load_table,
    normalize,
)
from loopml.errors import IntegrityError, InvalidInputError, LoopmlError, NotFoundError
from loopml.utils import process_owner
from loopml.workspace import Workspace


@pytest.fixture(scope="module")
def cancer() -> pd.DataFrame:
    return load_breast_cancer(as_frame=True).frame


def nothing_left(ws: Workspace) -> None:
    assert ws.metadata.list_dataset_versions() == []
    assert ws.lake.list() == []


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


# -- round trip and the record ----------------------------------------------------------------


def test_csv_round_trip_and_the_recorded_version(
    workspace: Workspace, tmp_path: Path, cancer: pd.DataFrame
) -> None:
    csv = tmp_path / "cancer.csv"
    cancer.to_csv(csv, index=False)
    res = ingest(workspace, csv, "cancer")
    assert isinstance(res, IngestResult)
    assert res.created is True
    dv = res.dataset
    assert (dv.name, dv.version, dv.path) == ("cancer", 1, "datasets/cancer/v=1")
    assert re.fullmatch(r"[0-9a-f]{64}", dv.sha256)
    assert dv.num_rows == len(cancer)
    assert dv.num_bytes > 0
    assert dv.source == str(csv)
    assert [c["name"] for c in dv.schema] == list(cancer.columns)
    assert {c["kind"] for c in dv.schema} == {"numeric"}
    assert dv.stats["mean radius"]["mean"] == pytest.approx(cancer["mean radius"].mean())
    assert dv.stats["target"]["distinct"] == 2
    assert workspace.lake.list() == [
        "datasets/cancer/v=1/_stats.npz",
        "datasets/cancer/v=1/part-00000.parquet",
    ]

    assert get_dataset(workspace, "cancer") == dv
    assert workspace.metadata.get_dataset_version("cancer", 1) == dv
    back = load_dataset(workspace, "cancer")
    pd.testing.assert_frame_equal(back, cancer)
    assert load_table(workspace, "cancer", 1, verify=True).num_rows == len(cancer)
    # plain Parquet that other tools read without loopml
    direct = pq.read_table(workspace.root / "lake" / "datasets/cancer/v=1/part-00000.parquet")
    pd.testing.assert_frame_equal(direct.to_pandas(), cancer)


def test_same_content_again_is_the_same_version(
    workspace: Workspace, tmp_path: Path, cancer: pd.DataFrame
) -> None:
    first = tmp_path / "a.csv"
    cancer.to_csv(first, index=False)
    v1 = ingest(workspace, first, "cancer").dataset
    again = ingest(workspace, first, "cancer")
    assert again == IngestResult(v1, created=False)
    copy = tmp_path / "copy.csv"
    copy.write_bytes(first.read_bytes())
    assert ingest(workspace, copy, "cancer") == IngestResult(v1, created=False)
    assert workspace.lake.list() == [
        "datasets/cancer/v=1/_stats.npz",
        "datasets/cancer/v=1/part-00000.parquet",
    ]

    changed = cancer.copy()
    changed.loc[0, "mean radius"] += 1.0
    changed.to_csv(tmp_path / "b.csv", index=False)
    v2 = ingest(workspace, tmp_path / "b.csv", "cancer")
    assert v2.created
    assert v2.dataset.version == 2
    assert v2.dataset.sha256 != v1.sha256
    # going back to the first content finds version 1: versions are addressed by content
    assert ingest(workspace, first, "cancer") == IngestResult(v1, created=False)
    assert [dv.version for dv in list_datasets(workspace, "cancer")] == [1, 2]
    assert load_dataset(workspace, "cancer", 2).loc[0, "mean radius"] == pytest.approx(
        cancer.loc[0, "mean radius"] + 1.0
    )
    pd.testing.assert_frame_equal(load_dataset(workspace, "cancer", "1"), cancer)


def test_the_same_data_name_is_per_dataset(workspace: Workspace, cancer: pd.DataFrame) -> None:
    a = ingest(workspace, cancer, "a")
    b = ingest(workspace, cancer, "b")
    assert a.created
    assert b.created
    assert (a.dataset.version, b.dataset.version) == (1, 1)
    assert a.dataset.sha256 == b.dataset.sha256
    assert [dv.name for dv in list_datasets(workspace)] == ["a", "b"]


def test_csv_jsonl_and_parquet_give_the_same_content(workspace: Workspace, tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "score": [0.5, None, 2.25, -1.0],
            "city": ["Paris", None, "Oslo", "Paris"],
            "member": [True, False, True, True],
        }
    )
    frame.to_csv(tmp_path / "f.csv", index=False)
    frame.to_json(tmp_path / "f.jsonl", orient="records", lines=True)
    frame.to_parquet(tmp_path / "f.parquet", index=False)
    results = {
        fmt: ingest(workspace, tmp_path / f"f.{fmt}", f"from-{fmt}")
        for fmt in ("csv", "jsonl", "parquet")
    }
    shas = {r.dataset.sha256 for r in results.values()}
    assert len(shas) == 1, "the same table hashes the same from every format"
    schemas = [r.dataset.schema for r in results.values()]
    assert schemas[0] == schemas[1] == schemas[2]
    kinds = {c["name"]: c["kind"] for c in schemas[0]}
    assert kinds == {
        "id": "numeric",
        "score": "numeric",
        "city": "categorical",
        "member": "boolean",
    }
    for fmt in results:
        back = load_dataset(workspace, f"from-{fmt}")
        assert back["id"].tolist() == [1, 2, 3, 4]
        assert back["score"].isna().tolist() == [False, True, False, False]
        assert back["city"].tolist()[0] == "Paris"
        assert pd.isna(back["city"][1])
        assert back["member"].tolist() == [True, False, True, True]
    # the same content in another format is not a new version
    again = ingest(workspace, tmp_path / "f.parquet", "from-csv")
    assert not again.created
    assert again.dataset.version == 1


def test_format_overrides_the_extension(workspace: Workspace, tmp_path: Path) -> None:
    path = write(tmp_path / "export.txt", '{"a": 1}\n{"a": 2}\n')
    res = ingest(workspace, path, "exp", format="jsonl")
    assert res.dataset.num_rows == 2
    with pytest.raises(InvalidInputError, match="cannot tell the format"):
        ingest(workspace, path, "exp2")


def test_frames_tables_and_sources_can_be_ingested(workspace: Workspace, tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    by_frame = ingest(workspace, frame, "mem")
    assert by_frame.created
    assert by_frame.dataset.source == "<in-memory table>"
    by_table = ingest(workspace, pa.Table.from_pandas(frame, preserve_index=False), "mem")
    assert not by_table.created
    semi = write(tmp_path / "semi.csv", "a;b\n1;x\n2;y\n")
    assert not ingest(workspace, CsvSource(semi, delimiter=";"), "mem").created
    with pytest.raises(InvalidInputError, match="applies to file paths"):
        ingest(workspace, frame, "mem", format="csv")


def test_normalize_and_hash_ignore_metadata_chunks_and_encodings() -> None:
    frame = pd.DataFrame({"a": [1, 2, 3], "s": ["x", "y", "x"], "f": [1.0, float("nan"), 2.0]})
    plain = normalize(pa.Table.from_pandas(frame, preserve_index=False))
    assert plain.schema.metadata is None
    assert plain.column("f").null_count == 1  # NaN is missing
    chunked = pa.concat_tables([plain.slice(0, 1), plain.slice(1)])
    encoded = plain.set_column(1, "s", pa.compute.dictionary_encode(plain.column("s")))
    large = plain.set_column(1, "s", plain.column("s").cast(pa.large_string()))
    with_meta = plain.replace_schema_metadata({"who": "me"})
    sha = content_sha256(plain)
    for variant in (chunked, encoded, large, with_meta):
        assert content_sha256(normalize(variant)) == sha
    reordered = plain.select(["s", "a", "f"])
    assert content_sha256(normalize(reordered)) != sha  # the column order is part of the data
    assert normalize(reordered).column_names == ["s", "a", "f"]
    assert normalize(pa.table({"e": pa.nulls(2)})).schema.field("e").type == pa.string()


def test_an_all_empty_column_is_kept_as_text(workspace: Workspace, tmp_path: Path) -> None:
    path = write(tmp_path / "e.csv", "a,notes\n1,\n2,\n")
    dv = ingest(workspace, path, "e").dataset
    assert dv.schema[1] == {
        "name": "notes",
        "type": "string",
        "kind": "categorical",
        "nullable": True,
        "nulls": 2,
    }
    assert load_dataset(workspace, "e")["notes"].isna().all()


def test_a_folder_without_a_record_is_never_overwritten(workspace: Workspace) -> None:
    # what a crashed (or still running) ingest leaves: data but no record
    workspace.lake.write_table("datasets/d/v=1/part-0.parquet", pa.table({"x": [9]}))
    res = ingest(workspace, pd.DataFrame({"x": [1]}), "d")
    assert res.dataset.version == 2
    assert workspace.lake.read_table("datasets/d/v=1").column("x").to_pylist() == [9]
    assert load_dataset(workspace, "d")["x"].tolist() == [1]
    assert "datasets/d/v=2/part-00000.parquet" in workspace.lake.list("datasets/d")
    assert not [p for p in workspace.lake.list() if "_claim" in p]


def _dead_owner() -> dict[str, object]:
    """The owner of a real process that has exited (killed, and reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=PIPE)
    owner = process_owner(child.pid)
    child.kill()
    child.wait(30)
    return owner


def _never_wait(seconds: float) -> None:
    raise AssertionError(f"the ingest waited ({seconds:.3f} s) for a claim it should take over")


@pytest.mark.parametrize(
    "owner",
    [
        pytest.param(None, id="a claim without an owner (older loopml)"),
        pytest.param({"host": "some-other-host", "pid": 1, "started": "1"}, id="another host"),
        pytest.param("alive", id="a live process of this host"),
    ],
)
def test_a_claim_whose_owner_may_be_alive_is_skipped_after_a_while(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, owner: object
) -> None:
    # the module, not the function of the same name that loopml.data re-exports
    module = importlib.import_module("loopml.data.ingest")
    monkeypatch.setattr(module, "_STALE_AFTER", 0.3)
    owner = process_owner() if owner == "alive" else owner
    marker = b"" if owner is None else json.dumps({"owner": owner}).encode()
    workspace.lake.write_bytes("datasets/c/v=1/_claim-crashed", marker)
    start = time.monotonic()
    res = ingest(workspace, pd.DataFrame({"x": [1]}), "c")
    assert time.monotonic() - start >= 0.3  # it waited for the claim's owner first
    assert res.created
    assert res.dataset.version == 2
    assert "datasets/c/v=1/_claim-crashed" in workspace.lake.list()
    # the next ingest targets version 3
    assert ingest(workspace, pd.DataFrame({"x": [2]}), "c").dataset.version == 3


def test_the_claim_of_a_dead_process_is_taken_over_at_once(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = importlib.import_module("loopml.data.ingest")
    monkeypatch.setattr(module, "_wait", _never_wait)
    # what an ingest killed after writing its data leaves: its claim and the unrecorded data
    claim = json.dumps({"owner": _dead_owner()}).encode()
    workspace.lake.write_bytes("datasets/k/v=1/_claim-killed", claim)
    workspace.lake.write_table("datasets/k/v=1/part-0.parquet", pa.table({"x": [9]}))
    res = ingest(workspace, pd.DataFrame({"x": [1]}), "k")
    assert res.created
    assert res.dataset.version == 1  # the number the killed ingest would have had: no gap
    assert workspace.lake.list() == [
        "datasets/k/v=1/_stats.npz",
        "datasets/k/v=1/part-00000.parquet",
    ]
    assert load_table(workspace, "k", 1, verify=True).column("x").to_pylist() == [1]
    assert ingest(workspace, pd.DataFrame({"x": [2]}), "k").dataset.version == 2


def test_a_dead_claim_on_a_recorded_version_leaves_its_data(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    # killed between recording its version and removing its claim, while another ingest still
    # had the old latest version in hand
    module = importlib.import_module("loopml.data.ingest")
    monkeypatch.setattr(module, "_wait", _never_wait)
    first = ingest(workspace, pd.DataFrame({"x": [1]}), "r").dataset
    workspace.lake.write_bytes(
        "datasets/r/v=1/_claim-killed", json.dumps({"owner": _dead_owner()}).encode()
    )
    latest = workspace.metadata.latest_dataset_version
    stale = [0]  # the first look at the latest version is out of date

    def latest_version(name: str) -> int:
        return stale.pop() if stale else latest(name)

    monkeypatch.setattr(workspace.metadata, "latest_dataset_version", latest_version)
    res = ingest(workspace, pd.DataFrame({"x": [2]}), "r")
    assert res.dataset.version == 2
    assert load_table(workspace, "r", 1, verify=True).column("x").to_pylist() == [1]
    assert workspace.metadata.get_dataset_version("r", 1) == first
    assert not [p for p in workspace.lake.list() if "_claim" in p]


def test_verify_detects_data_changed_behind_loopmls_back(workspace: Workspace) -> None:
    dv = ingest(workspace, pd.DataFrame({"x": [1, 2]}), "t").dataset
    assert load_table(workspace, "t", verify=True).num_rows == 2
    workspace.lake.write_table(f"{dv.path}/part-00000.parquet", pa.table({"x": [1, 3]}))
    with pytest.raises(IntegrityError, match=r"t@1 in the lake does not match") as info:
        load_table(workspace, "t", verify=True)
    assert info.value.where["dataset"] == "t@1"


# -- references -------------------------------------------------------------------------------


def test_get_dataset_by_reference(workspace: Workspace) -> None:
    v1 = ingest(workspace, pd.DataFrame({"x": [1]}), "ref").dataset
    v2 = ingest(workspace, pd.DataFrame({"x": [2]}), "ref").dataset
    assert get_dataset(workspace, "ref") == v2
    assert get_dataset(workspace, "ref@1") == v1
    assert get_dataset(workspace, "ref@2") == v2
    with pytest.raises(NotFoundError):
        get_dataset(workspace, "ref@3")
    with pytest.raises(NotFoundError):
        get_dataset(workspace, "other")


@pytest.mark.parametrize("ref", ["ref@latest", "ref@1.5", "ref@0", "ref@-1", "ref@ 1x", "ref@²"])
def test_a_version_must_be_a_positive_whole_number(workspace: Workspace, ref: str) -> None:
    with pytest.raises(InvalidInputError, match="not a positive whole number") as info:
        get_dataset(workspace, ref)
    assert info.value.where == {"dataset": ref}
    assert "NAME@1" in (info.value.hint or "")


@pytest.mark.parametrize("ref", ["ref@", "../etc@1", "", "a/b"])
def test_malformed_references(workspace: Workspace, ref: str) -> None:
    with pytest.raises(InvalidInputError):
        get_dataset(workspace, ref)


def test_load_with_bad_versions_and_names(workspace: Workspace) -> None:
    ingest(workspace, pd.DataFrame({"x": [1]}), "ok")
    with pytest.raises(InvalidInputError):
        load_table(workspace, "ok", 0)
    with pytest.raises(InvalidInputError):
        load_dataset(workspace, "ok", "two")
    with pytest.raises(InvalidInputError):
        load_table(workspace, "../ok")
    with pytest.raises(NotFoundError):
        load_table(workspace, "ok", 5)
    with pytest.raises(InvalidInputError):
        list_datasets(workspace, "no/slash")
    assert list_datasets(workspace, "unknown") == []


# -- bad input leaves nothing behind ----------------------------------------------------------


BAD_FILES: list[tuple[str, str | bytes, type[LoopmlError], dict[str, object]]] = [
    ("broken.csv", "a,b\n1,2\n3,4,5\n", InvalidInputError, {"line": 3}),
    ("header.csv", "a,b\n", InvalidInputError, {}),
    ("empty.csv", "", InvalidInputError, {}),
    ("empty.jsonl", "", InvalidInputError, {}),
    ("dupes.csv", "a,b,a\n1,2,3\n", InvalidInputError, {"column": "a"}),
    ("noname.csv", "a,,c\n1,2,3\n", InvalidInputError, {"column": 2}),
    ("broken.jsonl", '{"a": 1}\n{"a": \n', InvalidInputError, {"line": 2}),
    ("mixed.jsonl", '{"a": 1}\n{"a": [1]}\n', InvalidInputError, {"line": 2, "column": "a"}),
    ("nested.jsonl", '{"a": {"b": 1}}\n', InvalidInputError, {"column": "a"}),
    ("junk.parquet", b"PAR1 garbage", InvalidInputError, {}),
    ("latin1.csv", "a\nZ\xfcrich\n".encode("latin-1"), InvalidInputError, {"column": "a"}),
]


@pytest.mark.parametrize(
    ("name", "content", "error", "where"), BAD_FILES, ids=[b[0] for b in BAD_FILES]
)
def test_bad_input_raises_and_leaves_nothing(
    workspace: Workspace,
    tmp_path: Path,
    name: str,
    content: str | bytes,
    error: type[LoopmlError],
    where: dict[str, object],
) -> None:
    path = write(tmp_path / name, content)
    with pytest.raises(error) as info:
        ingest(workspace, path, "bad")
    err = info.value
    assert str(path) in str(err)
    assert err.where["file"] == str(path)
    for key, value in where.items():
        assert err.where[key] == value, (key, err.where)
    if "line" in where:
        assert f"line {where['line']}" in err.message
    assert err.hint
    nothing_left(workspace)


def test_missing_file_leaves_nothing(workspace: Workspace, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="file not found") as info:
        ingest(workspace, tmp_path / "nope.csv", "missing")
    assert info.value.where == {"file": str(tmp_path / "nope.csv")}
    nothing_left(workspace)


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden", "x" * 200, "with space"])
def test_bad_dataset_names_leave_nothing(workspace: Workspace, tmp_path: Path, name: str) -> None:
    path = write(tmp_path / "ok.csv", "a\n1\n")
    with pytest.raises(InvalidInputError, match="invalid dataset") as info:
        ingest(workspace, path, name)
    assert info.value.where == {"dataset": name}
    nothing_left(workspace)


def test_bad_input_after_a_good_version_adds_nothing(workspace: Workspace, tmp_path: Path) -> None:
    ingest(workspace, write(tmp_path / "ok.csv", "a\n1\n"), "d")
    before = (workspace.metadata.list_dataset_versions(), workspace.lake.list())
    with pytest.raises(InvalidInputError):
        ingest(workspace, write(tmp_path / "bad.csv", "a\n1\n2,3\n"), "d")
    assert (workspace.metadata.list_dataset_versions(), workspace.lake.list()) == before


# -- property: any small frame of ints, floats and strings survives CSV -> ingest -> load ------


_names = itertools.count()
# control characters other than newline and tab are left out: pandas writes a lone "\r"
# unquoted, and every CSV reader takes it for a line break
_text = st.text(
    alphabet=st.characters(
        codec="utf-8", exclude_categories=("Cs", "Cc"), include_characters=",\"'\n\t;"
    ),
    max_size=12,
).map(lambda s: "s" + s)  # a letter first: never read back as a number, boolean or null


@st.composite
def frames(draw: st.DrawFn) -> pd.DataFrame:
    rows = draw(st.integers(1, 8))
    ncols = draw(st.integers(1, 4))
    columns: dict[str, object] = {}
    for j in range(ncols):
        kind = draw(st.sampled_from(["int", "float", "str"]))
        if kind == "int":
            values = draw(st.lists(st.integers(-(2**62), 2**62), min_size=rows, max_size=rows))
            columns[f"c{j}"] = pd.Series(values, dtype="int64")
        elif kind == "float":
            finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
            values = draw(st.lists(st.none() | finite, min_size=rows, max_size=rows))
            values[draw(st.integers(0, rows - 1))] = draw(finite)  # not all missing
            columns[f"c{j}"] = pd.Series(values, dtype="float64")
        else:
            values = draw(st.lists(st.none() | _text, min_size=rows, max_size=rows))
            values[draw(st.integers(0, rows - 1))] = draw(_text)
            columns[f"c{j}"] = pd.Series(values, dtype=object)
    return pd.DataFrame(columns)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(frame=frames())
def test_any_small_frame_round_trips_through_csv(
    workspace: Workspace, tmp_path: Path, frame: pd.DataFrame
) -> None:
    name = f"prop{next(_names)}"
    path = tmp_path / f"{name}.csv"
    frame.to_csv(path, index=False)
    res = ingest(workspace, path, name)
    back = load_dataset(workspace, name)
    expected = frame.copy()
    for col in expected.columns:
        if expected[col].dtype == object:
            # loopml returns text as pandas' string type; compare the values
            back[col] = back[col].astype(object).where(back[col].notna(), None)
    pd.testing.assert_frame_equal(back, expected, check_exact=True)
    assert res.dataset.num_rows == len(frame)
    again = ingest(workspace, path, name)
    assert not again.created
    assert again.dataset.version == res.dataset.version


def test_numpy_generated_data_keeps_its_types(workspace: Workspace, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "i": rng.integers(-1000, 1000, 500),
            "f": rng.normal(size=500),
            "s": rng.choice(["a", "b", "c"], 500),
            "t": pd.date_range("2024-01-01", periods=500, freq="h"),
        }
    )
    frame.to_parquet(tmp_path / "n.parquet", index=False)
    dv = ingest(workspace, tmp_path / "n.parquet", "n").dataset
    assert [c["kind"] for c in dv.schema] == ["numeric", "numeric", "categorical", "datetime"]
    back = load_dataset(workspace, "n")
    assert back["i"].tolist() == frame["i"].tolist()
    assert back["f"].tolist() == frame["f"].tolist()
    assert back["s"].tolist() == frame["s"].tolist()
    assert (back["t"] == frame["t"]).all()
    assert dv.stats["t"]["min"] == "2024-01-01T00:00:00"


def test_a_csv_with_second_timestamps_and_null_numbers_verifies(
    workspace: Workspace, tmp_path: Path
) -> None:
    # Parquet reads timestamp[s] back as milliseconds and repeats a neighbour's bytes under a
    # null double; neither changes a value, so neither may fail the integrity check.
    csv = tmp_path / "d.csv"
    csv.write_text(
        "a,t,x,s\n"
        "1,2024-01-01 00:00:00,1.5,p\n"
        "2,2024-01-02 00:00:01,,\n"
        "3,2024-01-03 10:00:00,2.5,q\n"
    )
    dv = ingest(workspace, csv, "ts").dataset
    assert [c["type"] for c in dv.schema][:3] == ["int64", "timestamp[s]", "double"]
    table = load_table(workspace, "ts", 1, verify=True)
    assert table.column("x").to_pylist() == [1.5, None, 2.5]
    assert ingest(workspace, csv, "ts").created is False  # the same content: the same version


def test_a_parquet_source_with_stray_bytes_under_nulls_hashes_like_its_values(
    workspace: Workspace, tmp_path: Path
) -> None:
    # the same values with different bytes under the null slot are the same content
    validity = pa.array([True, False, True]).buffers()[1]
    zeros = pa.py_buffer(np.array([1.0, 0.0, 3.0]).tobytes())
    stray = pa.py_buffer(np.array([1.0, 7.0, 3.0]).tobytes())
    a = pa.Array.from_buffers(pa.float64(), 3, [validity, zeros], 1)
    b = pa.Array.from_buffers(pa.float64(), 3, [validity, stray], 1)
    assert a.to_pylist() == b.to_pylist()
    pq.write_table(pa.table({"x": a}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"x": b}), tmp_path / "b.parquet")
    first = ingest(workspace, tmp_path / "a.parquet", "nulls").dataset
    again = ingest(workspace, tmp_path / "b.parquet", "nulls")
    assert again.created is False and again.dataset.sha256 == first.sha256
    assert load_table(workspace, "nulls", 1, verify=True).num_rows == 3
