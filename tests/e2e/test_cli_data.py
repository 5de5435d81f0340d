"""``loopml data``: modes, partitions, head/schema/stats/diff/delete, validation exit codes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Result


@pytest.fixture
def ws(tmp_path: Path, cli: Callable[..., Result]) -> Path:
    path = tmp_path / "ws"
    assert cli("init", "-w", path).code == 0
    return path


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_append_list_head_schema_stats_diff_delete(
    tmp_path: Path, cli: Callable[..., Result], ws: Path
) -> None:
    a = write(tmp_path / "a.csv", "id,amount,day\n1,10.5,2024-01-01\n2,20,2024-01-02\n")
    b = write(tmp_path / "b.csv", "id,amount,day\n3,7,2024-01-03\n")
    first = cli("data", "ingest", a, "-n", "tx", "-w", ws, "--json")
    assert first.code == 0, first.err
    assert "rows/s" in first.err
    res = cli("data", "ingest", b, "-n", "tx", "--mode", "append", "-w", ws, "--json")
    assert res.code == 0, res.err
    dv = json.loads(res.out)
    assert (dv["version"], dv["parent"], dv["mode"], dv["num_rows"]) == (2, 1, "append", 3)
    listed = json.loads(cli("data", "list", "tx", "-w", ws, "--json").out)
    assert [(d["version"], d["parent"]) for d in listed] == [(1, None), (2, 1)]
    table = cli("data", "list", "-w", ws)
    assert "parent" in table.out and "+1" in table.out
    head = json.loads(cli("data", "head", "tx", "-r", "2", "-w", ws, "--json").out)
    assert [r["id"] for r in head] == [1, 2]
    schema = json.loads(cli("data", "schema", "tx@2", "-w", ws, "--json").out)
    assert {c["name"]: c["type"] for c in schema}["amount"] == "double"
    stats = json.loads(cli("data", "stats", "tx", "-c", "amount", "-w", ws, "--json").out)
    assert stats["amount"]["count"] == 3 and stats["amount"]["min"] == 7.0
    shown = cli("data", "stats", "tx", "-w", ws)
    assert shown.code == 0 and "amount" in shown.out
    diff = json.loads(cli("data", "diff", "tx@1", "tx@2", "-w", ws, "--json").out)
    assert diff["rows"] == {"old": 2, "new": 3, "change": 1}
    assert diff["schema"] == [] and diff["relation"] == "append of tx@1"
    assert "rows 2 -> 3 (+1)" in cli("data", "diff", "tx@1", "tx@2", "-w", ws).out
    # the parent is read by its child: not deletable; the child is
    refused = cli("data", "delete", "tx@1", "-w", ws)
    assert refused.code != 0 and "appended" in refused.err
    assert cli("data", "delete", "tx@2", "-w", ws).code == 0
    assert cli("data", "delete", "tx@1", "-w", ws).code == 0
    assert cli("data", "delete", "tx", "-w", ws).code == 2  # a version must be named


def test_partitions_from_the_command_line(
    tmp_path: Path, cli: Callable[..., Result], ws: Path
) -> None:
    path = write(tmp_path / "p.csv", "k,v\na,1\nb,2\na,3\n")
    res = cli("data", "ingest", path, "-n", "p", "--partition-by", "k", "-w", ws, "--json")
    assert res.code == 0, res.err
    parts = json.loads(res.out)["parts"]
    assert [p.split("/")[3] for p in parts] == ["k=a", "k=b"]


def test_validation_failure_exits_1_and_skip_rows_keeps_good_rows(
    tmp_path: Path, cli: Callable[..., Result], ws: Path
) -> None:
    project = write(
        tmp_path / "loopml.yaml",
        "data:\n  datasets:\n    v:\n      expectations:\n"
        "        - {column: amount, range: [0, 100]}\n",
    )
    path = write(tmp_path / "v.csv", "id,amount\n1,5\n2,-1\n3,50\n")
    failed = cli("data", "ingest", path, "-n", "v", "--project", project, "-w", ws)
    assert failed.code == 1
    assert "column 'amount'" in failed.err and "quarantine" in failed.err
    assert "Traceback" not in failed.err
    kept = cli(
        "data",
        "ingest",
        path,
        "-n",
        "v",
        "--project",
        project,
        "--on-error",
        "skip-rows",
        "-w",
        ws,
        "--json",
    )
    assert kept.code == 0, kept.err
    body = json.loads(kept.out)
    assert body["num_rows"] == 2 and body["quarantine"]["quarantined_rows"] == 1


def test_usage_errors_exit_2(tmp_path: Path, cli: Callable[..., Result], ws: Path) -> None:
    path = write(tmp_path / "x.csv", "a\n1\n")
    assert cli("data", "ingest", path, "-n", "x", "--mode", "merge", "-w", ws).code == 2
    assert cli("data", "ingest", path, "-n", "x", "--on-error", "ignore", "-w", ws).code == 2
    bad = cli("data", "ingest", path, "-n", "x", "--max-records", "5", "-w", ws)
    flat = " ".join(bad.err.translate({ord(c): " " for c in "│╭╮╰╯─"}).split())  # rich wraps
    assert bad.code == 2 and "not a stream" in flat
    assert cli("data", "ingest", path, "-n", "x", "-o", "novalue", "-w", ws).code == 2
