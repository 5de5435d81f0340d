"""Per-row sample weights (``train.weight``): computed from the dataset, checked, summarised.

The weights go to the estimator's ``fit`` as ``sample_weight`` (scaled to average 1 over the
rows of each fit, cross-validation folds included). The holdout metrics stay unweighted: they
are compared with the champion's and with the live metrics of labelled traffic, which weigh
every row the same, and a recency weight is a way of fitting, not a claim that old rows
matter less to the score.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from loopml.errors import ConfigError, InvalidInputError
from loopml.project import FeatureSpec
from loopml.project.weight import WeightSpec
from loopml.train.imbalance import takes_sample_weight


def without_weight_columns(
    features: FeatureSpec, spec: WeightSpec | None
) -> tuple[FeatureSpec, str | None]:
    """``features`` less the weight's columns unless the user listed them (in ``include`` or
    ``kinds``), and the note saying so (None when nothing changed)."""
    if spec is None:
        return features, None
    listed = set(features.include or []) | set(features.kinds) | set(features.exclude)
    dropped = [c for c in spec.columns() if c not in listed]
    if not dropped or features.include is not None:
        return features, None
    note = (
        f"weight column{'s' if len(dropped) > 1 else ''} {', '.join(map(repr, dropped))} "
        f"({spec.field}) not used as features; list them in features.include to use them"
    )
    return replace(features, exclude=[*features.exclude, *dropped]), note


def check_estimator(estimator: Any, spec: WeightSpec, source: str) -> None:
    """ConfigError naming the estimator when its ``fit`` takes no ``sample_weight``."""
    if takes_sample_weight(estimator):
        return
    raise ConfigError(
        f"model.class {type(estimator).__name__} takes no sample_weight in fit, so "
        f"{spec.field} cannot be applied",
        where={"file": source, "field": spec.field},
        hint="Use an estimator whose fit takes sample_weight (lightgbm.LGBMClassifier, "
        "xgboost.XGBClassifier, RandomForestClassifier, LogisticRegression...), or leave "
        f"{spec.field} out",
    )


def row_weights(frame: pd.DataFrame, spec: WeightSpec, *, source: str, dataset: str) -> np.ndarray:
    """One weight per row of ``frame``: the weight column times the recency weight.

    InvalidInputError naming the column (and the first bad row) for a missing column, a
    weight that is missing, negative or infinite, a time column that is not a time or has
    gaps, or weights that are all 0."""
    n = len(frame)
    w = np.ones(n, dtype=np.float64)
    if spec.column is not None:
        col = _column(frame, spec.column, f"{spec.field}.column", source, dataset)
        if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            raise InvalidInputError(
                f"weight column {spec.column!r} of {dataset} is {col.dtype}, not numbers",
                where={"dataset": dataset, "column": spec.column, "field": f"{spec.field}.column"},
                hint="Give each row a non-negative number as its weight",
            )
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(values) | (values < 0)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise InvalidInputError(
                f"weight column {spec.column!r} of {dataset} has {int(bad.sum())} missing, "
                f"negative or infinite values (row {row}: {values[row]!r})",
                where={"dataset": dataset, "column": spec.column, "row": row},
                hint="Fill or drop those rows: every weight must be a number >= 0",
            )
        w *= values
    r = spec.recency
    if r is not None:
        if r.half_life_rows is not None:
            age = (n - 1 - np.arange(n)).astype(np.float64)
            w *= np.exp2(-age / r.half_life_rows)
        else:
            assert r.time is not None and r.half_life_s is not None
            seconds = _seconds(frame, r.time, f"{spec.field}.recency.time", source, dataset)
            w *= np.exp2(-(seconds.max() - seconds) / r.half_life_s)
    if n and not (w > 0).any():
        raise InvalidInputError(
            f"every row of {dataset} weighs 0 under {spec.field}",
            where={"dataset": dataset, "field": spec.field},
            hint="Give some rows a positive weight, or a longer half_life",
        )
    return w


def summary(spec: WeightSpec, w: np.ndarray) -> dict[str, Any]:
    """What the run records of its weights: the spec, their range and the effective rows
    (Kish: sum(w)^2 / sum(w^2), the rows an unweighted fit of the same spread would have)."""
    total, squares = float(w.sum()), float(np.square(w).sum())
    return {
        **spec.to_dict(),
        "field": spec.field,
        "rows": len(w),
        "min": float(w.min()) if len(w) else None,
        "max": float(w.max()) if len(w) else None,
        "effective_rows": round(total * total / squares, 1) if squares > 0 else 0.0,
    }


def scaled(w: np.ndarray) -> np.ndarray:
    """``w`` scaled to average 1 (unchanged when it sums to 0)."""
    mean = float(w.mean()) if len(w) else 0.0
    return w / mean if mean > 0 else w


def _column(frame: pd.DataFrame, name: str, field: str, source: str, dataset: str) -> pd.Series:
    if name not in frame.columns:
        shown = ", ".join(map(str, list(frame.columns)[:30]))
        raise ConfigError(
            f"{field} names {name!r}, which is not a column of {dataset}",
            where={"file": source, "field": field, "column": name},
            hint=f"Columns of {dataset}: {shown}",
        )
    return frame[name]


def _seconds(frame: pd.DataFrame, name: str, field: str, source: str, dataset: str) -> np.ndarray:
    """The time column ``name`` as seconds (float), checked."""
    col = _column(frame, name, field, source, dataset)
    if not pd.api.types.is_datetime64_any_dtype(col):
        raise InvalidInputError(
            f"{field} names {name!r}, but that column of {dataset} is {col.dtype}, not a time",
            where={"dataset": dataset, "column": name, "field": field},
            hint="Name a datetime column (ingest it as a timestamp), or leave time out and "
            "give half_life as a number of rows",
        )
    if col.isna().any():
        row = int(np.flatnonzero(col.isna().to_numpy())[0])
        raise InvalidInputError(
            f"time column {name!r} of {dataset} has {int(col.isna().sum())} missing values",
            where={"dataset": dataset, "column": name, "row": row},
            hint="Give every row a time, or drop the rows without one",
        )
    if getattr(col.dt, "tz", None) is not None:
        col = col.dt.tz_convert("UTC").dt.tz_localize(None)
    ns = col.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    return (ns - ns.min()).astype(np.float64) / 1e9
