"""Schemas: Arrow type strings, logical kinds, null counts, and which columns are refused."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa
import pytest

from loopml.data import KINDS, check_columns, compute_stats, kind_of, schema_of
from loopml.errors import InvalidInputError


def test_schema_of_names_types_kinds_and_nulls() -> None:
    table = pa.table(
        {
            "age": pa.array([30, None, 41], pa.int32()),
            "score": [0.5, 1.5, None],
            "price": pa.array([Decimal("1.10"), Decimal("2.00"), None], pa.decimal128(5, 2)),
            "city": ["Paris", "Oslo", "Paris"],
            "code": pa.array(["a", "b", "a"]).dictionary_encode(),
            "ok": [True, False, None],
            "when": pa.array([dt.datetime(2024, 1, 1)] * 3, pa.timestamp("us")),
            "day": pa.array([dt.date(2024, 1, 1)] * 3, pa.date32()),
            "empty": pa.nulls(3),
        }
    )
    schema = schema_of(table)
    assert [c["name"] for c in schema] == table.column_names
    by_name = {c["name"]: c for c in schema}
    assert by_name["age"] == {
        "name": "age",
        "type": "int32",
        "kind": "numeric",
        "nullable": True,
        "nulls": 1,
    }
    assert by_name["score"]["type"] == "double"
    assert by_name["price"]["kind"] == "numeric"
    assert by_name["city"] == {
        "name": "city",
        "type": "string",
        "kind": "categorical",
        "nullable": False,
        "nulls": 0,
    }
    assert by_name["code"]["kind"] == "categorical"
    assert by_name["ok"]["kind"] == "boolean"
    assert by_name["when"]["kind"] == "datetime"
    assert by_name["when"]["type"] == "timestamp[us]"
    assert by_name["day"]["kind"] == "datetime"
    assert by_name["empty"]["nulls"] == 3
    assert all(c["kind"] in KINDS for c in schema)


def test_long_or_mostly_unique_strings_are_text() -> None:
    n = 2000
    ids = pa.chunked_array([[f"id-{i}" for i in range(n)]])
    few = pa.chunked_array([[f"c{i % 7}" for i in range(n)]])
    prose = pa.chunked_array([["this is a long sentence that describes a row in detail"] * 5])
    assert kind_of(ids) == "text"
    assert kind_of(few) == "categorical"
    assert kind_of(prose) == "text"
    # few rows: unique values are still categories
    assert kind_of(pa.chunked_array([["a", "b", "c"]])) == "categorical"


def test_schema_of_reuses_stats_and_agrees_without_them() -> None:
    table = pa.table({"id": [f"user-{i}" for i in range(3000)], "g": ["x", "y", "z"] * 1000})
    assert schema_of(table, compute_stats(table)) == schema_of(table)
    assert [c["kind"] for c in schema_of(table)] == ["text", "categorical"]


def test_check_columns_accepts_a_good_table() -> None:
    check_columns(pa.table({"a": [1], "b": ["x"]}), {"file": "f.csv"})


@pytest.mark.parametrize(
    ("names", "match", "column"),
    [
        (["a", "b", "a"], "'a' appears twice", "a"),
        (["a", ""], "column 2 has an empty name", 2),
        (["  ", "b"], "column 1 has an empty name", 1),
    ],
)
def test_check_columns_names(names: list[str], match: str, column: object) -> None:
    table = pa.Table.from_arrays([pa.array([1])] * len(names), names=names)
    with pytest.raises(InvalidInputError, match=match) as info:
        check_columns(table, {"file": "f.csv"})
    assert info.value.where == {"file": "f.csv", "column": column}
    assert info.value.hint


@pytest.mark.parametrize(
    "array",
    [
        pa.array([[1, 2]]),
        pa.array([{"x": 1}]),
        pa.array([b"\x00\x01"], pa.binary()),
        pa.array([[("k", 1)]], pa.map_(pa.string(), pa.int64())),
    ],
)
def test_check_columns_refuses_nested_and_binary(array: pa.Array) -> None:
    table = pa.table({"ok": [1], "bad": array})
    with pytest.raises(InvalidInputError, match="which a dataset cannot hold") as info:
        check_columns(table, {"file": "f.parquet"})
    assert info.value.where == {"file": "f.parquet", "column": "bad"}


def test_check_columns_refuses_a_table_without_columns() -> None:
    with pytest.raises(InvalidInputError, match="no columns"):
        check_columns(pa.table({}), {"file": "f.parquet"})
