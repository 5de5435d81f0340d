"""The transforms and selections of ``features:`` (issue 10): parsing, fitting, errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.linear_model import LogisticRegression, Ridge

from loopml.errors import ConfigError
from loopml.features.explain import explain, selection_report
from loopml.features.spec import build_transformer, check_spec, fit_features, resolve_kinds
from loopml.features.steps import (
    Bucketize,
    FrequencyEncoder,
    HashEncoder,
    QuantileClipper,
    SelectFeatures,
    SignedLog1p,
    TimeSince,
)
from loopml.project import FeatureSpec
from loopml.registry.bundle import ModelBundle
from loopml.train import fit_bundle


def mixed(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    city = rng.choice(
        ["oslo", "lima", "pune", "kyiv", "rome", "baku"], n, p=[0.4, 0.3, 0.1, 0.1, 0.05, 0.05]
    )
    a = rng.normal(size=n)
    df = pd.DataFrame(
        {
            "a": a,
            "b": rng.exponential(size=n) * 10,
            "city": city,
            "plan": rng.choice(["free", "pro", "team"], n),
            "signup": pd.Timestamp("2021-01-01") + pd.to_timedelta(rng.integers(0, 700, n), "D"),
            "created": pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 300, n), "D"),
        }
    )
    df["y"] = np.where(a + (city == "oslo") + rng.normal(scale=0.5, size=n) > 0.5, "yes", "no")
    df.loc[::9, "a"] = np.nan
    return df


ISSUE_EXAMPLE = {
    "numeric": {"impute": "median", "scale": "robust", "power": "yeo-johnson"},
    "categorical": {"encode": "target"},
    "columns": {"city": {"encode": "hash", "n_features": 64}, "signup": {"kind": "datetime"}},
    "selection": {"method": "mutual_info", "k": 10},
}


def test_the_issue_example_parses_round_trips_and_trains() -> None:
    spec = FeatureSpec.from_config(ISSUE_EXAMPLE)
    assert spec.numeric["scale"] == "robust" and spec.numeric["power"] == "yeo-johnson"
    assert spec.kinds == {"signup": "datetime"}
    assert spec.selection == {"method": "mutual_info", "k": 10}
    assert FeatureSpec.from_config(spec.to_dict()) == spec
    df = mixed()
    bundle, x = fit_bundle(df, "y", LogisticRegression(max_iter=500), features=ISSUE_EXAMPLE)
    assert np.asarray(bundle.features.transform(x)).shape == (len(df), 10)
    report = selection_report(bundle.features)
    assert report is not None and len(report["kept"]) == 10
    assert len(report["kept"]) + len(report["dropped"]) == len(report["scores"])
    # the hashed city: 64 columns before selection
    assert sum(n.startswith("categorical_city__city_hash") for n in report["scores"]) == 64


def test_every_numeric_transform_is_applied_in_order() -> None:
    df = mixed()
    cfg = {
        "numeric": {"impute": "constant", "fill_value": -1, "indicator": True},
        "columns": {
            "a": {"clip": [0.1, 0.9], "scale": "none"},
            "b": {"power": "log1p", "bucketize": {"edges": [0.5, 1.0, 2.0]}, "scale": "none"},
        },
        "include": ["a", "b"],
    }
    spec = FeatureSpec.from_config(cfg)
    kinds = resolve_kinds(spec, df, "y")
    pipe = build_transformer(spec, kinds, task="classification")
    out = fit_features(pipe, df[["a", "b"]], df["y"])
    names = list(pipe.get_feature_names_out())
    a = out[:, names.index("numeric_a__a")]
    filled = df["a"].fillna(-1.0)
    assert a.min() == pytest.approx(np.quantile(filled, 0.1))
    assert a.max() == pytest.approx(np.quantile(filled, 0.9))
    b = out[:, names.index("numeric_b__b_bucket")]
    expected = np.searchsorted([0.5, 1.0, 2.0], np.log1p(df["b"]), side="right")
    np.testing.assert_array_equal(b, expected)
    indicator = out[:, names.index("numeric_a_missing__missingindicator_a")]
    np.testing.assert_array_equal(indicator, df["a"].isna().to_numpy(dtype=float))


@pytest.mark.parametrize(
    ("scale", "check"),
    [
        ("minmax", lambda v: (v.min(), v.max()) == pytest.approx((0.0, 1.0))),
        ("robust", lambda v: np.median(v) == pytest.approx(0.0, abs=1e-12)),
        ("standard", lambda v: (v.mean(), v.std()) == pytest.approx((0.0, 1.0), abs=1e-9)),
    ],
)
def test_scalers(scale: str, check: Any) -> None:
    x = pd.DataFrame({"v": load_diabetes().data[:, 2] * 100 + 5})
    spec = FeatureSpec.from_config({"numeric": {"scale": scale}})
    pipe = build_transformer(spec, {"v": "numeric"}, task="regression")
    assert check(fit_features(pipe, x)[:, 0])


def test_yeo_johnson_makes_a_skewed_column_symmetric() -> None:
    rng = np.random.default_rng(3)
    x = pd.DataFrame({"v": rng.lognormal(sigma=1.0, size=2000)})
    spec = FeatureSpec.from_config({"numeric": {"power": "yeo-johnson", "scale": "none"}})
    out = fit_features(build_transformer(spec, {"v": "numeric"}), x)[:, 0]
    skew = lambda v: float(((v - v.mean()) ** 3).mean() / v.std() ** 3)  # noqa: E731
    assert skew(x["v"].to_numpy()) > 3 and abs(skew(out)) < 0.2


def test_one_hot_caps_rare_categories_into_other() -> None:
    df = mixed()
    spec = FeatureSpec.from_config(
        {"include": ["city"], "categorical": {"encode": "onehot", "max_categories": 3}}
    )
    pipe = build_transformer(spec, {"city": "categorical"})
    out = fit_features(pipe, df[["city"]])
    names = list(pipe.get_feature_names_out())
    assert names == [
        "categorical__city_lima",
        "categorical__city_oslo",
        "categorical__city_infrequent_sklearn",
    ]
    other = out[:, 2].astype(bool)
    assert set(df["city"][other]) == {"pune", "kyiv", "rome", "baku"}
    unseen = pipe.transform(pd.DataFrame({"city": ["paris"]}))  # into "other"
    np.testing.assert_array_equal(unseen, [[0.0, 0.0, 1.0]])


def test_ordinal_and_frequency_encodings() -> None:
    df = mixed()
    spec = FeatureSpec.from_config(
        {"include": ["city", "plan"], "columns": {"city": {"encode": "frequency"}}}
        | {"categorical": {"encode": "ordinal"}}
    )
    kinds = {"city": "categorical", "plan": "categorical"}
    pipe = build_transformer(spec, kinds)
    out = fit_features(pipe, df[["city", "plan"]])
    names = list(pipe.get_feature_names_out())
    share = df["city"].value_counts(normalize=True)
    np.testing.assert_allclose(
        out[:, names.index("categorical_city__city_freq")], df["city"].map(share)
    )
    plan = out[:, names.index("categorical__plan")]
    np.testing.assert_array_equal(plan, df["plan"].map({"free": 0, "pro": 1, "team": 2}))
    unseen = pipe.transform(pd.DataFrame({"city": ["paris"], "plan": ["gold"]}))
    assert unseen.tolist() == [[0.0, -1.0]] or unseen.tolist() == [[-1.0, 0.0]]


def test_target_encoding_is_out_of_fold_when_fitting() -> None:
    """fit_transform (what the model is trained on) differs from transform on the same rows:
    each row's encoding was learnt without it, so it cannot leak its own label."""
    df = mixed()
    spec = FeatureSpec.from_config({"include": ["city"], "categorical": {"encode": "target"}})
    pipe = build_transformer(spec, {"city": "categorical"}, task="classification")
    fitted = fit_features(pipe, df[["city"]], df["y"])
    refit = pipe.transform(df[["city"]])
    assert not np.allclose(fitted, refit)
    # the served values are each category's (smoothed) share of "yes"
    raw = (df["y"] == "yes").groupby(df["city"]).mean()
    served = pd.Series(refit[:, 0], index=df["city"]).groupby(level=0).first()
    assert abs(served["oslo"] - raw["oslo"]) < 0.05 and abs(served["lima"] - raw["lima"]) < 0.05


def test_time_parts_and_time_since() -> None:
    df = mixed()
    spec = FeatureSpec.from_config(
        {
            "include": ["signup", "created"],
            "datetime": {"parts": ["hour", "weekday", "month", "weekend"], "cyclical": True},
            "columns": {"signup": {"since": "created"}},
            "numeric": {"scale": "none", "impute": "none"},
        }
    )
    kinds = {"signup": "datetime", "created": "datetime"}
    pipe = build_transformer(spec, kinds)
    out = fit_features(pipe, df[["signup", "created"]])
    names = list(pipe.get_feature_names_out())
    days = out[:, names.index("datetime_signup_since_created__signup_days_since_created")]
    np.testing.assert_allclose(days, (df["signup"] - df["created"]).dt.days)
    weekend = out[:, names.index("datetime__created_weekend")]
    np.testing.assert_array_equal(weekend, (df["created"].dt.dayofweek >= 5).astype(float))
    assert "datetime__created_weekday_sin" in names and "datetime__created_year" not in names


def test_polynomial_features_are_opt_in() -> None:
    x = pd.DataFrame({"p": [1.0, 2.0, 3.0], "q": [0.5, 1.0, 4.0]})
    kinds = {"p": "numeric", "q": "numeric"}
    plain = build_transformer(FeatureSpec.from_config({"numeric": {"scale": "none"}}), kinds)
    assert fit_features(plain, x).shape == (3, 2)
    spec = FeatureSpec.from_config(
        {"numeric": {"scale": "none", "polynomial": {"degree": 2, "interaction_only": True}}}
    )
    out = fit_features(build_transformer(spec, kinds), x)
    np.testing.assert_allclose(out, np.column_stack([x.p, x.q, x.p * x.q]))


def test_hashing_is_stable_and_takes_unseen_categories() -> None:
    enc = HashEncoder(n_features=8).fit(pd.DataFrame({"c": ["a", "b"]}))
    once = enc.transform(pd.DataFrame({"c": ["a", "zz", None]}))
    again = HashEncoder(n_features=8).fit(pd.DataFrame({"c": ["q"]}))
    np.testing.assert_array_equal(once, again.transform(pd.DataFrame({"c": ["a", "zz", None]})))
    assert once[:2].sum(axis=1).tolist() == [1.0, 1.0] and once[2].sum() == 0.0


def test_custom_transformer_by_import_path() -> None:
    path = "tests.unit.features.custom_step.Scale"
    cfg = {"columns": {"b": {"transform": path, "params": {"factor": 3.0}}}, "include": ["b"]}
    spec = FeatureSpec.from_config(cfg, trust=[path])
    df = mixed()
    bundle, x = fit_bundle(df, "y", LogisticRegression(), features=cfg, trust=[path])
    out = np.asarray(bundle.features.transform(x))
    np.testing.assert_allclose(out[:, 0], df["b"] * 3.0 + df["b"].mean())
    assert spec.custom_transformers == [("b", path)]
    with pytest.raises(Exception, match=r"custom_step\.Scale"):  # not loaded without the opt-in
        ModelBundle.from_bytes(bundle.to_bytes())
    loaded = ModelBundle.from_bytes(bundle.to_bytes(), trusted=[path])
    np.testing.assert_allclose(np.asarray(loaded.features.transform(x)), out)


# -- selection --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "selection",
    [
        {"method": "mutual_info", "k": 5},
        {"method": "f_classif", "k": 5},
        {"method": "chi2", "percentile": 20},
        {"method": "model", "k": 5},
        {"method": "variance", "threshold": 0.5},
    ],
)
def test_selection_on_real_data_keeps_what_it_says(selection: dict[str, Any]) -> None:
    df = load_breast_cancer(as_frame=True).frame
    scale = "minmax" if selection["method"] == "chi2" else "standard"
    if selection["method"] == "variance":
        scale = "none"
    cfg = {"numeric": {"scale": scale}, "selection": selection}
    bundle, x = fit_bundle(df, "target", LogisticRegression(max_iter=2000), features=cfg)
    report = selection_report(bundle.features)
    assert report is not None
    kept = report["kept"]
    if "k" in selection:
        assert len(kept) == 5
    elif "percentile" in selection:
        assert len(kept) == 6  # ceil(20% of 30)
    else:
        var = x.var(ddof=0)
        assert {k.split("__", 1)[1] for k in kept} == set(var[var > 0.5].index)
    scores = report["scores"]
    if selection["method"] != "variance":  # the kept ones are the best scored
        assert min(scores[k] for k in kept) >= max(scores[d] for d in report["dropped"])
    assert np.asarray(bundle.features.transform(x)).shape == (len(df), len(kept))


def test_rfecv_selection() -> None:
    df = load_diabetes(as_frame=True).frame
    cfg = {"selection": {"method": "rfecv", "cv": 3}}
    bundle, _ = fit_bundle(df, "target", Ridge(), task="regression", features=cfg)
    report = selection_report(bundle.features)
    assert report is not None and 1 <= len(report["kept"]) <= 10
    assert "numeric__bmi" in report["kept"]  # diabetes's strongest feature


def test_explain_names_kinds_transforms_and_outputs() -> None:
    df = mixed()
    bundle, _ = fit_bundle(df, "y", LogisticRegression(max_iter=500), features=ISSUE_EXAMPLE)
    rows = {
        r["column"]: r
        for r in explain(bundle.features, bundle.signature.kinds(), {"signup": "datetime"})
    }
    assert rows["signup"]["kind_source"] == "declared" and rows["a"]["kind_source"] == "inferred"
    assert "HashEncoder(n_features=64)" in rows["city"]["transforms"][0]
    assert "RobustScaler" in rows["a"]["transforms"][0]
    assert "PowerTransformer(method=yeo-johnson)" in rows["a"]["transforms"][0]
    total = sum(len(r["outputs"]) for r in rows.values())
    assert total == 10
    assert (
        sum(len(r["outputs"]) + len(r["dropped"]) for r in rows.values()) == 64 + 2 + 1 + 2 * 11
    )  # hash, a, b, plan, two dates


# -- bad input: a ConfigError naming the field, before any fit -------------------------------


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"numeric": {"scale": "zscore"}}, "features.numeric.scale"),
        ({"numeric": {"winsorize": True}}, "features.numeric.winsorize"),
        ({"numeric": {"bucketize": {"bin": 3}}}, "features.numeric.bucketize.bin"),
        ({"numeric": {"clip": [0.9, 0.1]}}, "features.numeric.clip"),
        ({"categorical": {"encode": "embedding"}}, "features.categorical.encode"),
        ({"categorical": {"n_features": 1}}, "features.categorical.n_features"),
        ({"columns": {"a": {"kind": "numeric", "encode": "target"}}}, "features.columns.a.encode"),
        ({"columns": {"a": {"explode": 1}}}, "features.columns.a.explode"),
        ({"columns": {"a": {"polynomial": True}}}, "features.columns.a.polynomial"),
        ({"columns": {"a": {"params": {"x": 1}}}}, "features.columns.a.params"),
        ({"selection": {"method": "lasso"}}, "features.selection.method"),
        ({"selection": {"method": "mutual_info", "k": 0}}, "features.selection.k"),
        ({"selection": {"method": "f_test", "percentile": 0}}, "features.selection.percentile"),
        ({"selection": {"k": 3}}, "features.selection.method"),
        ({"selection": {"method": "variance", "k": 3}}, "features.selection.k"),
        (
            {"columns": {"a": {"transform": "no_such_package.Scaler"}}},
            "features.columns.a.transform",
        ),
        (
            {"columns": {"a": {"transform": "tests.unit.features.custom_step.Nope"}}},
            "features.columns.a.transform",
        ),
        (
            {"columns": {"a": {"transform": "tests.unit.features.custom_step.NOT_A_CLASS"}}},
            "features.columns.a.transform",
        ),
    ],
)
def test_parse_errors_name_the_field(config: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        FeatureSpec.from_config(config)
    assert info.value.where["field"] == field, info.value
    assert info.value.hint


def test_a_custom_transformer_needs_the_trust_opt_in() -> None:
    cfg = {"columns": {"b": {"transform": "tests.unit.features.custom_step.Scale"}}}
    with pytest.raises(ConfigError, match=r"model\.trust") as info:
        FeatureSpec.from_config(cfg, trust=[])
    assert info.value.where["field"] == "features.columns.b.transform"
    assert "tests.unit.features.custom_step.Scale" in (info.value.hint or "")


KINDS = {"a": "numeric", "b": "numeric", "city": "categorical", "signup": "datetime"}


@pytest.mark.parametrize(
    ("config", "task", "field"),
    [
        ({"columns": {"a": {"encode": "onehot"}}}, "classification", "features.columns.a.encode"),
        (
            {"columns": {"city": {"scale": "robust"}}},
            "classification",
            "features.columns.city.scale",
        ),
        ({"columns": {"signup": {"power": "log1p"}}}, None, "features.columns.signup.power"),
        ({"columns": {"nothere": {"scale": "robust"}}}, None, "features.columns.nothere"),
        ({"columns": {"signup": {"since": "a"}}}, None, "features.columns.signup.since"),
        ({"categorical": {"encode": "target"}}, None, "features.categorical.encode"),
        (
            {"columns": {"city": {"encode": "target"}}},
            None,
            "features.columns.city.encode",
        ),
        ({"selection": {"method": "mutual_info"}}, None, "features.selection.method"),
        ({"selection": {"method": "chi2"}}, "regression", "features.selection.method"),
        ({"numeric": {"impute": "none", "indicator": True}}, None, "features.numeric.indicator"),
    ],
)
def test_checks_against_the_columns_name_the_field(
    config: dict[str, Any], task: str | None, field: str
) -> None:
    spec = FeatureSpec.from_config(config)
    with pytest.raises(ConfigError) as info:
        check_spec(spec, KINDS, task)
    assert info.value.where["field"] == field, info.value
    with pytest.raises(ConfigError):  # building checks the same, before anything is fitted
        build_transformer(spec, KINDS, task=task)


def test_a_selection_that_keeps_nothing_names_the_field() -> None:
    df = load_breast_cancer(as_frame=True).frame
    cfg = {"numeric": {"scale": "standard"}, "selection": {"method": "variance", "threshold": 5}}
    with pytest.raises(ConfigError, match="keep none") as info:
        fit_bundle(df, "target", LogisticRegression(), features=cfg)
    assert info.value.where["field"] == "features.selection"


def test_chi2_on_negative_features_names_the_field() -> None:
    df = load_breast_cancer(as_frame=True).frame
    cfg = {"numeric": {"scale": "standard"}, "selection": {"method": "chi2", "k": 3}}
    with pytest.raises(ConfigError, match="non-negative") as info:
        fit_bundle(df, "target", LogisticRegression(), features=cfg)
    assert info.value.where["field"] == "features.selection"


# -- loopml's own steps: fitted state is data only and checked against the input ---------------


def test_steps_refuse_fitted_state_that_does_not_match_their_input() -> None:
    x = pd.DataFrame({"p": [1.0, 2.0, 3.0], "q": [3.0, 2.0, 1.0]})
    for step, attr, bad in [
        (Bucketize(bins=2), "edges_", np.zeros((5, 1))),
        (QuantileClipper(), "lower_", np.zeros(7)),
        (SelectFeatures(method="variance"), "support_", np.ones(9, dtype=bool)),
    ]:
        step.fit(x)
        setattr(step, attr, bad)
        with pytest.raises(ValueError, match=r"entries|table"):
            step.transform(x)
    enc = FrequencyEncoder().fit(pd.DataFrame({"c": ["a", "b"]}))
    enc.frequencies_ = [np.zeros(5)]
    with pytest.raises(ValueError, match="differ"):
        enc.transform(pd.DataFrame({"c": ["a"]}))


def test_signed_log1p_and_time_since_values() -> None:
    out = SignedLog1p().fit_transform(pd.DataFrame({"v": [-9.0, 0.0, 9.0, np.nan]}))
    np.testing.assert_allclose(out[:3, 0], [-np.log(10), 0.0, np.log(10)])
    assert np.isnan(out[3, 0])
    frame = pd.DataFrame({"t": ["2024-01-03", None], "ref": ["2024-01-01T12:00:00", "2024-01-01"]})
    days = TimeSince().fit_transform(frame)
    assert days[0, 0] == pytest.approx(1.5) and np.isnan(days[1, 0])


def test_a_bundle_of_every_loopml_step_loads_on_the_allowlist_alone() -> None:
    cfg = {
        "numeric": {"clip": [0.05, 0.95], "power": "log1p", "bucketize": {"bins": 3}},
        "categorical": {"encode": "frequency"},
        "columns": {
            "city": {"encode": "hash", "n_features": 4},
            "signup": {"since": "created"},
        },
        "selection": {"method": "variance"},
    }
    df = mixed()
    bundle, x = fit_bundle(df, "y", LogisticRegression(max_iter=500), features=cfg)
    steps = {type(s).__name__ for s in _walk(bundle.features)}
    assert {"QuantileClipper", "SignedLog1p", "Bucketize", "FrequencyEncoder"} <= steps
    assert {"HashEncoder", "TimeSince", "SelectFeatures"} <= steps
    loaded = ModelBundle.from_bytes(bundle.to_bytes())  # no trust needed
    assert loaded.trusted == ()
    np.testing.assert_array_equal(
        np.asarray(loaded.features.transform(x)), np.asarray(bundle.features.transform(x))
    )


def _walk(obj: Any) -> list[Any]:
    out = [obj]
    for _, step in getattr(obj, "steps", []):
        out += _walk(step)
    for _, trans, _ in getattr(obj, "transformers_", []):
        out += _walk(trans)
    return out
