"""Train/holdout splits and folds as declared by ``evaluation.split``.

Every function returns positional row indices. The kinds:

- ``random``: a shuffled holdout and k-fold, stratified for classification whenever every
  class can be split (the default);
- ``stratified``: the same, but stratification is required (an error when a class is too
  small to appear on both sides);
- ``group``: no value of ``column`` is on both sides of any split (a group-aware holdout,
  ``StratifiedGroupKFold`` for classification, ``GroupKFold`` otherwise);
- ``time``: ``column`` (a time or an ordered number) orders the rows; the holdout is the
  latest rows and the folds are expanding windows (each trains only on rows strictly earlier
  than every row it is tested on). Rows with equal times always fall on the same side. The
  gap (rows or a duration) is dropped from the end of each training part.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import (
    GroupKFold,
    GroupShuffleSplit,
    KFold,
    StratifiedGroupKFold,
    StratifiedKFold,
    train_test_split,
)

from loopml.errors import ConfigError, InvalidInputError
from loopml.project.evaluation import SplitSpec
from loopml.project.features import FeatureSpec

Fold = tuple[np.ndarray, np.ndarray]


def check_split(
    spec: SplitSpec,
    column: pd.Series | None,
    *,
    n_folds: int,
    task: str,
    y: pd.Series | None = None,
    source: str = "dataset",
) -> None:
    """Errors, before any work, for a split that cannot be made on this data."""
    if spec.kind == "stratified" and task != "classification":
        raise ConfigError(
            "evaluation.split kind 'stratified' needs a classification task",
            where={"field": "evaluation.split.kind"},
            hint="Use kind: random for regression",
        )
    if spec.kind not in ("group", "time"):
        return
    field = "evaluation.split.column"
    if column is None:
        raise ConfigError(
            f"evaluation.split kind {spec.kind!r} needs a column",
            where={"field": field},
            hint="Add column: NAME",
        )
    name = str(column.name)
    if column.isna().any():
        row = int(np.flatnonzero(column.isna().to_numpy())[0])
        raise InvalidInputError(
            f"split column {name!r} of {source} has {int(column.isna().sum())} missing values",
            where={"field": field, "column": name, "row": row},
            hint="Every row needs a value in the split column; fill or drop the others",
        )
    if spec.kind == "time":
        _check_time(spec, column, source)
        return
    groups = column.nunique()
    need = max(n_folds, 2)
    if groups < need:
        raise ConfigError(
            f"split column {name!r} of {source} has {groups} groups; "
            f"{'evaluation.folds' if n_folds >= 2 else 'a holdout'} needs at least {need}",
            where={"field": field, "column": name},
            hint="Use fewer folds (evaluation.folds) or a column with more groups",
        )


def _check_time(spec: SplitSpec, column: pd.Series, source: str) -> None:
    name = str(column.name)
    field = "evaluation.split.column"
    is_time = pd.api.types.is_datetime64_any_dtype(column)
    is_number = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
    if not (is_time or is_number):
        raise ConfigError(
            f"split column {name!r} of {source} is not a time or a number "
            f"(its type is {column.dtype})",
            where={"field": field, "column": name},
            hint="A time split orders rows by a timestamp or an ordered number; ingest the "
            "column as a timestamp, or use kind: group or kind: random",
        )
    if spec.gap_seconds and not is_time:
        raise ConfigError(
            f"evaluation.split.gap {spec.gap_text!r} is a duration but column {name!r} is a number",
            where={"field": "evaluation.split.gap", "column": name},
            hint="Give the gap as a whole number of rows for a numeric time column",
        )


def _order_key(column: pd.Series) -> np.ndarray:
    """The column as sortable float64 (seconds for times)."""
    if pd.api.types.is_datetime64_any_dtype(column):
        s = column
        if getattr(s.dt, "tz", None) is not None:
            s = s.dt.tz_convert("UTC").dt.tz_localize(None)
        return s.to_numpy(dtype="datetime64[ns]").astype(np.int64).astype(np.float64) / 1e9
    return column.to_numpy(dtype=np.float64)


def holdout_indices(
    y: pd.Series,
    *,
    spec: SplitSpec,
    fraction: float,
    task: str,
    seed: int,
    column: pd.Series | None = None,
) -> Fold:
    """(train, holdout) positional indices of all rows."""
    n = len(y)
    idx = np.arange(n)
    if spec.kind == "time":
        assert column is not None
        t = _order_key(column)
        order = np.argsort(t, kind="stable")
        start = _tie_start(t[order], n - max(1, math.ceil(n * fraction)))
        train = _drop_gap(order[:start], t, t[order[start]] if start < n else np.inf, spec)
        return _nonempty(np.sort(train), np.sort(order[start:]), "holdout")
    if spec.kind == "group":
        assert column is not None
        groups = column.to_numpy()
        gss = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
        tr, ho = next(gss.split(idx, groups=groups))
        return _nonempty(np.sort(tr), np.sort(ho), "holdout")
    strat = task == "classification" and _can_stratify(y, fraction)
    if spec.kind == "stratified" and not strat:
        raise InvalidInputError(
            "a stratified holdout needs every class at least twice and at least one holdout "
            "row per class",
            where={"field": "evaluation.split.kind"},
            hint="Use kind: random, a larger evaluation.holdout, or more data",
        )
    tr, ho = train_test_split(
        idx, test_size=fraction, random_state=seed, stratify=y.to_numpy() if strat else None
    )
    return tr, ho  # in the shuffled order, as before splits were declared


def fold_indices(
    y: pd.Series,
    *,
    spec: SplitSpec,
    n_folds: int,
    task: str,
    seed: int,
    column: pd.Series | None = None,
) -> list[Fold]:
    """k folds of (train, test) positional indices into ``y`` (the training rows)."""
    if n_folds < 2:
        raise InvalidInputError(
            f"evaluation.folds is {n_folds}",
            where={"field": "evaluation.folds"},
            hint="Use at least 2 folds, or 0 to skip cross-validation",
        )
    n = len(y)
    if spec.kind == "group":
        assert column is not None
        _check_fold_groups(column, n_folds)  # (too few rows is too few groups: said as such)
    need = n_folds + 1 if spec.kind == "time" else n_folds
    if n < need:
        raise InvalidInputError(
            f"{n} training rows cannot be split into {n_folds} folds",
            where={"field": "evaluation.folds"},
            hint="Use fewer folds or more data",
        )
    idx = np.arange(n)
    if spec.kind == "time":
        assert column is not None
        return _time_folds(_order_key(column), n_folds, spec)
    classification = task == "classification"
    stratifiable = classification and int(y.value_counts().min()) >= n_folds
    if spec.kind == "group":
        assert column is not None
        groups = column.to_numpy()
        splitter: Any
        if stratifiable:  # (StratifiedGroupKFold refuses a class with fewer rows than folds)
            splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
            return [(tr, te) for tr, te in splitter.split(idx, y, groups)]
        try:
            splitter = GroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        except TypeError:  # scikit-learn < 1.6: deterministic, by group size
            splitter = GroupKFold(n_splits=n_folds)
        return [(tr, te) for tr, te in splitter.split(idx, groups=groups)]
    if spec.kind == "stratified" and not stratifiable:
        raise InvalidInputError(
            f"a class has fewer than evaluation.folds = {n_folds} training rows, so the folds "
            "cannot be stratified",
            where={"field": "evaluation.split.kind"},
            hint="Use fewer folds or kind: random",
        )
    if stratifiable:
        splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        return list(splitter.split(idx, y))
    return list(KFold(n_splits=n_folds, shuffle=True, random_state=seed).split(idx))


def _check_fold_groups(column: pd.Series, n_folds: int) -> None:
    """ConfigError when ``column`` (the training rows' groups) has fewer groups than folds."""
    n_groups = column.nunique()
    if n_groups < n_folds:
        raise ConfigError(
            f"the training rows have {n_groups} groups in {column.name!r}, fewer than "
            f"evaluation.folds = {n_folds}",
            where={"field": "evaluation.folds", "column": str(column.name)},
            hint="Use fewer folds or a column with more groups",
        )


def _time_folds(t: np.ndarray, n_folds: int, spec: SplitSpec) -> list[Fold]:
    """Expanding windows: n_folds + 1 equal blocks in time order; fold i tests block i + 1
    and trains on every earlier row (less the gap)."""
    n = len(t)
    order = np.argsort(t, kind="stable")
    ts = t[order]
    size = n // (n_folds + 1)
    out = []
    for i in range(n_folds):
        lo = _tie_start(ts, n - (n_folds - i) * size)
        hi = _tie_start(ts, n - (n_folds - i - 1) * size) if i < n_folds - 1 else n
        train = _drop_gap(order[:lo], t, ts[lo] if lo < n else np.inf, spec)
        test = order[lo:hi]
        out.append(_nonempty(np.sort(train), np.sort(test), f"fold {i + 1}"))
    return out


def _tie_start(sorted_t: np.ndarray, pos: int) -> int:
    """``pos`` moved back to the first row with the same time, so ties stay together."""
    pos = min(max(pos, 0), len(sorted_t))
    if pos >= len(sorted_t):
        return pos
    return int(np.searchsorted(sorted_t, sorted_t[pos], side="left"))


def _drop_gap(train: np.ndarray, t: np.ndarray, test_start: float, spec: SplitSpec) -> np.ndarray:
    """``train`` (in time order) less the rows within the gap before ``test_start``."""
    if spec.gap_seconds:
        return train[t[train] < test_start - spec.gap_seconds]
    if spec.gap_rows:
        return train[: max(len(train) - spec.gap_rows, 0)]
    return train


def _nonempty(train: np.ndarray, test: np.ndarray, what: str) -> Fold:
    if len(train) == 0 or len(test) == 0:
        side = "training" if len(train) == 0 else "test"
        raise InvalidInputError(
            f"the {what} of the split has no {side} rows",
            where={"field": "evaluation.split"},
            hint="Use a smaller evaluation.split.gap, fewer evaluation.folds, a different "
            "evaluation.holdout, or more data (many rows sharing one time or group stay "
            "on one side)",
        )
    return train, test


def _can_stratify(y: pd.Series, fraction: float) -> bool:
    counts = y.value_counts()
    return bool(counts.min() >= 2 and len(y) * fraction >= len(counts))


def without_split_column(features: FeatureSpec, split: SplitSpec) -> tuple[FeatureSpec, str | None]:
    """``features`` less the split column unless the user listed it (in ``include`` or
    ``kinds``), and the note saying so (None when nothing changed)."""
    col = split.column
    if (
        col is None
        or features.include is not None
        or col in features.exclude
        or col in features.kinds
    ):
        return features, None
    note = (
        f"split column {col!r} (evaluation.split.column) is not used as a feature; "
        "list it in features.include or features.kinds to use it"
    )
    return replace(features, exclude=[*features.exclude, col]), note


def split_column(frame: pd.DataFrame, split: SplitSpec) -> pd.Series | None:
    """The split column of ``frame`` by position (None for kinds without one)."""
    if split.column is None:
        return None
    return frame[split.column].reset_index(drop=True)
