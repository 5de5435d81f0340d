"""Sources: format detection, reading each format, and a clear error for each bad input."""

from __future__ import annotations

import bz2
import csv
import gzip
import io
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopml.data import (
    CsvSource,
    JsonLinesSource,
    ParquetSource,
    Source,
    TableSource,
    TsvSource,
    source_for,
)
from loopml.data.dialect import sniff_delimiter
from loopml.errors import InvalidInputError, LoopmlError, NotFoundError


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(text)
    return path


# -- choosing a source ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("a.csv", CsvSource),
        ("A.CSV", CsvSource),
        ("a.tsv", TsvSource),
        ("a.parquet", ParquetSource),
        ("a.pq", ParquetSource),
        ("a.jsonl", JsonLinesSource),
        ("a.ndjson", JsonLinesSource),
        ("a.csv.gz", CsvSource),
        ("a.jsonl.bz2", JsonLinesSource),
        ("s3://bucket/key/a.parquet", ParquetSource),
    ],
)
def test_source_for_chooses_by_extension(tmp_path: Path, name: str, cls: type[Source]) -> None:
    path = name if "://" in name else str(tmp_path / name)
    src = source_for(path)
    assert type(src) is cls
    assert src.describe() == path


@pytest.mark.parametrize(
    ("fmt", "cls"),
    [
        ("csv", CsvSource),
        ("PARQUET", ParquetSource),
        ("jsonl", JsonLinesSource),
        (".pq", ParquetSource),
    ],
)
def test_source_for_format_wins_over_extension(tmp_path: Path, fmt: str, cls: type) -> None:
    assert type(source_for(tmp_path / "data.txt", format=fmt)) is cls


def test_unknown_extension_lists_the_supported_formats(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as info:
        source_for(tmp_path / "data.xlsx")
    err = info.value
    assert "data.xlsx" in str(err)
    assert ".xlsx" in err.message
    for ext in (".csv", ".parquet", ".pq", ".jsonl", ".ndjson"):
        assert ext in (err.hint or "")
    assert err.where["file"].endswith("data.xlsx")


def test_unknown_format_lists_the_supported_ones(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as info:
        source_for(tmp_path / "a.csv", format="excel")
    assert "excel" in info.value.message
    assert "csv" in (info.value.hint or "")
    assert "parquet" in (info.value.hint or "")
    assert info.value.where["field"] == "format"


def test_relative_paths_and_file_uris_become_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "my data.csv", "a\n1\n")
    assert source_for("my data.csv").describe() == str(tmp_path / "my data.csv")
    uri = (tmp_path / "my data.csv").as_uri()
    assert "%20" in uri
    src = source_for(uri)
    assert src.describe() == str(tmp_path / "my data.csv")
    assert src.read().column("a").to_pylist() == [1]


def test_a_source_path_must_be_a_path() -> None:
    with pytest.raises(InvalidInputError, match="string or a path"):
        source_for(42)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="empty source path"):
        source_for("  ")


# -- reading ----------------------------------------------------------------------------------


def test_csv_types_quotes_and_newlines_in_values(tmp_path: Path) -> None:
    path = write(
        tmp_path / "a.csv",
        'id,score,name,flag,when\n1,0.5,"Smith, J",true,2024-01-02\n'
        '2,,"two\nlines",false,2024-02-03\n\n3,1.5,"say ""hi""",,2024-03-04\n',
    )
    table = CsvSource(path).read()
    assert table.column_names == ["id", "score", "name", "flag", "when"]
    assert table.schema.field("id").type == pa.int64()
    assert table.schema.field("flag").type == pa.bool_()
    assert pa.types.is_timestamp(table.schema.field("when").type) or pa.types.is_date(
        table.schema.field("when").type
    )
    assert table.column("name").to_pylist() == ["Smith, J", "two\nlines", 'say "hi"']
    assert table.column("score").to_pylist() == [0.5, None, 1.5]


def test_tsv_and_other_delimiters(tmp_path: Path) -> None:
    tsv = write(tmp_path / "a.tsv", "a\tb\n1\tx,y\n")
    assert source_for(tsv).read().to_pydict() == {"a": [1], "b": ["x,y"]}
    semi = write(tmp_path / "a.csv", "a;b\n1;2\n")
    assert CsvSource(semi, delimiter=";").read().to_pydict() == {"a": [1], "b": [2]}


def test_csv_in_another_encoding(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "city\nZürich\n".encode("latin-1"))
    assert CsvSource(path, encoding="latin-1").read().column("city").to_pylist() == ["Zürich"]


def test_bad_csv_options_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="delimiter"):
        CsvSource(tmp_path / "a.csv", delimiter=";;")
    with pytest.raises(InvalidInputError, match="encoding"):
        CsvSource(tmp_path / "a.csv", encoding="klingon")


def test_compressed_files(tmp_path: Path) -> None:
    (tmp_path / "a.csv.gz").write_bytes(gzip.compress(b"a,b\n1,2\n3,4\n"))
    assert source_for(tmp_path / "a.csv.gz").read().to_pydict() == {"a": [1, 3], "b": [2, 4]}
    (tmp_path / "a.jsonl.bz2").write_bytes(bz2.compress(b'{"a": 1}\n{"a": 2}\n'))
    assert source_for(tmp_path / "a.jsonl.bz2").read().to_pydict() == {"a": [1, 2]}


def test_jsonl_promotes_numbers_and_adds_late_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", '{"a": 1}\n\n{"a": 2.5, "b": "x"}\n{"a": null}\n')
    table = JsonLinesSource(path).read()
    assert table.to_pydict() == {"a": [1.0, 2.5, None], "b": [None, "x", None]}


def test_parquet(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", None]})
    frame.to_parquet(tmp_path / "a.parquet", index=False)
    table = ParquetSource(tmp_path / "a.parquet").read()
    assert table.to_pandas().equals(frame)


def test_table_source_takes_frames_and_tables() -> None:
    frame = pd.DataFrame({"a": [1, 2]}, index=[10, 11])
    assert TableSource(frame).read().to_pydict() == {"a": [1, 2]}
    assert TableSource(pa.table({"a": [1]}), "mine").describe() == "mine"
    with pytest.raises(InvalidInputError, match="has no rows"):
        TableSource(frame.iloc[:0]).read()
    with pytest.raises(InvalidInputError, match="appears more than once"):
        TableSource(pd.DataFrame([[1, 2]], columns=["a", "a"])).read()
    with pytest.raises(InvalidInputError, match="one type"):
        TableSource(pd.DataFrame({"a": [1, "x", 2.5]})).read()


# -- every bad input: its own error naming the file and the place -----------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError) as info:
        source_for(tmp_path / "nope.csv").read()
    assert str(tmp_path / "nope.csv") in str(info.value)
    assert info.value.where == {"file": str(tmp_path / "nope.csv")}


def test_a_folder_is_not_a_file(tmp_path: Path) -> None:
    (tmp_path / "d.csv").mkdir()
    with pytest.raises(InvalidInputError, match="is a folder"):
        source_for(tmp_path / "d.csv").read()


@pytest.mark.parametrize("name", ["e.csv", "e.tsv", "e.jsonl", "e.parquet"])
def test_empty_file_has_no_rows(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / name, b"")
    with pytest.raises(InvalidInputError, match="has no rows") as info:
        source_for(path).read()
    assert info.value.where["file"] == str(path)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("h.csv", "a,b\n"),
        ("h2.csv", "a,b\n\n\n"),
        ("w.csv", "\n\n"),
        ("h.jsonl", "\n  \n"),
    ],
)
def test_header_or_blank_lines_only_has_no_rows(tmp_path: Path, name: str, text: str) -> None:
    path = write(tmp_path / name, text)
    with pytest.raises(InvalidInputError, match="has no rows") as info:
        source_for(path).read()
    assert str(path) in info.value.message


def test_parquet_with_no_rows(tmp_path: Path) -> None:
    pq.write_table(pa.table({"a": pa.array([], pa.int64())}), tmp_path / "z.parquet")
    with pytest.raises(InvalidInputError, match="has no rows"):
        source_for(tmp_path / "z.parquet").read()


@pytest.mark.parametrize(
    ("text", "line", "got"),
    [
        ("a,b\n1,2\n3,4,5\n6,7\n", 3, 3),
        ("a,b\n1,2\n3\n", 3, 1),
        ('a,b\n1,"x\ny"\n2,"p\nq"\n\n4,5,6\n', 7, 3),  # quoted newlines and a blank line
        ("a,b\r\n1,2\r\n3,4\r\n5,6,7,8\r\n", 4, 4),
    ],
)
def test_csv_broken_row_names_file_and_line(tmp_path: Path, text: str, line: int, got: int) -> None:
    path = write(tmp_path / "bad.csv", text)
    with pytest.raises(InvalidInputError) as info:
        source_for(path).read()
    err = info.value
    assert err.where == {"file": str(path), "line": line}
    assert f"line {line}" in err.message
    assert f"has {got} fields, but the header has 2" in err.message
    assert str(path) in err.message


def test_csv_broken_row_deep_in_a_big_file(tmp_path: Path) -> None:
    rows = "".join(f"{i},{i * 2}\n" for i in range(200_000))
    path = write(tmp_path / "big.csv", "a,b\n" + rows + "1,2,3\n")
    with pytest.raises(InvalidInputError) as info:
        source_for(path).read()
    assert info.value.where["line"] == 200_002


def test_csv_not_valid_text(tmp_path: Path) -> None:
    path = write(tmp_path / "u.csv", b"a,b\n1,ok\n2,\xff\xfe\n")
    with pytest.raises(InvalidInputError, match="not valid utf-8 text") as info:
        source_for(path).read()
    assert info.value.where == {"file": str(path), "column": "b", "line": 3, "byte": 11}


@pytest.mark.parametrize(
    ("text", "line", "match"),
    [
        ('{"a": 1}\n{"a": 2\n', 2, "not valid JSON"),
        ('{"a": 1}\n\n{"a": 2}\nnot json\n', 4, "not valid JSON"),
        ("[1, 2]\n", 1, "JSON array, not an object"),
        ('{"a": 1}\n"text"\n', 2, "JSON string, not an object"),
        ('{"a": 1, "a": 2}\n', 1, "appears twice"),
        ('{"a": 1}\n{"a": "x"}\n', 2, "holds a string, but earlier lines hold a number"),
    ],
)
def test_jsonl_bad_line_names_file_and_line(
    tmp_path: Path, text: str, line: int, match: str
) -> None:
    path = write(tmp_path / "bad.jsonl", text)
    with pytest.raises(InvalidInputError, match=match) as info:
        source_for(path).read()
    assert info.value.where["file"] == str(path)
    assert info.value.where["line"] == line
    assert f"line {line}" in info.value.message


def test_jsonl_bad_line_deep_in_a_big_file(tmp_path: Path) -> None:
    lines = "".join(f'{{"a": {i}}}\n' for i in range(200_000))
    path = write(tmp_path / "big.jsonl", lines + '{"a": oops}\n')
    with pytest.raises(InvalidInputError) as info:
        source_for(path).read()
    assert info.value.where == {"file": str(path), "line": 200_001}


def test_nested_json_values_are_refused_by_column(tmp_path: Path) -> None:
    path = write(tmp_path / "n.jsonl", '{"a": 1, "b": {"c": 2}}\n')
    with pytest.raises(InvalidInputError, match="flatten") as info:
        source_for(path).read()
    assert info.value.where == {"file": str(path), "column": "b"}


@pytest.mark.parametrize("content", [b"junk", b"PAR1 not really parquet PAR1", b"a,b\n1,2\n"])
def test_unreadable_parquet(tmp_path: Path, content: bytes) -> None:
    path = write(tmp_path / "bad.parquet", content)
    with pytest.raises(InvalidInputError, match="not a readable Parquet file") as info:
        source_for(path).read()
    assert info.value.where == {"file": str(path)}


def test_truncated_parquet(tmp_path: Path) -> None:
    pq.write_table(pa.table({"a": list(range(1000))}), tmp_path / "ok.parquet")
    data = (tmp_path / "ok.parquet").read_bytes()
    path = write(tmp_path / "cut.parquet", data[: len(data) // 2])
    with pytest.raises(InvalidInputError, match="not a readable Parquet file"):
        source_for(path).read()


@pytest.mark.parametrize(
    ("name", "text"),
    [("dup.csv", "a,b,a\n1,2,3\n"), ("dup.tsv", "a\tb\ta\n1\t2\t3\n")],
)
def test_duplicate_column_names(tmp_path: Path, name: str, text: str) -> None:
    path = write(tmp_path / name, text)
    with pytest.raises(InvalidInputError, match=r"'a' appears twice \(columns 1 and 3\)") as info:
        source_for(path).read()
    assert info.value.where == {"file": str(path), "column": "a"}


def test_duplicate_column_names_in_parquet(tmp_path: Path) -> None:
    table = pa.Table.from_arrays([pa.array([1]), pa.array([2])], names=["x", "x"])
    pq.write_table(table, tmp_path / "dup.parquet")
    with pytest.raises(InvalidInputError, match="'x' appears twice") as info:
        source_for(tmp_path / "dup.parquet").read()
    assert info.value.where["column"] == "x"


@pytest.mark.parametrize("header", ["a,,c", "a, ,c"])
def test_empty_column_name(tmp_path: Path, header: str) -> None:
    path = write(tmp_path / "e.csv", f"{header}\n1,2,3\n")
    with pytest.raises(InvalidInputError, match="column 2 has an empty name") as info:
        source_for(path).read()
    assert info.value.where == {"file": str(path), "column": 2}


def test_every_error_is_a_loopml_error_with_a_hint(tmp_path: Path) -> None:
    bad = [
        write(tmp_path / "1.csv", "a,b\n1\n"),
        write(tmp_path / "2.jsonl", "{\n"),
        write(tmp_path / "3.parquet", b"x"),
        write(tmp_path / "4.csv", ""),
        tmp_path / "5.csv",
    ]
    for path in bad:
        with pytest.raises(LoopmlError) as info:
            source_for(path).read()
        assert info.value.hint, path
        assert info.value.where["file"] == str(path)


@pytest.mark.parametrize("name", ["bad.csv.gz", "bad.jsonl.gz"])
def test_a_file_that_does_not_match_its_compression(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / name, "not gzip at all")
    with pytest.raises(InvalidInputError, match="Not a gzipped file") as info:
        source_for(path).read()
    assert info.value.where == {"file": str(path)}


def test_an_unknown_uri_scheme() -> None:
    with pytest.raises(InvalidInputError, match="Protocol not known") as info:
        source_for("nosuch://bucket/a.csv").read()
    assert info.value.where == {"file": "nosuch://bucket/a.csv"}


def test_fsspec_uris_read_and_report_lines_like_local_files() -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/loopml-test/good.csv", b"a,b\n1,x\n2,y\n")
    fs.pipe("/loopml-test/bad.jsonl", b'{"a": 1}\n{"a": }\n')
    try:
        good = source_for("memory://loopml-test/good.csv")
        assert good.describe() == "memory://loopml-test/good.csv"
        assert good.read().to_pydict() == {"a": [1, 2], "b": ["x", "y"]}
        with pytest.raises(InvalidInputError) as info:
            source_for("memory://loopml-test/bad.jsonl").read()
        assert info.value.where == {"file": "memory://loopml-test/bad.jsonl", "line": 2}
        with pytest.raises(NotFoundError):
            source_for("memory://loopml-test/missing.parquet").read()
    finally:
        fs.rm("/loopml-test", recursive=True)


# -- delimiters, encodings, headers -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a;b;c\n1;x;2.5\n2;y;3.5\n", {"a": [1, 2], "b": ["x", "y"], "c": [2.5, 3.5]}),
        ("a|b\n1|x\n2|y\n", {"a": [1, 2], "b": ["x", "y"]}),
        ("a\tb\n1\tx\n", {"a": [1], "b": ["x"]}),
        # quoted fields hold the other candidates, even line breaks
        (
            'name;note\n"Smith; J";"a,b"\n"two\nlines";c\n',
            {"name": ["Smith; J", "two\nlines"], "note": ["a,b", "c"]},
        ),
        ('a,b\n"x;y;z",1\n"p|q",2\n', {"a": ["x;y;z", "p|q"], "b": [1, 2]}),
        ("only\n1\n2\n", {"only": [1, 2]}),
    ],
)
def test_the_delimiter_is_sniffed(
    tmp_path: Path, text: str, expected: dict[str, list[object]]
) -> None:
    path = write(tmp_path / "a.csv", text)
    assert source_for(path).read().to_pydict() == expected


def test_a_semicolon_file_with_decimal_commas(tmp_path: Path) -> None:
    path = write(tmp_path / "eu.csv", "price;qty;label\n1,5;2;a,b\n3,25;4;c\n")
    table = source_for(path).read()
    assert table.column("price").to_pylist() == [1.5, 3.25]
    assert table.column("qty").to_pylist() == [2, 4]
    assert table.column("label").to_pylist() == ["a,b", "c"]
    # decimal points in a semicolon file stay decimal points
    dots = write(tmp_path / "dots.csv", "price;qty\n1.5;2\n")
    assert source_for(dots).read().column("price").to_pylist() == [1.5]
    # and the choice can be forced
    assert CsvSource(path, decimal=".").read().column("price").to_pylist() == ["1,5", "3,25"]


def test_a_given_delimiter_wins_over_the_sniffed_one(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "a;b,c\n1;2,3\n")
    assert CsvSource(path, delimiter=";").read().column_names == ["a", "b,c"]
    assert source_for(path, delimiter=",").read().column_names == ["a;b", "c"]
    # an explicit delimiter reads a .tsv file too
    tsv = write(tmp_path / "a.tsv", "a;b\n1;2\n")
    assert source_for(tsv, delimiter=";").read().column_names == ["a", "b"]


def test_a_broken_row_is_still_reported_after_sniffing(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.csv", "a;b\n1;2\n3;4;5\n6;7\n")
    with pytest.raises(InvalidInputError, match="line 3 has 3 fields, but the header has 2"):
        source_for(path).read()


def test_a_headerless_file_gets_numbered_column_names(tmp_path: Path) -> None:
    path = write(tmp_path / "raw.csv", "1;x;2,5\n2;y;3,5\n")
    table = source_for(path, header=False).read()
    assert table.to_pydict() == {
        "column_1": [1, 2],
        "column_2": ["x", "y"],
        "column_3": [2.5, 3.5],
    }
    broken = write(tmp_path / "broken.csv", "1,2\n3,4,5\n")
    with pytest.raises(InvalidInputError, match="line 2 has 3 fields, but the first row has 2"):
        CsvSource(broken, header=False).read()


@pytest.mark.parametrize(
    ("content", "line", "byte"),
    [
        ("a,b\n1,Zürich\n2,Köln\n".encode("latin-1"), 2, 7),
        ("Straße,b\n1,2\n".encode("latin-1"), 1, 4),  # in the header
        (b"a,b\n" + b"1,x\n" * 50_000 + "2,\xe9t\xe9\n".encode("latin-1"), 50_002, 200_006),
    ],
)
def test_a_wrong_encoding_names_the_file_the_line_the_byte_and_the_fix(
    tmp_path: Path, content: bytes, line: int, byte: int
) -> None:
    path = write(tmp_path / "latin.csv", content)
    with pytest.raises(InvalidInputError) as info:
        source_for(path).read()
    err = info.value
    assert err.where == {**err.where, "file": str(path), "line": line, "byte": byte}
    assert str(path) in err.message and f"byte {byte}" in err.message and "utf-8" in err.message
    assert "--encoding latin-1" in (err.hint or "") and "encoding='latin-1'" in (err.hint or "")
    assert source_for(path, encoding="latin-1").read().num_rows >= 1


def test_a_wrong_transcoded_encoding_is_located_too(tmp_path: Path) -> None:
    path = write(tmp_path / "win.csv", b"a,b\n1,ok\n2,\x81\n")
    with pytest.raises(InvalidInputError) as info:
        CsvSource(path, encoding="cp1252").read()
    assert info.value.where == {"file": str(path), "line": 3, "byte": 11}


def test_options_apply_to_csv_only(tmp_path: Path) -> None:
    pq.write_table(pa.table({"a": [1]}), tmp_path / "a.parquet")
    with pytest.raises(InvalidInputError, match="delimiter") as info:
        source_for(tmp_path / "a.parquet", delimiter=";")
    assert "CSV" in (info.value.hint or "")
    with pytest.raises(InvalidInputError, match="decimal"):
        CsvSource(tmp_path / "a.csv", decimal=";")
    with pytest.raises(InvalidInputError, match="decimal"):
        CsvSource(tmp_path / "a.csv", delimiter=",", decimal=",")


@settings(max_examples=200, deadline=None)
@given(
    delimiter=st.sampled_from([",", ";", "\t", "|"]),
    rows=st.integers(2, 6).flatmap(
        lambda n: st.lists(
            st.lists(st.text(alphabet='ab1. "\n', max_size=5), min_size=n, max_size=n),
            min_size=1,
            max_size=8,
        )
    ),
    with_delimiter=st.booleans(),
)
def test_sniffing_finds_the_delimiter_csv_writes(
    delimiter: str, rows: list[list[str]], with_delimiter: bool
) -> None:
    # values hold quotes and line breaks, and maybe the delimiter itself (csv quotes those)
    if with_delimiter:
        rows = [[f"{v}{delimiter}" for v in row] for row in rows]
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator="\n").writerows(rows)
    assert sniff_delimiter(buffer.getvalue(), complete=True) == delimiter
