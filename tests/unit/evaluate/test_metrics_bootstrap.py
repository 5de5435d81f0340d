"""Every metric against scikit-learn, and the bootstrap's vectorised metrics against them."""

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression

from loopml.errors import InvalidInputError
from loopml.evaluate import bootstrap as bootstrap_module
from loopml.evaluate.bootstrap import bootstrap_ci, bootstrap_values
from loopml.evaluate.metrics import (
    CLASSIFICATION_METRICS,
    REGRESSION_METRICS,
    compute_metrics,
    confusion,
)


def _binary():  # type: ignore[no-untyped-def]
    x, y = load_breast_cancer(return_X_y=True)
    labels = np.where(y == 1, "benign", "malignant")
    model = LogisticRegression(max_iter=5000).fit(x[:400], labels[:400])
    proba = model.predict_proba(x[400:])
    return labels[400:], model.predict(x[400:]), proba, list(model.classes_)


def _multiclass():  # type: ignore[no-untyped-def]
    x, y = load_iris(return_X_y=True)
    rng = np.random.default_rng(0)
    x = x + rng.normal(0, 1.0, x.shape)  # noisy, so no metric is a perfect 1
    order = rng.permutation(len(y))
    x, y = x[order], y[order]
    model = LogisticRegression(max_iter=5000).fit(x[:90], y[:90])
    return y[90:], model.predict(x[90:]), model.predict_proba(x[90:]), [0, 1, 2]


def test_binary_metrics_match_scikit_learn_with_a_declared_positive() -> None:
    y, pred, proba, classes = _binary()
    m = compute_metrics("classification", y, pred, proba, classes, positive="malignant")
    pos, p = "malignant", proba[:, classes.index("malignant")]
    assert set(m) == set(CLASSIFICATION_METRICS)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred, pos_label=pos))
    assert m["recall"] == pytest.approx(skm.recall_score(y, pred, pos_label=pos))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred, pos_label=pos))
    assert m["f1_macro"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert m["recall_weighted"] == pytest.approx(skm.recall_score(y, pred, average="weighted"))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y == pos, p))
    assert m["pr_auc"] == pytest.approx(skm.average_precision_score(y == pos, p))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, proba, labels=classes))
    assert m["brier"] == pytest.approx(skm.brier_score_loss(y == pos, p))
    # the default stays the last class (backwards compatible)
    default = compute_metrics("classification", y, pred, proba, classes)
    assert default["recall"] == pytest.approx(skm.recall_score(y, pred, pos_label="malignant"))
    other = compute_metrics("classification", y, pred, proba, classes, positive="benign")
    assert other["recall"] == pytest.approx(skm.recall_score(y, pred, pos_label="benign"))
    assert other["roc_auc"] == pytest.approx(m["roc_auc"])
    with pytest.raises(InvalidInputError, match="positive class"):
        compute_metrics("classification", y, pred, proba, classes, positive="paid")


def test_multiclass_averages_match_scikit_learn() -> None:
    y, pred, proba, classes = _multiclass()
    m = compute_metrics("classification", y, pred, proba, classes)
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert m["f1_weighted"] == pytest.approx(skm.f1_score(y, pred, average="weighted"))
    assert m["precision_macro"] == pytest.approx(skm.precision_score(y, pred, average="macro"))
    assert m["roc_auc_ovr"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr"))
    assert m["roc_auc_ovr_weighted"] == pytest.approx(
        skm.roc_auc_score(y, proba, multi_class="ovr", average="weighted")
    )
    onehot = np.eye(3)[y]
    assert m["pr_auc"] == pytest.approx(skm.average_precision_score(onehot, proba))
    assert "brier" not in m
    cm = confusion(y, pred, classes)
    assert cm["labels"] == [0, 1, 2]
    assert cm["matrix"] == skm.confusion_matrix(y, pred, labels=classes).tolist()


def test_regression_metrics_match_scikit_learn() -> None:
    x, y = load_diabetes(return_X_y=True)
    pred = LinearRegression().fit(x[:300], y[:300]).predict(x[300:])
    m = compute_metrics("regression", y[300:], pred)
    assert set(m) == set(REGRESSION_METRICS)
    assert m["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y[300:], pred)))
    assert m["mae"] == pytest.approx(skm.mean_absolute_error(y[300:], pred))
    assert m["mape"] == pytest.approx(skm.mean_absolute_percentage_error(y[300:], pred))
    assert m["r2"] == pytest.approx(skm.r2_score(y[300:], pred))


def _digits():  # type: ignore[no-untyped-def]
    """Ten classes: up to 121 (true, predicted) pairs, more than one matrix product counts."""
    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(1)
    x = x + rng.normal(0, 6.0, x.shape)  # noisy, so the confusion matrix is not diagonal
    model = LogisticRegression(max_iter=300).fit(x[:1000], y[:1000])
    return y[1000:], model.predict(x[1000:]), model.predict_proba(x[1000:]), list(range(10))


@pytest.mark.parametrize(
    "case",
    ["binary", "binary_ties", "multiclass", "regression", "wide", "binary_runs", "multiclass_runs"],
)
def test_bootstrap_metrics_equal_compute_metrics_on_each_resample(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if case.endswith("_runs"):  # the sorted-runs path that large holdouts take
        monkeypatch.setattr(bootstrap_module, "MAX_PAIRS", 0)
        case = case.removesuffix("_runs")
    if case == "wide":
        y, pred, proba, classes = _digits()
        assert len(np.unique(y * 11 + pred)) > bootstrap_module.MAX_PAIRS
        task, positive = "classification", None
    elif case == "regression":
        x, yr = load_diabetes(return_X_y=True)
        y, pred = yr[300:], LinearRegression().fit(x[:300], yr[:300]).predict(x[300:])
        task, proba, classes, positive = "regression", None, None, None
    else:
        y, pred, proba, classes = _multiclass() if case == "multiclass" else _binary()
        task, positive = "classification", (None if case == "multiclass" else "malignant")
        if case == "binary_ties":  # scores tied in groups, as a shallow tree gives them
            top = np.round(proba[:, 0], 1)
            proba = np.column_stack([top, 1 - top])
    rng = np.random.default_rng(3)
    draws = [np.arange(len(y))] + [rng.integers(0, len(y), len(y)) for _ in range(4)]
    w = np.stack([np.bincount(d, minlength=len(y)) for d in draws])
    values = bootstrap_values(task, y, pred, proba, classes, positive=positive, weights=w)
    for b, d in enumerate(draws):
        expect = compute_metrics(
            task, y[d], pred[d], None if proba is None else proba[d], classes, positive=positive
        )
        assert set(values) == set(expect)
        for name, v in expect.items():
            assert values[name][b] == pytest.approx(v, rel=1e-9, abs=1e-12), (name, b)


def test_bootstrap_ci_is_seeded_and_brackets_the_holdout_value() -> None:
    y, pred, proba, classes = _binary()
    ci = bootstrap_ci("classification", y, pred, proba, classes, resamples=300, seed=7)
    again = bootstrap_ci("classification", y, pred, proba, classes, resamples=300, seed=7)
    assert ci == again
    m = compute_metrics("classification", y, pred, proba, classes)
    for name in ("accuracy", "roc_auc", "log_loss", "f1"):
        lo, hi = ci[name]
        assert lo <= m[name] <= hi
        assert lo < hi
    assert bootstrap_ci("classification", y, pred, proba, classes, seed=8) != ci


def test_a_large_multiclass_holdout_is_bootstrapped_in_bounded_memory() -> None:
    """Defect: the one-hot (true, predicted) columns were built for the whole holdout (n x
    pairs floats, twice over), 1.6 GB more at 2M rows x 7 classes; they are now used only
    while they fit in MAX_CELLS, as the draws do, and large holdouts are summed by runs."""
    import tracemalloc

    n, k = 200_000, 8  # 64 pairs: the most one product counts
    rng = np.random.default_rng(0)
    y = rng.integers(0, k, n)
    pred = np.where(rng.random(n) < 0.6, y, rng.integers(0, k, n))
    onehot_bytes = n * len(np.unique(y * (k + 1) + pred)) * 8  # 102 MB
    tracemalloc.start()
    try:
        values = bootstrap_values("classification", y, pred, None, list(range(k)), resamples=20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1.5 * onehot_bytes, f"peak {peak / 2**20:.0f} MiB"
    assert values["accuracy"].shape == (20,)
    assert np.all(np.abs(values["accuracy"] - np.mean(y == pred)) < 0.01)
