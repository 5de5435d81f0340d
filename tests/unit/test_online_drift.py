"""Drift detectors and prequential metrics: parity with River and scikit-learn, and a state
that resumes mid-stream exactly."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

pytest.importorskip("river")

from river import drift
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

from loopml.errors import ConfigError, IntegrityError, InvalidInputError
from loopml.train.online import DriftDetector, Prequential
from loopml.train.online.drift import Adwin


def _streams() -> dict[str, list[float]]:
    r = random.Random(7)
    return {
        "bernoulli shift": [float(r.random() < (0.2 if i < 3000 else 0.5)) for i in range(6000)],
        "gaussian shift": [r.gauss(0.0 if i < 2000 else 1.5, 1.0) for i in range(4000)],
        "stationary": [r.random() for _ in range(8000)],
        "several": [float(r.random() < (0.1, 0.4, 0.15, 0.6)[i // 2000]) for i in range(8000)],
    }


@pytest.mark.parametrize(
    "params",
    [{}, {"clock": 1}, {"delta": 0.05, "clock": 8, "max_buckets": 3, "min_window_length": 3,
                        "grace_period": 20}],
)  # fmt: skip
def test_adwin_detects_where_rivers_does(params: dict[str, Any]) -> None:
    for name, values in _streams().items():
        theirs, ours = drift.ADWIN(**params), Adwin(**params)
        found_theirs, found_ours = [], []
        for i, v in enumerate(values):
            theirs.update(v)
            if theirs.drift_detected:
                found_theirs.append(i)
            if ours.update(v):
                found_ours.append(i)
        assert found_ours == found_theirs, name
        assert (ours.width, ours.total, ours.variance) == (
            theirs.width,
            theirs.total,
            theirs.variance,
        )
        if name != "stationary":
            assert found_ours, f"{name}: a shift must be found"


@pytest.mark.parametrize("kind", ["adwin", "page_hinkley", "error_window"])
def test_state_resumes_mid_stream(kind: str) -> None:
    values = _streams()["several"]
    params = {"window": 300} if kind == "error_window" else {}
    whole = DriftDetector(kind, **params)
    first = DriftDetector(kind, **params)
    hits_whole = [i for i, v in enumerate(values) if whole.update(v)]
    hits = [i for i, v in enumerate(values[:3333]) if first.update(v)]
    resumed = DriftDetector.from_state(first.state())
    assert resumed.state() == first.state()
    hits += [3333 + i for i, v in enumerate(values[3333:]) if resumed.update(v)]
    assert hits == hits_whole and hits_whole
    assert resumed.detections == whole.detections == len(hits)
    assert resumed.state() == whole.state()


def test_page_hinkley_is_rivers() -> None:
    values = _streams()["gaussian shift"]
    ours, theirs = DriftDetector("page_hinkley", threshold=20.0), drift.PageHinkley(threshold=20.0)
    found = []
    for i, v in enumerate(values):
        theirs.update(v)
        assert ours.update(v) == theirs.drift_detected, i
        if theirs.drift_detected:
            found.append(i)
    assert found


def test_error_window_finds_a_rise_and_not_noise() -> None:
    r = random.Random(3)
    det = DriftDetector("error_window", window=400, alpha=0.001)
    flat = [float(r.random() < 0.2) for _ in range(4000)]
    assert not any(det.update(v) for v in flat)
    risen = [float(r.random() < 0.45) for _ in range(800)]
    hits = [i for i, v in enumerate(risen) if det.update(v)]
    assert hits and hits[0] < 600  # found within the new window
    assert det.last_detection == 4000 + hits[0] + 1


def test_detector_errors() -> None:
    with pytest.raises(ConfigError, match="kswin"):
        DriftDetector("kswin")
    with pytest.raises(ConfigError, match="not a parameter") as info:
        DriftDetector("adwin", window=3)
    assert info.value.where == {"field": "online.drift.window"}
    with pytest.raises(ConfigError, match="refused"):
        DriftDetector("page_hinkley", mode="sideways")
    with pytest.raises(InvalidInputError, match="finite"):
        DriftDetector("adwin").update(float("nan"))
    with pytest.raises(IntegrityError, match="damaged"):
        DriftDetector.from_state({"detector": "adwin"})
    assert DriftDetector.from_spec(None) is None
    assert DriftDetector.from_spec({"detector": "adwin", "delta": 0.01}).params["delta"] == 0.01


# -- prequential metrics --------------------------------------------------------------------


def _classified(n: int, seed: int = 0) -> list[tuple[bool, bool, dict[bool, float]]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        y = bool(rng.random() < 0.4)
        p = float(np.clip(rng.normal(0.65 if y else 0.35, 0.2), 0.0, 1.0))
        out.append((y, p >= 0.5, {False: 1.0 - p, True: p}))
    return out


def test_classification_metrics_match_scikit_learn() -> None:
    events = _classified(3000)
    m = Prequential("classification", window=500)
    errors = [m.update(y, pred, proba) for y, pred, proba in events]
    snap = m.snapshot()
    ys = np.asarray([e[0] for e in events])
    preds = np.asarray([e[1] for e in events])
    ps = np.asarray([e[2][True] for e in events])
    assert errors == [float(p != y) for y, p in zip(ys, preds, strict=True)]
    assert snap["events"] == 3000
    cum, win = snap["cumulative"], snap["window"]
    assert cum["accuracy"] == pytest.approx(accuracy_score(ys, preds), abs=1e-12)
    assert win["accuracy"] == pytest.approx(accuracy_score(ys[-500:], preds[-500:]), abs=1e-12)
    assert cum["log_loss"] == pytest.approx(log_loss(ys, ps), rel=1e-9)
    assert win["log_loss"] == pytest.approx(log_loss(ys[-500:], ps[-500:]), rel=1e-9)
    assert win["roc_auc"] == pytest.approx(roc_auc_score(ys[-500:], ps[-500:]), abs=1e-12)
    assert cum["roc_auc"] == pytest.approx(roc_auc_score(ys, ps), abs=2e-3)  # binned
    assert m.flat()["window.accuracy"] == win["accuracy"]


def test_multiclass_text_labels_and_missing_probabilities() -> None:
    m = Prequential("classification", window=10)
    m.update("a", "a", {"a": 0.7, "b": 0.2, "c": 0.1})
    m.update("b", None, None)  # nothing predicted yet: accuracy only
    m.update("c", "a", {"a": 0.5, "b": 0.5})
    snap = m.snapshot()
    assert snap["cumulative"]["accuracy"] == pytest.approx(1 / 3)
    assert "roc_auc" not in snap["window"]  # three classes
    expected = log_loss(["a", "c"], [[0.7, 0.2, 0.1], [0.5, 0.5, 0.0]], labels=["a", "b", "c"])
    assert snap["cumulative"]["log_loss"] == pytest.approx(expected, rel=1e-6)


def test_regression_metrics_and_state() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(size=700)
    pred = y + rng.normal(scale=0.3, size=700)
    whole, first = Prequential("regression", window=100), Prequential("regression", window=100)
    for a, b in zip(y, pred, strict=True):
        whole.update(a, b)
    for a, b in zip(y[:400], pred[:400], strict=True):
        first.update(a, b)
    resumed = Prequential.from_state(first.state())
    for a, b in zip(y[400:], pred[400:], strict=True):
        resumed.update(a, b)
    assert resumed.snapshot() == whole.snapshot()
    win = whole.snapshot()["window"]
    assert win["mae"] == pytest.approx(np.abs(y[-100:] - pred[-100:]).mean(), rel=1e-12)
    assert win["rmse"] == pytest.approx(np.sqrt(((y[-100:] - pred[-100:]) ** 2).mean()), rel=1e-12)


def test_classification_state_resumes() -> None:
    events = _classified(1200, seed=5)
    whole, first = Prequential("classification", 300), Prequential("classification", 300)
    for e in events:
        whole.update(*e)
    for e in events[:700]:
        first.update(*e)
    resumed = Prequential.from_state(first.state())
    for e in events[700:]:
        resumed.update(*e)
    assert resumed.snapshot() == whole.snapshot()
    assert resumed.state() == whole.state()
    with pytest.raises(IntegrityError):
        Prequential.from_state({"task": "classification"})
