import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from loopml.errors import ConfigError, InvalidInputError
from loopml.features import FeatureSpec, build_transformer, infer_kind, prepare_frame, resolve_kinds
from loopml.features.spec import FeatureWarning, not_a_feature


def test_defaults_use_every_column_but_the_target() -> None:
    df = load_breast_cancer(as_frame=True).frame
    kinds = resolve_kinds(FeatureSpec.from_config(None), df, "target")
    assert "target" not in kinds
    assert len(kinds) == 30
    assert set(kinds.values()) == {"numeric"}


def test_mixed_types_fit_and_transform_with_imputation_and_onehot() -> None:
    df = pd.DataFrame(
        {
            "x": [1.0, np.nan, 3.0, 5.0],
            "c": ["a", "b", None, "a"],
            "flag": [True, False, True, True],
            "y": [0, 1, 0, 1],
        }
    )
    spec = FeatureSpec.from_config({"exclude": ["flag"]})
    kinds = resolve_kinds(spec, df, "y")
    assert kinds == {"x": "numeric", "c": "categorical"}
    x = prepare_frame(df, kinds)
    ct = build_transformer(spec, kinds).fit(x)
    out = ct.transform(x)
    assert out.shape == (4, 3)  # x scaled + one-hot a, b
    assert not np.isnan(out).any()
    # the missing category was imputed with the most frequent one ("a")
    assert out[2, 1] == 1.0


def test_kind_override_and_inference() -> None:
    df = pd.DataFrame({"zip": [75001, 75002], "name": ["a", "b"], "y": [0, 1]})
    assert infer_kind(df["zip"]) == "numeric"
    assert infer_kind(df["name"]) == "categorical"
    spec = FeatureSpec.from_config({"kinds": {"zip": "categorical"}})
    assert resolve_kinds(spec, df, "y")["zip"] == "categorical"


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"numeric": {"impute": "magic"}}, "features.numeric.impute"),
        ({"numeric": {"scale": "log"}}, "features.numeric.scale"),
        ({"categorical": {"encode": "binary"}}, "features.categorical.encode"),
        ({"numeric": {"bogus": 1}}, "features.numeric.bogus"),
        ({"kinds": {"a": "prose"}}, "features.kinds.a"),  # text is a kind since issue 10
        ({"selection": []}, "features.selection"),
        ({"include": "some"}, "features.include"),
    ],
)
def test_config_errors_name_the_field(config: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        FeatureSpec.from_config(config)
    assert info.value.where["field"] == field


def test_unknown_feature_column_is_named() -> None:
    df = pd.DataFrame({"a": [1], "y": [0]})
    with pytest.raises(InvalidInputError, match="'b'"):
        resolve_kinds(FeatureSpec.from_config({"include": ["a", "b"]}), df, "y")
    with pytest.raises(ConfigError, match="target"):
        resolve_kinds(FeatureSpec.from_config({"include": ["a", "y"]}), df, "y")


# -- columns that should not be features (issue 5, item 16) -----------------------------------


def cancer_with_keys(n: int | None = None) -> pd.DataFrame:
    """Breast-cancer data plus the columns a real export has: a key, a date, a note."""
    df = load_breast_cancer(as_frame=True).frame
    if n is not None:
        df = df.iloc[:n].copy()
    rng = np.random.default_rng(0)
    df.insert(0, "id", np.arange(1000, 1000 + len(df)))
    df["visit"] = pd.Timestamp("2018-01-01") + pd.to_timedelta(
        rng.integers(0, 900, len(df)), unit="D"
    )
    df["visit_text"] = df["visit"].dt.strftime("%Y-%m-%d")
    df["patient"] = [f"p-{i:05d}x" for i in rng.permutation(len(df))]
    df["note"] = [
        f"patient seen on day {i} with complaints number {i % 17}" for i in range(len(df))
    ]
    df["region"] = rng.choice(["north", "south", "east"], len(df))
    return df


def test_include_all_leaves_out_keys_and_free_text_with_a_warning() -> None:
    df = cancer_with_keys()
    with pytest.warns(FeatureWarning) as caught:
        kinds = resolve_kinds(FeatureSpec.from_config(None), df, "target")
    messages = [str(w.message) for w in caught]
    for col in ("id", "patient", "note"):
        assert col not in kinds
        assert any(f"column {col!r}" in m for m in messages), messages
    assert any("identifier" in m and "'id'" in m for m in messages)
    assert any("free text" in m and "'note'" in m for m in messages)
    assert all("features.include" in m for m in messages)
    assert kinds["visit"] == "datetime"
    assert kinds["visit_text"] == "datetime"  # ISO dates written as text
    assert kinds["region"] == "categorical"
    assert kinds["mean radius"] == "numeric"
    assert len(caught) == 3


def test_listing_or_declaring_a_column_keeps_it() -> None:
    df = cancer_with_keys(100)
    spec = FeatureSpec.from_config({"include": ["id", "mean radius"]})
    assert resolve_kinds(spec, df, "target") == {"id": "numeric", "mean radius": "numeric"}
    spec = FeatureSpec.from_config({"kinds": {"patient": "categorical"}, "exclude": ["id", "note"]})
    assert resolve_kinds(spec, df, "target")["patient"] == "categorical"


@pytest.mark.parametrize(
    ("values", "name", "excluded"),
    [
        (np.arange(50), "row", True),  # increasing, all distinct
        (np.random.default_rng(1).permutation(50) + 7, "n", True),  # shuffled dense keys
        (np.random.default_rng(1).permutation(50) * 1000, "customer_id", True),  # named key
        (np.random.default_rng(1).permutation(50) * 1000, "amount", False),  # sparse integers
        (np.random.default_rng(1).normal(size=50), "ratio_id", False),  # continuous float
        (np.random.default_rng(1).integers(0, 5, 50), "store_id", False),  # a repeated key
        (np.arange(10), "id", False),  # too few rows to tell
        (np.arange(50, dtype=float), "userId", True),  # integral floats (an int with gaps)
    ],
)
def test_which_numbers_are_identifiers(values: np.ndarray, name: str, excluded: bool) -> None:
    reason = not_a_feature(pd.Series(values), name)
    assert (reason is not None) == excluded, reason
    if excluded:
        assert "identifier" in reason  # type: ignore[operator]


def test_a_column_with_too_many_categories_is_not_one_hot() -> None:
    rng = np.random.default_rng(0)
    col = pd.Series([f"c{v}" for v in rng.integers(0, 2000, 20_000)])
    assert "too many to one-hot" in (not_a_feature(col, "code") or "")
    assert not_a_feature(pd.Series(["a", "b"] * 30), "code") is None


def test_datetime_features_expand_to_date_parts() -> None:
    df = cancer_with_keys(200)
    df.loc[3, "visit"] = pd.NaT
    spec = FeatureSpec.from_config({"include": ["visit", "mean radius"]})
    kinds = resolve_kinds(spec, df, "target")
    x = prepare_frame(df, kinds)
    assert x["visit"].dtype == "datetime64[us]"
    ct = build_transformer(spec, kinds).fit(x)
    names = list(ct.get_feature_names_out())
    assert "datetime__visit_month_sin" in names and "datetime__visit_weekday" in names
    out = ct.transform(x)
    assert out.shape == (200, 12) and not np.isnan(out).any()  # the NaT was imputed
    # text in a table and instants in a frame give the same features
    as_text = x.assign(visit=df["visit"].dt.strftime("%Y-%m-%dT%H:%M:%SZ").to_numpy())
    np.testing.assert_allclose(ct.transform(as_text), out)


def test_declared_datetime_must_parse() -> None:
    df = pd.DataFrame({"when": ["2018-01-01", "soon"], "y": [0, 1]})
    spec = FeatureSpec.from_config({"kinds": {"when": "datetime"}})
    kinds = resolve_kinds(spec, df, "y")
    with pytest.raises(InvalidInputError) as info:
        prepare_frame(df, kinds, source="dataset d@1")
    assert info.value.where == {"dataset": "dataset d@1", "column": "when", "row": 1}


def test_unknown_policy_in_the_project_file() -> None:
    assert FeatureSpec.from_config(None).unknown is None
    spec = FeatureSpec.from_config({"unknown": "flag"})
    assert spec.unknown == "flag"
    assert FeatureSpec.from_config(spec.to_dict()) == spec
    assert "unknown" not in FeatureSpec.from_config(None).to_dict()
    with pytest.raises(ConfigError) as info:
        FeatureSpec.from_config({"unknown": "skip"})
    assert info.value.where["field"] == "features.unknown"
    assert FeatureSpec.from_config({"kinds": {"d": "datetime"}}).kinds == {"d": "datetime"}


def test_prepare_frame_reads_values_as_validation_does() -> None:
    df = pd.DataFrame(
        {"zip": [1.0, 2.0, np.nan], "flag": [True, False, True], "code": ["007", "7", None]}
    )
    kinds = {"zip": "categorical", "flag": "numeric", "code": "categorical"}
    x = prepare_frame(df, kinds)
    assert x["zip"].tolist()[:2] == ["1", "2"] and pd.isna(x["zip"].iloc[2])
    assert x["flag"].tolist() == [1.0, 0.0, 1.0]
    assert x["code"].tolist()[:2] == ["007", "7"]
