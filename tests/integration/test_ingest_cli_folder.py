"""``loopml data ingest`` of a hive tree and of a version bringing nulls into a column that
never held one: exit codes and what the user reads."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loopml.cli.main import main


def run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_hive_tree_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ws = tmp_path / "ws"
    assert run(capsys, "init", "-w", ws)[0] == 0
    for year in (2013, 2014):
        folder = tmp_path / "tx" / f"year={year}"
        folder.mkdir(parents=True)
        pq.write_table(pa.table({"amount": [1.0, 2.0]}), folder / "part-0.parquet")
    code, out, err = run(capsys, "data", "ingest", tmp_path / "tx", "--name", "tx", "-w", ws)
    assert code == 0, err
    code, out, _ = run(capsys, "data", "schema", "tx", "--json", "-w", ws)
    columns = {c["name"]: c for c in json.loads(out)}
    assert columns["year"]["type"] == "int64"
    assert columns["year"]["from_path"] is True
    code, out, _ = run(capsys, "data", "schema", "tx", "-w", ws)
    assert "key=value folders: year" in out


def test_new_nulls_exit_1_with_the_column_the_row_and_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    ws = tmp_path / "ws"
    assert run(capsys, "init", "-w", ws)[0] == 0
    (tmp_path / "a.csv").write_text("id,amount\n1,1.5\n2,2.5\n")
    (tmp_path / "b.csv").write_text("id,amount\n3,3.5\n4,\n")
    assert run(capsys, "data", "ingest", tmp_path / "a.csv", "--name", "tx", "-w", ws)[0] == 0
    code, out, err = run(capsys, "data", "ingest", tmp_path / "b.csv", "--name", "tx", "-w", ws)
    assert code == 1
    text = out + err
    assert "b.csv" in text
    assert "column 'amount'" in text
    assert "row 2" in text
    assert "nullable: true" in text
    assert "Traceback" not in text
