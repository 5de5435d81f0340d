"""The JSON hot path validates straight into Columns, exactly as the frame path does.

A differential test: for random records (valid ones, and every kind of wrong value, missing
and extra field), ``Signature.check_records_columns`` must accept what ``check_records`` +
``check_float32`` accept, with the same values, and refuse what they refuse with the same
message and ``where`` (row, field); ``check_columns`` (V2 tensors, gRPC) the same.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loopml.errors import InvalidInputError
from loopml.registry.limits import check_float32
from loopml.registry.signature import CheckedColumns, Signature


def _mixed_signature(unknown: str | None) -> Signature:
    frame = pd.DataFrame(
        {
            "x": [0.5, 1.5, 2.5, 3.0],
            "flag": [0, 1, 1, 0],  # binary: true/false read as 1/0
            "maybe": [1.0, np.nan, 2.0, 3.0],  # nullable
            "color": ["red", "green", "blue", "red"],
            "zip": [10, 20, 30, 10],  # a numeric column declared categorical
            "when": pd.to_datetime(["2020-01-01", "2020-02-01", "2020-03-01", "2020-04-01"]),
        }
    )
    kinds = {
        "x": "numeric",
        "flag": "numeric",
        "maybe": "numeric",
        "color": "categorical",
        "zip": "categorical",
        "when": "datetime",
    }
    return Signature.from_frame(frame, kinds, target="y", task="regression", unknown=unknown)


def _numeric_signature() -> Signature:
    frame = pd.DataFrame({"a": [0.0, 1.0, 2.0], "b": [1.0, 0.0, 1.0], "c": [5.0, np.nan, 7.0]})
    kinds = dict.fromkeys(frame.columns, "numeric")
    return Signature.from_frame(frame, kinds, target="y", task="regression")


SIGNATURES = {
    "mixed-error": _mixed_signature(None),
    "mixed-flag": _mixed_signature("flag"),
    "numeric": _numeric_signature(),
}

values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.floats(min_value=-1e39, max_value=1e39),
    st.sampled_from([1e39, -1e300, float("inf"), float("nan"), 3.4e38, 3.5e38]),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.sampled_from([10**400, True, False, None, "red", "green", "purple", "10", "10.0", "1e5"]),
    st.sampled_from(
        ["2020-01-01", "2021-05-06T07:08:09Z", "not a date", "", [], {}, [1], {"a": 1}]
    ),
    st.text(max_size=5),
)


def record_strategy(sig: Signature) -> st.SearchStrategy[Any]:
    names = sig.names
    good = {
        "x": st.floats(-10, 10),
        "flag": st.sampled_from([0, 1, True, False, 0.0]),
        "maybe": st.one_of(st.none(), st.floats(-5, 5)),
        "color": st.sampled_from(["red", "green", "blue"]),
        "zip": st.sampled_from([10, 20, "30", 30.0]),
        "when": st.sampled_from(["2020-01-01", "2020-03-01T10:00:00"]),
        "a": st.floats(-3, 3),
        "b": st.sampled_from([0.0, 1.0, 1]),
        "c": st.one_of(st.floats(-3, 3), st.none()),
    }
    field = {n: st.one_of(good[n], good[n], values) for n in names}
    full = st.fixed_dictionaries(field)
    with_extra = st.fixed_dictionaries({**field, "extra": values})
    missing = st.fixed_dictionaries(field).map(lambda r: {k: v for k, v in r.items() if k != "x"})
    return st.one_of(full, full, full, with_extra, missing, values)


def old_path(sig: Signature, records: Any) -> Any:
    checked = sig.check_records(records)
    numeric = [f.name for f in sig.inputs if f.kind == "numeric"]
    check_float32(checked.frame, numeric)
    return checked


def outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(*args)
    except InvalidInputError as exc:
        return "error", (exc.message, exc.where, exc.hint)


def assert_same_columns(sig: Signature, old: Any, new: CheckedColumns) -> None:
    frame = old.frame
    assert new.rows == len(frame)
    assert list(new.columns) == sig.names
    for f in sig.inputs:
        expected = frame[f.name].to_numpy()
        got = new.columns[f.name]
        assert len(got) == len(expected)
        if f.kind == "numeric":
            assert got.dtype == np.float64
            np.testing.assert_array_equal(got, expected.astype(np.float64))
        elif f.kind == "datetime":
            assert got.dtype == np.dtype("datetime64[us]")
            np.testing.assert_array_equal(got, expected.astype("datetime64[us]"))
        else:
            assert [None if pd.isna(v) else v for v in got] == [
                None if pd.isna(v) else v for v in expected
            ]
    assert new.unknown_fields() == old.unknown_fields()
    assert new.extra == old.extra


@pytest.mark.parametrize("which", sorted(SIGNATURES))
def test_records_columns_match_the_frame_path(which: str) -> None:
    sig = SIGNATURES[which]

    @settings(
        max_examples=400,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.one_of(st.lists(record_strategy(sig), min_size=0, max_size=6), values))
    def check(records: Any) -> None:
        kind_old, old = outcome(old_path, sig, records)
        kind_new, new = outcome(sig.check_records_columns, records)
        assert kind_new == kind_old, (records, old, new)
        if kind_old == "error":
            assert new == old, records
        else:
            assert_same_columns(sig, old, new)

    check()


@pytest.mark.parametrize("which", sorted(SIGNATURES))
def test_columns_match_records(which: str) -> None:
    """V2/gRPC columns (one list or array per feature) read as records do."""
    sig = SIGNATURES[which]

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(st.fixed_dictionaries({n: values for n in sig.names}), min_size=1, max_size=5))
    def check(records: list[dict[str, Any]]) -> None:
        columns = {n: [r[n] for r in records] for n in sig.names}
        kind_old, old = outcome(old_path, sig, records)
        kind_new, new = outcome(sig.check_columns, columns)
        assert kind_new == kind_old, (records, old, new)
        if kind_old == "error":
            assert new == old, records
        else:
            assert_same_columns(sig, old, new)

    check()


def test_numpy_columns_take_the_vectorised_path() -> None:
    sig = SIGNATURES["numeric"]
    cols = {"a": np.array([1.0, 2.0]), "b": np.array([0, 1]), "c": np.array([np.nan, 1.0])}
    checked = sig.check_columns(cols)
    assert checked.rows == 2
    np.testing.assert_array_equal(checked.columns["b"], [0.0, 1.0])
    with pytest.raises(InvalidInputError, match="beyond what the model") as info:
        sig.check_columns({**cols, "a": np.array([1.0, 1e39])})
    assert info.value.where == {"row": 1, "field": "a"}
    with pytest.raises(InvalidInputError, match="no input for feature 'c'"):
        sig.check_columns({"a": cols["a"], "b": cols["b"]})
    with pytest.raises(InvalidInputError, match="same number of rows"):
        sig.check_columns({**cols, "a": np.array([1.0])})


def test_float32_error_names_the_first_row_then_field() -> None:
    sig = SIGNATURES["numeric"]
    rows = [{"a": 1.0, "b": 0.0, "c": 1.0}, {"a": 1.0, "b": 1e39, "c": 1e39}]
    with pytest.raises(InvalidInputError) as info:
        sig.check_records_columns(rows)
    assert info.value.where == {"row": 1, "field": "b"}
