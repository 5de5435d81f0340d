import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from loopml.errors import ConfigError, InvalidInputError
from loopml.features import FeatureSpec, build_transformer, infer_kind, prepare_frame, resolve_kinds


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
        ({"numeric": {"scale": "minmax"}}, "features.numeric.scale"),
        ({"categorical": {"encode": "hash"}}, "features.categorical.encode"),
        ({"numeric": {"bogus": 1}}, "features.numeric.bogus"),
        ({"kinds": {"a": "text"}}, "features.kinds.a"),
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
