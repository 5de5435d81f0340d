"""The one-pass classification metrics against scikit-learn's functions, case by case."""

import functools
from typing import Any

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.linear_model import LogisticRegression

from loopml.evaluate import metrics as m
from loopml.evaluate.metrics import compute_metrics


def _scikit_learn(y: Any, pred: Any, proba: Any, classes: list[Any], positive: Any = None):  # type: ignore[no-untyped-def]
    """What compute_metrics gave before the one-pass path: a scikit-learn call per metric."""
    pos = m.positive_class(classes, positive) if len(classes) == 2 else 1
    return m._with_scikit_learn(np.asarray(y), np.asarray(pred), proba, list(classes), pos)


def _same(got: dict[str, float], expect: dict[str, float]) -> None:
    assert set(got) == set(expect)
    for name, value in expect.items():
        assert got[name] == pytest.approx(value, rel=0, abs=1e-12), name


@functools.cache
def _cancer() -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Any]]:
    x, y = load_breast_cancer(return_X_y=True)
    x = (x - x[:300].mean(axis=0)) / x[:300].std(axis=0)  # scaled: the fit converges at once
    labels = np.where(y == 1, "benign", "malignant")
    model = LogisticRegression(C=0.05).fit(x[:300], labels[:300])
    return labels[300:], model.predict(x[300:]), model.predict_proba(x[300:]), list(model.classes_)


def _iris() -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Any]]:
    x, y = load_iris(return_X_y=True)
    rng = np.random.default_rng(1)
    x = x + rng.normal(0, 1.2, x.shape)
    order = rng.permutation(len(y))
    model = LogisticRegression(max_iter=5000).fit(x[order[:80]], y[order[:80]])
    rest = order[80:]
    return y[rest], model.predict(x[rest]), model.predict_proba(x[rest]), [0, 1, 2]


@pytest.mark.parametrize("positive", [None, "malignant", "benign"])
def test_binary_equals_scikit_learn(positive: Any) -> None:
    y, pred, proba, classes = _cancer()
    got = m._one_pass(y, pred, proba, classes, m.positive_class(classes, positive))
    assert got is not None  # the plain case takes the one-pass path
    _same(got, _scikit_learn(y, pred, proba, classes, positive))
    # the scikit-learn functions themselves, for the ranking metrics
    pos = m.positive_class(classes, positive)
    p = proba[:, classes.index(pos)]
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y == pos, p), abs=1e-12)
    assert got["pr_auc"] == pytest.approx(skm.average_precision_score(y == pos, p), abs=1e-12)
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, proba, labels=classes), abs=1e-12)


def test_binary_with_tied_scores_and_integer_labels() -> None:
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 3000)
    score = np.round(np.clip(0.35 * y + rng.random(3000) * 0.65, 0, 1), 1)  # ties in groups
    proba = np.column_stack([1 - score, score])
    pred = (score >= 0.5).astype(int)
    for positive in (None, 0):
        pos = m.positive_class([0, 1], positive)
        got = m._one_pass(y, pred, proba, [0, 1], pos)
        assert got is not None
        _same(got, _scikit_learn(y, pred, proba, [0, 1], positive))


def test_binary_edge_cases() -> None:
    y = np.array(["a", "a", "b", "b", "b"])
    proba = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.5, 0.5], [0.0, 1.0]])
    for pred in (
        np.array(["a", "a", "b", "b", "b"]),  # perfect
        np.array(["b"] * 5),  # one class predicted: precision of "a" is 0/0
        np.array(["a"] * 5),
    ):
        got = m._one_pass(y, pred, proba, ["a", "b"], "b")
        assert got is not None
        _same(got, _scikit_learn(y, pred, proba, ["a", "b"]))
    one = np.array(["b"] * 4)  # a single class in the labels: no AUC, as before
    got = m._one_pass(one, one, proba[:4], ["a", "b"], "b")
    assert got is not None and "roc_auc" not in got
    _same(got, _scikit_learn(one, one, proba[:4], ["a", "b"]))
    got = m._one_pass(y, y, None, ["a", "b"], "b")  # labels only
    assert got is not None
    _same(got, _scikit_learn(y, y, None, ["a", "b"]))


def test_multiclass_equals_scikit_learn() -> None:
    y, pred, proba, classes = _iris()
    got = m._one_pass(y, pred, proba, classes, None)
    assert got is not None
    _same(got, _scikit_learn(y, pred, proba, classes))
    assert got["roc_auc_ovr"] == pytest.approx(
        skm.roc_auc_score(y, proba, multi_class="ovr"), abs=1e-12
    )


def test_multiclass_with_a_class_missing_from_labels_or_predictions() -> None:
    y, pred, proba, _ = _iris()
    classes = [0, 1, 2, 3]  # class 3 never occurs: the macro plain average leaves it out
    wide = np.column_stack([proba * 0.9, np.full(len(y), 0.1)])
    got = m._one_pass(y, pred, wide, classes, None)
    assert got is not None and "roc_auc" not in got
    _same(got, _scikit_learn(y, pred, wide, classes))
    no_two = y != 2  # labels without class 2, predictions with it
    got = m._one_pass(y[no_two], pred[no_two], proba[no_two], [0, 1, 2], None)
    assert got is not None
    _same(got, _scikit_learn(y[no_two], pred[no_two], proba[no_two], [0, 1, 2]))


def test_other_cases_go_through_scikit_learn() -> None:
    y, pred, proba, classes = _cancer()
    assert m._one_pass(y, pred, proba[:, ::-1], classes[::-1], "benign") is None  # unsorted
    assert m._one_pass(y, pred, proba, ["benign", "other"], "benign") is None  # unknown label
    assert m._one_pass(y, pred, proba * 1.5, classes, "benign") is None  # not probabilities
    # and compute_metrics then answers what scikit-learn does
    _same(
        compute_metrics("classification", y, pred, proba[:, ::-1], classes[::-1]),
        _scikit_learn(y, pred, proba[:, ::-1], classes[::-1]),
    )
    with pytest.raises(ValueError, match="greater than 1"):
        compute_metrics("classification", y, pred, proba * 1.5, classes)


def test_large_holdout_equals_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    n = 40_000
    y = rng.integers(0, 2, n)
    score = np.clip(0.3 * y + rng.random(n) * 0.7, 0, 1)
    proba = np.column_stack([1 - score, score])
    pred = (score > 0.5).astype(int)
    _same(
        compute_metrics("classification", y, pred, proba, [0, 1]),
        _scikit_learn(y, pred, proba, [0, 1]),
    )


def test_confusion_matrix_equals_scikit_learn() -> None:
    y, pred, _, classes = _iris()
    assert m.confusion(y, pred, classes)["matrix"] == skm.confusion_matrix(y, pred).tolist()
    assert m._counts(y, pred, classes) is not None  # counted, not through scikit-learn
    wide = m.confusion(y, pred, [0, 1, 2, 3])["matrix"]  # a class never seen: zeros
    assert wide == skm.confusion_matrix(y, pred, labels=[0, 1, 2, 3]).tolist()
    yc, pc, _, cc = _cancer()
    assert m.confusion(yc, pc, cc)["matrix"] == skm.confusion_matrix(yc, pc, labels=cc).tolist()
    # unsorted classes and labels outside them go through scikit-learn, as before
    back = cc[::-1]
    assert m._counts(yc, pc, back) is None
    assert m.confusion(yc, pc, back)["matrix"] == skm.confusion_matrix(yc, pc, labels=back).tolist()
    assert m.confusion(yc, pc, ["benign"])["matrix"] == [
        [int((pc[yc == "benign"] == "benign").sum())]
    ]
