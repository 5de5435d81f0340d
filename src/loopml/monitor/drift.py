"""Drift statistics: how far a window of production data has moved from the training reference.

Pure, vectorised functions over numpy and pandas; nothing here touches a store.

Statistics
----------
* **PSI** (population stability index), ``sum((c - r) * ln(c / r))`` over bins, where ``r`` and
  ``c`` are the reference and current shares of each bin. Numeric bins are the reference's
  quantiles (``bins`` equal-mass bins, right-closed, the outer two open-ended so that values
  beyond the reference range still land in a bin); a point mass at the reference minimum gets a
  bin of its own below it, so values under the reference range are not hidden in that atom.
  Categorical bins are the reference categories plus one bucket for all categories unseen in the
  reference. Shares below :data:`PSI_EPSILON` are raised to it, so an empty bin costs a large
  but finite amount.
* **Kolmogorov–Smirnov** two-sample test for numeric features: the statistic is the largest gap
  between the two empirical CDFs. The p-value matches ``scipy.stats.ks_2samp`` with its default
  ``method="auto"``: exact when neither sample has more than 10,000 values, Smirnov's
  asymptotic distribution otherwise.
* **Chi-square** test of homogeneity for categorical features, on the 2×K contingency table of
  reference and current counts (no continuity correction), the same as
  ``scipy.stats.chi2_contingency(table, correction=False)``. A contingency test, rather than a
  goodness-of-fit test against the reference shares, because the reference is a sample too and
  because categories unseen in the reference (their own bucket) would have zero expected count.
* **Jensen–Shannon divergence** for categorical features, base 2, so it lies in [0, 1]. This is
  the *divergence*: ``scipy.spatial.distance.jensenshannon(p, q, base=2)`` is its square root.

Decision rule (:func:`compute_drift`)
-------------------------------------
A feature drifts when **both** hold:

1. its test rejects "same distribution": the KS (numeric) or chi-square (categorical) p-value is
   below ``alpha / number_of_features`` (Bonferroni correction over the features tested
   together), and
2. its PSI is at least ``psi_threshold``.

Requiring both keeps tiny-but-significant shifts on big samples (p-value alone) and noisy PSI on
small samples (PSI alone) from raising alarms. The dataset drifts when the share of drifting
features is at least ``drift_share``.

Too little data is no verdict: with fewer than ``min_rows`` rows (default 30) in the reference
or the current window the statistics are still computed and shown, but nothing is decided (the
report's verdict is "insufficient data" and says the minimum); likewise a feature with fewer
than ``min_rows`` values on either side is shown but not decided.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from loopml.errors import InvalidInputError
from loopml.kinds import CATEGORICAL, NUMERIC
from loopml.monitor.stats import (
    PSI_EPSILON,
    UNSEEN_LABEL,
    FloatArray,
    aligned_counts,
    check_bins,
    chi2_from_counts,
    chi_square,
    finite,
    jensen_shannon,
    js_from_counts,
    ks,
    ks_sorted,
    numeric_array,
    psi,
    psi_categorical,
    psi_from_counts,
    quantile_edges,
    shares,
    sorted_counts,
    sorted_quantiles,
    value_counts,
)

# the kinds drift is tested for (a datetime feature is not: time moves on by nature)
KINDS = (NUMERIC, CATEGORICAL)
#: Fewest rows (and values of a feature) in each window for a drift test to decide anything.
MIN_ROWS = 30
DRIFT = "drift"
NO_DRIFT = "no drift"
INSUFFICIENT = "insufficient data"
PLOT_BINS = 20
PLOT_TAIL = 0.005  # numeric plots span the 0.5%–99.5% quantiles; the end bins hold the tails
MAX_PLOT_CATEGORIES = 20
OTHER_LABEL = "(other)"


@dataclass(frozen=True)
class Histogram:
    """What a plot needs to compare the two distributions of one feature.

    Numeric: ``edges`` holds ``len(reference) + 1`` finite, equal-width bin edges over the
    0.5%–99.5% quantiles of both samples (the end bins also hold the tails). Categorical:
    ``categories`` names each bar; the most frequent are shown, the rest summed in ``(other)``,
    categories unseen in the reference in ``(unseen)``. ``reference`` and ``current`` are the
    shares of rows in each bin (each sums to 1, or to 0 for a side with no values).
    """

    kind: str
    reference: list[float]
    current: list[float]
    edges: list[float] | None = None
    categories: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FeatureDrift:
    """Drift of one feature. Statistics are ``None`` when the current side has no values."""

    feature: str
    kind: str
    psi: float | None
    statistic_name: str  # "ks" or "chi_square"
    statistic: float | None
    p_value: float | None
    js: float | None  # categorical only
    drifted: bool
    n_reference: int  # values used (missing and non-finite values dropped)
    n_current: int
    nulls_reference: int  # missing values, and for numeric features also ±inf
    nulls_current: int
    histogram: Histogram
    unseen_categories: list[str] = field(default_factory=list)
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: The keys of :meth:`DriftReport.rows`, in display order.
ROW_COLUMNS: tuple[str, ...] = ("feature", "kind", "test", "statistic", "p_value", "psi", "js")
ROW_COLUMNS += ("n_reference", "n_current", "nulls_current", "drifted")


@dataclass(frozen=True)
class DriftReport:
    """Drift of every feature of a window, and the verdict for the whole dataset."""

    features: list[FeatureDrift]
    drifted: bool
    share_drifted: float
    psi_threshold: float
    alpha: float
    alpha_adjusted: float  # alpha / number of features (Bonferroni)
    drift_share: float
    bins: int
    n_reference_rows: int
    n_current_rows: int
    min_rows: int = MIN_ROWS
    insufficient: str | None = None  # why nothing was decided (a window under min_rows)

    @property
    def drifted_features(self) -> list[str]:
        return [f.feature for f in self.features if f.drifted]

    @property
    def verdict(self) -> str:
        """``drift``, ``no drift`` or ``insufficient data`` (a window too small to decide)."""
        if self.insufficient is not None:
            return INSUFFICIENT
        return DRIFT if self.drifted else NO_DRIFT

    @property
    def thresholds(self) -> dict[str, float]:
        return {
            "psi_threshold": self.psi_threshold,
            "alpha": self.alpha,
            "alpha_adjusted": self.alpha_adjusted,
            "drift_share": self.drift_share,
            "bins": self.bins,
            "min_rows": self.min_rows,
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict; :meth:`from_dict` reads it back."""
        return {
            "verdict": self.verdict,
            "insufficient": self.insufficient,
            "drifted": self.drifted,
            "share_drifted": self.share_drifted,
            "drifted_features": self.drifted_features,
            "thresholds": self.thresholds,
            "n_reference_rows": self.n_reference_rows,
            "n_current_rows": self.n_current_rows,
            "features": [f.to_dict() for f in self.features],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftReport:
        try:
            features = [
                FeatureDrift(**{**f, "histogram": Histogram(**f["histogram"])})
                for f in data["features"]
            ]
            th = data["thresholds"]
            return cls(
                features=features,
                drifted=bool(data["drifted"]),
                share_drifted=float(data["share_drifted"]),
                psi_threshold=float(th["psi_threshold"]),
                alpha=float(th["alpha"]),
                alpha_adjusted=float(th["alpha_adjusted"]),
                drift_share=float(th["drift_share"]),
                bins=int(th["bins"]),
                n_reference_rows=int(data["n_reference_rows"]),
                n_current_rows=int(data["n_current_rows"]),
                min_rows=int(th.get("min_rows", MIN_ROWS)),
                insufficient=data.get("insufficient"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"not a drift report: {exc!r}",
                hint="pass the dict that DriftReport.to_dict() produced",
            ) from exc

    def rows(self) -> list[dict[str, str]]:
        """One dict of formatted cells per feature, keys in :data:`ROW_COLUMNS` order."""
        return [dict(zip(ROW_COLUMNS, _cells(f), strict=True)) for f in self.features]


def _cells(f: FeatureDrift) -> list[str]:
    numbers = [_fmt(f.statistic), _fmt_p(f.p_value), _fmt(f.psi), _fmt(f.js)]
    counts = [str(f.n_reference), str(f.n_current), str(f.nulls_current)]
    return [f.feature, f.kind, f.statistic_name, *numbers, *counts, "yes" if f.drifted else "no"]


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _fmt_p(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if value >= 1e-3 else f"{value:.2e}"


# ---------------------------------------------------------------------------------------------
# Public statistics over plain samples
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# compute_drift
# ---------------------------------------------------------------------------------------------


def compute_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: Mapping[str, str],
    *,
    psi_threshold: float = 0.2,
    alpha: float = 0.05,
    drift_share: float = 0.3,
    bins: int = 10,
    min_rows: int = MIN_ROWS,
) -> DriftReport:
    """Compare ``current`` with ``reference`` feature by feature.

    ``features`` maps a column to ``"numeric"`` or ``"categorical"`` (as
    ``Signature.kinds()`` gives). Numeric features get PSI and the KS test, categorical ones PSI,
    the chi-square test and the Jensen–Shannon divergence; see the module docstring for the
    definitions. Missing values (and ±inf in numeric columns) are dropped per feature and counted.

    Rule: a feature drifts when its test's p-value is below ``alpha / len(features)``
    (Bonferroni) **and** its PSI is at least ``psi_threshold``; the dataset drifts when the
    share of drifting features is at least ``drift_share``. A feature with no values in
    ``current`` cannot be tested: its statistics are ``None``, it does not count as drifting and
    its ``note`` says why. With fewer than ``min_rows`` rows in either frame nothing is decided
    (``verdict`` "insufficient data", ``insufficient`` says why); a feature with fewer than
    ``min_rows`` values on either side is measured but not decided (its ``note`` says so).

    Raises :class:`InvalidInputError` for a missing column, an unknown kind, an empty frame, a
    reference column with no values, a non-numeric column declared numeric, or thresholds out of
    range.
    """
    check_bins(bins)
    _check_thresholds(psi_threshold, alpha, drift_share)
    _check_min_rows(min_rows)
    _check_frames(reference, current, features)
    alpha_adjusted = alpha / len(features)
    insufficient = _too_few_rows(len(reference), len(current), min_rows)
    results: list[FeatureDrift] = []
    for name, kind in features.items():
        ref_col = _column(reference, name, "reference")
        cur_col = _column(current, name, "current")
        if kind == NUMERIC:
            fd = _numeric_drift(name, ref_col, cur_col, bins, psi_threshold, alpha_adjusted)
        else:
            fd = _categorical_drift(name, ref_col, cur_col, psi_threshold, alpha_adjusted)
        results.append(_undecided(fd, min_rows))

    if insufficient is not None:
        results = [replace(f, drifted=False) for f in results]
    n_drifted = sum(f.drifted for f in results)
    share = n_drifted / len(results)
    return DriftReport(
        features=results,
        drifted=insufficient is None and share >= drift_share,
        share_drifted=share,
        psi_threshold=float(psi_threshold),
        alpha=float(alpha),
        alpha_adjusted=alpha_adjusted,
        drift_share=float(drift_share),
        bins=bins,
        n_reference_rows=len(reference),
        n_current_rows=len(current),
        min_rows=min_rows,
        insufficient=insufficient,
    )


def _too_few_rows(n_reference: int, n_current: int, min_rows: int) -> str | None:
    small = [(side, n) for side, n in (("current", n_current), ("reference", n_reference))]
    small = [(side, n) for side, n in small if n < min_rows]
    if not small:
        return None
    said = " and ".join(
        f"the {side} window has {n} row{'s' if n != 1 else ''}" for side, n in small
    )
    return (
        f"{said}; drift is decided on at least {min_rows} rows in each, so nothing is decided "
        "(the statistics are shown for information)"
    )


def _undecided(fd: FeatureDrift, min_rows: int) -> FeatureDrift:
    """``fd``, not decided when either side has fewer than ``min_rows`` values."""
    if fd.note is not None or min(fd.n_reference, fd.n_current) >= min_rows:
        return fd
    side, n = (
        ("current", fd.n_current) if fd.n_current < min_rows else ("reference", fd.n_reference)
    )
    note = (
        f"only {n} value{'s' if n != 1 else ''} in the {side} data; at least {min_rows} are "
        "needed to decide: not decided"
    )
    return replace(fd, drifted=False, note=note)


def _decide(
    p_value: float | None, psi_value: float | None, psi_threshold: float, alpha_adj: float
) -> bool:
    if p_value is None or psi_value is None:
        return False
    return p_value < alpha_adj and psi_value >= psi_threshold


def _numeric_drift(
    name: str,
    ref_col: pd.Series,
    cur_col: pd.Series,
    bins: int,
    psi_threshold: float,
    alpha_adj: float,
) -> FeatureDrift:
    ref_all = numeric_array(ref_col, "reference", name)
    cur_all = numeric_array(cur_col, "current", name)
    ref = np.sort(finite(ref_all))
    cur = np.sort(finite(cur_all))
    if ref.size == 0:
        raise _no_reference_values(name)
    psi_value = statistic = p_value = None
    if cur.size:
        edges = quantile_edges(ref, bins)
        psi_value = psi_from_counts(sorted_counts(ref, edges), sorted_counts(cur, edges))
        statistic, p_value = ks_sorted(ref, cur)
    return FeatureDrift(
        feature=name,
        kind=NUMERIC,
        psi=psi_value,
        statistic_name="ks",
        statistic=statistic,
        p_value=p_value,
        js=None,
        drifted=_decide(p_value, psi_value, psi_threshold, alpha_adj),
        n_reference=int(ref.size),
        n_current=int(cur.size),
        nulls_reference=int(ref_all.size - ref.size),
        nulls_current=int(cur_all.size - cur.size),
        histogram=_numeric_histogram(ref, cur),
        note=None if cur.size else _NO_CURRENT,
    )


def _categorical_drift(
    name: str, ref_col: pd.Series, cur_col: pd.Series, psi_threshold: float, alpha_adj: float
) -> FeatureDrift:
    ref_vc = value_counts(ref_col)
    cur_vc = value_counts(cur_col)
    n_ref = int(ref_vc.sum())
    n_cur = int(cur_vc.sum())
    if n_ref == 0:
        raise _no_reference_values(name)
    ref_counts, cur_counts, unseen = aligned_counts(ref_vc, cur_vc)
    psi_value = statistic = p_value = js = None
    if n_cur:
        psi_value = psi_from_counts(ref_counts, cur_counts)
        statistic, p_value = chi2_from_counts(ref_counts, cur_counts)
        js = js_from_counts(ref_counts, cur_counts)
    return FeatureDrift(
        feature=name,
        kind=CATEGORICAL,
        psi=psi_value,
        statistic_name="chi_square",
        statistic=statistic,
        p_value=p_value,
        js=js,
        drifted=_decide(p_value, psi_value, psi_threshold, alpha_adj),
        n_reference=n_ref,
        n_current=n_cur,
        nulls_reference=len(ref_col) - n_ref,
        nulls_current=len(cur_col) - n_cur,
        histogram=_categorical_histogram(ref_counts, cur_counts, ref_vc.index),
        unseen_categories=unseen,
        note=None if n_cur else _NO_CURRENT,
    )


_NO_CURRENT = "no values in the current data: not tested"


def _no_reference_values(name: str) -> InvalidInputError:
    return InvalidInputError(
        f"feature {name!r} has no values in the reference data (all missing)",
        where={"column": name, "data": "reference"},
        hint="drop the feature from the comparison or use a reference where it is filled",
    )


# ---------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------


def _numeric_histogram(ref: FloatArray, cur: FloatArray) -> Histogram:
    tails = np.array([PLOT_TAIL, 1.0 - PLOT_TAIL])
    qs = [sorted_quantiles(x, tails) for x in (ref, cur) if x.size]
    lo = min(float(q[0]) for q in qs)
    hi = max(float(q[1]) for q in qs)
    if not hi > lo:
        lo = min(float(x[0]) for x in (ref, cur) if x.size)
        hi = max(float(x[-1]) for x in (ref, cur) if x.size)
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, PLOT_BINS + 1)
    inner = edges[1:-1]
    return Histogram(
        kind=NUMERIC,
        edges=[float(e) for e in edges],
        reference=shares(sorted_counts(ref, inner)).tolist(),
        current=shares(sorted_counts(cur, inner)).tolist(),
    )


def _categorical_histogram(
    ref_counts: npt.NDArray[Any], cur_counts: npt.NDArray[Any], categories: pd.Index
) -> Histogram:
    """Shares per bucket; bucket ``i`` is ``categories[i]``, a last extra bucket the unseen."""
    r = shares(ref_counts)
    c = shares(cur_counts)

    def label(i: int) -> str:
        return str(categories[i]) if i < len(categories) else UNSEEN_LABEL

    if len(r) <= MAX_PLOT_CATEGORIES:
        labels = [label(i) for i in range(len(r))]
    else:
        order = np.argsort(-np.maximum(r, c), kind="stable")
        keep = np.sort(order[: MAX_PLOT_CATEGORIES - 1])
        rest = np.ones(len(r), dtype=bool)
        rest[keep] = False
        labels = [label(int(i)) for i in keep] + [OTHER_LABEL]
        r = np.append(r[keep], r[rest].sum())
        c = np.append(c[keep], c[rest].sum())
    return Histogram(kind=CATEGORICAL, categories=labels, reference=r.tolist(), current=c.tolist())


# ---------------------------------------------------------------------------------------------
# Input handling
# ---------------------------------------------------------------------------------------------


def _column(frame: pd.DataFrame, name: str, side: str) -> pd.Series:
    col = frame[name]
    if isinstance(col, pd.DataFrame):
        raise InvalidInputError(
            f"the {side} data has several columns named {name!r}",
            where={"column": name, "data": side},
            hint="give every column a unique name",
        )
    return col


def _check_frames(
    reference: pd.DataFrame, current: pd.DataFrame, features: Mapping[str, str]
) -> None:
    for side, frame in (("reference", reference), ("current", current)):
        if not isinstance(frame, pd.DataFrame):
            raise InvalidInputError(
                f"the {side} data must be a pandas DataFrame, got {type(frame).__name__}",
                where={"data": side},
            )
    if not features:
        raise InvalidInputError(
            "no features to compare", hint="pass features={column: 'numeric' | 'categorical'}"
        )
    for name, kind in features.items():
        if kind not in KINDS:
            raise InvalidInputError(
                f"feature {name!r} has kind {kind!r}, expected 'numeric' or 'categorical'",
                where={"column": name},
            )
    for side, frame in (("reference", reference), ("current", current)):
        missing = [name for name in features if name not in frame.columns]
        if missing:
            listed = ", ".join(repr(m) for m in missing)
            raise InvalidInputError(
                f"column{'s' if len(missing) > 1 else ''} {listed} missing from the {side} data "
                f"(it has {len(frame.columns)} columns)",
                where={"column": missing[0], "data": side},
                hint=f"log or select every monitored feature in the {side} data, "
                "or drop it from the features to compare",
            )
        if len(frame) == 0:
            hint = "choose a window that holds data" if side == "current" else None
            raise InvalidInputError(f"the {side} data is empty", where={"data": side}, hint=hint)


def _check_min_rows(min_rows: int) -> None:
    if isinstance(min_rows, bool) or not isinstance(min_rows, int | np.integer) or min_rows < 1:
        raise InvalidInputError(
            f"min_rows must be an integer of at least 1, got {min_rows!r}",
            where={"field": "min_rows"},
        )


def _check_thresholds(psi_threshold: float, alpha: float, drift_share: float) -> None:
    checks = (
        ("psi_threshold", psi_threshold, lambda v: v >= 0, "a number >= 0"),
        ("alpha", alpha, lambda v: 0 < v < 1, "a number between 0 and 1 (exclusive)"),
        ("drift_share", drift_share, lambda v: 0 < v <= 1, "a number in (0, 1]"),
    )
    for name, value, ok, expected in checks:
        valid = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if not valid or not math.isfinite(value) or not ok(value):
            raise InvalidInputError(
                f"{name} must be {expected}, got {value!r}", where={"field": name}
            )


__all__ = [
    "CATEGORICAL",
    "INSUFFICIENT",
    "MIN_ROWS",
    "NUMERIC",
    "PSI_EPSILON",
    "ROW_COLUMNS",
    "DriftReport",
    "FeatureDrift",
    "Histogram",
    "chi_square",
    "compute_drift",
    "jensen_shannon",
    "ks",
    "psi",
    "psi_categorical",
    "quantile_edges",
]
