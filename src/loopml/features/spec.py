"""Feature pipelines: the kinds of a frame's columns, and the transformer a spec builds.

A :class:`~loopml.project.FeatureSpec` (the ``features:`` section of ``loopml.yaml``) builds a
scikit-learn ``ColumnTransformer`` that is fitted once on training data and then saved inside
the model artifact, so serving transforms inputs exactly as training did.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from loopml.errors import ConfigError, InvalidInputError
from loopml.kinds import CATEGORICAL, NUMERIC
from loopml.project.features import FeatureSpec


def resolve_kinds(
    spec: FeatureSpec, frame: pd.DataFrame, target: str, source: str = "dataset"
) -> dict[str, str]:
    """The feature columns of ``frame`` in order, mapped to their kind."""
    columns = list(frame.columns)
    chosen = spec.include if spec.include is not None else [c for c in columns if c != target]
    for col in [*chosen, *spec.exclude, *spec.kinds]:
        if col not in columns:
            raise InvalidInputError(
                f"feature column {col!r} is not in the {source}",
                where={"column": col, "dataset": source},
                hint=f"Columns are: {', '.join(map(str, columns[:30]))}",
            )
    if target in chosen:
        raise ConfigError(
            f"the target {target!r} is listed as a feature",
            where={"field": "features.include", "column": target},
            hint="Remove the target from features.include",
        )
    chosen = [c for c in chosen if c not in set(spec.exclude)]
    if not chosen:
        raise ConfigError(
            "no feature columns left",
            where={"field": "features"},
            hint="Include at least one column besides the target",
        )
    return {c: spec.kinds.get(c) or infer_kind(frame[c]) for c in chosen}


def build_transformer(spec: FeatureSpec, kinds: Mapping[str, str]) -> ColumnTransformer:
    """An unfitted ColumnTransformer for these feature kinds (output is dense)."""
    numeric = [c for c, k in kinds.items() if k == NUMERIC]
    categorical = [c for c, k in kinds.items() if k == CATEGORICAL]
    transformers: list[tuple[str, Any, list[str]]] = []
    if numeric:
        steps: list[tuple[str, Any]] = []
        if spec.numeric_impute != "none":
            strategy = "constant" if spec.numeric_impute == "zero" else spec.numeric_impute
            steps.append(("impute", SimpleImputer(strategy=strategy, fill_value=0.0)))
        if spec.numeric_scale == "standard":
            steps.append(("scale", StandardScaler()))
        transformers.append(("numeric", Pipeline(steps) if steps else "passthrough", numeric))
    if categorical:
        csteps: list[tuple[str, Any]] = []
        if spec.categorical_impute == "most_frequent":
            csteps.append(("impute", SimpleImputer(strategy="most_frequent")))
        elif spec.categorical_impute == "missing":
            csteps.append(("impute", SimpleImputer(strategy="constant", fill_value="__missing__")))
        csteps.append(("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False)))
        transformers.append(("categorical", Pipeline(csteps), categorical))
    return ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)


def infer_kind(col: pd.Series) -> str:
    """Numbers and booleans are numeric; everything else is categorical."""
    if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
        return NUMERIC
    return CATEGORICAL


def prepare_frame(frame: pd.DataFrame, kinds: Mapping[str, str]) -> pd.DataFrame:
    """The feature columns in order, numeric as float64 and categorical as str objects."""
    out: dict[str, Any] = {}
    for col, kind in kinds.items():
        s = frame[col]
        if kind == NUMERIC:
            out[col] = s.astype("float64").to_numpy()
        else:
            nulls = s.isna().to_numpy()
            values = s.astype(object).to_numpy(dtype=object)
            out[col] = np.array(
                [np.nan if n else str(v) for v, n in zip(values, nulls, strict=True)],
                dtype=object,
            )
    return pd.DataFrame(out, columns=list(kinds), index=frame.index)
