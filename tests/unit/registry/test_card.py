"""The model card: markdown from a version, its run and its evaluation."""

from __future__ import annotations

from pathlib import Path

import pytest
from sklearn.datasets import load_breast_cancer

from loopml.data import ingest
from loopml.project import ProjectConfig
from loopml.registry import model_card, set_alias
from loopml.train import train
from loopml.workspace import Workspace

PROJECT = """
name: cancer
data: {dataset: cancer, target: target}
features: {numeric: {impute: median, scale: standard}}
model: {class: sklearn.linear_model.LogisticRegression, params: {max_iter: 1000}}
evaluation: {metric: roc_auc, folds: 3, holdout: 0.2, seed: 0, gate: "roc_auc >= 0.9"}
registry: {alias: champion}
"""


@pytest.fixture
def trained(workspace: Workspace, tmp_path: Path) -> Workspace:
    frame = load_breast_cancer(as_frame=True).frame.iloc[:, [0, 1, 2, 3, -1]]
    ingest(workspace, frame, "cancer")
    path = tmp_path / "loopml.yaml"
    path.write_text(PROJECT)
    train(workspace, ProjectConfig.from_file(path))
    return workspace


def test_the_card_covers_metrics_data_signature_params_and_history(trained: Workspace) -> None:
    set_alias(trained, "cancer", "challenger", 1, reason="for the A/B test")
    card = model_card(trained, "cancer@1")
    assert card.startswith("# cancer@1\n")
    for section in ("## Metrics", "## Data and lineage", "## Signature", "## Parameters"):
        assert section in card
    assert "- aliases: challenger, champion" in card
    assert "| **roc_auc** |" in card and " ± " in card  # holdout and the CV spread
    assert "- dataset: cancer@1" in card and "rows: 569" in card
    assert "| mean radius | numeric | float64 |" in card
    assert "project.model.params.max_iter | 1000" in card
    assert "loopml's allowlist only." in card
    assert "gate passed: roc_auc" in card and "for the A/B test" in card
    assert "passed: roc_auc" in card  # the gate's verdict
