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
from loopml.monitor.sequential import KEEP_GOING, design
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
