import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from loopml.errors import ConfigError, InvalidInputError
from loopml.evaluate import Gate, compute_metrics, cross_validate, folds, holdout_split


def test_binary_metrics_match_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p1 = np.clip(y * 0.6 + rng.normal(0.2, 0.25, 200), 0, 1)
    proba = np.column_stack([1 - p1, p1])
    labels = (p1 > 0.5).astype(int)
    m = compute_metrics("classification", y, labels, proba, [0, 1])
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p1))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, labels))
    assert m["f1"] == pytest.approx(skm.f1_score(y, labels))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, proba))


def test_multiclass_and_regression_metrics() -> None:
    y = np.array(["a", "b", "c", "a", "b", "c"])
    proba = np.eye(3)[[0, 1, 2, 0, 2, 1]] * 0.8 + 0.2 / 3
    labels = np.array(["a", "b", "c", "a", "c", "b"])
    m = compute_metrics("classification", y, labels, proba, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["roc_auc"] == pytest.approx(
        skm.roc_auc_score(y, proba, multi_class="ovr", labels=["a", "b", "c"])
    )
    r = compute_metrics("regression", [1.0, 2.0, 3.0], [1.5, 2.0, 2.0])
    assert r["mae"] == pytest.approx(0.5)
    assert r["rmse"] == pytest.approx(np.sqrt((0.25 + 1) / 3))


def test_gate_parse_and_check() -> None:
    gate = Gate.parse("roc_auc >= 0.9 and cv.accuracy > 0.8")
    assert gate.check({"roc_auc": 0.95, "cv.accuracy": 0.9})[0]
    ok, reason = gate.check({"roc_auc": 0.85, "cv.accuracy": 0.9})
    assert not ok
    assert "roc_auc = 0.8500, needs >= 0.9" in reason
    ok, reason = gate.check({"roc_auc": 0.95})
    assert not ok
    assert "cv.accuracy was not computed" in reason
    assert Gate.parse(None).check({})[0]
    with pytest.raises(ConfigError, match="cannot read"):
        Gate.parse("roc_auc is high")


def test_folds_are_stratified_and_cover_every_row() -> None:
    y = pd.Series([0] * 40 + [1] * 10)
    splits = folds(y, n_folds=5, task="classification", seed=0)
    seen = np.concatenate([te for _, te in splits])
    assert sorted(seen) == list(range(50))
    assert all(y.iloc[te].sum() == 2 for _, te in splits)
    with pytest.raises(InvalidInputError):
        folds(y.head(3), n_folds=5, task="classification", seed=0)


def test_cross_validate_aggregates_mean_and_spread() -> None:
    x = pd.DataFrame({"a": np.arange(30.0)})
    y = pd.Series(np.arange(30) % 2)
    calls = []

    def fit_score(xa, ya, xb, yb):  # type: ignore[no-untyped-def]
        calls.append(len(xb))
        return {"n": float(len(xb))}

    out = cross_validate(x, y, fit_score, n_folds=3, task="classification", seed=1)
    assert calls == [10, 10, 10]
    assert out["n"] == {"mean": 10.0, "std": 0.0, "min": 10.0, "max": 10.0}
    _x_tr, x_ho, _, y_ho = holdout_split(x, y, fraction=0.2, task="classification", seed=0)
    assert len(x_ho) == 6
    assert y_ho.sum() == 3
