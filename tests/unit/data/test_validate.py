"""Validation: declared schemas and expectations, quarantine reports, skip-rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from loopml.data import ValidationError, ingest, load_table
from loopml.errors import ConfigError
from loopml.project.data import load_dataset_specs, parse_datasets
from loopml.workspace import Workspace

SPEC = {
    "tx": {
        "schema": {
            "id": "int64",
            "amount": {"type": "double", "nullable": False},
            "note": {"type": "string", "required": False},
        },
        "expectations": [
            {"column": "amount", "range": [0, 100]},
            {"column": "country", "allowed": ["FR", "DE"]},
            {"column": "email", "regex": "[^@ ]+@[^@ ]+"},
            {"unique": ["id"]},
        ],
    }
}


def tx(**changes: list[object]) -> pd.DataFrame:
    data: dict[str, list[object]] = {
        "id": [1, 2, 3, 4],
        "amount": [10.0, 20.5, 30.0, 40.0],
        "country": ["FR", "DE", "FR", "DE"],
        "email": ["a@x.org", "b@x.org", "c@x.org", "d@x.org"],
    }
    data.update(changes)
    return pd.DataFrame(data)


@pytest.fixture
def spec():  # type: ignore[no-untyped-def]
    return parse_datasets(SPEC, "loopml.yaml")["tx"]


def quarantined(ws: Workspace) -> list[str]:
    return [p for p in ws.lake.list("quarantine")]


def test_good_data_passes_and_gets_the_declared_types(workspace: Workspace, spec) -> None:  # type: ignore[no-untyped-def]
    data = tx(amount=[10, 20, 30, 40])  # integers in a column declared double
    dv = ingest(workspace, data, "tx", spec=spec).dataset
    assert {c["name"]: c["type"] for c in dv.schema}["amount"] == "double"
    assert quarantined(workspace) == []


def test_a_failing_batch_is_quarantined_with_a_report(workspace: Workspace, spec) -> None:  # type: ignore[no-untyped-def]
    data = tx(amount=[10.0, -5.0, 30.0, None], country=["FR", "XX", "FR", "DE"], id=[1, 2, 2, 4])
    with pytest.raises(ValidationError) as info:
        ingest(workspace, data, "tx", spec=spec)
    err = info.value
    assert err.exit_code == 1
    assert "column 'amount'" in err.message and "e.g. row" in err.message
    report = err.report
    rules = {(f["column"], f["rule"]): f for f in report["failures"]}
    assert set(rules) == {
        ("amount", "not_null"),
        ("amount", "range"),
        ("country", "allowed"),
        ("id", "unique"),
    }
    assert rules["amount", "range"]["rows"] == 1
    assert rules["amount", "range"]["examples"][0]["row"] == 2
    assert rules["amount", "range"]["examples"][0]["amount"] == -5.0
    assert rules["id", "unique"]["examples"][0]["row"] == 3
    # nothing ingested; the batch and the report are in the quarantine folder
    assert workspace.metadata.list_dataset_versions() == []
    assert not [p for p in workspace.lake.list() if p.startswith("datasets/")]
    files = quarantined(workspace)
    folder = files[0].rsplit("/", 1)[0]
    assert sorted(p.rsplit("/", 1)[1] for p in files) == [
        "report.json",
        "report.txt",
        "rows-00000.parquet",
    ]
    stored = json.loads(workspace.lake.read_bytes(f"{folder}/report.json"))
    assert stored["outcome"].startswith("refused") and stored["quarantined_rows"] == 4
    text = workspace.lake.read_bytes(f"{folder}/report.txt").decode()
    assert "column 'country': rule allowed" in text and '"country": "XX"' in text


def test_skip_rows_keeps_the_good_rows(workspace: Workspace, spec) -> None:  # type: ignore[no-untyped-def]
    data = tx(email=["a@x.org", "not an email", "c@x.org", "d@x.org"])
    res = ingest(workspace, data, "tx", spec=spec, on_error="skip-rows")
    assert res.created and res.dataset.num_rows == 3
    assert load_table(workspace, "tx").column("id").to_pylist() == [1, 3, 4]
    assert res.quarantine is not None and res.quarantine["quarantined_rows"] == 1
    bad = [p for p in quarantined(workspace) if p.endswith(".parquet")]
    assert workspace.lake.read_table(bad[0]).column("id").to_pylist() == [2]


def test_batch_rules_missing_and_uncastable_columns(workspace: Workspace, spec) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError, match="required"):
        ingest(workspace, tx().drop(columns=["id"]), "tx", spec=spec)
    with pytest.raises(ValidationError, match="type") as info:
        ingest(workspace, tx(id=["1", "two", "3", "4"]), "tx", spec=spec)
    failure = info.value.report["failures"][0]
    assert failure["column"] == "id" and failure["examples"][0]["id"] == "two"


def test_unique_keys_across_batches(workspace: Workspace, spec) -> None:  # type: ignore[no-untyped-def]
    data = pd.concat([tx(), tx()], ignore_index=True)
    with pytest.raises(ValidationError, match="unique"):
        ingest(workspace, data, "tx", spec=spec, batch_rows=3)


def test_version_rules_rows_and_freshness(workspace: Workspace) -> None:
    now = datetime.now(UTC).replace(tzinfo=None)
    specs = parse_datasets(
        {
            "ev": {
                "expectations": [
                    {"rows": [2, None]},
                    {"column": "at", "freshness": "1h"},
                ]
            }
        },
        "loopml.yaml",
    )
    fresh = pd.DataFrame({"at": [now - timedelta(minutes=5), now]})
    assert ingest(workspace, fresh, "ev", spec=specs["ev"]).created
    with pytest.raises(ValidationError, match="rows"):
        ingest(workspace, fresh.iloc[:1], "ev", spec=specs["ev"])
    stale = pd.DataFrame({"at": [now - timedelta(days=3), now - timedelta(days=2)]})
    with pytest.raises(ValidationError, match=r"freshness|old"):
        ingest(workspace, stale, "ev", spec=specs["ev"])
    assert workspace.metadata.latest_dataset_version("ev") == 1


def test_specs_come_from_loopml_yaml(tmp_path: Path) -> None:
    path = tmp_path / "loopml.yaml"
    path.write_text(
        "data:\n  dataset: tx\n  target: fraud\n  datasets:\n    tx:\n      schema: {id: int}\n"
        "      expectations:\n        - {column: id, range: [0, null]}\n"
    )
    specs = load_dataset_specs(path)
    assert specs["tx"].columns[0].type == "int64"
    assert specs["tx"].expectations[0].low == 0 and specs["tx"].expectations[0].high is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"tx": {"schema": {"a": "integr"}}}, "unknown column type"),
        ({"tx": {"expectations": [{"column": "a", "range": [1]}]}}, r"\[low, high\]"),
        ({"tx": {"expectations": [{"column": "a", "regex": "("}]}}, "regular expression"),
        ({"tx": {"expectations": [{"range": [0, 1]}]}}, "needs column"),
        ({"tx": {"expectations": [{"column": "a", "freshness": "soon"}]}}, "duration"),
        ({"tx": {"expectations": [{"column": "a", "rnage": [0, 1]}]}}, "exactly one rule"),
        ({"tx": {"schmea": {}}}, "unknown key"),
    ],
)
def test_bad_specs_name_the_field(spec: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_datasets(spec, "loopml.yaml")
    assert info.value.where["file"] == "loopml.yaml"
    assert str(info.value.where["field"]).startswith("data.datasets.tx")


def test_a_declared_type_reads_a_csv_column_as_given(workspace: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "codes.csv"
    path.write_text("code,n\n007,1\n010,2\n")
    spec = parse_datasets({"codes": {"schema": {"code": "string"}}}, "loopml.yaml")["codes"]
    ingest(workspace, path, "codes", spec=spec)
    assert load_table(workspace, "codes").column("code").to_pylist() == ["007", "010"]
    assert pa.types.is_string(load_table(workspace, "codes").schema.field("code").type)


def test_the_project_file_checks_data_datasets() -> None:
    from loopml.project.config import ProjectConfig

    base = {
        "name": "m",
        "data": {"dataset": "tx", "target": "y"},
        "model": {"class": "sklearn.linear_model.LogisticRegression"},
    }
    ok = {**base, "data": {**base["data"], "datasets": {"tx": {"schema": {"y": "int"}}}}}
    assert ProjectConfig.from_dict(ok).dataset == "tx"
    bad = {**base, "data": {**base["data"], "datasets": {"tx": {"schema": {"y": "integr"}}}}}
    with pytest.raises(ConfigError, match="unknown column type") as info:
        ProjectConfig.from_dict(bad)
    assert info.value.where["field"] == "data.datasets.tx.schema.y"
