"""Ingestion on Spark makes the version a local ingest makes: layout, types, hash, statistics."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loopml.data import ingest, list_datasets, load_table
from loopml.data.sources import CsvSource
from loopml.engines.spark.ingest import ingest as spark_ingest
from loopml.errors import InvalidInputError
from loopml.workspace import Workspace, init
from tests.conftest import service_unavailable

pytestmark = pytest.mark.slow


def frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    out = pd.DataFrame(
        {
            "id": np.arange(n),
            "x": rng.normal(size=n).round(5),
            "cat": rng.choice(["a", "b", "NA", "", "c d"], n),
            "flag": rng.choice(["true", "false"], n),
            "ts": pd.date_range("2024-01-01", periods=n, freq="min").strftime("%Y-%m-%d %H:%M:%S"),
            "day": pd.date_range("2024-01-01", periods=n, freq="h").strftime("%Y-%m-%d"),
        }
    )
    out.loc[::7, "x"] = np.nan
    return out


def close(a: Any, b: Any, path: str = "") -> None:
    """Equal, floats to 1e-9 (relative)."""
    if isinstance(a, dict):
        assert set(a) == set(b), (path, set(a) ^ set(b))
        for key in a:
            close(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), (path, a, b)
    else:
        assert a == b, (path, a, b)


@pytest.fixture
def two(tmp_path: Path) -> Any:
    a, b = init(tmp_path / "local"), init(tmp_path / "spark")
    yield a, b
    a.close()
    b.close()


def lake_files(ws: Workspace) -> list[str]:
    return ws.lake.list("")


def same_version(local: Any, on_spark: Any) -> None:
    lv, sv = local.dataset, on_spark.dataset
    assert sv.sha256 == lv.sha256
    assert sv.schema == lv.schema
    assert sv.num_rows == lv.num_rows
    assert sv.parts == lv.parts
    assert sv.partition_by == lv.partition_by
    assert (sv.version, sv.mode, sv.parent) == (lv.version, lv.mode, lv.parent)
    close(lv.stats, sv.stats)


def test_csv_version_equals_the_local_one_and_is_idempotent(
    spark: Any, two: Any, tmp_path: Path
) -> None:
    a, b = two
    path = tmp_path / "events.csv"
    frame().to_csv(path, index=False)
    local = ingest(a, path, "events")
    on_spark = spark_ingest(b, path, "events")
    assert on_spark.created
    same_version(local, on_spark)
    assert load_table(b, "events", verify=False).equals(load_table(a, "events"))
    # the lake holds the version's parts and its statistics sketch; no staging is left
    assert [p for p in lake_files(b) if p.startswith("_staging")] == []
    assert "datasets/events/v=1/_stats.npz" in lake_files(b)
    # the same content again, on either engine: nothing new is recorded
    again = spark_ingest(b, path, "events")
    assert not again.created and again.dataset.version == 1
    assert not spark_ingest(a, path, "events").created
    assert len(list_datasets(a)) == len(list_datasets(b)) == 1


def test_jsonl_parquet_partitioned_and_append(spark: Any, two: Any, tmp_path: Path) -> None:
    a, b = two
    data = frame(120, seed=1)
    jsonl = tmp_path / "events.jsonl"
    data.to_json(jsonl, orient="records", lines=True)
    same_version(ingest(a, jsonl, "j"), spark_ingest(b, jsonl, "j"))

    typed = pa.table(
        {
            "id": pa.array(range(120), pa.int32()),
            "x": pa.array(data["x"].fillna(0.5)),
            "cat": pa.array(data["cat"].replace("", None)),
            "ts": pa.array(pd.to_datetime(data["ts"]).dt.tz_localize("UTC")).cast(
                pa.timestamp("us", tz="UTC")
            ),
        }
    )
    parquet = tmp_path / "events.parquet"
    pq.write_table(typed, parquet)
    same_version(ingest(a, parquet, "p"), spark_ingest(b, parquet, "p"))

    csv = tmp_path / "more.csv"
    data.to_csv(csv, index=False)
    same_version(
        ingest(a, csv, "parts", partition_by="flag"),
        spark_ingest(b, csv, "parts", partition_by="flag"),
    )
    extra = tmp_path / "extra.csv"
    frame(30, seed=2).to_csv(extra, index=False)
    local = ingest(a, extra, "parts", mode="append")
    on_spark = spark_ingest(b, extra, "parts", mode="append")
    same_version(local, on_spark)
    assert on_spark.dataset.parts[:2] == local.dataset.parts[:2]  # the parent's, not rewritten


def test_a_bad_value_fails_the_job_and_commits_nothing(
    spark: Any, workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bad.csv"
    rows = ["n,label"] + [f"{i},x" for i in range(200)] + ["oops,y"]
    path.write_text("\n".join(rows) + "\n")
    # the driver infers the types from the first block, as the local reader does; a tiny
    # block makes the later, non-numeric value a task's problem
    monkeypatch.setattr(CsvSource, "block_bytes", 64)
    with pytest.raises(InvalidInputError) as info:
        spark_ingest(workspace, path, "bad")
    message = str(info.value)
    assert "column 'n'" in message and "'oops'" in message and "\n" not in message
    assert list_datasets(workspace) == []
    assert [p for p in workspace.lake.list("") if p.startswith(("datasets", "_staging"))] == []


def test_jdbc_table_from_postgres(
    spark: Any, workspace: Workspace, postgres_uri: str, tmp_path: Path
) -> None:
    import psycopg

    jar = _postgres_jar()
    with psycopg.connect(postgres_uri, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE events (id bigint, amount double precision, label text, ok boolean, "
            "at timestamptz, n int)"
        )
        conn.execute(
            "INSERT INTO events SELECT i, i * 1.5, 'l' || (i % 3), i % 2 = 0, "
            "timestamptz '2024-01-01 00:00:00+00' + i * interval '1 minute', i FROM "
            "generate_series(1, 50) i"
        )
        schema = conn.execute("SHOW search_path").fetchone()[0]  # type: ignore[index]
    url = "jdbc:postgresql://127.0.0.1:5432/test"
    user = postgres_uri.split("//", 1)[1].split("@", 1)[0]
    res = spark_ingest(
        workspace, url, "pg", table=f"{schema}.events", user=user, driver_jar=jar, numPartitions=2
    )
    dv = res.dataset
    assert dv.num_rows == 50 and dv.source == f"{url}#{schema}.events"
    types = {c["name"]: c["type"] for c in dv.schema}
    assert types == {
        "id": "int64",
        "amount": "double",
        "label": "string",
        "ok": "bool",
        "at": "timestamp[us, tz=UTC]",
        "n": "int64",
    }
    table = load_table(workspace, "pg").sort_by("id")
    assert table.column("amount").to_pylist()[:3] == [1.5, 3.0, 4.5]
    assert str(table.column("at")[0].as_py()) == "2024-01-01 00:01:00+00:00"
    assert not spark_ingest(
        workspace, url, "pg", table=f"{schema}.events", user=user, driver_jar=jar
    ).created


def _postgres_jar() -> str:
    found = os.environ.get("LOOPML_TEST_POSTGRES_JAR")
    if found is None:
        jars = sorted(Path.home().glob(".m2/repository/org/postgresql/postgresql/*/*.jar"))
        found = str(jars[-1]) if jars else None
    if found is None or not Path(found).is_file():
        service_unavailable(
            "no PostgreSQL JDBC driver jar (set LOOPML_TEST_POSTGRES_JAR or put it in ~/.m2)"
        )
    return found


def test_the_command_line_ingests_and_computes_statistics_on_spark(
    spark: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from loopml.cli.main import main

    path = tmp_path / "events.csv"
    frame(150, seed=4).to_csv(path, index=False)
    ws = tmp_path / "ws"
    init(ws).close()
    capsys.readouterr()
    args = ["data", "ingest", str(path), "-n", "events", "-w", str(ws), "--json"]
    assert main([*args, "--engine", "spark", "--spark-master", "local[2]"]) == 0
    captured = capsys.readouterr()
    assert "on Spark" in captured.err
    doc = json.loads(captured.out)
    assert doc["num_rows"] == 150 and doc["created"] is True
    # engine: spark in the settings does the same; the content is there already
    monkeypatch.setenv("LOOPML_ENGINE", "spark")
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "on Spark" in captured.err and json.loads(captured.out)["created"] is False
    assert main(["data", "stats", "events", "-w", str(ws), "--json", "--engine", "spark"]) == 0
    on_spark = json.loads(capsys.readouterr().out)
    assert main(["data", "stats", "events", "-w", str(ws), "--json", "--engine", "local"]) == 0
    close(json.loads(capsys.readouterr().out), on_spark)


def test_declared_schema_and_expectations_apply_as_locally(
    spark: Any, two: Any, tmp_path: Path
) -> None:
    from loopml.data.validate import ValidationError
    from loopml.project.data import parse_datasets

    spec = parse_datasets(
        {
            "tx": {
                "schema": {"id": "int64", "amount": "double"},
                "expectations": [{"column": "amount", "range": [0, 100]}, {"unique": ["id"]}],
            }
        },
        "loopml.yaml",
    )["tx"]
    a, b = two
    good = tmp_path / "good.csv"
    good.write_text("id,amount\n1,10\n2,20\n3,30\n")  # whole numbers in a column declared double
    local, on_spark = ingest(a, good, "tx", spec=spec), spark_ingest(b, good, "tx", spec=spec)
    same_version(local, on_spark)
    assert {c["name"]: c["type"] for c in on_spark.dataset.schema}["amount"] == "double"
    bad = tmp_path / "bad.csv"
    bad.write_text("id,amount\n1,10\n1,-5\n3,30\n")
    with pytest.raises(ValidationError) as info:
        spark_ingest(b, bad, "tx", spec=spec)
    assert {(f["column"], f["rule"]) for f in info.value.report["failures"]} == {
        ("amount", "range"),
        ("id", "unique"),
    }
    assert [dv.version for dv in list_datasets(b)] == [1]  # nothing recorded
    assert [p for p in b.lake.list("") if p.startswith(("datasets/tx/v=2", "_staging"))] == []
    with pytest.raises(InvalidInputError, match="skip-rows"):
        spark_ingest(b, bad, "tx", spec=spec, on_error="skip-rows")
