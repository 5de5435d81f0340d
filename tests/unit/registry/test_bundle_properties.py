"""Property: any bundle saved and loaded back predicts exactly what it predicted before."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from loopml.registry import ModelBundle
from loopml.train import fit_bundle


@st.composite
def frames(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(8, 40))
    n_num = draw(st.integers(1, 3))
    cols: dict[str, object] = {}
    for i in range(n_num):
        values = draw(
            st.lists(
                st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False)),
                min_size=n,
                max_size=n,
            )
        )
        if all(v is None for v in values):
            values[0] = 1.0
        cols[f"x{i}"] = pd.array(values, dtype="Float64").astype("float64")
    if draw(st.booleans()):
        cols["c"] = draw(st.lists(st.sampled_from(["a", "b", "c", None]), min_size=n, max_size=n))
    y = [i % 2 for i in range(n)]
    cols["y"] = y
    return pd.DataFrame(cols)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=frames(), tree=st.booleans())
def test_save_load_predicts_the_same(frame: pd.DataFrame, tree: bool) -> None:
    est = DecisionTreeClassifier(random_state=0) if tree else LogisticRegression(max_iter=200)
    bundle, x = fit_bundle(frame, "y", est, task="classification")
    again = ModelBundle.from_bytes(bundle.to_bytes())
    before, after = bundle.predict_frame(x), again.predict_frame(x)
    np.testing.assert_array_equal(before.probabilities, after.probabilities)
    np.testing.assert_array_equal(before.labels, after.labels)
    assert again.signature == bundle.signature
