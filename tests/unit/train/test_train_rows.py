"""The training and holdout rows a run takes from the prepared frame (issue 12): the same
rows as ``iloc``, without a copy where they are consecutive and in order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from loopml.train.trainer import take_rows


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(rng.normal(size=(50, 3)), columns=["a", "b", "c"])


@pytest.mark.parametrize(
    "rows",
    [
        np.arange(40),  # a time split's training rows
        np.arange(40, 50),  # ... and its holdout
        np.arange(50),
        np.array([7]),
        np.array([], dtype=np.int64),
        np.array([3, 1, 2]),  # shuffled
        np.array([0, 1, 3, 4]),  # a gap
        np.arange(49, -1, -1),  # reversed
    ],
)
def test_the_rows_are_those_of_iloc(frame: pd.DataFrame, rows: np.ndarray) -> None:
    pd.testing.assert_frame_equal(take_rows(frame, rows), frame.iloc[rows])
    pd.testing.assert_series_equal(take_rows(frame["a"], rows), frame["a"].iloc[rows])


def test_consecutive_rows_are_not_copied(frame: pd.DataFrame) -> None:
    taken = take_rows(frame, np.arange(10, 40))
    assert np.shares_memory(taken.to_numpy(), frame.to_numpy())
    taken.iloc[0, 0] = 99.0  # a write copies: the prepared frame stays as it was
    assert frame.iloc[10, 0] != 99.0


def test_other_rows_are_a_copy(frame: pd.DataFrame) -> None:
    taken = take_rows(frame, np.array([5, 2, 9]))
    assert not np.shares_memory(taken.to_numpy(), frame.to_numpy())
