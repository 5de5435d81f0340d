"""A/B decisions: error rates by simulation (many peeks), and the status read from a real
prediction log and feedback, through the API and ``loopml ab status``."""

from __future__ import annotations

import json
import math
import uuid

import numpy as np
import pandas as pd
import pytest

from loopml.cli.main import main
from loopml.errors import InvalidInputError
from loopml.monitor.ab import ab_status, sequential_result
from loopml.monitor.sequential import KEEP_GOING, auc_variance, design, msprt_auc
from loopml.predictions import write_predictions
from loopml.registry.bundle import Prediction
from loopml.stores.records import Deployment, Feedback, ModelVersion
from loopml.utils import utcnow
from loopml.workspace import Workspace

PEEK_EVERY = 100


def _decisions(p_a: float, p_b: float, n: int, sims: int, seed: int) -> np.ndarray:
    """Per simulation, whether any peek (every PEEK_EVERY per arm, up to n) decided."""
    rng = np.random.default_rng(seed)
    a = rng.random((sims, n)) < p_a
    b = rng.random((sims, n)) < p_b
    decided = np.zeros(sims, dtype=bool)
    for s in range(sims):
        for k in range(PEEK_EVERY, n + 1, PEEK_EVERY):
            r = sequential_result(
                a[s, :k].astype(float), b[s, :k].astype(float), "accuracy", alpha=0.05, effect=0.05
            )
            if r.decision != KEEP_GOING:
                decided[s] = True
                break
    return decided


def test_no_true_difference_gives_at_most_alpha_false_decisions_over_many_peeks() -> None:
    false = _decisions(0.7, 0.7, 3000, sims=300, seed=1)  # 30 peeks each
    assert false.mean() <= 0.05, false.mean()


def test_a_real_difference_is_found_with_the_designed_power() -> None:
    p_a, p_b = 0.70, 0.75
    n = design(0.05, math.sqrt(p_a * (1 - p_a)), sd_b=math.sqrt(p_b * (1 - p_b)), power=0.8)
    n = int(math.ceil(n / PEEK_EVERY) * PEEK_EVERY)
    found = _decisions(p_a, p_b, n, sims=200, seed=2)
    assert found.mean() >= 0.75, (n, found.mean())


def test_rewards_compare_means() -> None:
    rng = np.random.default_rng(3)
    r = sequential_result(rng.normal(1.0, 1, 4000), rng.normal(1.2, 1, 4000), "reward")
    assert r.metric == "mean" and r.decision == "B better"
    assert r.ci_low < 0.2 < r.ci_high


def _arm(ws: Workspace, version: int, n: int, right: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    ids = [uuid.uuid4().hex for _ in range(n)]
    truth = rng.integers(0, 2, n)
    correct = rng.random(n) < right
    labels = np.where(correct, truth, 1 - truth)
    pred = Prediction(labels, None, [0, 1])
    write_predictions(
        ws.lake,
        "shop",
        version,
        pd.DataFrame({"x": rng.normal(size=n)}),
        pred,
        ids,
        latency_ms=1.0,
        source="server",
    )
    at = utcnow()
    ws.metadata.add_feedback(
        [Feedback(i, int(t), None, at, "test") for i, t in zip(ids, truth, strict=True)]
    )


def _register(ws: Workspace, version: int) -> None:
    mv = ModelVersion(
        name="shop",
        version=0,
        run_id=uuid.uuid4().hex,
        artifact_sha256="ab" * 32,
        flavor="sklearn",
        signature={"inputs": [], "classes": [0, 1]},
        metrics={},
        dataset_name="d",
        dataset_version=1,
        created_at=utcnow(),
        size_bytes=1,
    )
    assert ws.metadata.add_model_version(mv).version == version


@pytest.mark.slow
def test_status_from_the_log_and_feedback_and_on_the_command_line(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    _register(workspace, 1)
    _register(workspace, 2)
    with pytest.raises(InvalidInputError, match="not two versions sharing traffic"):
        ab_status(workspace, "shop")
    workspace.metadata.set_alias("shop", "champion", 1, actor="t")
    started = utcnow()
    dep = Deployment("shop", "ab", ((1, 50.0), (2, 50.0)), updated_at=started, updated_by="t")
    workspace.metadata.set_deployment(dep, expected_revision=None)
    _arm(workspace, 1, 1500, 0.70, 4)
    _arm(workspace, 2, 1500, 0.80, 5)
    status = ab_status(workspace, "shop")
    r = status.result
    assert (status.champion, status.challenger) == (1, 2)
    assert (r.n_a, r.n_b) == (1500, 1500)
    assert abs(r.mean_a - 0.70) < 0.04 and abs(r.mean_b - 0.80) < 0.04
    assert r.decision == "B better" and r.ci_low > 0
    w = ["-w", str(workspace.root)]
    capsys.readouterr()
    assert main(["ab", "status", "shop", *w]) == 0
    shown = capsys.readouterr().out
    assert "decision: B better" in shown and "always-valid 95% CI" in shown
    assert main(["ab", "status", "shop", "--json", *w]) == 0
    assert json.loads(capsys.readouterr().out)["decision"] == "B better"
    assert main(["ab", "status", "shop", "--metric", "ctr", *w]) == 2
    said = capsys.readouterr().err
    assert "ctr" in said and "Traceback" not in said


# -- ROC-AUC: the decision metric when positives are rare -----------------------------------


def _scored(rng: np.random.Generator, n: int, lift: float) -> tuple[np.ndarray, np.ndarray]:
    """Labels with 10 % positives and scores whose AUC grows with ``lift`` (binormal)."""
    y = (rng.random(n) < 0.1).astype(float)
    return y, rng.normal(size=n) + lift * y


def _auc_decisions(lift_a: float, lift_b: float, n: int, sims: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.zeros(sims, dtype=bool)
    for s in range(sims):
        ya, sa = _scored(rng, n, lift_a)
        yb, sb = _scored(rng, n, lift_b)
        for k in range(200, n + 1, 200):
            r = msprt_auc(ya[:k], sa[:k], yb[:k], sb[:k], alpha=0.05, effect=0.03)
            if r.decision != KEEP_GOING:
                out[s] = True
                break
    return out


def test_auc_variance_is_delong_and_matches_the_spread_of_repeated_samples() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(7)
    y, s = _scored(rng, 4000, 1.0)
    auc, var, pos, neg = auc_variance(y, np.round(s, 1))  # ties count a half
    assert auc == pytest.approx(roc_auc_score(y, np.round(s, 1)))
    assert pos + neg == 4000
    repeats = []
    for _ in range(300):
        yy = np.r_[np.ones(pos), np.zeros(neg)]
        repeats.append(roc_auc_score(yy, rng.normal(size=4000) + yy))
    assert var == pytest.approx(np.var(repeats), rel=0.25)
    assert math.isnan(auc_variance(np.zeros(5), np.arange(5.0))[0])


@pytest.mark.slow
def test_auc_no_true_difference_gives_at_most_alpha_false_decisions_over_many_peeks() -> None:
    false = _auc_decisions(1.0, 1.0, 4000, sims=300, seed=11)  # 20 peeks each
    assert false.mean() <= 0.05, false.mean()


@pytest.mark.slow
def test_auc_a_real_difference_is_found() -> None:
    # binormal lift 0.8 vs 1.2: AUC 0.71 vs 0.80
    found = _auc_decisions(0.8, 1.2, 4000, sims=100, seed=12)
    assert found.mean() >= 0.8, found.mean()


def test_auc_waits_for_both_classes_in_every_arm() -> None:
    rng = np.random.default_rng(13)
    y, s = _scored(rng, 3000, 3.0)
    y_few = np.zeros(3000)
    y_few[:5] = 1.0
    r = msprt_auc(y_few, s, y, s + 10 * y)
    assert r.decision == KEEP_GOING and r.note is not None and "positives" in r.note


def _scored_arm(ws: Workspace, version: int, n: int, lift: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    ids = [uuid.uuid4().hex for _ in range(n)]
    y, s = _scored(rng, n, lift)
    p = 1.0 / (1.0 + np.exp(-(s - 2.0)))
    pred = Prediction((p > 0.5).astype(int), np.column_stack([1 - p, p]), [0, 1])
    write_predictions(
        ws.lake,
        "shop",
        version,
        pd.DataFrame({"x": rng.normal(size=n)}),
        pred,
        ids,
        latency_ms=1.0,
        source="server",
    )
    at = utcnow()
    ws.metadata.add_feedback(
        [Feedback(i, int(t), None, at, "test") for i, t in zip(ids, y, strict=True)]
    )


@pytest.mark.slow
def test_status_on_roc_auc_from_the_log_and_on_the_command_line(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    _register(workspace, 1)
    _register(workspace, 2)
    workspace.metadata.set_alias("shop", "champion", 1, actor="t")
    dep = Deployment("shop", "ab", ((1, 50.0), (2, 50.0)), updated_at=utcnow(), updated_by="t")
    workspace.metadata.set_deployment(dep, expected_revision=None)
    _scored_arm(workspace, 1, 3000, 0.8, 21)
    _scored_arm(workspace, 2, 3000, 1.6, 22)
    status = ab_status(workspace, "shop", metric="roc_auc")
    r = status.result
    assert r.metric == "auc" and (r.n_a, r.n_b) == (3000, 3000)
    assert 0.66 < r.mean_a < 0.76 and 0.80 < r.mean_b < 0.90
    assert r.decision == "B better" and r.ci_low > 0
    w = ["-w", str(workspace.root)]
    capsys.readouterr()
    assert main(["ab", "status", "shop", "--metric", "roc_auc", "--json", *w]) == 0
    assert json.loads(capsys.readouterr().out)["decision"] == "B better"
