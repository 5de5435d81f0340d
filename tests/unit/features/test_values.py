"""One reading of input values: canonical category text, numbers, instants."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from loopml.features.values import (
    ValueProblem,
    category_text,
    looks_like_timestamps,
    numeric_categories,
    to_categories,
    to_numbers,
    to_timestamps,
)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1, "1"),
        (1.0, "1"),
        (np.int64(1), "1"),
        (np.float32(1.0), "1"),
        (Decimal("1.0"), "1"),
        (1.5, "1.5"),
        (-0.0, "0"),
        (True, "true"),
        (np.bool_(False), "false"),
        ("1.0", "1.0"),  # text stays as it is ...
        (" Paris ", " Paris "),
        (None, None),
        (float("nan"), None),
        (pd.NA, None),
    ],
)
def test_canonical_category_text(value: object, text: str | None) -> None:
    assert category_text(value) == text


def test_text_reads_as_a_number_where_the_categories_are_numbers() -> None:
    assert category_text("1.0", numeric=True) == "1"
    assert category_text("2.50", numeric=True) == "2.5"
    assert category_text("north", numeric=True) == "north"
    assert category_text("True", boolean=True) == "true"
    assert numeric_categories(["1", "2", "10"]) and not numeric_categories(["007"])
    assert not numeric_categories(["1", "x"]) and not numeric_categories([])


@given(st.integers(min_value=-(2**53), max_value=2**53))
def test_an_integer_is_one_category_however_it_is_written(n: int) -> None:
    texts = {
        category_text(n),
        category_text(float(n)),
        category_text(str(n), numeric=True),
        category_text(f"{float(n)!r}", numeric=True),
    }
    assert texts == {str(n)}


def test_a_typed_column_and_its_values_read_alike() -> None:
    for column in (
        pd.Series([1, 2, None], dtype="Int64"),
        pd.Series([1.0, 2.0, np.nan]),
        pd.Series([1, 2, None], dtype=object),
    ):
        got = to_categories(column)
        assert got[:2].tolist() == ["1", "2"] and pd.isna(got[2])
    assert to_categories(pd.Series([True, False])).tolist() == ["true", "false"]
    with pytest.raises(ValueProblem) as info:
        to_categories(["a", ["b"]])
    assert info.value.row == 1


def test_numbers() -> None:
    got = to_numbers([1, 2.5, None, np.int32(3), Decimal("0.5")], allow_bool=False)
    np.testing.assert_array_equal(got, [1.0, 2.5, np.nan, 3.0, 0.5])
    assert to_numbers([True, False], allow_bool=True).tolist() == [1.0, 0.0]
    for values in ([1, True], pd.Series([True, False]), [1, "2"], pd.Series(["1"])):
        with pytest.raises(ValueProblem, match="must be a number"):
            to_numbers(values, allow_bool=False)  # type: ignore[arg-type]
    with pytest.raises(ValueProblem, match="too large") as info:
        to_numbers([1, 10**400], allow_bool=False)
    assert info.value.row == 1


def test_instants() -> None:
    same = [
        "2018-03-01",
        "2018-03-01 00:00:00",
        "2018-03-01T00:00:00Z",
        "2018-02-28T19:00:00-05:00",
        date(2018, 3, 1),
        datetime(2018, 3, 1, tzinfo=UTC),
        pd.Timestamp("2018-03-01"),
        np.datetime64("2018-03-01"),
    ]
    got = to_timestamps(same)
    assert got.dtype == np.dtype("datetime64[us]")
    assert (got == np.datetime64("2018-03-01")).all()
    assert np.isnat(to_timestamps([None, "2018-01-01"])[0])
    for bad in ("soon", 20180301, True):
        with pytest.raises(ValueProblem):
            to_timestamps(["2018-01-01", bad])


def test_which_columns_hold_instants() -> None:
    assert looks_like_timestamps(pd.Series(pd.to_datetime(["2018-01-01"])))
    assert looks_like_timestamps(pd.Series(["2018-01-01", "2019-12-31 10:00", None]))
    assert looks_like_timestamps(pd.Series([date(2018, 1, 1)], dtype=object))
    assert not looks_like_timestamps(pd.Series(["2018", "2019"]))  # years, or codes
    assert not looks_like_timestamps(pd.Series(["2018-13-45"]))  # the shape, not a date
    assert not looks_like_timestamps(pd.Series([20180101, 20190101]))
