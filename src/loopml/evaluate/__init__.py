"""Evaluation: metrics, cross-validation, gates."""

from loopml.evaluate.cv import cross_validate, folds, holdout_split
from loopml.evaluate.metrics import (
    CLASSIFICATION_METRICS,
    LOWER_IS_BETTER,
    REGRESSION_METRICS,
    check_metric,
    compute_metrics,
)
from loopml.project.gate import Condition, Gate

__all__ = [
    "CLASSIFICATION_METRICS",
    "LOWER_IS_BETTER",
    "REGRESSION_METRICS",
    "Condition",
    "Gate",
    "check_metric",
    "compute_metrics",
    "cross_validate",
    "folds",
    "holdout_split",
]
