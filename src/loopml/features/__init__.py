"""Feature engineering: the kinds of columns and fitted feature pipelines."""

from loopml.features.spec import build_transformer, infer_kind, prepare_frame, resolve_kinds
from loopml.project.features import FeatureSpec

__all__ = ["FeatureSpec", "build_transformer", "infer_kind", "prepare_frame", "resolve_kinds"]
