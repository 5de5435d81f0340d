"""Numeric columns as they are: the step of a feature pipeline that transforms nothing.

scikit-learn turns a ``"passthrough"`` entry of a ColumnTransformer into a
``FunctionTransformer`` when fitted, a type the model-artifact allowlist refuses (it exists to
call a stored function). :class:`Identity` is a plain class with no stored function, listed as
``loopml.features.identity.Identity``, so a pipeline that leaves numeric features alone (the
default for tree models) saves and loads like any other.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data


class Identity(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Return the numeric input as a float64 array; missing values stay NaN."""

    def fit(self, X: Any, y: Any = None) -> Identity:
        validate_data(self, X, reset=True, dtype=np.float64, ensure_all_finite="allow-nan")
        return self

    def fit_transform(self, X: Any, y: Any = None, **params: Any) -> np.ndarray:
        """``fit(X).transform(X)`` with one validation of ``X`` instead of two (one copy
        and one scan for infinities less on a large training set)."""
        out = validate_data(self, X, reset=True, dtype=np.float64, ensure_all_finite="allow-nan")
        return np.asarray(out, dtype=np.float64)

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "n_features_in_")
        out = validate_data(self, X, reset=False, dtype=np.float64, ensure_all_finite="allow-nan")
        return np.asarray(out, dtype=np.float64)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "n_features_in_")
        if input_features is None:
            names = getattr(self, "feature_names_in_", None)
            if names is None:
                names = [f"x{i}" for i in range(self.n_features_in_)]
            input_features = names
        return np.asarray(list(input_features), dtype=object)
