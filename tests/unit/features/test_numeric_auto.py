"""``features.numeric`` defaults to ``auto``: what the model needs, recorded on the run."""

from __future__ import annotations

import lightgbm
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import (
    BaggingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from loopml.features import FeatureSpec, build_transformer, prepare_frame, resolve_kinds
from loopml.features.identity import Identity
from loopml.features.spec import numeric_choices
from loopml.registry.bundle import ModelBundle
from loopml.train.fit import fit_bundle


@pytest.mark.parametrize(
    ("estimator", "expected"),
    [
        (None, ("median", "standard")),
        (LogisticRegression(), ("median", "standard")),
        (RandomForestClassifier(), ("median", "none")),
        (HistGradientBoostingClassifier(), ("none", "none")),
        (lightgbm.LGBMClassifier(), ("none", "none")),
        (Pipeline([("m", lightgbm.LGBMClassifier())]), ("none", "none")),
        # bagging a linear model is not a tree model: it keeps its scaling
        (BaggingClassifier(LogisticRegression()), ("median", "standard")),
    ],
)
def test_auto_is_decided_for_the_estimator(estimator: object, expected: tuple[str, str]) -> None:
    assert numeric_choices(FeatureSpec(), estimator) == expected


def test_declared_transforms_win_over_auto() -> None:
    spec = FeatureSpec.from_config({"numeric": {"impute": "mean", "scale": "standard"}})
    assert numeric_choices(spec, lightgbm.LGBMClassifier()) == ("mean", "standard")


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    x[::7, 0] = np.nan
    frame = pd.DataFrame(x, columns=["a", "b", "c"])
    frame["y"] = (frame["b"] > 0).map({True: "yes", False: "no"})
    return frame


def test_a_tree_model_gets_numbers_as_they_are() -> None:
    frame = _frame()
    spec = FeatureSpec()
    kinds = resolve_kinds(spec, frame, "y")
    x = prepare_frame(frame, kinds)
    ct = build_transformer(spec, kinds, lightgbm.LGBMClassifier()).fit(x)
    assert isinstance(ct.named_transformers_["numeric"], Identity)
    out = ct.transform(x)
    np.testing.assert_array_equal(out, x.to_numpy(dtype=np.float64))  # NaN kept for LightGBM
    linear = build_transformer(spec, kinds, LogisticRegression()).fit(x)
    steps = dict(linear.named_transformers_["numeric"].steps)
    assert isinstance(steps["impute"], SimpleImputer)
    assert isinstance(steps["scale"], StandardScaler)


@pytest.mark.parametrize("numeric", [None, {"impute": "none", "scale": "none"}])
def test_a_pipeline_without_numeric_transforms_saves_and_loads(numeric: object) -> None:
    """Defect: ``impute: none, scale: none`` made a ``passthrough`` entry, which scikit-learn
    fits into a FunctionTransformer, and the artifact allowlist refused the model."""
    features = None if numeric is None else {"numeric": numeric}
    bundle, x = fit_bundle(
        _frame(), "y", lightgbm.LGBMClassifier(n_estimators=5, verbose=-1), features=features
    )
    again = ModelBundle.from_bytes(bundle.to_bytes())
    np.testing.assert_allclose(
        again.predict_frame(x).probabilities, bundle.predict_frame(x).probabilities
    )
