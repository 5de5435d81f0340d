"""Drift statistics calibrated for sample size: effect sizes decide, p-values support.

Values are checked against scipy and direct formulas; the decisions on a million rows of the
same (or a practically identical) distribution, on real shifts, and on small samples.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from loopml.errors import ConfigError
from loopml.monitor.drift import DriftReport, compute_drift, prediction_drift
from loopml.monitor.stats import (
    PSI_EPSILON,
    bootstrap_interval_counts,
    ks_wasserstein_sorted,
    merge_rare,
    sorted_counts,
)
from loopml.monitor.thresholds import DriftThresholds, thresholds_from_config

NUM = "numeric"
CAT = "categorical"


# --- values against scipy and direct formulas --------------------------------------------------


@pytest.mark.parametrize(
    ("n1", "n2", "integers"),
    [(50, 70, False), (3000, 800, True), (20_000, 15_000, False), (30_000, 12_000, True)],
)
def test_ks_and_wasserstein_match_scipy(n1: int, n2: int, integers: bool) -> None:
    rng = np.random.default_rng(n1)
    a = rng.normal(size=n1) * 3
    b = rng.normal(loc=0.2, scale=1.2, size=n2) * 3
    if integers:
        a, b = np.round(a), np.round(b)
    d, p, w = ks_wasserstein_sorted(np.sort(a), np.sort(b))
    expected = stats.ks_2samp(a, b)
    assert d == pytest.approx(expected.statistic, rel=1e-12)
    assert p == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
    assert w == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-9)


def test_report_values_match_scipy_and_direct_formulas() -> None:
    rng = np.random.default_rng(11)
    ref = pd.DataFrame({"x": rng.normal(5, 2, size=4000), "c": rng.choice(list("abcd"), size=4000)})
    cur = pd.DataFrame(
        {
            "x": rng.normal(5.6, 2, size=3000),
            "c": rng.choice(list("abcde"), p=[0.4, 0.2, 0.2, 0.1, 0.1], size=3000),
        }
    )
    x, c = compute_drift(ref, cur, {"x": NUM, "c": CAT}).features
    # numeric: Wasserstein in reference standard deviations, KS as scipy
    assert x.wasserstein == pytest.approx(
        stats.wasserstein_distance(ref["x"], cur["x"]) / np.std(ref["x"]), rel=1e-9
    )
    ks = stats.ks_2samp(ref["x"], cur["x"])
    assert (x.statistic, x.p_value) == (
        pytest.approx(ks.statistic, rel=1e-12),
        pytest.approx(ks.pvalue, rel=1e-9, abs=1e-300),
    )
    # PSI directly on reference deciles (right-closed, outer bins open)
    edges = np.quantile(ref["x"], np.arange(1, 10) / 10)
    r = np.bincount(np.searchsorted(edges, ref["x"], side="left"), minlength=10) / len(ref)
    q = np.bincount(np.searchsorted(edges, cur["x"], side="left"), minlength=10) / len(cur)
    r, q = np.maximum(r, PSI_EPSILON), np.maximum(q, PSI_EPSILON)
    assert x.psi == pytest.approx(float(np.sum((q - r) * np.log(q / r))), rel=1e-9)
    # categorical: JS distance as scipy's, chi-square as scipy's contingency test
    cats = list("abcde")
    p_ref = np.array([np.mean(ref["c"] == k) for k in cats])
    p_cur = np.array([np.mean(cur["c"] == k) for k in cats])
    assert c.js_distance == pytest.approx(jensenshannon(p_ref, p_cur, base=2), rel=1e-9)
    table = np.array([[np.sum(ref["c"] == k) for k in cats], [np.sum(cur["c"] == k) for k in cats]])
    chi = stats.chi2_contingency(table, correction=False)
    assert c.statistic == pytest.approx(chi.statistic, rel=1e-9)
    assert c.p_value == pytest.approx(chi.pvalue, rel=1e-6, abs=1e-300)
    assert c.out_of_range == pytest.approx(np.mean(cur["c"] == "e"))


def test_rare_categories_are_summed_into_other_for_chi_square() -> None:
    ref = np.array([500, 300, 2, 1, 0])
    cur = np.array([480, 320, 1, 0, 3])
    merged_ref, merged_cur = merge_rare(ref, cur)
    np.testing.assert_array_equal(merged_ref, [500, 300, 3])
    np.testing.assert_array_equal(merged_cur, [480, 320, 4])
    refs = ["a"] * 500 + ["b"] * 300 + ["r1"] * 2 + ["r2"]
    curs = ["a"] * 480 + ["b"] * 320 + ["r1"] + ["new"] * 3
    (fd,) = compute_drift(pd.DataFrame({"c": refs}), pd.DataFrame({"c": curs}), {"c": CAT}).features
    chi = stats.chi2_contingency(np.vstack([merged_ref, merged_cur]), correction=False)
    assert fd.statistic == pytest.approx(chi.statistic, rel=1e-9)
    assert fd.p_value == pytest.approx(chi.pvalue, rel=1e-9)
    # a single rare column is left alone (nothing to merge it with)
    np.testing.assert_array_equal(
        merge_rare(np.array([50, 40, 1]), np.array([45, 45, 0]))[0], [50, 40, 1]
    )


def test_missing_and_out_of_range_rates() -> None:
    rng = np.random.default_rng(12)
    ref = pd.DataFrame({"x": rng.uniform(0, 1, size=5000)})
    x = rng.uniform(0, 1, size=2000)
    x[:300] = 1.5  # 15% above the reference's maximum
    x[300:700] = np.nan  # 20% missing
    (fd,) = compute_drift(ref, pd.DataFrame({"x": x}), {"x": NUM}).features
    assert fd.missing_reference == 0.0
    assert fd.missing_current == pytest.approx(0.2)
    assert fd.out_of_range == pytest.approx(300 / 1600)
    assert fd.drifted
    assert any("missing rate" in r for r in fd.reasons)
    assert any("out of range" in r for r in fd.reasons)
    # the same rates from the same distribution are not flagged
    (same,) = compute_drift(ref, pd.DataFrame({"x": rng.uniform(0, 1, 2000)}), {"x": NUM}).features
    assert same.out_of_range is not None
    assert same.out_of_range < 0.01
    assert not same.drifted


def test_bootstrap_interval_brackets_a_psi_and_narrows_with_size() -> None:
    r = np.array([300, 300, 400])
    c = np.array([250, 350, 400])
    lo, hi, bias = bootstrap_interval_counts(r, c, "psi")
    lo10, hi10, _ = bootstrap_interval_counts(r * 100, c * 100, "psi")
    assert lo <= lo10 <= hi10 <= hi
    assert hi10 - lo10 < (hi - lo) / 5
    assert bias > 0  # noise alone inflates a distance


# --- calibration: a million rows, real shifts, small samples -----------------------------------


@pytest.mark.slow
def test_a_million_rows_like_the_reference_are_not_flagged_though_p_values_are_tiny() -> None:
    rng = np.random.default_rng(13)
    n = 1_000_000
    cats = list("abcdef")
    shares = np.array([0.3, 0.25, 0.2, 0.1, 0.1, 0.05])
    ref = pd.DataFrame(
        {
            "same": rng.normal(size=n),
            "nudged": rng.normal(size=n),
            "scaled": rng.normal(size=n),
            "c_same": rng.choice(cats, p=shares, size=n),
            "c_nudged": rng.choice(cats, p=shares, size=n),
        }
    )
    nudged = shares + np.array([0.01, -0.01, 0.0, 0.0, 0.005, -0.005])
    cur = pd.DataFrame(
        {
            "same": rng.normal(size=n),
            "nudged": rng.normal(loc=0.02, size=n),  # 2% of a standard deviation
            "scaled": rng.normal(scale=1.02, size=n),
            "c_same": rng.choice(cats, p=shares, size=n),
            "c_nudged": rng.choice(cats, p=nudged, size=n),
        }
    )
    kinds = {"same": NUM, "nudged": NUM, "scaled": NUM, "c_same": CAT, "c_nudged": CAT}
    report = compute_drift(ref, cur, kinds)
    by = {f.feature: f for f in report.features}
    # the tests see the practically irrelevant differences ...
    assert all(by[k].p_value is not None and by[k].p_value < 1e-10 for k in ("nudged", "scaled"))
    assert by["c_nudged"].p_value is not None and by["c_nudged"].p_value < 1e-10
    # ... but nothing moved by an amount that matters, so nothing is flagged
    assert report.drifted_features == []
    assert not report.drifted
    for f in report.features:
        assert f.psi is not None and f.psi < 0.01
        assert f.intervals["psi"][1] < 0.01  # and the estimate is precise at this size


def test_a_real_shift_is_flagged() -> None:
    rng = np.random.default_rng(14)
    n = 50_000
    ref = pd.DataFrame(
        {
            "x": rng.normal(10, 3, size=n),
            "y": rng.normal(size=n),
            "c": rng.choice(list("abcd"), p=[0.1, 0.3, 0.3, 0.3], size=n),
        }
    )
    cur = pd.DataFrame(
        {
            "x": rng.normal(10 + 0.5 * 3, 3, size=n),  # mean + 0.5 sd
            "y": rng.normal(size=n),
            "c": rng.choice(list("abcd"), p=[0.4, 0.2, 0.2, 0.2], size=n),  # 10% -> 40%
        }
    )
    report = compute_drift(ref, cur, {"x": NUM, "y": NUM, "c": CAT})
    assert report.drifted_features == ["x", "c"]
    x, _, c = report.features
    assert x.wasserstein == pytest.approx(0.5, abs=0.03)
    assert any("wasserstein" in r for r in x.reasons)
    assert c.js_distance is not None and c.js_distance > 0.25
    assert any("js" in r for r in c.reasons)
    assert report.drifted


def test_a_small_sample_with_a_modest_shift_is_uncertain_and_not_over_flagged() -> None:
    flagged = covered = 0
    widths = []
    trials = 100
    for seed in range(trials):
        rng = np.random.default_rng(1000 + seed)
        ref = pd.DataFrame(
            {
                "x": rng.normal(size=200),
                "c": rng.choice(list("abcd"), p=[0.4, 0.3, 0.2, 0.1], size=200),
            }
        )
        cur = pd.DataFrame(
            {
                "x": rng.normal(loc=0.1, size=200),  # half the Wasserstein threshold
                "c": rng.choice(list("abcd"), p=[0.36, 0.3, 0.2, 0.14], size=200),
            }
        )
        x, c = compute_drift(ref, cur, {"x": NUM, "c": CAT}).features
        flagged += x.drifted + c.drifted
        lo, hi = x.intervals["wasserstein"]
        covered += lo <= 0.1 <= hi
        widths.append(hi - lo)
        assert x.wasserstein is not None and c.js_distance is not None
    assert flagged / (2 * trials) <= 0.06
    assert np.median(widths) > 0.15  # wide: the point estimate alone would mislead
    assert covered / trials >= 0.85


def test_small_windows_from_the_same_distribution_are_not_flagged_despite_noisy_effects() -> None:
    rng = np.random.default_rng(15)
    flagged = 0
    noisy = 0
    for _ in range(40):
        ref = pd.DataFrame({"x": rng.normal(size=100)})
        cur = pd.DataFrame({"x": rng.normal(size=100)})
        (fd,) = compute_drift(ref, cur, {"x": NUM}).features
        flagged += fd.drifted
        noisy += (fd.wasserstein or 0.0) >= 0.2  # what effect size alone would flag
    assert flagged <= 2
    assert noisy >= 5
    assert flagged < noisy


def test_prediction_drift_is_a_numeric_feature_of_scores() -> None:
    rng = np.random.default_rng(16)
    same = prediction_drift(rng.beta(2, 5, 5000), rng.beta(2, 5, 5000))
    moved = prediction_drift(rng.beta(2, 5, 5000), rng.beta(4, 3, 5000))
    assert same.drifted_features == []
    assert moved.drifted_features == ["prediction"]
    assert moved.features[0].wasserstein is not None and moved.features[0].wasserstein > 1


# --- thresholds: defaults, overrides, configuration ---------------------------------------------


def test_per_feature_thresholds_override_the_defaults() -> None:
    rng = np.random.default_rng(17)
    ref = pd.DataFrame({"x": rng.normal(size=20_000), "y": rng.normal(size=20_000)})
    cur = pd.DataFrame({"x": rng.normal(0.5, size=20_000), "y": rng.normal(0.5, size=20_000)})
    th = thresholds_from_config(
        {"monitor": {"drift": {"features": {"y": {"wasserstein": 1.0, "psi": 1.0}}}}}
    )
    assert th.for_feature("y").wasserstein == 1.0
    assert th.for_feature("x").wasserstein == DriftThresholds().wasserstein
    report = compute_drift(ref, cur, {"x": NUM, "y": NUM}, thresholds=th)
    assert report.drifted_features == ["x"]
    back = DriftReport.from_dict(report.to_dict())
    assert back.limits == report.limits
    assert back.features == report.features


def test_explicit_arguments_override_the_thresholds_object() -> None:
    ref = pd.DataFrame({"x": np.arange(100.0)})
    report = compute_drift(ref, ref, {"x": NUM}, thresholds=DriftThresholds(psi=0.3), alpha=0.01)
    assert (report.psi_threshold, report.alpha) == (0.3, 0.01)
    assert report.limits.alpha == 0.01


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"monitor": {"drift": {"psy": 0.2}}}, "monitor.drift.psy"),
        ({"monitor": {"drift": {"psi": -1}}}, "monitor.drift.psi"),
        ({"monitor": {"drift": {"alpha": 1.5}}}, "monitor.drift.alpha"),
        ({"monitor": {"drift": {"bins": 1}}}, "monitor.drift.bins"),
        ({"monitor": {"drift": {"js": "high"}}}, "monitor.drift.js"),
        (
            {"monitor": {"drift": {"features": {"age": {"wasserstien": 0.3}}}}},
            "monitor.drift.features.age.wasserstien",
        ),
        ({"monitor": {"drift": {"features": {"age": 0.3}}}}, "monitor.drift.features.age"),
        ({"monitor": {"drift": [1, 2]}}, "monitor.drift"),
        ({"monitor": "drift"}, "monitor"),
    ],
)
def test_bad_drift_config_names_the_field(config: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        thresholds_from_config(config)
    assert info.value.where["field"] == field
    assert field.rsplit(".", 1)[-1] in str(info.value)


def test_no_monitor_section_is_the_defaults() -> None:
    assert thresholds_from_config({"name": "x"}) == DriftThresholds()
    assert thresholds_from_config(None) == DriftThresholds()
    assert thresholds_from_config({"monitor": {"drift": None}}) == DriftThresholds()
    th = DriftThresholds()
    assert (th.psi, th.wasserstein, th.js) == (0.2, 0.2, 0.15)
    assert math.isclose(th.alpha, 0.05)


def test_sorted_counts_put_every_value_in_a_bin() -> None:
    x = np.sort(np.random.default_rng(18).normal(size=1000))
    counts = sorted_counts(x, np.array([-1.0, 0.0, 1.0]))
    assert counts.sum() == 1000


def test_ks_p_value_above_the_limit_is_the_kolmogorov_limit_within_a_percent() -> None:
    from loopml.monitor.stats import KS_LIMIT_N, ks_p_value

    n1, n2 = 60_000, 40_000  # effective size 24,000 > KS_LIMIT_N
    assert n1 * n2 / (n1 + n2) > KS_LIMIT_N
    en = round(n1 * n2 / (n1 + n2))
    for d in (0.002, 0.008, 0.012, 0.03):
        exact = float(stats.kstwo.sf(d, en))  # what ks_2samp's asymptotic method gives
        got = ks_p_value(d, n1, n2)
        if exact > 1e-40:
            assert got == pytest.approx(exact, rel=0.01)
        else:
            assert got < 1e-38
    assert ks_p_value(0.0, n1, n2) == 1.0
