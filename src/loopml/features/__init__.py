"""Feature engineering: transform specs and fitted feature pipelines."""

from loopml.features.spec import FeatureSpec, infer_kind, prepare_frame

__all__ = ["FeatureSpec", "infer_kind", "prepare_frame"]
