"""Two-sample statistics behind drift detection, vectorised over whole columns.

PSI on reference-quantile bins, Kolmogorov-Smirnov, chi-square on a 2xK contingency table and
Jensen-Shannon divergence (base 2). ``loopml.monitor.drift`` combines them into decisions.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from loopml.errors import InvalidInputError

PSI_EPSILON = 1e-4
UNSEEN_LABEL = "(unseen)"
MAX_UNSEEN_LISTED = 20
_EXACT_KS_MAX_N = 10_000  # scipy's ks_2samp switches from exact to asymptotic above this

FloatArray = npt.NDArray[np.float64]
ArrayLike = Sequence[Any] | npt.NDArray[Any] | pd.Series


def psi(reference: ArrayLike, current: ArrayLike, bins: int = 10) -> float:
    """PSI of a numeric sample against a reference, on ``bins`` reference-quantile bins."""
    check_bins(bins)
    ref = np.sort(numeric_sample(reference, "reference"))
    cur = np.sort(numeric_sample(current, "current"))
    edges = quantile_edges(ref, bins)
    return psi_from_counts(sorted_counts(ref, edges), sorted_counts(cur, edges))


def psi_categorical(reference: ArrayLike, current: ArrayLike) -> float:
    """PSI over the reference categories plus one bucket for categories unseen there."""
    return psi_from_counts(*sample_counts(reference, current))


def ks(reference: ArrayLike, current: ArrayLike) -> tuple[float, float]:
    """Two-sample Kolmogorov–Smirnov ``(statistic, p_value)``, as ``scipy.stats.ks_2samp``."""
    ref = np.sort(numeric_sample(reference, "reference"))
    cur = np.sort(numeric_sample(current, "current"))
    return ks_sorted(ref, cur)


def chi_square(reference: ArrayLike, current: ArrayLike) -> tuple[float, float]:
    """Chi-square test of homogeneity ``(statistic, p_value)`` on the 2×K table of counts."""
    return chi2_from_counts(*sample_counts(reference, current))


def jensen_shannon(reference: ArrayLike, current: ArrayLike) -> float:
    """Jensen–Shannon divergence (base 2, in [0, 1]) of two categorical samples."""
    return js_from_counts(*sample_counts(reference, current))


def quantile_edges(reference_sorted: FloatArray, bins: int) -> FloatArray:
    """Inner PSI bin edges from a sorted, non-empty reference (linear-interpolated quantiles).

    Bins are right-closed and the outer two open-ended: ``(-inf, e0], (e0, e1], …, (ek, inf)``.
    Repeated quantiles collapse into one edge; when the lowest edge is the reference minimum (a
    point mass there), an edge just below it separates values under the reference range.
    """
    q = sorted_quantiles(reference_sorted, np.arange(1, bins) / bins)
    edges = np.unique(q)
    if edges.size == 0 or edges[0] == reference_sorted[0]:
        low = np.nextafter(reference_sorted[0], -np.inf)
        edges = np.concatenate(([low], edges))
    return edges


def sorted_quantiles(x_sorted: FloatArray, probs: FloatArray) -> FloatArray:
    """Quantiles of a sorted array with linear interpolation (numpy's default method)."""
    pos = probs * (x_sorted.size - 1)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, x_sorted.size - 1)
    frac = pos - lo
    out: FloatArray = x_sorted[lo] + frac * (x_sorted[hi] - x_sorted[lo])
    return out


def sorted_counts(x_sorted: FloatArray, edges: FloatArray) -> npt.NDArray[np.int64]:
    """Counts in the right-closed bins ``(-inf, e0], (e0, e1], …, (ek, inf)``."""
    cum = np.searchsorted(x_sorted, edges, side="right")
    bounds = np.concatenate(([0], cum, [x_sorted.size])).astype(np.int64)
    return np.diff(bounds)


def shares(counts: npt.NDArray[Any]) -> FloatArray:
    total = counts.sum()
    if total == 0:
        return np.zeros(counts.shape, dtype=np.float64)
    return np.asarray(counts, dtype=np.float64) / float(total)


def psi_from_counts(ref_counts: npt.NDArray[Any], cur_counts: npt.NDArray[Any]) -> float:
    r = np.maximum(shares(ref_counts), PSI_EPSILON)
    c = np.maximum(shares(cur_counts), PSI_EPSILON)
    return float(np.sum((c - r) * np.log(c / r)))


def js_from_counts(ref_counts: npt.NDArray[Any], cur_counts: npt.NDArray[Any]) -> float:
    p = shares(ref_counts)
    q = shares(cur_counts)
    m = (p + q) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0).sum()
        kl_q = np.where(q > 0, q * np.log2(q / m), 0.0).sum()
    return float(min(max((kl_p + kl_q) / 2.0, 0.0), 1.0))


def chi2_from_counts(
    ref_counts: npt.NDArray[Any], cur_counts: npt.NDArray[Any]
) -> tuple[float, float]:
    table = np.vstack([ref_counts, cur_counts]).astype(np.float64)
    table = table[:, table.sum(axis=0) > 0]
    k = table.shape[1]
    if k < 2:
        return 0.0, 1.0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    statistic = float(((table - expected) ** 2 / expected).sum())
    return statistic, float(stats.chi2.sf(statistic, k - 1))


def ks_sorted(a: FloatArray, b: FloatArray) -> tuple[float, float]:
    n1, n2 = a.size, b.size
    if max(n1, n2) <= _EXACT_KS_MAX_N:
        with warnings.catch_warnings():
            # scipy falls back to the asymptotic p-value when the exact one fails, and says so
            warnings.simplefilter("ignore", RuntimeWarning)
            res = stats.ks_2samp(a, b)
        return float(res.statistic), float(res.pvalue)
    # Merge the two sorted samples (a stable argsort merges two sorted runs in linear time) and
    # walk the merged order: +n2 for a value of `a`, -n1 for one of `b`, so the walk is
    # n1 * n2 * (ECDF_a - ECDF_b), exactly, in integers. Only the last of equal values counts.
    merged = np.concatenate((a, b))
    order = np.argsort(merged, kind="stable")
    values = merged[order]
    walk = np.cumsum(np.where(order >= n1, -n1, n2))
    walk = walk[np.append(values[1:] != values[:-1], True)]
    d = float(max(int(walk.max()), -int(walk.min()))) / (float(n1) * float(n2))
    m, n = sorted((float(n1), float(n2)), reverse=True)
    p = float(stats.kstwo.sf(d, np.round(m * n / (m + n))))
    return d, min(max(p, 0.0), 1.0)


def aligned_counts(
    ref_vc: pd.Series, cur_vc: pd.Series
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], list[str]]:
    """Counts over the reference categories, plus an unseen bucket when the current has any.

    Returns reference counts and current counts (bucket ``i`` is ``ref_vc.index[i]``, and the
    extra last one, if any, holds every category unseen in the reference), and the most
    frequent unseen categories as text (at most :data:`MAX_UNSEEN_LISTED`).
    """
    k = len(ref_vc)
    # One factorize over both category lists: the reference's (unique) come first and get
    # codes 0..k-1, so a current category's code says where it sits in the reference, if at all.
    both = pd.concat([ref_vc.index.to_series(), cur_vc.index.to_series()], ignore_index=True)
    codes = pd.factorize(both)[0][k:]
    seen = codes < k
    cur_all = cur_vc.to_numpy(dtype=np.int64)
    ref_counts = ref_vc.to_numpy(dtype=np.int64)
    cur_counts = np.zeros(k, dtype=np.int64)
    cur_counts[codes[seen]] = cur_all[seen]
    unseen_total = int(cur_all[~seen].sum())
    if unseen_total > 0:
        ref_counts = np.append(ref_counts, 0)
        cur_counts = np.append(cur_counts, unseen_total)
    first_unseen = np.flatnonzero(~seen)[:MAX_UNSEEN_LISTED]
    return ref_counts, cur_counts, [str(v) for v in cur_vc.index[first_unseen]]


def finite(x: FloatArray) -> FloatArray:
    mask = np.isfinite(x)
    return x if mask.all() else x[mask]


def numeric_sample(values: ArrayLike, side: str) -> FloatArray:
    series = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values))
    out = finite(numeric_array(series, side, str(series.name or "values")))
    if out.size == 0:
        raise InvalidInputError(f"the {side} sample has no finite values", where={"data": side})
    return out


def value_counts(series: pd.Series) -> pd.Series:
    vc = series.value_counts(dropna=True, sort=True)
    return vc[vc > 0]


def sample_counts(
    reference: ArrayLike, current: ArrayLike
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    vcs = []
    for side, values in (("reference", reference), ("current", current)):
        series = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
        vcs.append(value_counts(series))
        if vcs[-1].sum() == 0:
            raise InvalidInputError(f"the {side} sample has no values", where={"data": side})
    ref_counts, cur_counts, _ = aligned_counts(vcs[0], vcs[1])
    return ref_counts, cur_counts


def numeric_array(series: pd.Series, side: str, name: str) -> FloatArray:
    if pd.api.types.is_bool_dtype(series.dtype):
        series = series.astype("float64")
    elif pd.api.types.is_object_dtype(series.dtype):
        try:
            series = pd.to_numeric(series, errors="raise")
        except (ValueError, TypeError) as exc:
            raise not_numeric(name, side, series.dtype) from exc
    if not pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_complex_dtype(
        series.dtype
    ):
        raise not_numeric(name, side, series.dtype)
    return series.to_numpy(dtype=np.float64, na_value=np.nan)


def not_numeric(name: str, side: str, dtype: Any) -> InvalidInputError:
    return InvalidInputError(
        f"feature {name!r} is declared numeric but the {side} column has dtype {dtype}",
        where={"column": name, "data": side},
        hint="declare it 'categorical' or convert the column to numbers",
    )


def check_bins(bins: int) -> None:
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 2:
        raise InvalidInputError(
            f"bins must be an integer of at least 2, got {bins!r}", where={"field": "bins"}
        )
