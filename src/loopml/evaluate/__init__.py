"""Evaluation: metrics, splits, cross-validation, bootstrap intervals, slices, gates."""

from loopml.evaluate.bootstrap import bootstrap_ci
from loopml.evaluate.cv import cross_validate, folds, holdout_split
from loopml.evaluate.metrics import (
    CLASSIFICATION_METRICS,
    LOWER_IS_BETTER,
    REGRESSION_METRICS,
    check_metric,
    compute_metrics,
    confusion,
)
from loopml.evaluate.slices import slice_metrics
from loopml.evaluate.split import check_split, fold_indices, holdout_indices
from loopml.project.gate import Condition, Gate

__all__ = [
    "CLASSIFICATION_METRICS",
    "LOWER_IS_BETTER",
    "REGRESSION_METRICS",
    "Condition",
    "Gate",
    "bootstrap_ci",
    "check_metric",
    "check_split",
    "compute_metrics",
    "confusion",
    "cross_validate",
    "fold_indices",
    "folds",
    "holdout_indices",
    "holdout_split",
    "slice_metrics",
]
