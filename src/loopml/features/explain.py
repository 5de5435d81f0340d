"""What a fitted feature pipeline does, column by column, and what its selection kept.

:func:`explain` answers ``loopml features explain NAME@VERSION``: for each input column of a
version, its kind (declared in ``loopml.yaml`` or inferred), the transforms applied to it and
the output columns it produced (after selection). :func:`selection_report` is what a run
records about its selection step: kept and dropped features with their scores.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from loopml.features.steps import SelectFeatures

# the fitted parameters worth showing, per transformer class name
SHOWN_PARAMS = {
    "SimpleImputer": ("strategy",),
    "Standardizer": ("impute",),
    "OneHotEncoder": ("max_categories", "min_frequency"),
    "PowerTransformer": ("method",),
    "QuantileClipper": ("low", "high"),
    "Bucketize": ("bins", "strategy", "edges"),
    "HashEncoder": ("n_features",),
    "PolynomialFeatures": ("degree", "interaction_only"),
    "SelectFeatures": ("method", "k", "percentile", "threshold"),
    "DatetimeFeatures": ("parts", "cyclical"),
    "TextVectorizer": ("encode", "ngram_range"),
}


def split_pipeline(features: Any) -> tuple[Any, SelectFeatures | None]:
    """The ColumnTransformer of a feature pipeline and its selection step (or None)."""
    steps = getattr(features, "steps", None)
    if isinstance(steps, list) and steps and isinstance(steps[-1][1], SelectFeatures):
        return steps[0][1], steps[-1][1]
    return features, None


def selection_report(features: Any) -> dict[str, Any] | None:
    """Kept and dropped features of the pipeline's selection with their scores (JSON-ready),
    or None when it has no selection step."""
    columns, select = split_pipeline(features)
    if select is None:
        return None
    names = [str(n) for n in columns.get_feature_names_out()]
    return select.report(names)


def describe_step(step: Any) -> str:
    """``StandardScaler``, ``SimpleImputer(strategy=median)``: a step and what it was told."""
    name = type(step).__name__
    shown = []
    for key in SHOWN_PARAMS.get(name, ()):
        value = getattr(step, key, None)
        if value is not None:
            text = ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
            shown.append(f"{key}={text}")
    if name == "TextVectorizer":  # the fitted vocabulary's size, or the hashed columns
        size = step.vocabulary_size
        shown.append(f"vocabulary={size}" if size is not None else f"n_features={step.n_features}")
    return f"{name}({', '.join(shown)})" if shown else name


def _steps(trans: Any) -> list[Any]:
    steps = getattr(trans, "steps", None)
    if isinstance(steps, list):
        return [s for _, s in steps if s is not None and s != "passthrough"]
    return [trans]


def explain(
    features: Any, kinds: Mapping[str, str], declared: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """One row per input column: ``column``, ``kind``, ``kind_source`` (declared or
    inferred), ``transforms`` (each part that takes the column, its steps in order),
    ``outputs`` (the feature columns it produced, after selection) and ``dropped`` (those the
    selection left out); a text column also has ``vocabulary`` (the size of its fitted
    vocabulary, None when hashed) and ``encode``."""
    declared = declared or {}
    columns, select = split_pipeline(features)
    kept: set[str] | None = None
    if select is not None:
        names = np.asarray([str(n) for n in columns.get_feature_names_out()], dtype=object)
        kept = {str(n) for n in names[np.asarray(select.support_, dtype=bool)]}
    rows: dict[str, dict[str, Any]] = {
        c: {
            "column": c,
            "kind": k,
            "kind_source": "declared" if c in declared else "inferred",
            "transforms": [],
            "outputs": [],
            "dropped": [],
        }
        for c, k in kinds.items()
    }
    for part, trans, cols in columns.transformers_:
        if isinstance(trans, str) and trans == "drop":
            continue
        cols = [cols] if isinstance(cols, str) else list(cols)
        cols = [c if isinstance(c, str) else list(kinds)[int(c)] for c in cols]
        outputs = [str(n) for n in trans.get_feature_names_out(np.asarray(cols, dtype=object))]
        steps = " -> ".join(describe_step(s) for s in _steps(trans)) or "none"
        for col in cols:
            if col not in rows:
                continue
            role = ""
            if type(_steps(trans)[0]).__name__ == "TimeSince" and col == cols[-1]:
                role = " (as the reference)"
            rows[col]["transforms"].append(f"{part}: {steps}{role}")
            text = next((s for s in _steps(trans) if type(s).__name__ == "TextVectorizer"), None)
            if text is not None:
                rows[col]["encode"] = text.encode
                rows[col]["vocabulary"] = text.vocabulary_size
            for out in _outputs_of(col, cols, outputs, _steps(trans)):
                full = f"{part}__{out}"
                bucket = "outputs" if kept is None or full in kept else "dropped"
                rows[col][bucket].append(full)
    return list(rows.values())


def _outputs_of(col: str, cols: list[str], outputs: list[str], steps: list[Any]) -> list[str]:
    """The outputs of a part that come from ``col``: all of them for a part of one column;
    by the powers of a polynomial step (a product comes from each of its columns); in order
    for a part with one output per column; else those named after it (``col``, ``col_x``),
    the longest matching column name winning."""
    if len(cols) == 1:
        return outputs
    last = steps[-1] if steps else None
    powers = getattr(last, "powers_", None)
    if type(last).__name__ == "PolynomialFeatures" and powers is not None:
        j = cols.index(col)
        return [o for o, row in zip(outputs, np.asarray(powers), strict=False) if row[j] > 0]
    if len(outputs) == len(cols):
        return [outputs[cols.index(col)]]
    mine = []
    for out in outputs:
        base = out.removeprefix("missingindicator_")
        owner = max(
            (c for c in cols if base == c or base.startswith(f"{c}_")), key=len, default=None
        )
        if owner == col:
            mine.append(out)
    return mine


__all__ = ["describe_step", "explain", "selection_report", "split_pipeline"]
