"""The evaluation report's numbers (checked against scikit-learn) and its HTML (escaped, no
external assets, no scripts)."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import train_test_split

from loopml.evaluate.diagnostics import (
    classification_diagnostics,
    native_importances,
    permutation_importances,
    regression_diagnostics,
)
from loopml.evaluate.report import render_comparison_html, render_evaluation_html
from loopml.evaluate.runs import compare_runs, flatten
from loopml.stores.records import Run
from loopml.utils import utcnow

EVIL = '<script>alert("x")</script>&'


@pytest.fixture(scope="module")
def cancer() -> tuple[pd.DataFrame, pd.Series, pd.DataFrame, pd.Series, LogisticRegression]:
    x, y = load_breast_cancer(return_X_y=True, as_frame=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    model = LogisticRegression(max_iter=5000).fit(x_tr, y_tr)
    return x_tr, y_tr, x_te, y_te, model


def test_curves_and_confusion_match_scikit_learn(cancer) -> None:  # type: ignore[no-untyped-def]
    _, _, x_te, y_te, model = cancer
    proba = model.predict_proba(x_te)
    labels = model.predict(x_te)
    d = classification_diagnostics(y_te, labels, proba, [0, 1], positive=1)
    assert d["roc"]["auc"] == pytest.approx(skm.roc_auc_score(y_te, proba[:, 1]))
    assert d["pr"]["average_precision"] == pytest.approx(
        skm.average_precision_score(y_te, proba[:, 1])
    )
    assert d["confusion"]["matrix"] == skm.confusion_matrix(y_te, labels).tolist()
    assert sum(b["count"] for b in d["calibration"]) == len(y_te)
    assert d["roc"]["fpr"][0] == 0 and d["roc"]["tpr"][-1] == 1
    # the other class as positive: its curve, not the last label's
    other = classification_diagnostics(y_te, labels, proba, [0, 1], positive=0)
    assert other["roc"]["auc"] == pytest.approx(skm.roc_auc_score(y_te == 0, proba[:, 0]))


def test_a_long_curve_is_thinned() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 50_000)
    p = np.clip(y * 0.3 + rng.random(50_000) * 0.7, 0, 1)
    d = classification_diagnostics(y, (p > 0.5).astype(int), np.column_stack([1 - p, p]), [0, 1], 1)
    assert len(d["roc"]["fpr"]) <= 200 and len(d["pr"]["recall"]) <= 200


def test_native_importances(cancer) -> None:  # type: ignore[no-untyped-def]
    x_tr, y_tr, _, _, model = cancer
    names = list(x_tr.columns)
    coef = native_importances(model, names)
    assert coef[0]["kind"] == "|coefficient|"
    assert coef[0]["value"] == pytest.approx(np.abs(model.coef_).max())
    forest = RandomForestClassifier(n_estimators=20, random_state=0).fit(x_tr, y_tr)
    top = native_importances(forest, names)
    assert top[0]["feature"] == names[int(np.argmax(forest.feature_importances_))]
    assert native_importances(object(), names) == []
    assert native_importances(model, names[:3]) == []  # names that do not fit: none


def test_permutation_importance_is_seeded_and_finds_the_signal() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"signal": rng.normal(size=3000), "noise": rng.normal(size=3000)})
    y = (frame["signal"] > 0).astype(int).to_numpy()

    def score(x: pd.DataFrame, yy: np.ndarray) -> float:
        return float(((x["signal"] > 0).astype(int).to_numpy() == yy).mean())

    first = permutation_importances(frame, y, score, seed=3, rows=500)
    assert [p["feature"] for p in first] == ["signal", "noise"]
    assert first[0]["mean"] > 0.3 and first[1]["mean"] == 0
    assert permutation_importances(frame, y, score, seed=3, rows=500) == first


def test_regression_diagnostics() -> None:
    x, y = load_diabetes(return_X_y=True)
    pred = LinearRegression().fit(x, y).predict(x)
    d = regression_diagnostics(y, pred)
    assert len(d["scatter"]["actual"]) == 400
    assert d["residual_quantiles"]["0.5"] == pytest.approx(np.median(y - pred))
    page = render_evaluation_html(
        {"model": "diabetes@1", "metrics": {"rmse": 1.0}, "diagnostics": d}
    )
    assert "predicted against actual" in page and "<circle" in page


def test_the_page_escapes_everything_and_loads_nothing(cancer) -> None:  # type: ignore[no-untyped-def]
    _, _, x_te, y_te, model = cancer
    proba = model.predict_proba(x_te)
    labels = np.where(model.predict(x_te) == 1, EVIL, "b")
    truth = np.where(y_te == 1, EVIL, "b")
    diagnostics = classification_diagnostics(truth, labels, proba[:, ::-1], ["b", EVIL], EVIL)
    doc = {
        "title": EVIL,
        "model": f"m{EVIL}@1",
        "metrics": {"roc_auc": 0.9},
        "warnings": [EVIL],
        "diagnostics": diagnostics,
        "importances": {
            "native": [{"feature": EVIL, "value": 1.0, "kind": EVIL}],
            "permutation": [{"feature": EVIL, "mean": 0.1, "std": 0.01}],
        },
        "slices": {
            "metric": "roc_auc",
            "overall": 0.9,
            "rule": {"worse_by": 0.05, "min_rows": 30},
            "columns": {
                EVIL: [{"slice": EVIL, "rows": 40, "value": 0.7, "delta": -0.2, "flagged": True}]
            },
            "flagged": [],
        },
        "champion": {"model": EVIL, "metrics": {"roc_auc": 0.8}, "diagnostics": diagnostics},
    }
    page = render_evaluation_html(doc)
    assert "<script" not in page and "&lt;script&gt;" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    for part in (
        "ROC curve",
        "precision-recall",
        "calibration",
        "Confusion matrix",
        "Permutation importance",
        "Model importances",
        "Metric per slice",
    ):
        assert part in page, part
    assert page.count("<svg") == 5  # ROC, PR, calibration, two importance charts
    assert page.count('class="differs"') == 1  # the flagged slice


def _run(run_id: str, c: float, auc: float) -> Run:
    return Run(
        id=run_id,
        name="cancer",
        status="succeeded",
        started_at=utcnow(),
        params={"estimator": {"C": c, "max_iter": 100}, "note": EVIL},
        metrics={"metric": "roc_auc", "holdout": {"roc_auc": auc}, "report": f"r/{run_id}"},
    )


def test_comparison_marks_differences_and_escapes() -> None:
    runs = [_run("a" * 32, 1.0, 0.9), _run("b" * 32, 0.1, 0.9), replace(_run("c" * 32, 1.0, 0.8))]
    cmp = compare_runs(runs)
    params = dict(cmp.params)
    assert params["estimator.C"] == [1.0, 0.1, 1.0] and cmp.differs(params["estimator.C"])
    assert not cmp.differs(params["estimator.max_iter"])
    assert "report" not in dict(cmp.metrics)  # a path, not a score
    page = render_comparison_html(cmp)
    assert page.count('class="differs"') == 2  # C and holdout.roc_auc
    assert "<script" not in page and "&lt;script&gt;" in page


def test_flatten() -> None:
    got = flatten({"a": {"b": 1, "c": [1, 2]}, "d": list(range(20)), "champion_metrics": {}})
    assert got == {"a.b": 1, "a.c": "[1, 2]", "d": "[20 items]"}
