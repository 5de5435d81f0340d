"""Metrics per slice of the holdout, and the slices much worse than the whole.

A slice is a value of a categorical column (the ``top`` most frequent values, the rest
together as ``(other)``, missing values as ``(missing)``) or a quantile bucket of a numeric
column (``bins`` buckets, 4 by default; a numeric column with ``bins`` unset and at most
:data:`FEW_VALUES` distinct values is sliced by value).

**The flag rule**: a slice is flagged when its main metric is worse than the whole holdout's
by more than ``worse_by`` (0.05 by default, absolute: lower for higher-is-better metrics,
higher for ``log_loss``, ``rmse``, ...) *and* it has at least ``min_rows`` rows (30 by
default), so a handful of rows cannot raise a flag by chance alone. A slice where the
metric cannot be computed (an AUC on a slice holding one class) is reported without it and
never flagged.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.exceptions import UndefinedMetricWarning

from loopml.evaluate.metrics import LOWER_IS_BETTER, compute_metrics
from loopml.project.evaluation import DEFAULT_BINS, SliceSpec

MIN_ROWS = 30
WORSE_BY = 0.05
FEW_VALUES = 10
OTHER = "(other)"
MISSING = "(missing)"


def slice_metrics(
    task: str,
    frame: pd.DataFrame,
    y_true: Any,
    labels: Any,
    probabilities: np.ndarray | None = None,
    classes: Sequence[Any] | None = None,
    *,
    specs: Sequence[SliceSpec | str],
    metric: str,
    positive: Any = None,
    overall: float | None = None,
    min_rows: int = MIN_ROWS,
    worse_by: float = WORSE_BY,
) -> dict[str, Any]:
    """Metrics of each slice of the rows of ``frame`` (aligned by position with the
    predictions), in the layout stored as a run's ``metrics["slices"]``::

        {"metric": "roc_auc", "overall": 0.95,
         "rule": {"worse_by": 0.05, "min_rows": 30},
         "columns": {"age": [{"slice": "(29.0, 41.0]", "rows": 57, "value": 0.91,
                              "delta": -0.04, "flagged": False, "metrics": {...}}, ...]},
         "flagged": [{"column": "age", "slice": ..., "rows": ..., "value": ..., "delta": ...}]}

    ``delta`` is the slice's value less ``overall`` (the whole rows' value when not given).
    """
    y = np.asarray(y_true)
    pred = np.asarray(labels)
    proba = None if probabilities is None else np.asarray(probabilities)
    if overall is None:
        overall = compute_metrics(task, y, pred, proba, classes, positive=positive).get(metric)
    lower = metric in LOWER_IS_BETTER
    columns: dict[str, list[dict[str, Any]]] = {}
    flagged: list[dict[str, Any]] = []
    for raw in specs:
        spec = SliceSpec(raw) if isinstance(raw, str) else raw
        keys = slice_keys(frame[spec.column], spec)
        rows = []
        for key in _ordered(keys):
            mask = (keys == key).to_numpy()
            n = int(mask.sum())
            with warnings.catch_warnings():  # a tiny slice: r2 of one row, ...
                warnings.simplefilter("ignore", UndefinedMetricWarning)
                m = compute_metrics(
                    task,
                    y[mask],
                    pred[mask],
                    None if proba is None else proba[mask],
                    classes,
                    positive=positive,
                )
            m = {k: v for k, v in m.items() if math.isfinite(v)}  # JSON (and JSONB) safe
            value = m.get(metric)
            delta = None if value is None or overall is None else value - overall
            worse = delta is not None and (delta > worse_by if lower else delta < -worse_by)
            flag = bool(worse and n >= min_rows)
            rows.append(
                {
                    "slice": key,
                    "rows": n,
                    "value": value,
                    "delta": delta,
                    "flagged": flag,
                    "metrics": m,
                }
            )
            if flag:
                flagged.append(
                    {"column": spec.column, "slice": key, "rows": n, "value": value, "delta": delta}
                )
        columns[spec.column] = rows
    return {
        "metric": metric,
        "overall": overall,
        "rule": {"worse_by": worse_by, "min_rows": min_rows},
        "columns": columns,
        "flagged": flagged,
    }


def slice_keys(column: pd.Series, spec: SliceSpec) -> pd.Series:
    """The slice name of each row, as text."""
    s = column.reset_index(drop=True)
    numeric = pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)
    if numeric and (spec.bins is not None or s.nunique() > FEW_VALUES):
        bins = spec.bins or DEFAULT_BINS
        buckets = pd.qcut(s.astype("float64"), q=bins, duplicates="drop")
        return buckets.astype(str).where(s.notna(), MISSING)
    if pd.api.types.is_datetime64_any_dtype(s) and spec.bins is not None:
        buckets = pd.qcut(s.astype("int64"), q=spec.bins, duplicates="drop")
        edges = {
            iv: f"{pd.Timestamp(int(iv.left))} .. {pd.Timestamp(int(iv.right))}"
            for iv in buckets.cat.categories
        }
        return buckets.map(edges).astype(str).where(s.notna(), MISSING)
    text = s.astype(str).where(s.notna(), MISSING)
    counts = text[text != MISSING].value_counts()
    keep = set(counts.index[: spec.top])
    return text.where(text.isin(keep) | (text == MISSING), OTHER)


def _ordered(keys: pd.Series) -> list[str]:
    """Slices by size (buckets in their numeric order), ``(other)``/``(missing)`` last."""
    values = [k for k in pd.unique(keys) if k not in (OTHER, MISSING)]
    if values and all(v.startswith("(") and v.endswith("]") for v in values):
        values.sort(key=lambda v: float(v[1:].split(",")[0]))
    else:
        counts = keys.value_counts()
        values.sort(key=lambda v: (-int(counts[v]), v))
    return values + [k for k in (OTHER, MISSING) if (keys == k).any()]


def flagged_lines(slices: dict[str, Any]) -> list[str]:
    """One line per flagged slice, for ``loopml train``."""
    metric = slices["metric"]
    return [
        f"slice {f['column']}={f['slice']} ({f['rows']} rows): {metric} = {f['value']:.4f}, "
        f"{f['delta']:+.4f} vs the whole holdout"
        for f in slices["flagged"]
    ]
