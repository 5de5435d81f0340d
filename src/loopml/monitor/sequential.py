"""Sequential A/B decisions that stay valid however often they are checked: mixture SPRT.

A fixed-horizon test checked after every batch of traffic (and stopped at the first "significant"
look) makes false decisions far more often than its ``alpha``. The mixture sequential
probability ratio test (mSPRT; Robbins 1970, as used for A/B tests by Johari, Pekelis & Walsh,
"Always valid inference", 2017) does not: its likelihood ratio ``Λ_n`` against "no difference"
is a non-negative martingale under that hypothesis, so by Ville's inequality
``P(Λ_n ≥ 1/α for some n) ≤ α`` — at *any* number of peeks, at any times.

Model. The difference ``θ = metric(B) - metric(A)`` is estimated by ``θ̂`` with variance
``V = σ²_A/n_A + σ²_B/n_B`` (per-observation variances estimated from the data: ``p(1 - p)``
for a proportion, the sample variance for a mean; a normal approximation, as in the paper).
With a normal mixture ``θ ~ N(0, τ²)`` over the alternatives,

    Λ = sqrt(V / (V + τ²)) · exp(θ̂² τ² / (2 V (V + τ²)))

and the always-valid ``1 - α`` confidence interval is ``θ̂ ± r`` with

    r² = V (V + τ²) / τ² · (2 ln(1/α) + ln((V + τ²) / V)).

``τ`` is the scale of differences worth detecting (default: the ``effect`` you design for); the
test is valid for any ``τ``, which only moves where its power lies.

The same test runs on a ranking metric, ROC-AUC, where the arms are scored by different
models on different traffic (:func:`msprt_auc`): each arm's AUC is a two-sample U-statistic
whose Hájek projection is a sum of independent per-row terms (DeLong's placement values), so
``AUC_B - AUC_A`` is asymptotically normal with the DeLong variance and behaves like the
difference of two means; the mixture ratio and interval above apply with that variance (the
same plug-in normal approximation as for a mean, checked by simulation in the tests: no true
difference, false decisions at most ``alpha`` however often it is looked at).

Decision: ``B better`` when the interval lies above 0, ``A better`` below 0, else ``keep
going``. Passing the previous result (``previous=``) intersects the intervals and keeps the
smallest p-value seen, which stays valid and only sharpens the answer. :func:`design` gives the
traffic per arm at which the test has the wanted power for a given true difference, and every
result carries a rough "how much more traffic" estimate.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, replace
from typing import Any

from loopml.errors import InvalidInputError

A_BETTER = "A better"
B_BETTER = "B better"
KEEP_GOING = "keep going"
#: Fewest observations per arm before any decision (the normal approximation needs some).
MIN_PER_ARM = 30
_Z_POWER = {0.5: 0.0, 0.8: 0.8416212335729143, 0.9: 1.2815515655446004}


@dataclass(frozen=True)
class SequentialResult:
    """One look at an A/B test: the estimate of ``B - A``, its interval, and what to do.

    ``more_traffic`` is a rough number of further observations (both arms together, in their
    current split) after which the interval would exclude 0 if the difference stayed at its
    current estimate (or, when the estimate is 0, at ``tau``); 0 once decided; ``None`` when it
    cannot be told (no variance yet).
    """

    metric: str  # "proportion", "mean" or "auc"
    estimate: float
    ci_low: float
    ci_high: float
    p_value: float  # always-valid p-value: min over looks of 1 / Λ, capped at 1
    decision: str
    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    alpha: float
    tau: float
    likelihood_ratio: float
    more_traffic: int | None
    note: str | None = None

    @property
    def decided(self) -> bool:
        return self.decision != KEEP_GOING

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def msprt_proportions(
    successes_a: int,
    trials_a: int,
    successes_b: int,
    trials_b: int,
    *,
    alpha: float = 0.05,
    tau: float | None = None,
    effect: float = 0.02,
    previous: SequentialResult | None = None,
    min_per_arm: int = MIN_PER_ARM,
) -> SequentialResult:
    """mSPRT on the difference of two proportions (conversion, accuracy on labelled traffic).

    ``effect`` is the smallest absolute difference worth detecting (default 2 points) and the
    default ``tau``. Counts are totals so far; ``previous`` is this test's last result.
    """
    for name, value in (("successes_a", successes_a), ("trials_a", trials_a)):
        _count(name, value)
    for name, value in (("successes_b", successes_b), ("trials_b", trials_b)):
        _count(name, value)
    for arm, s, n in (("a", successes_a, trials_a), ("b", successes_b, trials_b)):
        if s > n:
            raise InvalidInputError(
                f"arm {arm.upper()} has {s} successes in {n} trials",
                where={"field": f"successes_{arm}"},
                hint="successes count the trials that converted, so they cannot exceed trials",
            )
    pa = successes_a / trials_a if trials_a else 0.0
    pb = successes_b / trials_b if trials_b else 0.0
    # per-observation variance, kept off 0 (an arm at 0% or 100% so far is not certain)
    va = _smoothed_var(successes_a, trials_a)
    vb = _smoothed_var(successes_b, trials_b)
    return _result(
        "proportion", pa, va, trials_a, pb, vb, trials_b, alpha, tau, effect, previous, min_per_arm
    )


def msprt_means(
    n_a: int,
    mean_a: float,
    var_a: float,
    n_b: int,
    mean_b: float,
    var_b: float,
    *,
    alpha: float = 0.05,
    tau: float | None = None,
    effect: float | None = None,
    previous: SequentialResult | None = None,
    min_per_arm: int = MIN_PER_ARM,
) -> SequentialResult:
    """mSPRT on the difference of two means (a reward), from each arm's count, mean, variance.

    ``effect`` (default: 0.1 pooled standard deviations at the first look; later looks given
    ``previous`` keep its ``tau``) is the smallest difference worth detecting and the default
    ``tau``.
    """
    _count("n_a", n_a)
    _count("n_b", n_b)
    for name, value in (("mean_a", mean_a), ("mean_b", mean_b)):
        _finite(name, value)
    for name, value in (("var_a", var_a), ("var_b", var_b)):
        _finite(name, value)
        if value < 0:
            raise InvalidInputError(f"{name} must be >= 0, got {value!r}", where={"field": name})
    if effect is None and tau is None and previous is not None:
        effect = previous.tau  # the scale chosen at the first look stays for the whole test
    if effect is None:
        pooled = math.sqrt((var_a + var_b) / 2.0)
        effect = 0.1 * pooled if pooled > 0 else 1.0
    return _result(
        "mean",
        float(mean_a),
        float(var_a),
        n_a,
        float(mean_b),
        float(var_b),
        n_b,
        alpha,
        tau,
        effect,
        previous,
        min_per_arm,
    )


def auc_variance(labels: Any, scores: Any) -> tuple[float, float, int, int]:
    """``(auc, variance, positives, negatives)`` of binary ``labels`` (1: positive) ranked by
    ``scores``: the Mann-Whitney AUC (ties count a half) and DeLong's variance of it,
    ``var(V10) / m + var(V01) / n`` over the placement values of the ``m`` positives and ``n``
    negatives. NaN AUC (variance 0) with one class only."""
    import numpy as np

    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    m, n = int(y.sum()), int((~y).sum())
    if m == 0 or n == 0:
        return math.nan, 0.0, m, n
    all_ranks = _midranks(s)
    pos_ranks = _midranks(s[y])
    neg_ranks = _midranks(s[~y])
    v10 = (all_ranks[y] - pos_ranks) / n  # share of negatives below each positive
    v01 = 1.0 - (all_ranks[~y] - neg_ranks) / m  # share of positives above each negative
    auc = float(v10.mean())
    var = 0.0
    if m > 1:
        var += float(v10.var(ddof=1)) / m
    if n > 1:
        var += float(v01.var(ddof=1)) / n
    return auc, var, m, n


def _midranks(values: Any) -> Any:
    """1-based ranks of ``values``, ties given their mean rank."""
    import numpy as np

    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    ends = np.flatnonzero(np.r_[ordered[1:] != ordered[:-1], True])
    starts = np.r_[0, ends[:-1] + 1]
    mean_rank = (starts + ends) / 2.0 + 1.0
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts + 1)
    return ranks


#: Fewest positives and fewest negatives per arm before an AUC test decides.
MIN_CLASS_AUC = 20


def msprt_auc(
    labels_a: Any,
    scores_a: Any,
    labels_b: Any,
    scores_b: Any,
    *,
    alpha: float = 0.05,
    tau: float | None = None,
    effect: float = 0.02,
    previous: SequentialResult | None = None,
    min_per_arm: int = MIN_PER_ARM,
) -> SequentialResult:
    """mSPRT on ``AUC_B - AUC_A`` from each arm's labels (1: positive) and scores so far.

    ``effect`` (default 0.02 of AUC) is the smallest difference worth detecting and the
    default ``tau``; ``min_per_arm`` counts rows, and an arm also needs ``MIN_CLASS_AUC``
    rows of each class before anything is decided (the normal approximation of an AUC rests
    on both classes). The result's means are the arms' AUCs.
    """
    auc_a, var_a, pos_a, neg_a = auc_variance(labels_a, scores_a)
    auc_b, var_b, pos_b, neg_b = auc_variance(labels_b, scores_b)
    n_a, n_b = pos_a + neg_a, pos_b + neg_b
    short = min(pos_a, neg_a, pos_b, neg_b) < MIN_CLASS_AUC
    if not (math.isfinite(auc_a) and math.isfinite(auc_b)):
        auc_a = auc_a if math.isfinite(auc_a) else 0.5
        auc_b = auc_b if math.isfinite(auc_b) else 0.5
        var_a = var_b = 0.0
    # _result takes per-observation variances: the DeLong variance of the AUC times n
    result = _result(
        "auc",
        auc_a,
        var_a * n_a,
        n_a,
        auc_b,
        var_b * n_b,
        n_b,
        alpha,
        tau,
        effect,
        previous,
        min_per_arm,
    )
    if short and result.decision != KEEP_GOING:
        result = replace(
            result,
            decision=KEEP_GOING,
            more_traffic=None,
            note=f"an arm has fewer than {MIN_CLASS_AUC} positives or negatives "
            f"(A: {pos_a}/{neg_a}, B: {pos_b}/{neg_b}): not decided yet",
        )
    elif short:
        result = replace(
            result,
            note=f"an arm has fewer than {MIN_CLASS_AUC} positives or negatives "
            f"(A: {pos_a}/{neg_a}, B: {pos_b}/{neg_b}): not decided yet",
        )
    return result


def likelihood_ratio(estimate: float, variance: float, tau: float) -> float:
    """The mixture likelihood ratio ``Λ`` of ``estimate`` (variance ``variance``) against 0."""
    v, t2 = variance, tau * tau
    log_lr = 0.5 * math.log(v / (v + t2)) + estimate * estimate * t2 / (2.0 * v * (v + t2))
    return math.exp(min(log_lr, 700.0))


def radius(variance: float, tau: float, alpha: float) -> float:
    """Half-width of the always-valid ``1 - alpha`` interval at variance ``variance``."""
    v, t2 = variance, tau * tau
    return math.sqrt(v * (v + t2) / t2 * (2.0 * math.log(1.0 / alpha) + math.log((v + t2) / v)))


def design(
    effect: float,
    sd: float,
    *,
    sd_b: float | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    tau: float | None = None,
) -> int:
    """Observations per arm at which one look has ``power`` to decide a true difference
    ``effect`` between arms whose per-observation standard deviations are ``sd`` (arm A) and
    ``sd_b`` (arm B; default ``sd``). For a proportion ``p``: ``sqrt(p (1 - p))``, so for a
    conversion from ``p`` to ``p + effect`` pass ``sd_b=sqrt((p + effect) (1 - p - effect))``.
    Looks before it only add to the power.
    """
    _positive("effect", effect)
    _positive("sd", sd)
    sd_b = sd if sd_b is None else sd_b
    _positive("sd_b", sd_b)
    _check_alpha(alpha)
    if power not in _Z_POWER:
        raise InvalidInputError(
            f"power must be one of {sorted(_Z_POWER)}, got {power!r}", where={"field": "power"}
        )
    t = effect if tau is None else tau
    _positive("tau", t)
    z = _Z_POWER[power]

    def enough(n: float) -> bool:
        v = (sd * sd + sd_b * sd_b) / n
        return radius(v, t, alpha) + z * math.sqrt(v) <= effect

    hi = 2.0
    while not enough(hi):
        hi *= 2.0
    lo = hi / 2.0
    while hi - lo > 1.0:
        mid = (lo + hi) / 2.0
        lo, hi = (lo, mid) if enough(mid) else (mid, hi)
    return math.ceil(hi)


def _result(
    metric: str,
    mean_a: float,
    var_a: float,
    n_a: int,
    mean_b: float,
    var_b: float,
    n_b: int,
    alpha: float,
    tau: float | None,
    effect: float,
    previous: SequentialResult | None,
    min_per_arm: int,
) -> SequentialResult:
    _check_alpha(alpha)
    _positive("effect", effect)
    t = effect if tau is None else tau
    _positive("tau", t)
    estimate = mean_b - mean_a
    if min(n_a, n_b) == 0 or (var_a <= 0 and var_b <= 0):
        note = "no observations in an arm yet" if min(n_a, n_b) == 0 else "no variance yet"
        return SequentialResult(
            metric,
            estimate if min(n_a, n_b) else 0.0,
            -math.inf,
            math.inf,
            1.0,
            KEEP_GOING,
            n_a,
            n_b,
            mean_a,
            mean_b,
            alpha,
            t,
            1.0,
            None,
            note,
        )
    v = var_a / n_a + var_b / n_b
    lr = likelihood_ratio(estimate, v, t)
    r = radius(v, t, alpha)
    lo, hi = estimate - r, estimate + r
    p_value = min(1.0, 1.0 / lr)
    if previous is not None:
        _check_previous(previous, metric, alpha, t, n_a, n_b)
        lo, hi = max(lo, previous.ci_low), min(hi, previous.ci_high)
        p_value = min(p_value, previous.p_value)
        if lo > hi:  # the intersection is empty: keep the current interval (rare, noisy data)
            lo, hi = estimate - r, estimate + r
    why: str | None = None
    if min(n_a, n_b) < min_per_arm:
        decision = KEEP_GOING
        why = f"fewer than {min_per_arm} observations in an arm: not decided yet"
    elif lo > 0:
        decision = B_BETTER
    elif hi < 0:
        decision = A_BETTER
    else:
        decision = KEEP_GOING
    more = 0 if decision != KEEP_GOING else _more_traffic(estimate, v, t, alpha, n_a + n_b)
    if decision == KEEP_GOING and min(n_a, n_b) < min_per_arm and more is not None:
        more = max(more, 2 * min_per_arm - (n_a + n_b))
    return SequentialResult(
        metric,
        estimate,
        lo,
        hi,
        p_value,
        decision,
        n_a,
        n_b,
        mean_a,
        mean_b,
        alpha,
        t,
        lr,
        more,
        why,
    )


def _more_traffic(estimate: float, v: float, tau: float, alpha: float, n: int) -> int | None:
    """Further observations (current split) until ``θ̂ ± r`` excludes 0 at this estimate."""
    target = abs(estimate) if estimate != 0 else tau
    if radius(v, tau, alpha) < target:
        return 0
    hi = 2.0
    while radius(v / hi, tau, alpha) >= target:
        hi *= 2.0
        if hi > 1e12:
            return None
    lo = hi / 2.0
    for _ in range(60):
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if radius(v / mid, tau, alpha) >= target else (lo, mid)
    return math.ceil((hi - 1.0) * n)


def _smoothed_var(successes: int, trials: int) -> float:
    p = (successes + 0.5) / (trials + 1.0)
    return p * (1.0 - p)


def _check_previous(
    previous: SequentialResult, metric: str, alpha: float, tau: float, n_a: int, n_b: int
) -> None:
    same = previous.metric == metric and previous.alpha == alpha and previous.tau == tau
    if not same or n_a < previous.n_a or n_b < previous.n_b:
        raise InvalidInputError(
            "previous is not an earlier look at this test "
            f"(it has {previous.metric}, alpha {previous.alpha}, tau {previous.tau}, "
            f"n {previous.n_a}/{previous.n_b}; now {metric}, alpha {alpha}, tau {tau}, "
            f"n {n_a}/{n_b})",
            where={"field": "previous"},
            hint="pass the last result of the same test, with the same alpha and tau, "
            "and totals that only grow",
        )


def _count(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise InvalidInputError(
            f"{name} must be a whole number >= 0, got {value!r}", where={"field": name}
        )


def _finite(name: str, value: Any) -> None:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not math.isfinite(float(value)):
        raise InvalidInputError(
            f"{name} must be a finite number, got {value!r}", where={"field": name}
        )


def _positive(name: str, value: Any) -> None:
    _finite(name, value)
    if value <= 0:
        raise InvalidInputError(f"{name} must be > 0, got {value!r}", where={"field": name})


def _check_alpha(alpha: Any) -> None:
    _finite("alpha", alpha)
    if not 0 < alpha < 1:
        raise InvalidInputError(
            f"alpha must be between 0 and 1 (exclusive), got {alpha!r}", where={"field": "alpha"}
        )


__all__ = [
    "A_BETTER",
    "B_BETTER",
    "KEEP_GOING",
    "MIN_CLASS_AUC",
    "MIN_PER_ARM",
    "SequentialResult",
    "auc_variance",
    "design",
    "likelihood_ratio",
    "msprt_auc",
    "msprt_means",
    "msprt_proportions",
    "radius",
]
