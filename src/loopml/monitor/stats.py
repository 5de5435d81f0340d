"""Two-sample statistics behind drift detection, vectorised over whole columns.

PSI on reference-quantile bins, Kolmogorov-Smirnov, chi-square on a 2xK contingency table and
Jensen-Shannon divergence (base 2). ``loopml.monitor.drift`` combines them into decisions.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from loopml.errors import InvalidInputError

PSI_EPSILON = 1e-4
UNSEEN_LABEL = "(unseen)"
MAX_UNSEEN_LISTED = 20
_EXACT_KS_MAX_N = 10_000  # scipy's ks_2samp switches from exact to asymptotic above this
#: Above this effective size ``n1 n2 / (n1 + n2)`` the KS p-value is the limiting Kolmogorov
#: distribution's (``scipy.special.kolmogorov(sqrt(n) d)``, microseconds) instead of
#: ``scipy.stats.kstwo.sf(d, n)`` (what ``ks_2samp`` gives; up to 1.7 s per feature at a
#: million rows). They differ by under 1 % relative for p-values above 1e-40: the p-value is
#: support for the effect sizes, which decide.
KS_LIMIT_N = 10_000

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
    from scipy import special

    return statistic, float(special.chdtrc(k - 1, statistic))


def ks_sorted(a: FloatArray, b: FloatArray) -> tuple[float, float]:
    n1, n2 = a.size, b.size
    if max(n1, n2) <= _EXACT_KS_MAX_N:
        from scipy import stats

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
    return d, ks_p_value(d, n1, n2)


def ks_p_value(d: float, n1: int, n2: int) -> float:
    """The two-sample KS p-value of statistic ``d`` (asymptotic, as ``ks_2samp`` above its
    exact range; the limiting distribution above :data:`KS_LIMIT_N`)."""
    from scipy import special

    m, n = sorted((float(n1), float(n2)), reverse=True)
    en = np.round(m * n / (m + n))
    if en > KS_LIMIT_N:
        p = float(special.kolmogorov(math.sqrt(en) * d))
    else:
        from scipy import stats

        p = float(stats.kstwo.sf(d, en))
    return min(max(p, 0.0), 1.0)


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


# ---------------------------------------------------------------------------------------------
# Effect sizes beyond PSI: Wasserstein, Jensen–Shannon distance, rare buckets, uncertainty
# ---------------------------------------------------------------------------------------------

#: Bootstrap replicates behind each effect's interval (multinomial draws over the bins).
BOOTSTRAP_REPLICATES = 200
#: Quantile bins (per sample) of the binned Wasserstein used only for its bootstrap spread.
_W_GRID = 50


def ks_wasserstein_sorted(a: FloatArray, b: FloatArray) -> tuple[float, float, float]:
    """``(ks_statistic, ks_p_value, wasserstein)`` of two sorted, non-empty samples.

    One merge of the two samples gives both: the walk ``n1 * n2 * (ECDF_a - ECDF_b)`` at each
    distinct value is the KS gap, and its absolute value integrated over the gaps between
    consecutive values is ``n1 * n2`` times the Wasserstein-1 distance (``∫ |F_a - F_b| dx``,
    as ``scipy.stats.wasserstein_distance``). The KS p-value is :func:`ks_sorted`'s.
    """
    n1, n2 = a.size, b.size
    merged = np.concatenate((a, b))
    order = np.argsort(merged, kind="stable")  # two sorted runs: a linear merge
    values = merged[order]
    # the walk in float64 is exact: its steps and values are integers below 2**53
    walk = np.full(order.size, float(n2))
    walk[order >= n1] = -float(n1)
    np.cumsum(walk, out=walk)
    last = np.empty(values.size, dtype=bool)  # only the last of equal values counts
    last[-1] = True
    np.not_equal(values[1:], values[:-1], out=last[:-1])
    if not last.all():
        walk, values = walk[last], values[last]
    scale = float(n1) * float(n2)
    d = float(max(walk.max(), -walk.min())) / scale
    gaps = np.diff(values)
    # (einsum, not ``@``: a BLAS call wakes OpenBLAS's threads, which then spin on every
    # core for a while; on a busy machine that doubled the whole report's CPU time)
    w = float(np.einsum("i,i->", np.abs(walk, out=walk)[:-1], gaps)) / scale
    if max(n1, n2) <= _EXACT_KS_MAX_N:
        d, p = ks_sorted(a, b)
        return d, p, w
    return d, ks_p_value(d, n1, n2), w


def spread(reference_sorted: FloatArray) -> float:
    """The reference's standard deviation (population), or 1.0 for a constant reference."""
    sd = float(np.std(reference_sorted))
    return sd if sd > 0 and math.isfinite(sd) else 1.0


def js_distance_from_counts(ref_counts: npt.NDArray[Any], cur_counts: npt.NDArray[Any]) -> float:
    """Jensen–Shannon *distance* (base 2, in [0, 1]): the square root of the divergence."""
    return math.sqrt(js_from_counts(ref_counts, cur_counts))


def merge_rare(
    ref_counts: npt.NDArray[Any], cur_counts: npt.NDArray[Any], min_expected: float = 5.0
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The 2×K table with every column whose smaller expected count is under ``min_expected``
    summed into one "other" column (the chi-square approximation needs expected counts ≳ 5).

    Nothing is merged when fewer than two columns are rare (a lone rare column stays itself).
    """
    ref = np.asarray(ref_counts, dtype=np.int64)
    cur = np.asarray(cur_counts, dtype=np.int64)
    total = ref.sum() + cur.sum()
    if total == 0:
        return ref, cur
    expected_min = min(ref.sum(), cur.sum()) * (ref + cur) / total
    rare = expected_min < min_expected
    if rare.sum() < 2:
        return ref, cur
    keep = ~rare
    return (
        np.append(ref[keep], ref[rare].sum()),
        np.append(cur[keep], cur[rare].sum()),
    )


def _rows_shares(counts: npt.NDArray[Any]) -> FloatArray:
    totals = counts.sum(axis=1, keepdims=True).astype(np.float64)
    out: FloatArray = counts / np.maximum(totals, 1.0)
    return out


def _psi_rows(r_counts: npt.NDArray[Any], c_counts: npt.NDArray[Any]) -> FloatArray:
    r = np.maximum(_rows_shares(r_counts), PSI_EPSILON)
    c = np.maximum(_rows_shares(c_counts), PSI_EPSILON)
    out: FloatArray = np.sum((c - r) * np.log(c / r), axis=1)
    return out


def _js_distance_rows(r_counts: npt.NDArray[Any], c_counts: npt.NDArray[Any]) -> FloatArray:
    p = _rows_shares(r_counts)
    q = _rows_shares(c_counts)
    m = (p + q) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0).sum(axis=1)
        kl_q = np.where(q > 0, q * np.log2(q / m), 0.0).sum(axis=1)
    out: FloatArray = np.sqrt(np.clip((kl_p + kl_q) / 2.0, 0.0, 1.0))
    return out


def _draw(
    rng: np.random.Generator, counts: npt.NDArray[Any], replicates: int
) -> npt.NDArray[np.int64]:
    n = int(counts.sum())
    p = shares(counts)
    return rng.multinomial(n, p / p.sum(), size=replicates)


def bootstrap_interval_counts(
    ref_counts: npt.NDArray[Any],
    cur_counts: npt.NDArray[Any],
    statistic: str,
    *,
    level: float = 0.95,
    replicates: int = BOOTSTRAP_REPLICATES,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Basic-bootstrap interval and bias of ``psi`` or ``js_distance`` over binned counts.

    Each side's counts are redrawn from a multinomial with its own observed shares (the two
    samples are independent), so the cost is ``replicates × bins``, whatever the row count. A
    distance estimated from samples is biased upwards (noise alone makes it positive); the
    *basic* interval ``[2θ - q_hi, 2θ - q_lo]`` (clipped at 0) reflects the bootstrap's
    deviations around the estimate and so corrects for that bias, where a percentile interval
    would sit above the estimate. Returns ``(low, high, bias)``, ``bias`` being the bootstrap
    mean minus the estimate (how much noise alone inflates the estimate at these sizes).
    """
    rng = np.random.default_rng(seed)
    ref = np.asarray(ref_counts)
    cur = np.asarray(cur_counts)
    rows = _psi_rows if statistic == "psi" else _js_distance_rows
    point = float(rows(ref[None, :], cur[None, :])[0])
    values = rows(_draw(rng, ref, replicates), _draw(rng, cur, replicates))
    return _basic(point, values, level)


def _basic(point: float, values: FloatArray, level: float) -> tuple[float, float, float]:
    q_lo, q_hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    bias = float(values.mean()) - point
    return max(2 * point - float(q_hi), 0.0), max(2 * point - float(q_lo), 0.0), bias


def bootstrap_interval_wasserstein(
    ref_sorted: FloatArray,
    cur_sorted: FloatArray,
    estimate: float,
    *,
    level: float = 0.95,
    replicates: int = BOOTSTRAP_REPLICATES,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Interval ``(low, high, bias)`` for the raw Wasserstein ``estimate`` of two sorted samples.

    The samples are binned on a grid of both samples' quantiles (``2 × 50`` bins); the binned
    distance ``Σ |F_i - G_i| · width_i`` is bootstrapped over multinomial redraws of the bin
    counts, and its deviations around the binned value give a basic-bootstrap interval around
    ``estimate`` (see :func:`bootstrap_interval_counts`). Cheap at any size; rough, not exact.
    """
    probs = np.linspace(0.0, 1.0, _W_GRID + 1)
    grid = np.unique(
        np.concatenate((sorted_quantiles(ref_sorted, probs), sorted_quantiles(cur_sorted, probs)))
    )
    if grid.size < 2:
        return estimate, estimate, 0.0
    widths = np.diff(grid)
    # counts in (-inf, g0], (g0, g1], …, (g_{k-1}, g_k]: every value is <= the last grid point
    r_counts = sorted_counts(ref_sorted, grid)[:-1]
    c_counts = sorted_counts(cur_sorted, grid)[:-1]

    def binned(r: npt.NDArray[Any], c: npt.NDArray[Any]) -> FloatArray:
        fr = np.cumsum(_rows_shares(r), axis=1)[:, :-1]
        fc = np.cumsum(_rows_shares(c), axis=1)[:, :-1]
        out: FloatArray = np.einsum("ij,j->i", np.abs(fr - fc), widths)  # no BLAS: see above
        return out

    rng = np.random.default_rng(seed)
    r = _draw(rng, r_counts, replicates)
    c = _draw(rng, c_counts, replicates)
    point = float(binned(r_counts[None, :], c_counts[None, :])[0])
    return _basic(estimate, binned(r, c) + (estimate - point), level)
