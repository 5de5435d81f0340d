"""The datetime expander: a plain scikit-learn transformer that a bundle can save and load."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression

from loopml.features.dates import DatetimeFeatures
from loopml.registry import ModelBundle
from loopml.train import fit_bundle


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {"when": pd.to_datetime(["2018-03-01", "2020-12-31T13:30:00", None], format="ISO8601")}
    )


def test_parts_and_names() -> None:
    t = DatetimeFeatures().fit(frame())
    out = t.transform(frame())
    names = list(t.get_feature_names_out())
    assert names[:5] == ["when_year", "when_month", "when_day", "when_weekday", "when_hour"]
    assert out.shape == (3, len(names)) == (3, 11)
    row = dict(zip(names, out[1], strict=True))
    assert (row["when_year"], row["when_month"], row["when_day"]) == (2020, 12, 31)
    assert (row["when_weekday"], row["when_hour"]) == (3, 13)  # a Thursday
    # December sits next to January on the circle
    assert row["when_month_sin"] == pytest.approx(np.sin(2 * np.pi))
    assert np.isnan(out[2]).all()  # a missing instant, for the imputer after this step
    plain = DatetimeFeatures(cyclical=False).fit(frame())
    assert plain.transform(frame()).shape == (3, 5)


def test_the_scikit_learn_contract() -> None:
    t = DatetimeFeatures(cyclical=False)
    assert clone(t).get_params() == {"cyclical": False, "parts": None}
    with pytest.raises(Exception, match="not fitted"):
        t.transform(frame())
    fitted = t.fit(frame())
    assert fitted is t and t.n_features_in_ == 1
    assert list(t.feature_names_in_) == ["when"]
    with pytest.raises(ValueError, match="feature names"):
        t.transform(frame().rename(columns={"when": "then"}))


def test_skops_round_trip_names_only_the_class() -> None:
    t = DatetimeFeatures().fit(frame())
    data = sio.dumps(t)
    assert sio.get_untrusted_types(data=data) == ["loopml.features.dates.DatetimeFeatures"]
    back = sio.loads(data, trusted=["loopml.features.dates.DatetimeFeatures"])
    np.testing.assert_array_equal(back.transform(frame()), t.transform(frame()))


def test_a_bundle_with_datetime_features_round_trips() -> None:
    rng = np.random.default_rng(0)
    n = 120
    df = pd.DataFrame(
        {
            "when": pd.Timestamp("2018-01-01") + pd.to_timedelta(rng.integers(0, 700, n), "D"),
            "x": rng.normal(size=n),
        }
    )
    df["y"] = (df["when"].dt.month > 6).astype(int)
    bundle, _ = fit_bundle(df, "y", LogisticRegression(max_iter=500))
    assert bundle.signature.kinds() == {"when": "datetime", "x": "numeric"}
    back = ModelBundle.from_bytes(bundle.to_bytes())
    assert back.trusted == ()  # no opt-in needed: the allowlist names the class
    rows = [{"when": "2018-03-01", "x": 0.1}, {"when": "2031-07-04T10:00:00Z", "x": -1.0}]
    np.testing.assert_array_equal(
        back.predict_records(rows).probabilities, bundle.predict_records(rows).probabilities
    )
    np.testing.assert_array_equal(back.predict(df).labels, bundle.predict(df).labels)
