"""The warm-up sample: training rows kept in the bundle, exact through a round trip, and
``warm_up`` proving that a loaded version can predict them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from sklearn.linear_model import LogisticRegression, Ridge

from loopml.errors import IntegrityError
from loopml.registry import ModelBundle
from loopml.registry.bundle import SAMPLE_FILE, SAMPLE_ROWS
from loopml.train import fit_bundle
from tests.unit.registry.crafted import member, replace_member
from tests.unit.registry.test_bundle_properties import frames


def _mixed() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 40
    return pd.DataFrame(
        {
            "a": np.where(np.arange(n) % 7 == 0, np.nan, rng.normal(size=n)),
            "b": rng.integers(0, 5, n).astype(float),
            "city": np.where(np.arange(n) % 5 == 0, None, rng.choice(["Oslo", "Lima", "1.0"], n)),
            "y": rng.integers(0, 2, n),
        }
    )


def test_the_sample_is_rows_of_the_prepared_features_and_survives_a_round_trip() -> None:
    bundle, x = fit_bundle(_mixed(), "y", LogisticRegression())
    sample = bundle.sample
    assert sample is not None and len(sample) == SAMPLE_ROWS
    # training rows spread over the data, in the layout features.transform receives
    first, last = x.iloc[[0]].reset_index(drop=True), x.iloc[[-1]].reset_index(drop=True)
    pd.testing.assert_frame_equal(sample.iloc[[0]].reset_index(drop=True), first)
    pd.testing.assert_frame_equal(sample.iloc[[-1]].reset_index(drop=True), last)
    again = ModelBundle.from_bytes(bundle.to_bytes())
    assert again.sample is not None
    pd.testing.assert_frame_equal(again.sample, sample)
    assert sample["a"].isna().any() and sample["city"].isna().any()  # nulls kept exactly
    again.warm_up()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames())
def test_the_sample_round_trips_exactly(frame: pd.DataFrame) -> None:
    bundle, x = fit_bundle(frame, "y", LogisticRegression(max_iter=200))
    again = ModelBundle.from_bytes(bundle.to_bytes())
    assert bundle.sample is not None and again.sample is not None
    pd.testing.assert_frame_equal(again.sample, bundle.sample)
    assert len(again.sample) == min(len(x), SAMPLE_ROWS)
    np.testing.assert_array_equal(
        again.predict_frame(again.sample).labels, bundle.predict_frame(bundle.sample).labels
    )


def test_a_bundle_written_without_a_sample_still_loads_and_warms_up_to_nothing() -> None:
    bundle, x = fit_bundle(_mixed(), "y", Ridge(), task="regression")
    old = ModelBundle(bundle.features, bundle.estimator, bundle.signature, bundle.flavor)
    data = old.to_bytes()
    assert SAMPLE_FILE not in data.decode("latin-1")
    again = ModelBundle.from_bytes(data)
    assert again.sample is None
    again.warm_up()  # nothing to predict
    np.testing.assert_allclose(again.predict_frame(x).labels, bundle.predict_frame(x).labels)


def test_warm_up_fails_for_a_version_that_cannot_predict() -> None:
    bundle, _ = fit_bundle(_mixed(), "y", LogisticRegression())
    bundle.estimator.coef_ = np.zeros((1, 2))  # loads, but no longer fits its features
    broken = ModelBundle.from_bytes(bundle.to_bytes(), what="cancer@7")
    with pytest.raises(IntegrityError, match="model cancer@7 cannot predict its own sample rows"):
        broken.warm_up()


def test_warm_up_fails_for_predictions_that_are_not_numbers() -> None:
    bundle, _ = fit_bundle(_mixed(), "y", Ridge(), task="regression")
    bundle.estimator.intercept_ = np.nan
    with pytest.raises(IntegrityError, match="not a finite number"):
        ModelBundle.from_bytes(bundle.to_bytes(), what="m@1").warm_up()


@pytest.mark.parametrize("payload", [b"not parquet", b"PAR1" + b"\x00" * 20 + b"PAR1"])
def test_damaged_sample_rows_are_an_integrity_error(payload: bytes) -> None:
    bundle, _ = fit_bundle(_mixed(), "y", Ridge(), task="regression")
    data = replace_member(bundle.to_bytes(), SAMPLE_FILE, payload)
    with pytest.raises(IntegrityError, match="sample rows"):
        ModelBundle.from_bytes(data)


def test_sample_rows_that_do_not_match_the_signature_are_an_integrity_error() -> None:
    bundle, _ = fit_bundle(_mixed(), "y", Ridge(), task="regression")
    other, _ = fit_bundle(_mixed().rename(columns={"a": "z"}), "y", Ridge(), task="regression")
    data = replace_member(bundle.to_bytes(), SAMPLE_FILE, member(other.to_bytes(), SAMPLE_FILE))
    with pytest.raises(IntegrityError, match="sample rows"):
        ModelBundle.from_bytes(data)
