"""CSV files as they come: other delimiters, decimal commas, encodings, no header."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

import loopml
from loopml.errors import InvalidInputError

from .conftest import Result


@pytest.fixture
def ws(tmp_path: Path, cli: Callable[..., Result]) -> Path:
    path = tmp_path / "ws"
    assert cli("init", "-w", path).code == 0
    return path


def columns(cli: Callable[..., Result], ws: Path, ref: str) -> dict[str, str]:
    res = cli("data", "show", ref, "-w", ws, "--json")
    assert res.code == 0, res.err
    return {c["name"]: c["type"] for c in json.loads(res.out)["schema"]}


def ingest(cli: Callable[..., Result], ws: Path, path: Path, *flags: str) -> Result:
    return cli("data", "ingest", path, "--name", path.stem, "-w", ws, "--json", *flags)


def test_a_semicolon_file_with_decimal_commas(
    tmp_path: Path, cli: Callable[..., Result], ws: Path
) -> None:
    path = tmp_path / "eu.csv"
    path.write_text("name;price;qty\nApfel;1,5;2\nBirne;0,75;10\n")
    res = ingest(cli, ws, path)
    assert res.code == 0, res.err
    assert json.loads(res.out)["num_rows"] == 2
    assert columns(cli, ws, "eu@1") == {"name": "string", "price": "double", "qty": "int64"}
    frame = _load(ws, "eu")
    assert list(frame["price"]) == [1.5, 0.75]


def test_a_pipe_file_and_a_given_delimiter(
    tmp_path: Path, cli: Callable[..., Result], ws: Path
) -> None:
    pipe = tmp_path / "pipe.csv"
    pipe.write_text("a|b\n1|x,y\n2|z\n")
    assert ingest(cli, ws, pipe).code == 0
    assert columns(cli, ws, "pipe@1") == {"a": "int64", "b": "string"}
    tabs = tmp_path / "tabs.csv"
    tabs.write_text("a\tb;c\n1\t2;3\n")
    assert ingest(cli, ws, tabs, "--delimiter", "\\t").code == 0  # as a shell user types it
    assert set(columns(cli, ws, "tabs@1")) == {"a", "b;c"}
    bad = ingest(cli, ws, tabs, "--delimiter", ";;")
    assert bad.code == 2 and "delimiter" in bad.err


def test_a_latin_1_file(tmp_path: Path, cli: Callable[..., Result], ws: Path) -> None:
    path = tmp_path / "cities.csv"
    path.write_bytes("city;zip\nZürich;8001\nKöln;50667\n".encode("latin-1"))
    res = ingest(cli, ws, path)
    assert res.code == 2
    text = " ".join(res.err.split())  # the console wraps long lines
    assert str(path) in text and "byte 10" in text and "line 2" in text
    assert "--encoding latin-1" in text
    assert "internal error" not in text
    assert ingest(cli, ws, path, "--encoding", "latin-1").code == 0
    assert list(_load(ws, "cities")["city"]) == ["Zürich", "Köln"]


def test_a_headerless_file(tmp_path: Path, cli: Callable[..., Result], ws: Path) -> None:
    path = tmp_path / "raw.csv"
    path.write_text("1;x;2,5\n2;y;3,5\n")
    res = ingest(cli, ws, path, "--no-header")
    assert res.code == 0, res.err
    assert columns(cli, ws, "raw@1") == {
        "column_1": "int64",
        "column_2": "string",
        "column_3": "double",
    }


def test_csv_options_for_a_parquet_file_are_refused(
    tmp_path: Path, cli: Callable[..., Result], ws: Path
) -> None:
    import pandas as pd

    path = tmp_path / "t.parquet"
    pd.DataFrame({"a": [1]}).to_parquet(path)
    res = ingest(cli, ws, path, "--no-header")
    assert res.code == 2 and "only for CSV" in res.err


def test_the_same_from_python(tmp_path: Path) -> None:
    path = tmp_path / "raw.csv"
    path.write_bytes("1;Zürich;2,5\n2;Köln;3,5\n".encode("latin-1"))
    with loopml.init(tmp_path / "ws") as ws:
        with pytest.raises(InvalidInputError) as info:
            loopml.ingest(ws, path, "raw", header=False)
        assert info.value.where == {**info.value.where, "line": 1, "byte": 3}
        res = loopml.ingest(ws, path, "raw", encoding="latin-1", header=False)
        dv = res.dataset
        assert [c["name"] for c in dv.schema] == ["column_1", "column_2", "column_3"]
        frame = loopml.load_dataset(ws, "raw")
        assert list(frame["column_2"]) == ["Zürich", "Köln"]
        assert list(frame["column_3"]) == [2.5, 3.5]
        # the same content read with explicit options is the same version
        again = loopml.ingest(
            ws, path, "raw", delimiter=";", decimal=",", encoding="latin-1", header=False
        )
        assert (again.created, again.dataset.version) == (False, 1)


def _load(ws: Path, name: str):  # type: ignore[no-untyped-def]
    with loopml.open_workspace(ws) as opened:
        return loopml.load_dataset(opened, name)
