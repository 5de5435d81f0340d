"""Feature specs: which columns go in, of which kind, and how each kind is transformed.

A spec is plain data (from ``loopml.yaml``) and builds a scikit-learn ``ColumnTransformer``
that is fitted once on training data and then saved inside the model artifact, so serving
transforms inputs exactly as training did.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from loopml.errors import ConfigError, InvalidInputError
from loopml.registry.signature import CATEGORICAL, NUMERIC

NUMERIC_IMPUTE = ("median", "mean", "zero", "none")
NUMERIC_SCALE = ("standard", "none")
CATEGORICAL_IMPUTE = ("most_frequent", "missing", "none")
CATEGORICAL_ENCODE = ("onehot",)


@dataclass(frozen=True)
class FeatureSpec:
    """Columns and transforms. ``include=None`` means every column but the target."""

    include: list[str] | None = None
    exclude: list[str] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)  # overrides of inferred kinds
    numeric_impute: str = "median"
    numeric_scale: str = "standard"
    categorical_impute: str = "most_frequent"
    categorical_encode: str = "onehot"

    @classmethod
    def from_config(cls, data: Mapping[str, Any] | None, where: str = "features") -> FeatureSpec:
        data = dict(data or {})
        known = {"include", "exclude", "kinds", "numeric", "categorical"}
        for key in data:
            if key not in known:
                raise ConfigError(
                    f"unknown key {key!r} under {where}",
                    where={"field": f"{where}.{key}"},
                    hint=f"Known keys: {', '.join(sorted(known))}",
                )
        include = data.get("include", "all")
        if include == "all" or include is None:
            include_list = None
        elif isinstance(include, list) and all(isinstance(c, str) for c in include):
            include_list = list(include)
        else:
            raise ConfigError(
                f"{where}.include must be 'all' or a list of column names",
                where={"field": f"{where}.include"},
                hint="Write include: [col_a, col_b] or include: all",
            )
        num = dict(data.get("numeric") or {})
        cat = dict(data.get("categorical") or {})
        spec = cls(
            include=include_list,
            exclude=list(data.get("exclude") or []),
            kinds=dict(data.get("kinds") or {}),
            numeric_impute=str(num.pop("impute", "median")),
            numeric_scale=str(num.pop("scale", "standard")),
            categorical_impute=str(cat.pop("impute", "most_frequent")),
            categorical_encode=str(cat.pop("encode", "onehot")),
        )
        for section, rest in (("numeric", num), ("categorical", cat)):
            if rest:
                key = next(iter(rest))
                raise ConfigError(
                    f"unknown transform {key!r} under {where}.{section}",
                    where={"field": f"{where}.{section}.{key}"},
                    hint="Numeric takes impute and scale; categorical takes impute and encode",
                )
        for fname, value, allowed in (
            ("numeric.impute", spec.numeric_impute, NUMERIC_IMPUTE),
            ("numeric.scale", spec.numeric_scale, NUMERIC_SCALE),
            ("categorical.impute", spec.categorical_impute, CATEGORICAL_IMPUTE),
            ("categorical.encode", spec.categorical_encode, CATEGORICAL_ENCODE),
        ):
            if value not in allowed:
                raise ConfigError(
                    f"{where}.{fname} is {value!r}",
                    where={"field": f"{where}.{fname}"},
                    hint=f"Choose one of: {', '.join(allowed)}",
                )
        for col, kind in spec.kinds.items():
            if kind not in (NUMERIC, CATEGORICAL):
                raise ConfigError(
                    f"{where}.kinds.{col} is {kind!r}",
                    where={"field": f"{where}.kinds.{col}"},
                    hint="A kind is 'numeric' or 'categorical'",
                )
        return spec

    def to_dict(self) -> dict[str, Any]:
        return {
            "include": self.include or "all",
            "exclude": self.exclude,
            "kinds": self.kinds,
            "numeric": {"impute": self.numeric_impute, "scale": self.numeric_scale},
            "categorical": {"impute": self.categorical_impute, "encode": self.categorical_encode},
        }

    def resolve(self, frame: pd.DataFrame, target: str, source: str = "dataset") -> dict[str, str]:
        """The feature columns of ``frame`` in order, mapped to their kind."""
        columns = list(frame.columns)
        chosen = self.include if self.include is not None else [c for c in columns if c != target]
        for col in [*chosen, *self.exclude, *self.kinds]:
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
        chosen = [c for c in chosen if c not in set(self.exclude)]
        if not chosen:
            raise ConfigError(
                "no feature columns left",
                where={"field": "features"},
                hint="Include at least one column besides the target",
            )
        return {c: self.kinds.get(c) or infer_kind(frame[c]) for c in chosen}

    def build(self, kinds: Mapping[str, str]) -> ColumnTransformer:
        """An unfitted ColumnTransformer for these feature kinds (output is dense)."""
        numeric = [c for c, k in kinds.items() if k == NUMERIC]
        categorical = [c for c, k in kinds.items() if k == CATEGORICAL]
        transformers: list[tuple[str, Any, list[str]]] = []
        if numeric:
            steps: list[tuple[str, Any]] = []
            if self.numeric_impute != "none":
                strategy = "constant" if self.numeric_impute == "zero" else self.numeric_impute
                steps.append(("impute", SimpleImputer(strategy=strategy, fill_value=0.0)))
            if self.numeric_scale == "standard":
                steps.append(("scale", StandardScaler()))
            transformers.append(("numeric", Pipeline(steps) if steps else "passthrough", numeric))
        if categorical:
            csteps: list[tuple[str, Any]] = []
            if self.categorical_impute == "most_frequent":
                csteps.append(("impute", SimpleImputer(strategy="most_frequent")))
            elif self.categorical_impute == "missing":
                csteps.append(
                    ("impute", SimpleImputer(strategy="constant", fill_value="__missing__"))
                )
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
