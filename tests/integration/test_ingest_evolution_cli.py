"""``loopml data ingest --mode append`` of CSV files whose columns change: what is allowed,
what is refused (exit 1, one line naming the column, both types and the fix)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loopml.cli.main import main


def run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_appends_that_change_columns(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ws = tmp_path / "ws"
    assert run(capsys, "init", "-w", ws)[0] == 0
    (tmp_path / "a.csv").write_text("id,amount\n1,1\n2,2\n")
    (tmp_path / "b.csv").write_text("id,amount,channel\n3,3,web\n")  # a column added
    (tmp_path / "c.csv").write_text("id,amount,channel\n4,4.5,pos\n")  # int64 -> double
    (tmp_path / "d.csv").write_text("id,amount,channel\nx,5,app\n")  # int64 -> string
    ingest = ("data", "ingest", "--name", "tx", "--mode", "append", "-w", ws)
    assert run(capsys, *ingest, tmp_path / "a.csv")[0] == 0
    code, text = run(capsys, *ingest, tmp_path / "b.csv")
    assert code == 0, text
    code, text = run(capsys, *ingest, tmp_path / "c.csv")
    assert code == 2  # an input error, as every refused schema change
    assert "column 'amount' changes from int64 to double" in text
    assert "--allow-schema-change" in text and "Traceback" not in text
    code, text = run(capsys, *ingest, tmp_path / "c.csv", "--allow-schema-change")
    assert code == 0, text
    code, text = run(capsys, *ingest, tmp_path / "d.csv", "--allow-schema-change")
    assert code == 2  # an input error, as every refused schema change
    assert "column 'id' arrives as string, but it is int64 in tx@3" in text
    assert "--mode replace" in text and "Traceback" not in text
    code, out = run(capsys, "data", "schema", "tx", "--json", "-w", ws)
    columns = {c["name"]: c for c in json.loads(out)}
    assert columns["channel"]["history"] == [{"version": 2, "change": "added", "new": "string"}]
    assert columns["amount"]["type"] == "double"
    assert columns["amount"]["history"] == [
        {"version": 3, "change": "widened", "old": "int64", "new": "double"}
    ]
    code, out = run(capsys, "data", "head", "tx", "--json", "-w", ws)
    assert code == 0, out
