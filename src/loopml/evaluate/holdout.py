"""What a training run records about its holdout beyond the metrics themselves: the
confusion matrix, bootstrap confidence intervals and per-slice metrics, as the trainer
stores them in the run's metrics (and the registered version's)::

    metrics["confusion_matrix"] = {"labels": [...], "matrix": [[...]]}   # classification
    metrics["holdout_ci"] = {metric: [lo, hi], ...}                       # bootstrap > 0
    metrics["bootstrap"] = {"resamples": 200, "level": 0.95, "seed": 42}
    metrics["slices"] = slice_metrics(...) layout                          # slices declared
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from loopml.evaluate.bootstrap import bootstrap_ci
from loopml.evaluate.metrics import confusion
from loopml.evaluate.slices import slice_metrics
from loopml.project.config import EvaluationSpec

LEVEL = 0.95


def holdout_extras(
    task: str,
    ev: EvaluationSpec,
    y_true: Any,
    labels: Any,
    probabilities: np.ndarray | None,
    classes: Any,
    *,
    metric: str,
    overall: float | None,
    rows: pd.DataFrame | None = None,
    positive: Any = None,
) -> dict[str, Any]:
    """The confusion matrix, CIs and slices of one holdout, keyed as stored in a run."""
    out: dict[str, Any] = {}
    y = np.asarray(y_true)
    pred = np.asarray(labels)
    if task == "classification":
        out["confusion_matrix"] = confusion(y, pred, classes)
    if ev.bootstrap and len(y) > 1:
        out["holdout_ci"] = bootstrap_ci(
            task,
            y,
            pred,
            probabilities,
            classes,
            positive=positive,
            resamples=ev.bootstrap,
            seed=ev.seed,
            level=LEVEL,
        )
        out["bootstrap"] = {"resamples": ev.bootstrap, "level": LEVEL, "seed": ev.seed}
    if ev.slices and rows is not None:
        out["slices"] = slice_metrics(
            task,
            rows.reset_index(drop=True),
            y,
            pred,
            probabilities,
            classes,
            specs=ev.slices,
            metric=metric,
            positive=positive,
            overall=overall,
        )
    return out
