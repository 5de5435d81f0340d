"""The ``features:`` section of the project file: which columns go in and how each kind is
transformed. Plain data; the features stage builds the fitted pipeline from it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from loopml.errors import ConfigError
from loopml.kinds import FEATURE_KINDS

# auto: what the model needs (features.spec.numeric_steps): no imputation for a model that
# handles missing values itself (LightGBM, XGBoost, HistGradientBoosting), no scaling for
# a tree model, median and standard otherwise
NUMERIC_IMPUTE = ("auto", "median", "mean", "zero", "none")
NUMERIC_SCALE = ("auto", "standard", "none")
CATEGORICAL_IMPUTE = ("most_frequent", "missing", "none")
CATEGORICAL_ENCODE = ("onehot",)
# what a model does with a value its training never had (an unseen category, a missing value
# where training had none): refuse the row, or score it (one-hot unknown, null imputed) and
# flag it. Unset: each path's default (flag for batch scoring and drift, error over HTTP).
UNKNOWN_POLICIES = ("error", "flag")


@dataclass(frozen=True)
class FeatureSpec:
    """Columns and transforms. ``include=None`` means every column but the target."""

    include: list[str] | None = None
    exclude: list[str] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)  # overrides of inferred kinds
    numeric_impute: str = "auto"
    numeric_scale: str = "auto"
    categorical_impute: str = "most_frequent"
    categorical_encode: str = "onehot"
    unknown: str | None = None  # UNKNOWN_POLICIES, or None for each path's default

    @classmethod
    def from_config(cls, data: Mapping[str, Any] | None, where: str = "features") -> FeatureSpec:
        data = dict(data or {})
        known = {"include", "exclude", "kinds", "numeric", "categorical", "unknown"}
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
            numeric_impute=str(num.pop("impute", "auto")),
            numeric_scale=str(num.pop("scale", "auto")),
            categorical_impute=str(cat.pop("impute", "most_frequent")),
            categorical_encode=str(cat.pop("encode", "onehot")),
            unknown=None if data.get("unknown") is None else str(data["unknown"]),
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
        if spec.unknown is not None and spec.unknown not in UNKNOWN_POLICIES:
            raise ConfigError(
                f"{where}.unknown is {spec.unknown!r}",
                where={"field": f"{where}.unknown"},
                hint="Choose flag (score and flag rows with values training never had) or "
                "error (refuse them); leave it out for each path's default",
            )
        for col, kind in spec.kinds.items():
            if kind not in FEATURE_KINDS:
                raise ConfigError(
                    f"{where}.kinds.{col} is {kind!r}",
                    where={"field": f"{where}.kinds.{col}"},
                    hint=f"A kind is one of: {', '.join(FEATURE_KINDS)}",
                )
        return spec

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "include": self.include or "all",
            "exclude": self.exclude,
            "kinds": self.kinds,
            "numeric": {"impute": self.numeric_impute, "scale": self.numeric_scale},
            "categorical": {"impute": self.categorical_impute, "encode": self.categorical_encode},
        }
        if self.unknown is not None:
            out["unknown"] = self.unknown
        return out
