import math

import numpy as np
import pandas as pd
import pytest

from loopml.errors import InvalidInputError
from loopml.registry.signature import Signature


@pytest.fixture
def sig() -> Signature:
    frame = pd.DataFrame(
        {
            "age": [30.0, 40.0, np.nan, 50.0],
            "income": [1.0, 2.0, 3.0, 4.0],
            "city": ["paris", "rome", "paris", None],
        }
    )
    kinds = {"age": "numeric", "income": "numeric", "city": "categorical"}
    return Signature.from_frame(frame, kinds, target="y", task="classification", classes=[0, 1])


def test_records_round_trip(sig: Signature) -> None:
    df = sig.validate_records(
        [{"age": 31, "income": 2.5, "city": "rome"}, {"age": None, "income": 1, "city": None}]
    )
    assert list(df.columns) == ["age", "income", "city"]
    assert df["age"].dtype == np.float64
    assert math.isnan(df["age"].iloc[1])
    assert df["city"].iloc[0] == "rome"


def test_signature_records_ranges_and_categories(sig: Signature) -> None:
    by_name = {f.name: f for f in sig.inputs}
    assert by_name["age"].nullable
    assert not by_name["income"].nullable
    assert by_name["income"].min == 1.0
    assert by_name["income"].max == 4.0
    assert by_name["city"].categories == ["paris", "rome"]
    assert Signature.from_dict(sig.to_dict()) == sig


@pytest.mark.parametrize(
    ("records", "row", "field", "words"),
    [
        ([{"age": 1, "city": "rome"}], 0, "income", "missing feature"),
        ([{"age": 1, "income": 1, "city": "rome", "zip": 1}], 0, "zip", "unknown feature"),
        ([{"age": 1, "income": "1", "city": "rome"}], 0, "income", "must be a number"),
        ([{"age": 1, "income": True, "city": "rome"}], 0, "income", "must be a number"),
        (
            [{"age": 1, "income": 1, "city": "rome"}, {"age": 1, "income": None, "city": "rome"}],
            1,
            "income",
            "missing a value",
        ),
        ([{"age": 1, "income": float("nan"), "city": "rome"}], 0, "income", "missing a value"),
        ([{"age": 1, "income": 1, "city": "oslo"}], 0, "city", "never seen in training"),
        ([{"age": 1, "income": 1, "city": ["rome"]}], 0, "city", "must be a string"),
    ],
)
def test_bad_records_name_row_and_field(
    sig: Signature, records: list, row: int, field: str, words: str
) -> None:
    with pytest.raises(InvalidInputError) as info:
        sig.validate_records(records)
    assert info.value.where == {"row": row, "field": field}
    assert words in info.value.message
    assert field in str(info.value)


@pytest.mark.parametrize("payload", [[], None, {"age": 1}, "x"])
def test_instances_must_be_a_list(sig: Signature, payload: object) -> None:
    with pytest.raises(InvalidInputError, match="non-empty list"):
        sig.validate_records(payload)


def test_validate_frame_checks_columns_values_and_ignores_extras(sig: Signature) -> None:
    good = pd.DataFrame({"age": [1.0], "income": [2], "city": ["paris"], "extra": ["x"]})
    assert list(sig.validate_frame(good).columns) == ["age", "income", "city"]
    with pytest.raises(InvalidInputError) as info:
        sig.validate_frame(good.drop(columns=["income"]), source="f.csv")
    assert info.value.where == {"file": "f.csv", "column": "income"}
    bad = good.assign(income=["a"])
    with pytest.raises(InvalidInputError, match="must be numeric"):
        sig.validate_frame(bad)
    with pytest.raises(InvalidInputError) as info:
        sig.validate_frame(pd.concat([good, good.assign(city="oslo")], ignore_index=True))
    assert info.value.where["row"] == 1
