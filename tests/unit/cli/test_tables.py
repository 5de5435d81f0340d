"""The CLI's tables: fit the terminal without slivers; ids shortened to unique prefixes."""

from __future__ import annotations

import pytest

from loopml.cli import common
from loopml.cli.common import _fit, short_ids, table


def test_short_ids_are_12_characters_unless_that_is_ambiguous() -> None:
    ids = ["a" * 32, "b" * 32]
    assert short_ids(ids) == ["a" * 12, "b" * 12]
    twins = ["abcdef0123456789" + "0" * 16, "abcdef0123456789" + "1" * 16]
    assert short_ids(twins) == [t[:17] for t in twins]
    assert short_ids([]) == []
    assert short_ids(["short"]) == ["short"]


def test_fit_cuts_the_widest_columns_first_and_never_below_their_floor() -> None:
    assert _fit([40, 10, 30], [10, 10, 10], 60, []) == [25, 10, 25]
    assert _fit([40, 10, 30], [10, 10, 10], 60, [2]) == [40, 10, 10]
    assert _fit([40, 10, 30], [10, 10, 10], 20, []) == [10, 10, 10]  # floors win


@pytest.mark.parametrize("width", [80, 100])
def test_a_wide_table_fits_and_keeps_short_cells_whole(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, width: int
) -> None:
    monkeypatch.setattr(common.out, "width", width)
    rows = [(f"{i:032x}", "succeeded", "/very/long/path/" * 6, "roc_auc") for i in range(3)]
    table("a title " * 20, ["id", "status", "source", "metric"], rows, shrink=["source"])
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= width
    for i in range(3):
        row = next(line for line in lines if f"{i:032x}" in line)
        assert "succeeded" in row.split() and "roc_auc" in row.split()


def test_a_table_that_fits_is_boxed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(common.out, "width", 80)
    table("t", ["a", "b"], [("1", "[red]DRIFT[/red]")])
    text = capsys.readouterr().out
    assert "┃ a" in text and "DRIFT" in text and "[red]" not in text
