"""mSPRT A/B decisions: error rates under many peeks, power as designed, the interval's algebra."""

from __future__ import annotations

import math

import numpy as np
import pytest

from loopml.errors import InvalidInputError
from loopml.monitor.sequential import (
    A_BETTER,
    B_BETTER,
    KEEP_GOING,
    SequentialResult,
    design,
    likelihood_ratio,
    msprt_means,
    msprt_proportions,
    radius,
)

ALPHA = 0.05
EXPERIMENTS = 500
PEEKS = 20


def _run_proportions(
    p_a: float, p_b: float, n: int, effect: float, seed: int
) -> tuple[float, float, float]:
    """Share of experiments decided, decided for B, and the naive z-test's false-alarm share."""
    rng = np.random.default_rng(seed)
    a = np.cumsum(rng.random((EXPERIMENTS, n)) < p_a, axis=1)
    b = np.cumsum(rng.random((EXPERIMENTS, n)) < p_b, axis=1)
    looks = np.linspace(n / PEEKS, n, PEEKS).astype(int)
    decided = for_b = naive = 0
    for e in range(EXPERIMENTS):
        previous: SequentialResult | None = None
        naive_hit = False
        for k in looks:
            sa, sb = int(a[e, k - 1]), int(b[e, k - 1])
            previous = msprt_proportions(sa, int(k), sb, int(k), effect=effect, previous=previous)
            pooled = (sa + sb) / (2 * k)
            se = math.sqrt(max(pooled * (1 - pooled), 1e-12) * 2 / k)
            naive_hit = naive_hit or abs(sb - sa) / k / se > 1.959964
            if previous.decided:
                decided += 1
                for_b += previous.decision == B_BETTER
                break
        naive += naive_hit
    return decided / EXPERIMENTS, for_b / EXPERIMENTS, naive / EXPERIMENTS


def _proportion_design(p: float, effect: float) -> int:
    return design(effect, math.sqrt(p * (1 - p)), sd_b=math.sqrt((p + effect) * (1 - p - effect)))


def test_no_difference_in_proportions_gives_few_false_decisions_over_many_peeks() -> None:
    n = _proportion_design(0.1, 0.03)
    decided, _, naive = _run_proportions(0.1, 0.1, n, 0.03, seed=1)
    # simulation slack: 3 standard errors of a rate of alpha over 500 experiments
    assert decided <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / EXPERIMENTS)
    # the same peeking with a fixed-horizon z-test is far worse: what the test protects from
    assert naive > 2 * ALPHA


def test_a_real_difference_in_proportions_is_found_with_the_designed_power() -> None:
    n = _proportion_design(0.1, 0.03)
    decided, for_b, _ = _run_proportions(0.1, 0.13, n, 0.03, seed=2)
    assert for_b >= 0.8
    assert decided - for_b <= 0.01  # hardly ever the wrong way


def _run_means(delta: float, n: int, effect: float, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    looks = np.linspace(n / PEEKS, n, PEEKS).astype(int)
    a = rng.exponential(2.0, size=(EXPERIMENTS, n))  # skewed rewards, sd 2
    b = rng.exponential(2.0, size=(EXPERIMENTS, n)) + delta
    decided = for_b = 0
    for e in range(EXPERIMENTS):
        previous: SequentialResult | None = None
        for k in looks:
            xa, xb = a[e, :k], b[e, :k]
            previous = msprt_means(
                int(k), float(xa.mean()), float(xa.var(ddof=1)),
                int(k), float(xb.mean()), float(xb.var(ddof=1)),
                effect=effect, previous=previous,
            )  # fmt: skip
            if previous.decided:
                decided += 1
                for_b += previous.decision == B_BETTER
                break
    return decided / EXPERIMENTS, for_b / EXPERIMENTS


def test_means_no_difference_few_false_decisions_and_real_difference_found() -> None:
    n = design(0.3, 2.0)
    decided, _ = _run_means(0.0, n, 0.3, seed=3)
    assert decided <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / EXPERIMENTS)
    _, for_b = _run_means(0.3, n, 0.3, seed=4)
    assert for_b >= 0.8


def test_the_interval_is_where_the_likelihood_ratio_reaches_one_over_alpha() -> None:
    v, tau = 0.0004, 0.03
    r = radius(v, tau, ALPHA)
    assert likelihood_ratio(r, v, tau) == pytest.approx(1 / ALPHA, rel=1e-9)
    assert likelihood_ratio(0.9 * r, v, tau) < 1 / ALPHA < likelihood_ratio(1.1 * r, v, tau)
    # the mixture ratio written out: the normal likelihood integrated over N(0, tau^2)
    est = 0.05
    direct = math.sqrt(v / (v + tau**2)) * math.exp(est**2 * tau**2 / (2 * v * (v + tau**2)))
    assert likelihood_ratio(est, v, tau) == pytest.approx(direct, rel=1e-12)


def test_a_result_reports_estimate_interval_decision_and_more_traffic() -> None:
    res = msprt_proportions(100, 1000, 130, 1000, effect=0.03)
    assert res.estimate == pytest.approx(0.03)
    assert res.ci_low < 0 < res.ci_high
    assert res.decision == KEEP_GOING
    assert res.more_traffic is not None and res.more_traffic > 0
    # with that much more traffic (and a little: it is a rough estimate) at the same rates, the
    # test decides; with much less it does not yet
    scale = (2000 + res.more_traffic) / 2000
    short = math.floor(1000 * (1 + 0.7 * (scale - 1)))
    early = msprt_proportions(round(0.1 * short), short, round(0.13 * short), short, effect=0.03)
    assert early.decision == KEEP_GOING
    n = math.ceil(1000 * scale * 1.05)
    later = msprt_proportions(round(0.1 * n), n, round(0.13 * n), n, effect=0.03)
    assert later.decision == B_BETTER
    assert later.more_traffic == 0
    assert later.p_value <= ALPHA
    flipped = msprt_proportions(round(0.13 * n), n, round(0.1 * n), n, effect=0.03)
    assert flipped.decision == A_BETTER
    assert flipped.ci_high < 0


def test_previous_results_narrow_the_interval_and_keep_the_smallest_p_value() -> None:
    first = msprt_proportions(120, 1000, 150, 1000)
    second = msprt_proportions(230, 2000, 255, 2000, previous=first)
    alone = msprt_proportions(230, 2000, 255, 2000)
    assert second.ci_low >= alone.ci_low
    assert second.ci_high <= alone.ci_high
    assert second.p_value == min(first.p_value, alone.p_value)


def test_too_few_observations_decide_nothing() -> None:
    res = msprt_proportions(0, 10, 10, 10)
    assert res.decision == KEEP_GOING
    assert res.note is not None and "fewer than" in res.note
    empty = msprt_proportions(0, 0, 0, 0)
    assert empty.decision == KEEP_GOING
    assert empty.more_traffic is None
    assert msprt_means(50, 1.0, 0.0, 50, 1.0, 0.0).decision == KEEP_GOING


def test_design_grows_as_the_effect_shrinks() -> None:
    assert design(0.01, 0.3) > design(0.02, 0.3) > design(0.04, 0.3)
    assert design(0.02, 0.3, power=0.9) > design(0.02, 0.3, power=0.8)


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: msprt_proportions(11, 10, 5, 10), "successes_a"),
        (lambda: msprt_proportions(-1, 10, 5, 10), "successes_a"),
        (lambda: msprt_proportions(1, 10, 5, 10, alpha=1.0), "alpha"),
        (lambda: msprt_proportions(1, 10, 5, 10, tau=0.0), "tau"),
        (lambda: msprt_means(10, 1.0, -1.0, 10, 1.0, 1.0), "var_a"),
        (lambda: msprt_means(10, math.nan, 1.0, 10, 1.0, 1.0), "mean_a"),
        (lambda: design(0.02, 0.3, power=0.7), "power"),
        (lambda: design(-0.02, 0.3), "effect"),
    ],
)
def test_bad_inputs_name_the_field(call: object, field: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        call()  # type: ignore[operator]
    assert info.value.where["field"] == field


def test_a_previous_result_of_another_test_is_refused() -> None:
    first = msprt_proportions(100, 1000, 120, 1000)
    with pytest.raises(InvalidInputError, match="previous"):
        msprt_proportions(50, 500, 60, 500, previous=first)  # totals went down
    with pytest.raises(InvalidInputError, match="previous"):
        msprt_proportions(200, 2000, 240, 2000, alpha=0.01, previous=first)


def test_the_default_scale_of_a_means_test_stays_fixed_across_looks() -> None:
    first = msprt_means(100, 1.0, 4.0, 100, 1.1, 4.0)
    assert first.tau == pytest.approx(0.2)  # 0.1 pooled standard deviations
    later = msprt_means(200, 1.0, 9.0, 200, 1.1, 9.0, previous=first)
    assert later.tau == first.tau
