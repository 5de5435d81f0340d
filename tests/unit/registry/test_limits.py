"""``check_float32``: numbers a float32 model cannot take are refused, naming row and field."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from loopml.errors import InvalidInputError
from loopml.registry.limits import FLOAT32_MAX, check_float32


def frame(**columns: list[float]) -> pd.DataFrame:
    return pd.DataFrame({k: np.asarray(v, dtype=np.float64) for k, v in columns.items()})


def test_values_in_range_pass() -> None:
    check_float32(frame(a=[0.0, -1e38, 3.4e38, np.nan], b=[1.0, 2.0, 3.0, 4.0]))
    check_float32(frame(a=[FLOAT32_MAX, -FLOAT32_MAX]))


@pytest.mark.parametrize("value", [1e39, -1e39, 1e308, np.inf, -np.inf])
def test_values_beyond_float32_name_row_and_field(value: float) -> None:
    with pytest.raises(InvalidInputError) as info:
        check_float32(frame(a=[1.0, 2.0, 3.0], b=[0.0, 0.0, value]))
    err = info.value
    assert err.http_status == 422
    assert err.where == {"row": 2, "field": "b"}
    assert "float32" in str(err)


def test_the_first_bad_row_is_named_across_columns() -> None:
    with pytest.raises(InvalidInputError) as info:
        check_float32(frame(a=[1.0, 1e39, 1.0], b=[1e39, 1.0, 1.0]))
    assert info.value.where == {"row": 0, "field": "b"}


def test_a_file_names_file_row_and_column() -> None:
    data = frame(a=[1.0, 1e300])
    data.index = [10, 11]  # rows are counted by position, not by index label
    with pytest.raises(InvalidInputError) as info:
        check_float32(data, source="new.csv")
    assert info.value.where == {"file": "new.csv", "row": 1, "column": "a"}


def test_only_the_named_numeric_columns_are_checked() -> None:
    mixed = pd.DataFrame({"c": np.array(["x", "y"], dtype=object), "n": [1.0, 2.0]})
    check_float32(mixed, ["n"])
    with pytest.raises(InvalidInputError):
        check_float32(pd.DataFrame({"c": ["x"], "n": [1e39]}), ["n"])


def test_batch_and_python_paths_refuse_big_numbers() -> None:
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier

    from loopml.train import fit_bundle

    df = load_breast_cancer(as_frame=True).frame.iloc[:, [0, 1, 2, -1]]
    bundle, x = fit_bundle(df, "target", RandomForestClassifier(n_estimators=3, random_state=0))
    rows = x.head(3).copy()
    rows.iloc[1, 2] = 1e308
    with pytest.raises(InvalidInputError) as info:
        bundle.predict(rows, source="new.csv")
    assert info.value.where == {"file": "new.csv", "row": 1, "column": rows.columns[2]}
    with pytest.raises(InvalidInputError) as info:
        bundle.predict_records(rows.to_dict("records"))
    assert info.value.where == {"row": 1, "field": rows.columns[2]}
