"""Date parts of timestamp columns as numeric features.

:class:`DatetimeFeatures` is a plain scikit-learn transformer (no stored functions), so a
fitted feature pipeline that holds it saves and loads with skops like the built-in ones; the
model-artifact allowlist names it as ``loopml.features.dates.DatetimeFeatures``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from loopml.features.values import to_timestamps

PARTS = ("year", "month", "day", "weekday", "hour")
# every part a declaration may choose (features.datetime.parts); weekend is 1 on Saturday
# and Sunday
ALL_PARTS = (*PARTS, "minute", "dayofyear", "weekend")
# periodic parts, each with its period: encoded as sin/cos so December sits next to January
CYCLES = {"month": 12.0, "weekday": 7.0, "hour": 24.0}


class DatetimeFeatures(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Expand each timestamp column into year, month, day, weekday (Monday = 0) and hour,
    plus the sine and cosine of month, weekday and hour when ``cyclical`` is true.

    Input columns hold instants (``datetime64`` values, or anything
    :func:`loopml.features.values.to_timestamps` reads); a missing instant gives NaN in every
    part, for an imputer after this step to fill.
    """

    def __init__(self, cyclical: bool = True, parts: tuple[str, ...] | None = None) -> None:
        self.cyclical = cyclical
        self.parts = parts

    def _parts(self) -> tuple[str, ...]:
        chosen = getattr(self, "parts", None)  # absent on steps saved before parts existed
        if chosen is None:
            return PARTS
        bad = [p for p in chosen if p not in ALL_PARTS]
        if bad:
            raise ValueError(f"unknown date part {bad[0]!r}")
        return tuple(chosen)

    def _cycles(self) -> list[str]:
        return [p for p in CYCLES if p in self._parts()] if self.cyclical else []

    def fit(self, X: Any, y: Any = None) -> DatetimeFeatures:
        validate_data(self, X, reset=True, skip_check_array=True)
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "n_features_in_")
        validate_data(self, X, reset=False, skip_check_array=True)
        frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(np.asarray(X, dtype=object))
        blocks = [self._expand(frame.iloc[:, j]) for j in range(frame.shape[1])]
        if not blocks:
            return np.empty((len(frame), 0), dtype=np.float64)
        return np.hstack(blocks)

    def _expand(self, col: pd.Series) -> np.ndarray:
        ts = pd.DatetimeIndex(to_timestamps(col.reset_index(drop=True)))
        missing = ts.isna()
        parts = {
            "year": ts.year,
            "month": ts.month,
            "day": ts.day,
            "weekday": ts.day_of_week,
            "hour": ts.hour,
            "minute": ts.minute,
            "dayofyear": ts.day_of_year,
            "weekend": ts.day_of_week >= 5,
        }
        columns = [np.asarray(parts[p], dtype=np.float64) for p in self._parts()]
        for part in self._cycles():
            angle = 2.0 * np.pi * np.asarray(parts[part], dtype=np.float64) / CYCLES[part]
            columns += [np.sin(angle), np.cos(angle)]
        if not columns:
            return np.empty((len(ts), 0), dtype=np.float64)
        out = np.column_stack(columns)
        out[np.asarray(missing), :] = np.nan
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "n_features_in_")
        if input_features is None:
            names = getattr(self, "feature_names_in_", None)
            input_features = (
                names if names is not None else [f"x{i}" for i in range(self.n_features_in_)]
            )
        suffixes = list(self._parts())
        for part in self._cycles():
            suffixes += [f"{part}_sin", f"{part}_cos"]
        return np.asarray([f"{c}_{s}" for c in input_features for s in suffixes], dtype=object)


__all__ = ["ALL_PARTS", "DatetimeFeatures"]
