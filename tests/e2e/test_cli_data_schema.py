"""``loopml data schema``: each column's history of changes by appends, in the table and in
``--json``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from loopml.cli import common

from .conftest import Result


def test_the_schema_shows_each_columns_history(
    tmp_path: Path, cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = tmp_path / "ws"
    assert cli("init", "-w", ws).code == 0
    files = {
        "a": "id,amount\n1,1\n2,2\n",
        "b": "id,amount,channel\n3,3,web\n",  # channel added
        "c": "id,amount,channel\n4,4.5,pos\n",  # amount int64 -> double
        "d": "id,amount\n5,5.5\n",  # channel dropped (it holds nulls: allowed)
        "e": "id,amount,channel\n6,6.5,app\n",  # channel restored
    }
    append = ("data", "ingest", "-n", "tx", "--mode", "append", "--allow-schema-change")
    for key, text in files.items():
        path = tmp_path / f"{key}.csv"
        path.write_text(text)
        res = cli(*append, path, "-w", ws)
        assert res.code == 0, res.err

    shown = json.loads(cli("data", "schema", "tx", "-w", ws, "--json").out)
    columns = {c["name"]: c for c in shown}
    assert columns["id"]["history"] == []  # every column has one, empty when unchanged
    assert columns["amount"]["history"] == [
        {"version": 3, "change": "widened", "old": "int64", "new": "double"}
    ]
    assert [(h["version"], h["change"]) for h in columns["channel"]["history"]] == [
        (2, "added"),
        (4, "dropped"),
        (5, "restored"),
    ]
    # an older version shows the history up to itself
    older = json.loads(cli("data", "schema", "tx@2", "-w", ws, "--json").out)
    assert {c["name"]: c["history"] for c in older} == {
        "id": [],
        "amount": [],
        "channel": [{"version": 2, "change": "added", "new": "string"}],
    }

    monkeypatch.setattr(common.out, "width", 200)
    wide = cli("data", "schema", "tx", "-w", ws)
    assert wide.code == 0, wide.err
    lines = {line.split()[1]: line for line in wide.out.splitlines() if line.startswith("│ ")}
    assert "history" in wide.out
    assert "v3 int64 -> double" in lines["amount"]
    assert "v2 added (string); v4 dropped; v5 restored" in lines["channel"]
    assert lines["id"].rstrip(" │").endswith("-")
    # in 80 columns the history wraps, the other columns stay whole
    monkeypatch.setattr(common.out, "width", 80)
    narrow = cli("data", "schema", "tx", "-w", ws).out
    assert all(len(line) <= 80 for line in narrow.splitlines())
    assert "restored" in narrow and "int64" in narrow
