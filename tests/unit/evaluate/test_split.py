"""Splits declared by evaluation.split: property tests that no future row is trained on for a
time split and no group is on both sides of a group split."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sklearn.model_selection import TimeSeriesSplit

from loopml.errors import ConfigError, InvalidInputError
from loopml.evaluate.split import check_split, fold_indices, holdout_indices
from loopml.project.evaluation import SplitSpec, parse_split

TIME = parse_split({"kind": "time", "column": "ts"}, "loopml.yaml")


def _time_frame(draw_times: list[int]) -> tuple[pd.Series, pd.Series]:
    t = pd.Series(pd.to_datetime(np.array(draw_times), unit="h"), name="ts")
    y = pd.Series(np.arange(len(draw_times)) % 2)
    return t, y


@settings(max_examples=60, deadline=None)
@given(
    times=st.lists(st.integers(0, 200), min_size=12, max_size=120),
    n_folds=st.integers(2, 4),
    gap=st.sampled_from([None, 0, 3, "2h", "1d"]),
)
def test_time_split_never_trains_on_the_future(times: list[int], n_folds: int, gap: object) -> None:
    spec = parse_split({"kind": "time", "column": "ts", "gap": gap}, "f")
    t, y = _time_frame(times)
    gap_s = spec.gap_seconds
    try:
        tr, ho = holdout_indices(
            y, spec=spec, fraction=0.25, task="classification", seed=0, column=t
        )
    except InvalidInputError:
        return  # every row shares the latest time, or the gap ate the training part
    assert len(set(tr) & set(ho)) == 0
    assert t.iloc[tr].max() < t.iloc[ho].min()
    if gap_s:
        assert (t.iloc[ho].min() - t.iloc[tr].max()).total_seconds() > gap_s
    tt = t.iloc[tr].reset_index(drop=True)
    try:
        splits = fold_indices(
            y.iloc[tr], spec=spec, n_folds=n_folds, task="classification", seed=0, column=tt
        )
    except InvalidInputError:
        return
    assert len(splits) == n_folds
    previous_test_start = None
    for a, b in splits:
        assert tt.iloc[a].max() < tt.iloc[b].min()  # strictly earlier: ties stay together
        if gap_s:
            assert (tt.iloc[b].min() - tt.iloc[a].max()).total_seconds() > gap_s
        if previous_test_start is not None:
            assert tt.iloc[b].min() > previous_test_start  # windows move forward
        previous_test_start = tt.iloc[b].min()


@settings(max_examples=60, deadline=None)
@given(
    groups=st.lists(st.integers(0, 15), min_size=20, max_size=120),
    n_folds=st.integers(2, 4),
    seed=st.integers(0, 5),
    classification=st.booleans(),
)
# found by the suite: a class with fewer training rows than folds (StratifiedGroupKFold's raw
# ValueError), and one training row left of one group (said as too few rows, not groups)
@example(groups=[0] * 18 + [1, 2], n_folds=2, seed=1, classification=True)
@example(groups=[0] * 19 + [1], n_folds=2, seed=1, classification=False)
def test_group_split_never_puts_a_group_on_both_sides(
    groups: list[int], n_folds: int, seed: int, classification: bool
) -> None:
    g = pd.Series(groups, name="g")
    y = pd.Series((np.arange(len(groups)) * 7) % 3 if classification else np.arange(len(groups)))
    task = "classification" if classification else "regression"
    spec = SplitSpec("group", "g")
    if g.nunique() < max(n_folds, 2):
        with pytest.raises(ConfigError, match="groups"):
            check_split(spec, g, n_folds=n_folds, task=task)
        return
    check_split(spec, g, n_folds=n_folds, task=task)
    tr, ho = holdout_indices(y, spec=spec, fraction=0.2, task=task, seed=seed, column=g)
    assert not set(g.iloc[tr]) & set(g.iloc[ho])
    gt = g.iloc[tr].reset_index(drop=True)
    if gt.nunique() < n_folds:
        with pytest.raises(ConfigError, match="groups"):
            fold_indices(y.iloc[tr], spec=spec, n_folds=n_folds, task=task, seed=seed, column=gt)
        return
    splits = fold_indices(y.iloc[tr], spec=spec, n_folds=n_folds, task=task, seed=seed, column=gt)
    seen = np.concatenate([b for _, b in splits])
    assert sorted(seen) == list(range(len(tr)))
    for a, b in splits:
        assert not set(gt.iloc[a]) & set(gt.iloc[b])


def test_time_holdout_is_the_latest_rows_and_numbers_order_too() -> None:
    t = pd.Series(np.arange(100.0)[::-1], name="step")  # newest first in the file
    y = pd.Series(np.arange(100) % 2)
    tr, ho = holdout_indices(
        y, spec=SplitSpec("time", "step"), fraction=0.2, task="c", seed=0, column=t
    )
    assert sorted(t.iloc[ho]) == list(np.arange(80.0, 100.0))
    spec = parse_split({"kind": "time", "column": "step", "gap": 5}, "f")
    tr, ho = holdout_indices(y, spec=spec, fraction=0.2, task="c", seed=0, column=t)
    assert t.iloc[tr].max() == 74.0  # five rows dropped before the holdout
    splits = fold_indices(
        y.iloc[tr], spec=spec, n_folds=3, task="c", seed=0, column=t.iloc[tr].reset_index(drop=True)
    )
    # without ties or a gap, the same windows as scikit-learn's TimeSeriesSplit
    plain = SplitSpec("time", "step")
    ordered = pd.Series(np.arange(75.0), name="step")
    mine = fold_indices(y.iloc[:75], spec=plain, n_folds=3, task="c", seed=0, column=ordered)
    theirs = list(TimeSeriesSplit(n_splits=3).split(np.arange(75)))
    assert [(list(a), list(b)) for a, b in mine] == [(list(a), list(b)) for a, b in theirs]
    assert [len(b) for _, b in splits] == [18, 18, 18]
    assert all(len(a) == len(theirs[i][0]) - 5 for i, (a, _) in enumerate(splits))


def test_random_and_stratified_splits() -> None:
    y = pd.Series([0] * 40 + [1] * 10)
    _tr, ho = holdout_indices(
        y, spec=SplitSpec("stratified"), fraction=0.2, task="classification", seed=0
    )
    assert y.iloc[ho].sum() == 2 and len(ho) == 10
    splits = fold_indices(y, spec=SplitSpec(), n_folds=5, task="classification", seed=0)
    assert all(y.iloc[b].sum() == 2 for _, b in splits)
    with pytest.raises(InvalidInputError, match="stratified"):
        fold_indices(
            pd.Series([0] * 10 + [1] * 2),
            spec=SplitSpec("stratified"),
            n_folds=5,
            task="classification",
            seed=0,
        )
    with pytest.raises(ConfigError, match="classification"):
        check_split(SplitSpec("stratified"), None, n_folds=3, task="regression")


def test_bad_split_declarations_name_the_field() -> None:
    with pytest.raises(ConfigError) as e:
        parse_split({"kind": "tme", "column": "ts"}, "loopml.yaml")
    assert e.value.where["field"] == "evaluation.split.kind"
    assert "Did you mean 'time'" in str(e.value.hint)
    with pytest.raises(ConfigError, match="needs a column"):
        parse_split({"kind": "group"}, "f")
    with pytest.raises(ConfigError, match="not a duration"):
        parse_split({"kind": "time", "column": "ts", "gap": "1 fortnight"}, "f")
    with pytest.raises(ConfigError, match="only for kind: time"):
        parse_split({"kind": "random", "gap": 3}, "f")
    assert parse_split({"kind": "time", "column": "ts", "gap": "30min"}, "f").gap_seconds == 1800
    assert parse_split({"kind": "time", "column": "ts", "gap": "6h"}, "f").gap_seconds == 21600
    assert parse_split({"kind": "time", "column": "ts", "gap": 12}, "f").gap_rows == 12
    text = pd.Series(["2024-01-01", "2024-01-02"] * 10, name="ts")
    with pytest.raises(ConfigError, match="not a time or a number") as e:
        check_split(TIME, text, n_folds=3, task="classification")
    assert e.value.where["field"] == "evaluation.split.column"
    numbers = pd.Series(np.arange(20.0), name="ts")
    with pytest.raises(ConfigError, match="duration"):
        check_split(
            parse_split({"kind": "time", "column": "ts", "gap": "1d"}, "f"),
            numbers,
            n_folds=3,
            task="classification",
        )
    with pytest.raises(ConfigError, match="3 groups"):
        check_split(
            SplitSpec("group", "g"),
            pd.Series([1, 2, 3] * 5, name="g"),
            n_folds=5,
            task="classification",
        )
    with pytest.raises(InvalidInputError, match="missing"):
        check_split(TIME, pd.Series([1.0, None, 3.0], name="ts"), n_folds=2, task="c")
