"""Drift statistics: parity with scipy, hand-computed PSI, and the decision rule."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial.distance import jensenshannon
from sklearn.datasets import load_breast_cancer

from loopml.errors import InvalidInputError
from loopml.monitor.drift import (
    PSI_EPSILON,
    ROW_COLUMNS,
    DriftReport,
    chi_square,
    compute_drift,
    jensen_shannon,
    ks,
    psi,
    psi_categorical,
    quantile_edges,
)


@pytest.fixture(scope="module")
def cancer() -> pd.DataFrame:
    return load_breast_cancer(as_frame=True).frame.drop(columns="target")


def _direct_psi(r: list[float], c: list[float]) -> float:
    total = 0.0
    for ri, ci in zip(r, c, strict=True):
        ri, ci = max(ri, PSI_EPSILON), max(ci, PSI_EPSILON)
        total += (ci - ri) * math.log(ci / ri)
    return total


# --- PSI ---------------------------------------------------------------------------------------


def test_psi_matches_direct_formula_on_hand_example() -> None:
    reference = np.arange(1, 101, dtype=float)  # quartile edges 25.75, 50.5, 75.25
    current = [10.0] * 10 + [60.0] * 30 + [90.0] * 60  # shares 0.1, 0, 0.3, 0.6
    np.testing.assert_allclose(quantile_edges(reference, 4), [25.75, 50.5, 75.25])
    expected = _direct_psi([0.25] * 4, [0.1, 0.0, 0.3, 0.6])
    assert psi(reference, current, bins=4) == pytest.approx(expected, rel=1e-12)
    assert 2 < expected < 3  # the empty bin costs a lot, but finitely


def test_psi_outer_bins_are_open_ended() -> None:
    reference = np.arange(1, 101, dtype=float)
    # everything far beyond the reference range lands in the top bin
    assert psi(reference, [1e9] * 50, bins=4) == pytest.approx(
        _direct_psi([0.25] * 4, [0, 0, 0, 1]), rel=1e-12
    )
    assert psi(reference, [-1e9] * 50, bins=4) == pytest.approx(
        _direct_psi([0.25] * 4, [1, 0, 0, 0]), rel=1e-12
    )


def test_quantile_edges_match_numpy_and_split_a_point_mass_at_the_minimum() -> None:
    rng = np.random.default_rng(1)
    x = np.sort(rng.gamma(2.0, size=1001))
    np.testing.assert_allclose(
        quantile_edges(x, 10), np.quantile(x, np.arange(1, 10) / 10), rtol=1e-12
    )
    zero_inflated = np.sort(np.r_[np.zeros(500), rng.gamma(2.0, size=500)])
    edges = quantile_edges(zero_inflated, 10)
    assert edges[0] < 0 < edges[2]
    assert edges[1] == 0
    # negative values never seen in the reference are now visible to PSI
    assert psi(zero_inflated, -zero_inflated, bins=10) > 1


def test_psi_of_identical_samples_is_zero_and_grows_with_shift() -> None:
    x = np.random.default_rng(2).normal(size=5000)
    assert psi(x, x) == pytest.approx(0.0, abs=1e-12)
    assert 0 < psi(x, x + 0.2) < psi(x, x + 0.5) < psi(x, x + 1.0)


def test_psi_of_a_constant_reference() -> None:
    reference = np.full(100, 3.0)
    assert psi(reference, np.full(50, 3.0)) == pytest.approx(0.0)
    assert psi(reference, np.full(50, 2.0)) > 5
    assert psi(reference, np.full(50, 4.0)) > 5


def test_psi_categorical_hand_example_with_unseen_bucket() -> None:
    reference = ["a"] * 50 + ["b"] * 30 + ["c"] * 20
    current = ["a"] * 20 + ["b"] * 30 + ["c"] * 30 + ["d"] * 20
    expected = _direct_psi([0.5, 0.3, 0.2, 0.0], [0.2, 0.3, 0.3, 0.2])
    assert psi_categorical(reference, current) == pytest.approx(expected, rel=1e-12)


# --- KS ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n1", "n2", "shift", "integers"),
    [
        (600, 60, 0.0, False),  # exact p-value
        (5000, 300, 0.3, True),  # exact, ties
        (20_000, 15_000, 0.0, False),  # asymptotic
        (30_000, 12_000, 0.02, False),
        (25_000, 11_000, 0.0, True),  # asymptotic with heavy ties across samples
        (10_001, 40, 0.5, False),
    ],
)
def test_ks_matches_scipy(n1: int, n2: int, shift: float, integers: bool) -> None:
    rng = np.random.default_rng(n1 + n2)
    a = rng.normal(size=n1) * 5
    b = rng.normal(loc=shift, size=n2) * 5
    if integers:
        a, b = np.round(a), np.round(b)
    statistic, p_value = ks(a, b)
    expected = stats.ks_2samp(a, b)  # method="auto", as documented
    assert statistic == pytest.approx(expected.statistic, rel=1e-12, abs=1e-15)
    assert p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)


@pytest.mark.filterwarnings("ignore:ks_2samp. Exact calculation unsuccessful:RuntimeWarning")
@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(-5, 5), min_size=1, max_size=40),
    st.lists(st.integers(-5, 5), min_size=1, max_size=40),
)
def test_ks_matches_scipy_on_small_tied_samples(a: list[int], b: list[int]) -> None:
    statistic, p_value = ks(a, b)
    expected = stats.ks_2samp(a, b)
    assert statistic == pytest.approx(expected.statistic)
    assert p_value == pytest.approx(expected.pvalue)


# --- chi-square and Jensen–Shannon --------------------------------------------------------------


def test_chi_square_is_the_2xk_contingency_test_without_correction() -> None:
    rng = np.random.default_rng(3)
    reference = rng.choice(list("abcd"), p=[0.4, 0.3, 0.2, 0.1], size=700)
    current = rng.choice(list("abcde"), p=[0.3, 0.3, 0.2, 0.1, 0.1], size=300)
    # 'e' is unseen in the reference: its own column with a zero reference count
    table = np.array(
        [
            [np.sum(reference == k) for k in "abcde"],
            [np.sum(current == k) for k in "abcde"],
        ]
    )
    expected = stats.chi2_contingency(table, correction=False)
    statistic, p_value = chi_square(reference, current)
    assert statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert p_value == pytest.approx(expected.pvalue, rel=1e-9)
    assert math.isfinite(statistic)


def test_chi_square_with_a_single_category_is_no_evidence() -> None:
    assert chi_square(["a"] * 10, ["a"] * 3) == (0.0, 1.0)


def test_jensen_shannon_is_the_square_of_scipys_base2_distance() -> None:
    rng = np.random.default_rng(4)
    reference = rng.choice(list("abc"), p=[0.6, 0.3, 0.1], size=500)
    current = rng.choice(list("abcd"), p=[0.2, 0.3, 0.3, 0.2], size=400)
    p = np.array([np.mean(reference == k) for k in "abcd"])
    q = np.array([np.mean(current == k) for k in "abcd"])
    assert jensen_shannon(reference, current) == pytest.approx(
        jensenshannon(p, q, base=2) ** 2, rel=1e-12
    )
    assert jensen_shannon(["a", "b"], ["c", "d"]) == pytest.approx(1.0)
    assert jensen_shannon(["a", "b"], ["b", "a"]) == pytest.approx(0.0)


# --- compute_drift: no false alarms --------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_two_halves_of_breast_cancer_do_not_drift(cancer: pd.DataFrame, seed: int) -> None:
    shuffled = cancer.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    half = len(shuffled) // 2
    report = compute_drift(
        shuffled.iloc[:half], shuffled.iloc[half:], dict.fromkeys(cancer.columns, "numeric")
    )
    assert not report.drifted
    assert report.share_drifted < report.drift_share


@pytest.mark.parametrize("seed", range(8))
def test_small_window_from_the_same_distribution_does_not_drift(seed: int) -> None:
    rng = np.random.default_rng(seed)

    def sample(n: int) -> pd.DataFrame:
        data = {f"x{i}": rng.normal(size=n) for i in range(5)}
        data["c"] = rng.choice(list("abc"), p=[0.5, 0.3, 0.2], size=n)
        return pd.DataFrame(data)

    features = {f"x{i}": "numeric" for i in range(5)} | {"c": "categorical"}
    report = compute_drift(sample(600), sample(60), features)
    assert not report.drifted


def test_tiny_significant_shift_on_a_big_sample_is_not_drift() -> None:
    rng = np.random.default_rng(5)
    ref = pd.DataFrame({"x": rng.normal(size=200_000)})
    cur = pd.DataFrame({"x": rng.normal(loc=0.05, size=200_000)})
    report = compute_drift(ref, cur, {"x": "numeric"})
    (fd,) = report.features
    assert fd.p_value is not None
    assert fd.p_value < 1e-10
    assert fd.psi is not None
    assert fd.psi < 0.01
    assert not fd.drifted
    assert not report.drifted


# --- compute_drift: real drift -------------------------------------------------------------------


def test_mean_shift_of_one_std_drifts() -> None:
    rng = np.random.default_rng(6)
    ref = pd.DataFrame({"x": rng.normal(10, 2, size=600), "y": rng.normal(size=600)})
    cur = pd.DataFrame({"x": rng.normal(12, 2, size=300), "y": rng.normal(size=300)})
    report = compute_drift(ref, cur, {"x": "numeric", "y": "numeric"})
    assert report.drifted_features == ["x"]
    assert report.share_drifted == 0.5
    assert report.drifted
    x = report.features[0]
    assert x.statistic_name == "ks"
    assert x.js is None
    assert x.psi is not None
    assert x.psi >= 0.2


def test_scaling_most_breast_cancer_features_drifts(cancer: pd.DataFrame) -> None:
    shuffled = cancer.sample(frac=1.0, random_state=0).reset_index(drop=True)
    half = len(shuffled) // 2
    ref, cur = shuffled.iloc[:half], shuffled.iloc[half:].copy()
    scaled = list(cancer.columns[:25])
    cur[scaled] = cur[scaled] * 1.5
    report = compute_drift(ref, cur, dict.fromkeys(cancer.columns, "numeric"))
    assert report.drifted
    assert set(report.drifted_features) <= set(scaled)
    assert len(report.drifted_features) >= 20


def test_categorical_drift() -> None:
    rng = np.random.default_rng(7)
    ref = pd.DataFrame({"c": rng.choice(list("abc"), p=[0.5, 0.3, 0.2], size=2000)})
    same = pd.DataFrame({"c": rng.choice(list("abc"), p=[0.5, 0.3, 0.2], size=1000)})
    moved = pd.DataFrame({"c": rng.choice(list("abc"), p=[0.2, 0.3, 0.5], size=1000)})
    features = {"c": "categorical"}
    assert not compute_drift(ref, same, features).drifted
    report = compute_drift(ref, moved, features)
    (fd,) = report.features
    assert fd.drifted
    assert report.drifted
    assert fd.statistic_name == "chi_square"
    assert fd.js is not None
    assert 0 < fd.js < 1
    assert fd.histogram.categories == ["a", "b", "c"]
    assert sum(fd.histogram.current) == pytest.approx(1.0)


def test_unseen_categories_are_their_own_bucket() -> None:
    ref = pd.DataFrame({"c": ["a"] * 60 + ["b"] * 40})
    cur = pd.DataFrame({"c": ["a"] * 30 + ["b"] * 20 + ["zzz"] * 40 + ["yyy"] * 10})
    (fd,) = compute_drift(ref, cur, {"c": "categorical"}).features
    assert fd.unseen_categories == ["zzz", "yyy"]
    assert fd.histogram.categories == ["a", "b", "(unseen)"]
    assert fd.histogram.current == pytest.approx([0.3, 0.2, 0.5])
    assert fd.histogram.reference == pytest.approx([0.6, 0.4, 0.0])
    assert fd.statistic is not None
    assert math.isfinite(fd.statistic)
    assert fd.drifted
    expected = _direct_psi([0.6, 0.4, 0.0], [0.3, 0.2, 0.5])
    assert fd.psi == pytest.approx(expected)


def test_many_categories_are_summed_into_other_for_the_plot() -> None:
    ref = pd.DataFrame({"c": [f"k{i % 50}" for i in range(5000)]})
    (fd,) = compute_drift(ref, ref, {"c": "categorical"}).features
    cats = fd.histogram.categories or []
    assert len(cats) == 20
    assert cats[-1] == "(other)"
    assert sum(fd.histogram.reference) == pytest.approx(1.0)
    assert fd.psi == pytest.approx(0.0)
    assert not fd.drifted


def test_nans_are_dropped_and_counted() -> None:
    rng = np.random.default_rng(8)
    x_ref = rng.normal(size=1000)
    x_cur = rng.normal(size=500)
    x_cur_dirty = x_cur.copy()
    x_cur_dirty[:50] = np.nan
    x_cur_dirty[50:53] = np.inf
    c_cur = pd.Series(["a", "b"] * 250, dtype=object)
    c_cur[:7] = None
    ref = pd.DataFrame({"x": x_ref, "c": ["a", "b"] * 500})
    cur = pd.DataFrame({"x": x_cur_dirty, "c": c_cur})
    features = {"x": "numeric", "c": "categorical"}
    x, c = compute_drift(ref, cur, features).features
    assert (x.n_current, x.nulls_current, x.n_reference, x.nulls_reference) == (447, 53, 1000, 0)
    assert (c.n_current, c.nulls_current) == (493, 7)
    assert (x.statistic, x.p_value) == ks(x_ref, x_cur[53:])
    assert x.psi == pytest.approx(psi(x_ref, x_cur[53:]))
    # nullable extension dtypes take the same path
    values = [None if np.isnan(v) else float(v) for v in x_cur_dirty]
    cur_ext = cur.assign(x=pd.array(values, dtype="Float64"))
    assert cur_ext["x"].isna().sum() == 50
    x_ext = compute_drift(ref, cur_ext, features).features[0]
    assert (x_ext.n_current, x_ext.nulls_current) == (447, 53)
    assert x_ext.statistic == x.statistic


def test_a_feature_with_no_current_values_is_reported_untested() -> None:
    ref = pd.DataFrame({"x": [1.0, 2.0, 3.0], "c": ["a", "b", "a"]})
    cur = pd.DataFrame({"x": [np.nan, np.nan], "c": [None, None]})
    report = compute_drift(ref, cur, {"x": "numeric", "c": "categorical"})
    for fd in report.features:
        assert fd.psi is None
        assert fd.p_value is None
        assert not fd.drifted
        assert fd.note
        assert "no values" in fd.note
        assert fd.n_current == 0
        assert fd.nulls_current == 2
    assert not report.drifted


def test_bonferroni_correction_over_the_features() -> None:
    # chi-square on [[100, 100], [120, 80]]: statistic 4.04, p ≈ 0.044
    ref = pd.DataFrame({"c": ["a"] * 100 + ["b"] * 100, "d": ["u", "v"] * 100})
    cur = pd.DataFrame({"c": ["a"] * 120 + ["b"] * 80, "d": ["u", "v"] * 100})
    one = compute_drift(ref, cur, {"c": "categorical"}, psi_threshold=0.0)
    assert one.features[0].p_value == pytest.approx(0.0444, abs=1e-3)
    assert one.drifted_features == ["c"]
    two = compute_drift(ref, cur, {"c": "categorical", "d": "categorical"}, psi_threshold=0.0)
    assert two.alpha_adjusted == pytest.approx(0.025)
    assert two.drifted_features == []


def test_report_serializes_and_reads_back() -> None:
    rng = np.random.default_rng(9)
    ref = pd.DataFrame({"x": rng.normal(size=300), "c": rng.choice(list("ab"), size=300)})
    cur = pd.DataFrame({"x": rng.normal(2, size=100), "c": rng.choice(list("abz"), size=100)})
    report = compute_drift(ref, cur, {"x": "numeric", "c": "categorical"})
    data = json.loads(json.dumps(report.to_dict()))
    assert data["drifted_features"] == report.drifted_features
    assert data["thresholds"]["alpha_adjusted"] == pytest.approx(0.025)
    assert DriftReport.from_dict(data) == report
    rows = report.rows()
    assert [list(r) for r in rows] == [list(ROW_COLUMNS)] * 2
    assert rows[0]["drifted"] == "yes"
    assert rows[1]["js"] != "-"
    hist = report.features[0].histogram
    assert hist.edges is not None
    assert len(hist.edges) == len(hist.reference) + 1
    with pytest.raises(InvalidInputError, match="not a drift report"):
        DriftReport.from_dict({"features": []})


# --- errors ------------------------------------------------------------------------------------


def test_missing_column_names_it() -> None:
    ref = pd.DataFrame({"x": [1.0, 2.0], "age": [3.0, 4.0]})
    with pytest.raises(InvalidInputError, match="'age'") as info:
        compute_drift(ref, ref[["x"]], {"x": "numeric", "age": "numeric"})
    assert info.value.where == {"column": "age", "data": "current"}
    with pytest.raises(InvalidInputError, match="reference"):
        compute_drift(ref[["x"]], ref, {"age": "numeric"})


def test_empty_current_is_an_error() -> None:
    ref = pd.DataFrame({"x": [1.0, 2.0]})
    with pytest.raises(InvalidInputError, match="current data is empty"):
        compute_drift(ref, ref.iloc[:0], {"x": "numeric"})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"features": {}}, "no features"),
        ({"features": {"x": "text"}}, "expected 'numeric' or 'categorical'"),
        ({"features": {"s": "numeric"}}, "declare it 'categorical'"),
        ({"bins": 1}, "bins"),
        ({"bins": 2.5}, "bins"),
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 1.5}, "alpha"),
        ({"psi_threshold": -1}, "psi_threshold"),
        ({"psi_threshold": float("nan")}, "psi_threshold"),
        ({"drift_share": 0}, "drift_share"),
        ({"features": {"empty": "numeric"}}, "no values in the reference"),
        ({"features": {"empty": "categorical"}}, "no values in the reference"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "s": ["a", "b", "c"], "empty": [None] * 3})
    args: dict[str, object] = {"features": {"x": "numeric"}} | kwargs
    with pytest.raises(InvalidInputError, match=match):
        compute_drift(frame, frame, **args)  # type: ignore[arg-type]


def test_statistics_reject_empty_samples() -> None:
    with pytest.raises(InvalidInputError, match="no finite values"):
        psi([1.0, 2.0], [np.nan])
    with pytest.raises(InvalidInputError, match="no values"):
        chi_square(["a"], [None])
    with pytest.raises(InvalidInputError, match="declare it 'categorical'"):
        ks(["a", "b"], [1.0])


# --- windows too small to decide ----------------------------------------------------------------


def test_a_window_under_the_minimum_is_insufficient_data_not_a_verdict() -> None:
    rng = np.random.default_rng(3)
    ref = pd.DataFrame({"x": rng.normal(size=600), "c": rng.choice(list("ab"), size=600)})
    cur = pd.DataFrame({"x": rng.normal(5, size=12), "c": ["b"] * 12})  # far off, but 12 rows
    report = compute_drift(ref, cur, {"x": "numeric", "c": "categorical"})
    assert not report.drifted and report.drifted_features == []
    assert report.verdict == "insufficient data"
    assert report.insufficient is not None
    assert "12 rows" in report.insufficient and "at least 30" in report.insufficient
    x = report.features[0]
    assert x.psi is not None and x.p_value is not None  # measured, shown, not decided
    assert x.note is not None and "at least 30" in x.note
    decided = compute_drift(ref, cur, {"x": "numeric", "c": "categorical"}, min_rows=10)
    assert decided.drifted and decided.verdict == "drift" and decided.insufficient is None
    back = DriftReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert back == report


def test_a_feature_with_too_few_values_is_not_decided() -> None:
    rng = np.random.default_rng(4)
    ref = pd.DataFrame({"x": rng.normal(size=600), "y": rng.normal(size=600)})
    y = np.full(200, np.nan)
    y[:10] = 9.0  # 10 values, far off
    cur = pd.DataFrame({"x": rng.normal(3, size=200), "y": y})
    report = compute_drift(ref, cur, {"x": "numeric", "y": "numeric"})
    assert report.drifted_features == ["x"]
    fy = report.features[1]
    assert not fy.drifted and "10 values" in (fy.note or "")
    assert report.verdict == "drift"


def test_an_old_report_without_the_minimum_reads_back() -> None:
    rng = np.random.default_rng(5)
    ref = pd.DataFrame({"x": rng.normal(size=300)})
    report = compute_drift(ref, ref.sample(100, random_state=0), {"x": "numeric"})
    data = report.to_dict()
    del data["insufficient"], data["thresholds"]["min_rows"]
    assert DriftReport.from_dict(data).verdict == "no drift"


def test_datetime_features_are_not_a_drift_kind() -> None:
    frame = pd.DataFrame({"t": pd.date_range("2024-01-01", periods=40, tz="UTC")})
    with pytest.raises(InvalidInputError, match="expected 'numeric' or 'categorical'"):
        compute_drift(frame, frame, {"t": "datetime"})
    with pytest.raises(InvalidInputError, match="min_rows"):
        compute_drift(frame, frame, {"t": "categorical"}, min_rows=0)
