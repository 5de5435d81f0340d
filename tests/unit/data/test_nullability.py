"""Inferred nullability is enforced on later versions; a deleted version's number is not reused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loopml.data import ValidationError, delete_version, get_dataset, ingest, load_table
from loopml.errors import NotFoundError
from loopml.project.data import parse_datasets
from loopml.workspace import Workspace


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


GOOD = "id,amount,note\n1,10.5,a\n2,20.0,\n3,30.0,c\n"  # note has a null, amount none
NULLS = "id,amount,note\n4,40.0,d\n5,,e\n6,60.0,f\n7,,g\n"  # amount null at rows 2 and 4


def test_nulls_in_a_column_no_earlier_version_held_one_are_refused(
    workspace: Workspace, tmp_path: Path
) -> None:
    ingest(workspace, write(tmp_path / "v1.csv", GOOD), "tx")
    ingest(workspace, write(tmp_path / "v2.csv", GOOD.replace("1,10.5", "9,10.5")), "tx")
    bad = write(tmp_path / "v3.csv", NULLS)
    with pytest.raises(ValidationError) as info:
        ingest(workspace, bad, "tx")
    err = info.value
    assert str(bad) in err.message  # the file
    assert "column 'amount'" in err.message  # the column
    assert "e.g. row 2" in err.message  # the row
    assert "versions 1-2 held no null" in err.message
    assert err.where["column"] == "amount"
    assert err.where["row"] == 2
    assert "nullable: true" in (err.hint or "")
    assert "data.datasets.tx.schema" in (err.hint or "")
    assert err.exit_code == 1
    # nothing recorded; the rows and the report are in quarantine
    assert get_dataset(workspace, "tx").version == 2
    folder = next(p for p in workspace.lake.list("quarantine") if p.endswith("report.json"))
    report = json.loads(workspace.lake.read_bytes(folder))
    assert report["failures"][0]["rule"] == "inferred_not_null"
    assert report["failures"][0]["rows"] == 2
    assert [e["row"] for e in report["failures"][0]["examples"]] == [2, 4]


def test_skip_rows_quarantines_only_the_null_rows(workspace: Workspace, tmp_path: Path) -> None:
    ingest(workspace, write(tmp_path / "v1.csv", GOOD), "tx")
    res = ingest(workspace, write(tmp_path / "v2.csv", NULLS), "tx", on_error="skip-rows")
    assert res.created
    assert load_table(workspace, "tx").column("id").to_pylist() == [4, 6]
    assert res.quarantine is not None
    assert res.quarantine["quarantined_rows"] == 2


def test_a_declared_column_or_allow_schema_change_accepts_the_nulls(
    workspace: Workspace, tmp_path: Path
) -> None:
    ingest(workspace, write(tmp_path / "v1.csv", GOOD), "tx")
    nulls = write(tmp_path / "v2.csv", NULLS)
    declared = {"tx": {"schema": {"amount": {"type": "double", "nullable": True}}}}
    spec = parse_datasets(declared, "loopml.yaml")
    assert ingest(workspace, nulls, "tx", spec=spec["tx"]).dataset.version == 2
    ingest(workspace, write(tmp_path / "v3.csv", GOOD.replace("1,10.5", "8,10.5")), "tx")
    res = ingest(workspace, write(tmp_path / "v4.csv", NULLS.replace("4,", "8,")), "tx")
    assert res.dataset.version == 4  # version 2 held nulls in amount: nothing to enforce


def test_allow_schema_change_accepts_new_nulls(workspace: Workspace, tmp_path: Path) -> None:
    ingest(workspace, write(tmp_path / "v1.csv", GOOD), "tx")
    res = ingest(workspace, write(tmp_path / "v2.csv", NULLS), "tx", allow_schema_change=True)
    assert res.dataset.version == 2
    assert {c["name"]: c["nullable"] for c in res.dataset.schema}["amount"] is True


def test_enforce_nullability_false_takes_the_rows_as_they_come(
    workspace: Workspace, tmp_path: Path
) -> None:
    ingest(workspace, write(tmp_path / "v1.csv", GOOD), "tx")
    res = ingest(workspace, write(tmp_path / "v2.csv", NULLS), "tx", enforce_nullability=False)
    assert res.dataset.version == 2


def test_an_append_with_nulls_is_refused_too(workspace: Workspace, tmp_path: Path) -> None:
    ingest(workspace, write(tmp_path / "v1.csv", GOOD), "tx")
    with pytest.raises(ValidationError, match="inferred_not_null"):
        ingest(workspace, write(tmp_path / "v2.csv", NULLS), "tx", mode="append")
    # a column that already held nulls (note) takes more of them
    more = write(tmp_path / "v3.csv", "id,amount,note\n8,1.0,\n")
    assert ingest(workspace, more, "tx", mode="append").dataset.num_rows == 4


def test_deleting_the_latest_version_does_not_free_its_number(
    workspace: Workspace, tmp_path: Path
) -> None:
    ingest(workspace, write(tmp_path / "a.csv", "x\n1\n"), "d")
    second = ingest(workspace, write(tmp_path / "b.csv", "x\n2\n"), "d").dataset
    assert second.version == 2
    delete_version(workspace, "d@2")
    with pytest.raises(NotFoundError):
        get_dataset(workspace, "d@2")
    third = ingest(workspace, write(tmp_path / "c.csv", "x\n3\n"), "d").dataset
    assert third.version == 3  # "d@2" keeps meaning the content that was deleted
    assert workspace.lake.list("datasets/d/v=2") == ["datasets/d/v=2/_deleted.json"]
    assert load_table(workspace, "d").column("x").to_pylist() == [3]
    # deleting every version keeps the numbers taken too
    delete_version(workspace, "d@3")
    delete_version(workspace, "d@1")
    assert ingest(workspace, tmp_path / "a.csv", "d").dataset.version == 4
