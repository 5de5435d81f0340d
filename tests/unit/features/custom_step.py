"""A user's own transformer, for the tests of ``features.columns.<col>.transform``."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data


class Scale(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Multiply by ``factor`` and add the training mean (a fitted, data-only state)."""

    def __init__(self, factor: float = 2.0) -> None:
        self.factor = factor

    def fit(self, X: Any, y: Any = None) -> Scale:
        x = validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan")
        self.mean_ = np.nanmean(x, axis=0)
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "mean_")
        x = validate_data(self, X, reset=False, dtype=np.float64, ensure_all_finite="allow-nan")
        return np.asarray(x * self.factor + self.mean_, dtype=np.float64)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray([f"{c}_scaled" for c in (input_features or ["x0"])], dtype=object)


NOT_A_CLASS = 3
