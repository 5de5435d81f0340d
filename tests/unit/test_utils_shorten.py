"""``shorten``: user values shown in messages are cut to a readable length."""

from __future__ import annotations

from loopml.utils import shorten


def test_short_text_is_unchanged() -> None:
    assert shorten("abc") == "abc"
    assert shorten("x" * 80) == "x" * 80


def test_long_text_is_cut_with_an_ellipsis() -> None:
    cut = shorten("x" * 10_000)
    assert len(cut) == 80
    assert cut.endswith("…")
    assert cut.startswith("x" * 79)
    assert shorten("abcdef", 4) == "abc…"


def test_any_value_is_shown_by_its_repr() -> None:
    assert shorten(repr("y" * 500)).startswith("'yyy")
    assert len(shorten(list(range(1000)))) == 80
    assert shorten(12) == "12"
