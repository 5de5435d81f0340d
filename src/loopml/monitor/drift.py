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
  asymptotic distribution otherwise; above an effective size ``n1 n2 / (n1 + n2)`` of 10,000
  the limiting Kolmogorov distribution (under 1 % relative difference for p-values above
  1e-40, and microseconds where ``kstwo`` takes up to seconds per feature at a million rows).
* **Chi-square** test of homogeneity for categorical features, on the 2×K contingency table of
  reference and current counts (no continuity correction), the same as
  ``scipy.stats.chi2_contingency(table, correction=False)``. A contingency test, rather than a
  goodness-of-fit test against the reference shares, because the reference is a sample too and
  because categories unseen in the reference (their own bucket) would have zero expected count.
  Columns whose smaller expected count is under ``min_expected`` (5) are summed into one
  "other" column first, so rare categories do not break the chi-square approximation.
* **Jensen–Shannon divergence** for categorical features, base 2, so it lies in [0, 1]
  (``FeatureDrift.js``), and the **Jensen–Shannon distance**, its square root
  (``FeatureDrift.js_distance``, as ``scipy.spatial.distance.jensenshannon(p, q, base=2)``).
* **Wasserstein-1 distance** for numeric features (``scipy.stats.wasserstein_distance``),
  divided by the reference's standard deviation so that its threshold is unit-free.
* **Missing-value rate** per side and **out-of-range rate**: the share of current values
  outside the reference's [min, max] (numeric) or in categories unseen there (categorical).
* **Intervals**: 95% basic-bootstrap intervals of PSI, the Wasserstein and the JS distance
  (multinomial redraws of the bin counts, so cheap at any size): wide on a small window.

Decision rule (:func:`compute_drift`)
-------------------------------------
A feature drifts (``FeatureDrift.reasons`` says why) when

1. one of its **effect sizes**, less its bootstrap bias (``FeatureDrift.corrected``: what noise
   alone adds at these sample sizes), reaches its threshold — PSI (≥ 0.2), the normalised
   Wasserstein (≥ 0.2, numeric) or the JS distance (≥ 0.15, categorical) — **and** its test
   rejects "same distribution": the KS (numeric) or chi-square (categorical) p-value is below
   ``alpha / number_of_features`` (Bonferroni correction over the features tested together); or
2. its missing-value rate rises by at least ``missing_rate`` (0.1) and a 2×2 chi-square test
   supports it; or
3. its out-of-range rate is at least ``out_of_range`` (0.05) and more than chance would give
   (numeric: the exact beta-binomial law of the count outside the reference's range under "no
   change"; categorical: a binomial test against Good–Turing's share of reference singletons).

Requiring both an effect size and a small p-value keeps tiny-but-significant shifts on big
samples (p-value alone: every p-value is tiny at a million rows) and noisy effect sizes on small
samples (effect alone) from raising alarms. Thresholds come from
:class:`~loopml.monitor.thresholds.DriftThresholds` (defaults and per-feature overrides, read
from ``monitor: {drift: ...}`` in ``loopml.yaml``). The dataset drifts when the share of
drifting features is at least ``drift_share``.

Too little data is no verdict: with fewer than ``min_rows`` rows (default 30) in the reference
or the current window the statistics are still computed and shown, but nothing is decided (the
report's verdict is "insufficient data" and says the minimum); likewise a feature with fewer
than ``min_rows`` values on either side is shown but not decided.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Mapping, Sequence
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
    bootstrap_interval_counts,
    bootstrap_interval_wasserstein,
    check_bins,
    chi2_from_counts,
    chi_square,
    finite,
    jensen_shannon,
    js_distance_from_counts,
    js_from_counts,
    ks,
    ks_wasserstein_sorted,
    merge_rare,
    numeric_array,
    psi,
    psi_categorical,
    psi_from_counts,
    quantile_edges,
    shares,
    sorted_counts,
    sorted_quantiles,
    spread,
    value_counts,
)
from loopml.monitor.thresholds import DriftThresholds, FeatureThresholds

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
    wasserstein: float | None = None  # numeric: Wasserstein-1 / reference standard deviation
    js_distance: float | None = None  # categorical: sqrt of ``js``, base 2, in [0, 1]
    missing_reference: float = 0.0  # share of rows missing (numeric: also ±inf)
    missing_current: float = 0.0
    out_of_range: float | None = None  # share outside the reference [min, max] / unseen there
    # 95% bootstrap intervals of the effect sizes: {"psi": [lo, hi], "wasserstein": [lo, hi]}
    intervals: dict[str, list[float]] = field(default_factory=dict)
    # the effect sizes less their bootstrap bias (what noise alone adds): what is decided on
    corrected: dict[str, float] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)  # why it is flagged (empty: it is not)

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
    limits: DriftThresholds = field(default_factory=DriftThresholds)  # every threshold used
    tensors: list[Any] = field(default_factory=list)  # TensorDrift of monitor/tensors.py

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
            "wasserstein": self.limits.wasserstein,
            "js": self.limits.js,
            "missing_rate": self.limits.missing_rate,
            "out_of_range": self.limits.out_of_range,
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
            "limits": self.limits.to_dict(),
            **({"tensors": [t.to_dict() for t in self.tensors]} if self.tensors else {}),
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
                limits=DriftThresholds(**data.get("limits", {})),
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
    psi_threshold: float | None = None,
    alpha: float | None = None,
    drift_share: float | None = None,
    bins: int | None = None,
    min_rows: int | None = None,
    thresholds: DriftThresholds | None = None,
    tensors: Sequence[Any] = (),
) -> DriftReport:
    """Compare ``current`` with ``reference`` feature by feature.

    ``tensors`` (:func:`loopml.monitor.tensors.tensor_inputs` of the signature): tensor
    inputs whose columns are also compared as whole images (per-image mean and standard
    deviation, the intensity histogram; :mod:`loopml.monitor.tensors`); a drifting tensor
    makes the dataset drift.

    ``features`` maps a column to ``"numeric"`` or ``"categorical"`` (as
    ``Signature.kinds()`` gives). Numeric features get PSI, the KS test and the Wasserstein
    distance in reference standard deviations; categorical ones PSI, the chi-square test (rare
    columns summed into one) and the Jensen–Shannon distance; both get missing-value and
    out-of-range rates and 95% bootstrap intervals of their effect sizes. See the module
    docstring for the definitions. Missing values (and ±inf in numeric columns) are dropped per
    feature and counted.

    ``thresholds`` (default :class:`DriftThresholds`) holds the defaults and the per-feature
    overrides; ``psi_threshold``, ``alpha``, ``drift_share``, ``bins`` and ``min_rows``, when
    given, override its fields. Rule: a feature drifts when one of its effect sizes reaches its
    threshold **and** its test's p-value is below ``alpha / len(features)`` (Bonferroni), or when
    its missing-value rate rises, or its out-of-range rate reaches, the threshold with a
    significant test; the dataset drifts when the share of drifting features is at least
    ``drift_share``. A feature with no values in ``current`` cannot be tested: its statistics are
    ``None``, it does not count as drifting and its ``note`` says why. With fewer than
    ``min_rows`` rows in either frame nothing is decided (``verdict`` "insufficient data",
    ``insufficient`` says why); a feature with fewer than ``min_rows`` values on either side is
    measured but not decided (its ``note`` says so).

    Raises :class:`InvalidInputError` for a missing column, an unknown kind, an empty frame, a
    reference column with no values, a non-numeric column declared numeric, or thresholds out of
    range.
    """
    limits = thresholds if thresholds is not None else DriftThresholds()
    psi_threshold = limits.psi if psi_threshold is None else psi_threshold
    alpha = limits.alpha if alpha is None else alpha
    drift_share = limits.drift_share if drift_share is None else drift_share
    bins = limits.bins if bins is None else bins
    min_rows = limits.min_rows if min_rows is None else min_rows
    check_bins(bins)
    _check_thresholds(psi_threshold, alpha, drift_share)
    _check_min_rows(min_rows)
    _check_frames(reference, current, features)
    limits = replace(
        limits,
        psi=float(psi_threshold),
        alpha=float(alpha),
        drift_share=float(drift_share),
        bins=int(bins),
        min_rows=int(min_rows),
    )
    alpha_adjusted = alpha / len(features)
    insufficient = _too_few_rows(len(reference), len(current), min_rows)

    def one(item: tuple[str, str]) -> FeatureDrift:
        name, kind = item
        ref_col = _column(reference, name, "reference")
        cur_col = _column(current, name, "current")
        lim = limits.for_feature(name)
        if kind == NUMERIC:
            fd = _numeric_drift(name, ref_col, cur_col, bins, lim, alpha_adjusted)
        else:
            fd = _categorical_drift(name, ref_col, cur_col, lim, alpha_adjusted, limits)
        return _undecided(fd, min_rows)

    results = _each_feature(one, list(features.items()), len(reference) + len(current))

    if insufficient is not None:
        results = [replace(f, drifted=False, reasons=[]) for f in results]
    n_drifted = sum(f.drifted for f in results)
    share = n_drifted / len(results)
    images = []
    if tensors:
        from loopml.monitor.tensors import tensor_drift

        images = [tensor_drift(reference, current, t, thresholds=limits) for t in tensors]
    return DriftReport(
        features=results,
        drifted=insufficient is None and (share >= drift_share or any(t.drifted for t in images)),
        tensors=images,
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
        limits=limits,
    )


#: rows (reference + current) below which the features are compared one after another: the
#: threads' start and hand-offs cost more than they save on small frames
PARALLEL_MIN_ROWS = 20_000


def _cores() -> int:
    """The cores this process may run on (its affinity where the system says; a container's
    share is often less than the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def _each_feature(
    fn: Callable[[tuple[str, str]], FeatureDrift], items: list[tuple[str, str]], rows: int
) -> list[FeatureDrift]:
    """``fn`` of each feature, in order. On frames of :data:`PARALLEL_MIN_ROWS` rows or more
    the features are compared by a few threads (NumPy's sorts, merges and reductions, most
    of the work, release the GIL), one per core up to the number of features; each
    feature's result is computed as alone (its bootstrap has its own seeded generator), so
    the report is the same whatever the number of threads. An error (a column declared
    numeric that is not) is raised for the first such feature in order, as before."""
    workers = min(len(items), _cores(), 8)
    if workers < 2 or rows < PARALLEL_MIN_ROWS:
        return [fn(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="loopml-drift") as pool:
        return list(pool.map(fn, items))


def prediction_drift(
    reference_scores: Any,
    current_scores: Any,
    *,
    thresholds: DriftThresholds | None = None,
    name: str = "prediction",
) -> DriftReport:
    """Drift of the model's score distribution: ``current_scores`` against ``reference_scores``.

    The scores are one numeric feature, ``name``, tested as any numeric feature (PSI, KS,
    normalised Wasserstein, out-of-range); a ``thresholds.features[name]`` entry overrides.
    """
    ref = pd.DataFrame({name: np.asarray(reference_scores, dtype=np.float64)})
    cur = pd.DataFrame({name: np.asarray(current_scores, dtype=np.float64)})
    return compute_drift(ref, cur, {name: NUMERIC}, thresholds=thresholds)


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
    return replace(fd, drifted=False, reasons=[], note=note)


def _flags(
    *,
    p_value: float | None,
    effects: list[tuple[str, float | None, float]],
    missing: tuple[int, int, int, int],
    out_of_range: tuple[float | None, int, float, int | None],
    lim: FeatureThresholds,
    alpha_adj: float,
) -> list[str]:
    """Why a feature drifts (empty: it does not). See :func:`compute_drift` for the rule."""
    reasons: list[str] = []
    if p_value is not None and p_value < alpha_adj:
        hits = [f"{n} {v:.3g} >= {t:g}" for n, v, t in effects if v is not None and v >= t]
        if hits:
            reasons.append(f"{', '.join(hits)} (p-value {p_value:.2g} < {alpha_adj:.2g})")
    miss_ref, n_ref, miss_cur, n_cur = missing
    rise = miss_cur / max(n_cur, 1) - miss_ref / max(n_ref, 1)
    if rise >= lim.missing_rate and rise > 0:
        _, p = chi2_from_counts(
            np.array([miss_ref, n_ref - miss_ref]), np.array([miss_cur, n_cur - miss_cur])
        )
        if p < alpha_adj:
            reasons.append(f"missing rate up {rise:.3g} >= {lim.missing_rate:g} (p-value {p:.2g})")
    rate, n_values, expected, n_reference = out_of_range
    if rate is not None and n_values and rate >= lim.out_of_range and rate > expected:
        # how surprising that many values beyond the reference would be if nothing changed
        k = round(rate * n_values)
        from scipy import stats  # only here: importing scipy.stats costs ~0.5 s

        if n_reference is not None:
            # numeric: n reference values cut the line into n + 1 gaps, and under "no change"
            # the current values fall into them Dirichlet-multinomially (all weights 1), so
            # the count in the two outer gaps is beta-binomial(m, 2, n - 1)
            p = float(stats.betabinom.sf(k - 1, n_values, 2, max(n_reference - 1, 1)))
        else:
            p = float(stats.binom.sf(k - 1, n_values, min(max(expected, 0.0), 1.0)))
        if p < alpha_adj:
            reasons.append(f"out of range {rate:.3g} >= {lim.out_of_range:g} (p-value {p:.2g})")
    return reasons


def _numeric_drift(
    name: str,
    ref_col: pd.Series,
    cur_col: pd.Series,
    bins: int,
    lim: FeatureThresholds,
    alpha_adj: float,
) -> FeatureDrift:
    ref_all = numeric_array(ref_col, "reference", name)
    cur_all = numeric_array(cur_col, "current", name)
    ref = np.sort(finite(ref_all))
    cur = np.sort(finite(cur_all))
    if ref.size == 0:
        raise _no_reference_values(name)
    psi_value = statistic = p_value = w = oor = None
    intervals: dict[str, list[float]] = {}
    corrected: dict[str, float] = {}
    if cur.size:
        edges = quantile_edges(ref, bins)
        ref_counts, cur_counts = sorted_counts(ref, edges), sorted_counts(cur, edges)
        psi_value = psi_from_counts(ref_counts, cur_counts)
        statistic, p_value, w_raw = ks_wasserstein_sorted(ref, cur)
        sd = spread(ref)
        w = w_raw / sd
        below = int(np.searchsorted(cur, ref[0], side="left"))
        above = int(cur.size - np.searchsorted(cur, ref[-1], side="right"))
        oor = (below + above) / cur.size
        w_lo, w_hi, w_bias = bootstrap_interval_wasserstein(ref, cur, w_raw)
        p_lo, p_hi, p_bias = bootstrap_interval_counts(ref_counts, cur_counts, "psi")
        intervals = {"psi": [p_lo, p_hi], "wasserstein": [w_lo / sd, w_hi / sd]}
        corrected = {
            "psi": max(psi_value - p_bias, 0.0),
            "wasserstein": max(w - w_bias / sd, 0.0),
        }
    nulls_ref = int(ref_all.size - ref.size)
    nulls_cur = int(cur_all.size - cur.size)
    reasons = _flags(
        p_value=p_value,
        effects=[
            ("psi", corrected.get("psi"), lim.psi),
            ("wasserstein", corrected.get("wasserstein"), lim.wasserstein),
        ],
        missing=(nulls_ref, int(ref_all.size), nulls_cur, int(cur_all.size)),
        # a new value from the same distribution falls outside the reference's range with
        # probability 2 / (n + 1)
        out_of_range=(oor, int(cur.size), 2.0 / (ref.size + 1), int(ref.size)),
        lim=lim,
        alpha_adj=alpha_adj,
    )
    return FeatureDrift(
        feature=name,
        kind=NUMERIC,
        psi=psi_value,
        statistic_name="ks",
        statistic=statistic,
        p_value=p_value,
        js=None,
        drifted=bool(reasons),
        n_reference=int(ref.size),
        n_current=int(cur.size),
        nulls_reference=nulls_ref,
        nulls_current=nulls_cur,
        histogram=_numeric_histogram(ref, cur),
        note=None if cur.size else _NO_CURRENT,
        wasserstein=w,
        missing_reference=nulls_ref / max(ref_all.size, 1),
        missing_current=nulls_cur / max(cur_all.size, 1),
        out_of_range=oor,
        intervals=intervals,
        corrected=corrected,
        reasons=reasons,
    )


def _categorical_drift(
    name: str,
    ref_col: pd.Series,
    cur_col: pd.Series,
    lim: FeatureThresholds,
    alpha_adj: float,
    limits: DriftThresholds,
) -> FeatureDrift:
    ref_vc = value_counts(ref_col)
    cur_vc = value_counts(cur_col)
    n_ref = int(ref_vc.sum())
    n_cur = int(cur_vc.sum())
    if n_ref == 0:
        raise _no_reference_values(name)
    ref_counts, cur_counts, unseen = aligned_counts(ref_vc, cur_vc)
    psi_value = statistic = p_value = js = js_d = oor = None
    intervals: dict[str, list[float]] = {}
    corrected: dict[str, float] = {}
    if n_cur:
        psi_value = psi_from_counts(ref_counts, cur_counts)
        statistic, p_value = chi2_from_counts(
            *merge_rare(ref_counts, cur_counts, limits.min_expected)
        )
        js = js_from_counts(ref_counts, cur_counts)
        js_d = js_distance_from_counts(ref_counts, cur_counts)
        oor = float(cur_counts[len(ref_vc) :].sum()) / n_cur
        p_lo, p_hi, p_bias = bootstrap_interval_counts(ref_counts, cur_counts, "psi")
        j_lo, j_hi, j_bias = bootstrap_interval_counts(ref_counts, cur_counts, "js_distance")
        intervals = {"psi": [p_lo, p_hi], "js_distance": [j_lo, j_hi]}
        corrected = {"psi": max(psi_value - p_bias, 0.0), "js_distance": max(js_d - j_bias, 0.0)}
    nulls_ref = len(ref_col) - n_ref
    nulls_cur = len(cur_col) - n_cur
    # Good–Turing: the chance that a new value is unseen is about the share of singletons
    singletons = float((ref_vc.to_numpy() == 1).sum()) / n_ref
    reasons = _flags(
        p_value=p_value,
        effects=[
            ("psi", corrected.get("psi"), lim.psi),
            ("js", corrected.get("js_distance"), lim.js),
        ],
        missing=(nulls_ref, len(ref_col), nulls_cur, len(cur_col)),
        out_of_range=(oor, n_cur, max(singletons, 1.0 / (n_ref + 1)), None),
        lim=lim,
        alpha_adj=alpha_adj,
    )
    return FeatureDrift(
        feature=name,
        kind=CATEGORICAL,
        psi=psi_value,
        statistic_name="chi_square",
        statistic=statistic,
        p_value=p_value,
        js=js,
        drifted=bool(reasons),
        n_reference=n_ref,
        n_current=n_cur,
        nulls_reference=nulls_ref,
        nulls_current=nulls_cur,
        histogram=_categorical_histogram(ref_counts, cur_counts, ref_vc.index),
        unseen_categories=unseen,
        note=None if n_cur else _NO_CURRENT,
        js_distance=js_d,
        missing_reference=nulls_ref / max(len(ref_col), 1),
        missing_current=nulls_cur / max(len(cur_col), 1),
        out_of_range=oor,
        intervals=intervals,
        corrected=corrected,
        reasons=reasons,
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
    "DriftThresholds",
    "FeatureDrift",
    "FeatureThresholds",
    "Histogram",
    "chi_square",
    "compute_drift",
    "jensen_shannon",
    "ks",
    "prediction_drift",
    "psi",
    "psi_categorical",
    "quantile_edges",
]
