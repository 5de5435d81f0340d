import math
from datetime import date

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression

from loopml.errors import InvalidInputError
from loopml.features import FeatureSpec, prepare_frame
from loopml.registry.signature import Signature
from loopml.train import fit_bundle


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
    # a table with the same rows is refused for the same reason, at the same row and column
    if words != "missing feature":
        with pytest.raises(InvalidInputError) as table:
            sig.validate_frame(pd.DataFrame(records), source="f.csv", unknown="error")
        assert table.value.where == {"file": "f.csv", "row": row, "column": field}
        assert words in table.value.message


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
    with pytest.raises(InvalidInputError, match="must be a number"):
        sig.validate_frame(bad)
    with pytest.raises(InvalidInputError) as info:
        sig.validate_frame(
            pd.concat([good, good.assign(city="oslo")], ignore_index=True), unknown="error"
        )
    assert info.value.where["row"] == 1


# -- one reading of values on every path (issue 5, items 10, 14 and 15) -----------------------


def _zip_signature() -> Signature:
    """A numeric column declared categorical, read as pandas reads an int column with a gap."""
    frame = pd.DataFrame({"zip": [1, 2, None, 1] * 5, "x": np.arange(20.0)})
    assert frame["zip"].dtype == np.float64  # the int column went through float64
    x = prepare_frame(frame, {"zip": "categorical", "x": "numeric"})
    return Signature.from_frame(
        x, {"zip": "categorical", "x": "numeric"}, target="y", task="regression"
    )


def test_numeric_categories_are_stored_and_compared_by_value() -> None:
    sig = _zip_signature()
    assert sig.inputs[0].categories == ["1", "2"]
    for value in (1, 1.0, "1", "1.0", np.int64(1), np.float32(1.0)):
        got = sig.validate_records([{"zip": value, "x": 0.5}])
        assert got["zip"].tolist() == ["1"], value
    for column in (
        pd.Series([1, 2], dtype="int64"),
        pd.Series([1.0, 2.0]),
        pd.Series(["1", "2.0"], dtype=object),
        pd.Series([1, 2], dtype="Int64"),
    ):
        got = sig.validate_frame(pd.DataFrame({"zip": column, "x": [0.1, 0.2]}), unknown="error")
        assert got["zip"].tolist() == ["1", "2"], column.dtype
    with pytest.raises(InvalidInputError, match="'3', never seen"):
        sig.validate_records([{"zip": 3.0, "x": 0.5}])


def test_the_encoder_sees_the_same_text_as_validation() -> None:
    frame = pd.DataFrame({"zip": [1, 2, None, 1] * 5, "y": [0.0, 1.0] * 10})
    spec = FeatureSpec.from_config({"kinds": {"zip": "categorical"}})
    bundle, _ = fit_bundle(frame, "y", LinearRegression(), features=spec)
    assert bundle.signature.inputs[0].categories == ["1", "2"]
    encoder = bundle.features.named_transformers_["categorical"].named_steps["encode"]
    assert encoder.categories_[0].tolist() == ["1", "2"]
    one = bundle.predict_records([{"zip": 1}]).labels
    np.testing.assert_array_equal(bundle.predict_records([{"zip": "1"}]).labels, one)
    np.testing.assert_array_equal(bundle.predict(pd.DataFrame({"zip": [1]})).labels, one)


def test_string_categories_stay_as_they_are() -> None:
    frame = pd.DataFrame({"code": ["007", "7", "x"] * 4})
    sig = Signature.from_frame(
        prepare_frame(frame, {"code": "categorical"}),
        {"code": "categorical"},
        target="y",
        task="regression",
    )
    assert sig.inputs[0].categories == ["007", "7", "x"]
    assert sig.validate_records([{"code": "007"}, {"code": 7}])["code"].tolist() == ["007", "7"]


def test_boolean_categories() -> None:
    frame = pd.DataFrame({"flag": [True, False, True]})
    sig = Signature.from_frame(
        prepare_frame(frame, {"flag": "categorical"}),
        {"flag": "categorical"},
        target="y",
        task="regression",
    )
    assert sig.inputs[0].categories == ["false", "true"]
    got = sig.validate_records([{"flag": True}, {"flag": "True"}, {"flag": "false"}])
    assert got["flag"].tolist() == ["true", "true", "false"]
    assert sig.validate_frame(frame)["flag"].tolist() == ["true", "false", "true"]


def test_booleans_are_numbers_only_where_training_had_0_or_1() -> None:
    frame = pd.DataFrame({"smoker": [True, False, True], "income": [1.5, 2.0, 3.0]})
    kinds = {"smoker": "numeric", "income": "numeric"}
    sig = Signature.from_frame(prepare_frame(frame, kinds), kinds, target="y", task="regression")
    assert [f.binary for f in sig.inputs] == [True, False]
    rows = [{"smoker": True, "income": 2.0}, {"smoker": 0, "income": 1.0}]
    assert sig.validate_records(rows)["smoker"].tolist() == [1.0, 0.0]
    assert sig.validate_frame(pd.DataFrame(rows))["smoker"].tolist() == [1.0, 0.0]
    assert sig.validate_frame(frame)["smoker"].tolist() == [1.0, 0.0, 1.0]
    bad = [{"smoker": True, "income": True}]
    for check in (sig.validate_records, lambda r: sig.validate_frame(pd.DataFrame(r))):
        with pytest.raises(InvalidInputError, match="must be a number, got bool True"):
            check(bad)


def test_extra_fields_are_ignored_and_listed_or_refused(sig: Signature) -> None:
    rows = [{"age": 1, "income": 1, "city": "rome", "id": 7}, {"age": 2, "income": 1, "city": None}]
    checked = sig.check_records([{**rows[0]}, {**rows[1], "note": "x"}])
    assert list(checked.frame.columns) == ["age", "income", "city"]
    assert checked.extra == ("id", "note")
    with pytest.raises(InvalidInputError) as info:
        sig.check_records(rows, extra="error")
    assert info.value.where == {"row": 0, "field": "id"}
    table = pd.DataFrame(rows)
    assert sig.check_frame(table).extra == ("id",)
    with pytest.raises(InvalidInputError) as info:
        sig.check_frame(table, source="f.csv", extra="error")
    assert info.value.where == {"file": "f.csv", "column": "id"}
    with pytest.raises(InvalidInputError, match="extra fields"):
        sig.check_records(rows, extra="warn")


def test_unknown_values_flag_rows_instead_of_refusing(sig: Signature) -> None:
    rows = [
        {"age": 1, "income": 1.0, "city": "rome"},
        {"age": 2, "income": 2.0, "city": "oslo"},  # a category never seen
        {"age": 3, "income": None, "city": "paris"},  # a null where training had none
        {"age": None, "income": None, "city": "lima"},  # both (age was nullable in training)
    ]
    for checked in (sig.check_records(rows, unknown="flag"), sig.check_frame(pd.DataFrame(rows))):
        assert checked.flagged.tolist() == [False, True, True, True]
        assert checked.unknown_fields() == [[], ["city"], ["income"], ["income", "city"]]
        assert checked.unseen["city"].tolist() == [False, True, False, True]
        assert set(checked.unseen) == {"city"} and set(checked.nulls) == {"income"}
        assert checked.frame["city"].iloc[1] == "oslo"
    with pytest.raises(InvalidInputError, match="never seen"):
        sig.check_records(rows[:2])  # records default to error (the server)
    with pytest.raises(InvalidInputError, match="missing a value"):
        sig.check_frame(pd.DataFrame(rows[2:3]), unknown="error")
    clean = sig.check_records(rows[:1], unknown="flag")
    assert not clean.any_flagged and clean.unknown_fields() == [[]]
    with pytest.raises(InvalidInputError, match="unknown values"):
        sig.check_frame(pd.DataFrame(rows), unknown="maybe")


def test_the_models_own_unknown_policy_wins_over_the_path_default() -> None:
    frame = pd.DataFrame({"city": ["paris", "rome"]})
    kinds = {"city": "categorical"}
    flag = Signature.from_frame(frame, kinds, target="y", task="regression", unknown="flag")
    assert flag.unknown == "flag" and Signature.from_dict(flag.to_dict()) == flag
    assert flag.check_records([{"city": "oslo"}]).unknown_fields() == [["city"]]
    error = Signature.from_frame(frame, kinds, target="y", task="regression", unknown="error")
    with pytest.raises(InvalidInputError, match="never seen"):
        error.check_frame(pd.DataFrame({"city": ["oslo"]}))
    # an explicit argument wins over both
    assert error.check_frame(pd.DataFrame({"city": ["oslo"]}), unknown="flag").any_flagged


def test_datetime_fields_read_every_spelling_of_an_instant() -> None:
    frame = pd.DataFrame(
        {"when": pd.to_datetime(["2018-03-01", "2019-06-30 12:00"], format="ISO8601")}
    )
    kinds = {"when": "datetime"}
    sig = Signature.from_frame(prepare_frame(frame, kinds), kinds, target="y", task="regression")
    same = [
        "2018-03-01",
        "2018-03-01 00:00:00",
        "2018-03-01T00:00:00Z",
        "2018-03-01T01:00:00+01:00",
    ]
    got = sig.validate_records([{"when": v} for v in same])["when"]
    assert (got == pd.Timestamp("2018-03-01")).all()
    table = sig.validate_frame(
        pd.DataFrame({"when": [*same, pd.Timestamp("2018-03-01"), date(2018, 3, 1)]})
    )
    assert (table["when"] == pd.Timestamp("2018-03-01")).all()
    aware = pd.Series(pd.to_datetime(["2018-03-01T01:00:00+01:00"], format="ISO8601"))
    assert sig.validate_frame(pd.DataFrame({"when": aware}))["when"].iloc[0] == pd.Timestamp(
        "2018-03-01"
    )
    future = sig.validate_records([{"when": "2099-12-31T23:59:59Z"}])
    assert future["when"].iloc[0].year == 2099
    for bad, words in (("yesterday", "not a timestamp"), (1520000000, "must be a timestamp")):
        with pytest.raises(InvalidInputError, match=words) as info:
            sig.validate_records([{"when": "2018-01-01"}, {"when": bad}])
        assert info.value.where == {"row": 1, "field": "when"}
        with pytest.raises(InvalidInputError, match=words):
            sig.validate_frame(pd.DataFrame({"when": ["2018-01-01", bad]}, dtype=object))


def test_numeric_fast_path_matches_the_table_path_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(50, 4)), columns=list("abcd"))
    kinds = dict.fromkeys(frame.columns, "numeric")
    sig = Signature.from_frame(frame, kinds, target="y", task="regression")
    records = frame.to_dict("records")
    pd.testing.assert_frame_equal(sig.validate_records(records), sig.validate_frame(frame))


def test_unseen_categories_in_a_long_table_are_found_as_in_a_short_one(sig: Signature) -> None:
    cities = ["paris", "rome", None] * 400 + ["oslo"]
    table = pd.DataFrame({"age": 1.0, "income": 1.0, "city": cities})
    checked = sig.check_frame(table)
    assert np.flatnonzero(checked.unseen["city"]).tolist() == [1200]
    with pytest.raises(InvalidInputError) as info:
        sig.check_frame(table, source="f.csv", unknown="error")
    assert info.value.where == {"file": "f.csv", "row": 1200, "column": "city"}


def test_a_row_with_two_problems_is_refused_for_the_first_column_on_every_path() -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    kinds = {"a": "numeric", "b": "numeric"}
    sig = Signature.from_frame(frame, kinds, target="y", task="regression")
    rows = [{"a": None, "b": "x"}]  # a null in the first column, text in the second
    with pytest.raises(InvalidInputError) as records:
        sig.validate_records(rows)
    with pytest.raises(InvalidInputError) as table:
        sig.validate_frame(pd.DataFrame(rows), unknown="error")
    assert records.value.where["field"] == table.value.where["column"] == "a"
    with pytest.raises(InvalidInputError) as flagged:  # a flagged null is no refusal
        sig.validate_records(rows, unknown="flag")
    assert flagged.value.where["field"] == "b"
