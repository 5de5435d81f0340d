"""The paired comparison of two models on the same rows, checked against scikit-learn and
scipy, and by simulation (the interval covers a true zero difference about as often as it
says)."""

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm
from sklearn.datasets import load_breast_cancer
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from loopml.evaluate.compare import Scored, compare, metric_value


@pytest.fixture(scope="module")
def cancer_predictions() -> tuple[np.ndarray, Scored, Scored]:
    x, y = load_breast_cancer(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    good = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x_tr, y_tr)
    dummy = DummyClassifier(strategy="prior").fit(x_tr, y_tr)

    def scored(m: object) -> Scored:
        return Scored(m.predict(x_te), m.predict_proba(x_te), [0, 1])  # type: ignore[attr-defined]

    return y_te, scored(good), scored(dummy)


def test_metric_values_match_scikit_learn(cancer_predictions: tuple) -> None:
    y, good, _ = cancer_predictions
    assert metric_value("classification", "roc_auc", y, good) == pytest.approx(
        skm.roc_auc_score(y, good.probabilities[:, 1])
    )
    # the positive class counts: AUC of class 0 is the AUC of the flipped problem
    assert metric_value("classification", "roc_auc", y, good, positive=0) == pytest.approx(
        skm.roc_auc_score(y == 0, good.probabilities[:, 0])
    )
    assert metric_value("classification", "accuracy", y, good) == skm.accuracy_score(y, good.labels)
    assert metric_value("classification", "log_loss", y, good) == pytest.approx(
        skm.log_loss(y, good.probabilities)
    )
    assert metric_value("classification", "brier", y, good) == pytest.approx(
        skm.brier_score_loss(y, good.probabilities[:, 1])
    )
    assert metric_value("classification", "recall", y, good, positive=0) == pytest.approx(
        skm.recall_score(y, good.labels, pos_label=0)
    )
    assert metric_value("classification", "pr_auc", y, good) == pytest.approx(
        skm.average_precision_score(y, good.probabilities[:, 1])
    )


def test_a_dummy_is_clearly_worse(cancer_predictions: tuple) -> None:
    y, good, dummy = cancer_predictions
    c = compare("classification", "roc_auc", y, dummy, good, seed=1)
    assert c.challenger == pytest.approx(0.5)
    assert c.champion > 0.95
    assert c.improvement == pytest.approx(c.challenger - c.champion)
    assert c.ci_low < c.ci_high < 0
    assert c.p_value < 0.01
    assert c.rows == len(y)
    # the same seed gives the same interval
    assert compare("classification", "roc_auc", y, dummy, good, seed=1) == c


def test_lower_is_better_metrics_are_signed(cancer_predictions: tuple) -> None:
    y, good, dummy = cancer_predictions
    c = compare("classification", "log_loss", y, good, dummy, seed=0)
    assert c.challenger < c.champion
    assert c.improvement == pytest.approx(c.champion - c.challenger) and c.improvement > 0


def test_identical_models_do_not_differ(cancer_predictions: tuple) -> None:
    y, good, _ = cancer_predictions
    c = compare("classification", "roc_auc", y, good, good, n_bootstrap=200)
    assert c.improvement == 0 and c.ci_low == 0 and c.ci_high == 0


def test_mcnemar_for_accuracy(cancer_predictions: tuple) -> None:
    y, good, dummy = cancer_predictions
    c = compare("classification", "accuracy", y, good, dummy, n_bootstrap=100)
    b = int(np.sum((good.labels == y) & (dummy.labels != y)))
    k = int(np.sum((good.labels != y) & (dummy.labels == y)))
    assert c.p_value == pytest.approx(stats.binomtest(b, b + k, 0.5).pvalue)
    assert c.test.startswith("McNemar")


def test_regression_metrics() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=300)
    near = Scored(y + rng.normal(scale=0.1, size=300))
    far = Scored(y + rng.normal(scale=1.0, size=300))
    c = compare("regression", "rmse", y, near, far, n_bootstrap=300)
    assert c.champion == pytest.approx(np.sqrt(skm.mean_squared_error(y, far.labels)))
    assert c.improvement > 0 and c.ci_low > 0


def test_interval_covers_a_true_zero_difference_about_as_often_as_it_says() -> None:
    """Two models of equal skill (independent noise on the same signal): over many simulated
    holdouts the 95% interval of the AUC difference contains 0 about 95% of the time."""
    rng = np.random.default_rng(7)
    covered, n_sim = 0, 40
    for _ in range(n_sim):
        y = rng.integers(0, 2, 300)
        signal = y * 1.0

        def model(signal: np.ndarray = signal) -> Scored:
            s = 1 / (1 + np.exp(-(signal + rng.normal(scale=1.0, size=len(signal)))))
            return Scored((s >= 0.5).astype(int), np.column_stack([1 - s, s]), [0, 1])

        c = compare("classification", "roc_auc", y, model(), model(), n_bootstrap=100)
        covered += c.ci_low <= 0 <= c.ci_high
    assert 0.85 <= covered / n_sim <= 1.0


def _scored(score: np.ndarray) -> Scored:
    s = 1 / (1 + np.exp(-score))
    return Scored((s >= 0.5).astype(int), np.column_stack([1 - s, s]), [0, 1])


def test_an_edge_in_one_run_of_the_rows_is_certain_by_rows_but_not_by_blocks() -> None:
    """Traffic comes in correlated runs (a user's session, a day of storms). Here the two
    models are the same except on one run of 100 rows out of 2000, where the challenger is
    much better: resampling single rows calls that certain; resampling the 20 runs does not,
    since the next 2000 rows may hold no such run."""
    rng = np.random.default_rng(3)
    n = 2000
    y = rng.integers(0, 2, n)
    shared = y + rng.normal(scale=1.0, size=n)
    better = shared.copy()
    better[:100] = y[:100] + rng.normal(scale=0.2, size=100)
    new, old = _scored(better), _scored(shared)
    rows = compare("classification", "roc_auc", y, new, old, n_bootstrap=300)
    runs = compare("classification", "roc_auc", y, new, old, n_bootstrap=300, blocks=20)
    assert rows.improvement == runs.improvement > 0
    assert rows.ci_low > 0  # single rows: the edge looks certain
    assert runs.ci_low <= 0 < runs.ci_high  # runs: it may be absent from the next traffic
    assert "block bootstrap" in runs.test and "20 contiguous runs" in runs.test


def test_an_edge_on_every_run_stays_certain_by_blocks() -> None:
    rng = np.random.default_rng(4)
    n = 2000
    y = rng.integers(0, 2, n)
    worse = y + rng.normal(scale=1.0, size=n)
    better = y + rng.normal(scale=0.5, size=n)
    c = compare(
        "classification", "roc_auc", y, _scored(better), _scored(worse), n_bootstrap=300, blocks=20
    )
    assert c.ci_low > 0
    # more blocks than rows: runs of one row, the plain bootstrap's resampling
    a, b = _scored(better[:30]), _scored(worse[:30])
    tiny = compare("classification", "roc_auc", y[:30], a, b, n_bootstrap=50, blocks=99)
    assert "30 contiguous runs" in tiny.test
