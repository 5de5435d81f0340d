"""Feature engineering: the kinds of columns and fitted feature pipelines."""

from loopml.features.dates import DatetimeFeatures
from loopml.features.spec import (
    FeatureWarning,
    build_transformer,
    infer_kind,
    prepare_frame,
    resolve_kinds,
)
from loopml.project.features import FeatureSpec

__all__ = [
    "DatetimeFeatures",
    "FeatureSpec",
    "FeatureWarning",
    "build_transformer",
    "infer_kind",
    "prepare_frame",
    "resolve_kinds",
]
