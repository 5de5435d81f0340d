"""Standardizer: SimpleImputer then StandardScaler in one step, to the same numbers (issue 12),
and the cheaper readings of all-numeric training frames around it."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from loopml.errors import InvalidInputError
from loopml.features.spec import build_transformer, fit_features, not_a_feature, prepare_frame
from loopml.features.steps import Standardizer
from loopml.features.values import to_numbers
from loopml.project import FeatureSpec
from loopml.registry.allowlist import COMPOSITION
from loopml.registry.signature import Signature
from loopml.train.deep import MLPClassifier


def awkward(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """Columns of every scale, with missing values, one all missing, one constant, one
    complete: as a float64 frame (pandas keeps it as one column-major block)."""
    rng = np.random.default_rng(seed)
    m = 7
    a = rng.normal(3, 2, size=(n, m)) * np.array([1, 1000, 1, 1, 1e-3, 1, 7])
    a[rng.random((n, m)) < 0.1] = np.nan
    a[:, 2] = np.nan
    a[:, 3] = 5.0
    a[::7, 3] = np.nan
    a[:, 5] = rng.normal(size=n)
    return pd.DataFrame(a, columns=[f"c{i}" for i in range(m)])


def _sklearn(impute: str) -> Pipeline:
    imputer = SimpleImputer(strategy=impute, fill_value=0.0)
    return Pipeline([("impute", imputer), ("scale", StandardScaler())])


def _quiet(fn: Any, *args: Any) -> tuple[Any, list[str]]:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        out = fn(*args)
    return out, [str(w.message) for w in seen]


@pytest.mark.parametrize("impute", ["mean", "median", "constant"])
def test_the_numbers_of_simple_imputer_then_standard_scaler(impute: str) -> None:
    df = awkward()
    ref = _sklearn(impute)
    expected, ref_warnings = _quiet(ref.fit_transform, df)
    step = Standardizer(impute=impute, fit_dtype="float32")
    got, warned = _quiet(step.fit_transform, df)
    # the same statistics, to the last bit (computed in scikit-learn's order)
    np.testing.assert_array_equal(step.fill_, ref[0].statistics_.astype(np.float64))
    np.testing.assert_array_equal(step.mean_, ref[1].mean_)
    np.testing.assert_array_equal(step.scale_, ref[1].scale_)
    # the training rows as the network takes them: the float64 result cast once
    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, expected.astype(np.float32))
    # the all-missing column is dropped, with scikit-learn's warning
    assert ref_warnings == warned and "c2" in warned[0]
    assert list(step.get_feature_names_out()) == list(ref.get_feature_names_out())
    rows = awkward(500, seed=1)
    out = step.transform(rows)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, _quiet(ref.transform, rows)[0])


def test_float64_fit_and_an_array_in_row_order() -> None:
    x = np.ascontiguousarray(awkward().drop(columns="c2").to_numpy())  # C order, no names
    step = Standardizer(impute="mean")
    got = step.fit_transform(x)
    expected = _sklearn("mean").fit_transform(x)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="fit_dtype"):
        Standardizer(fit_dtype="int8").fit_transform(x)


def test_infinity_is_refused_and_fitted_state_must_fit_the_input() -> None:
    df = awkward().drop(columns="c2")
    bad = df.copy()
    bad.iloc[3, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        Standardizer().fit(bad)
    step = Standardizer().fit(df)
    step.mean_ = step.mean_[:-1]  # a crafted file: fewer means than columns
    with pytest.raises(ValueError, match="mean_ has"):
        step.transform(df)


def _numeric_steps(features: Any) -> list[Any]:
    (_, part, _), *_ = features.transformers
    return [s for _, s in part.steps]


def _names(spec: FeatureSpec, kinds: dict[str, str], estimator: Any) -> list[str]:
    return [type(s).__name__ for s in _numeric_steps(build_transformer(spec, kinds, estimator))]


def test_a_torch_networks_numeric_block_is_one_standardizer() -> None:
    kinds = {c: "numeric" for c in awkward().columns}
    spec = FeatureSpec.from_config({"numeric": {"impute": "mean"}})
    (step,) = _numeric_steps(build_transformer(spec, kinds, MLPClassifier()))
    assert isinstance(step, Standardizer)
    assert (step.impute, step.fit_dtype) == ("mean", "float32")
    zero = FeatureSpec.from_config({"numeric": {"impute": "zero"}})
    (step,) = _numeric_steps(build_transformer(zero, kinds, MLPClassifier()))
    assert (step.impute, step.fill_value) == ("constant", 0.0)
    # other estimators, and options beyond imputing and scaling, keep scikit-learn's steps
    assert _names(spec, kinds, None) == ["SimpleImputer", "StandardScaler"]
    lr = [
        type(s).__name__
        for s in _numeric_steps(build_transformer(spec, kinds, LogisticRegression()))
    ]
    assert lr == ["SimpleImputer", "StandardScaler"]
    clipped = FeatureSpec.from_config({"numeric": {"impute": "mean", "clip": [0.01, 0.99]}})
    names = [
        type(s).__name__ for s in _numeric_steps(build_transformer(clipped, kinds, MLPClassifier()))
    ]
    assert names == ["SimpleImputer", "QuantileClipper", "StandardScaler"]
    unscaled = FeatureSpec.from_config({"numeric": {"scale": "none"}})
    names = [
        type(s).__name__
        for s in _numeric_steps(build_transformer(unscaled, kinds, MLPClassifier()))
    ]
    assert names == ["SimpleImputer"]
    # a selection scores features in float64, as every other step gives them
    selected = FeatureSpec.from_config(
        {"numeric": {"impute": "mean"}, "selection": {"method": "variance"}}
    )
    columns = build_transformer(selected, kinds, MLPClassifier()).steps[0][1]
    (step,) = _numeric_steps(columns)
    assert step.fit_dtype == "float64"


def test_fit_features_keeps_a_float32_block_and_the_step_is_allowlisted() -> None:
    df = awkward().drop(columns="c2")
    kinds = {c: "numeric" for c in df.columns}
    spec = FeatureSpec.from_config({"numeric": {"impute": "mean"}})
    encoded = fit_features(build_transformer(spec, kinds, MLPClassifier()), df)
    reference = fit_features(build_transformer(spec, kinds, None), df)
    assert encoded.dtype == np.float32 and reference.dtype == np.float64
    np.testing.assert_array_equal(encoded, reference.astype(np.float32))
    assert "loopml.features.steps.Standardizer" in COMPOSITION


def _per_column(frame: pd.DataFrame, kinds: dict[str, str]) -> pd.DataFrame:
    """prepare_frame's reading of numeric columns, one column at a time (as before)."""
    out = {c: to_numbers(frame[c].reset_index(drop=True), allow_bool=True) for c in kinds}
    return pd.DataFrame(out, columns=list(kinds), index=frame.index)


def test_all_numeric_frames_are_read_as_one_block_with_the_same_values() -> None:
    rng = np.random.default_rng(0)
    n = 400
    df = pd.DataFrame(rng.normal(size=(n, 3)), columns=["a", "b", "c"])
    df.loc[3, "a"] = np.nan
    df["i"] = rng.integers(0, 5, n)
    df["flag"] = rng.random(n) < 0.5
    df["nullable"] = pd.array(rng.integers(0, 3, n), dtype="Int64")
    df.loc[5, "nullable"] = pd.NA
    df["label"] = 1
    for kinds in ({c: "numeric" for c in "abc"}, {c: "numeric" for c in df if c != "label"}):
        for frame in (df, df.iloc[::3]):
            got = prepare_frame(frame, kinds)
            pd.testing.assert_frame_equal(got, _per_column(frame, kinds), check_exact=True)
            assert len(got._mgr.blocks) == 1  # one float64 block, as the model reads it
    got = prepare_frame(df, {"a": "numeric", "b": "numeric"})
    got.iloc[0, 0] = 99.0  # copy on write: the dataset's frame is left alone
    assert df.iloc[0, 0] != 99.0
    bad = df.assign(b=df["b"].astype(object))
    bad.loc[7, "b"] = "seven"
    with pytest.raises(InvalidInputError, match=r"'b'.*row 7") as err:
        prepare_frame(bad, {"a": "numeric", "b": "numeric"})
    assert err.value.where == {"dataset": "dataset", "column": "b", "row": 7}


def test_the_signature_of_numeric_columns() -> None:
    df = pd.DataFrame(
        {
            "x": [0.5, -2.0, np.nan, 4.0],
            "binary": [0.0, 1.0, 1.0, np.nan],
            "zeros": [0.0, 0.0, 0.0, 0.0],
            "unit": [0.0, 0.5, 1.0, 1.0],
            "ints": [1, 0, 1, 1],
            "missing": [np.nan] * 4,
        }
    )
    sig = Signature.from_frame(df, {c: "numeric" for c in df}, target="y", task="regression")
    got = {f.name: (f.dtype, f.nullable, f.min, f.max, f.binary) for f in sig.inputs}
    assert got == {
        "x": ("float64", True, -2.0, 4.0, False),
        "binary": ("float64", True, 0.0, 1.0, True),
        "zeros": ("float64", False, 0.0, 0.0, True),
        "unit": ("float64", False, 0.0, 1.0, False),
        "ints": ("int64", False, 0.0, 1.0, True),
        "missing": ("float64", True, None, None, False),
    }


def test_continuous_floats_are_features_and_integral_keys_are_not() -> None:
    n = 5000
    rng = np.random.default_rng(0)
    assert not_a_feature(pd.Series(rng.normal(size=n)), "score") is None
    keys = pd.Series(np.arange(n, dtype=np.float64))
    assert "identifier" in (not_a_feature(keys, "row") or "")
    # integral at first, a fraction far down: a number, not a key
    late = keys.copy()
    late.iloc[-1] = 0.5
    assert not_a_feature(late, "row") is None
    head_missing = keys.copy()
    head_missing.iloc[:2000] = np.nan
    assert "identifier" in (not_a_feature(head_missing, "user_id") or "")
