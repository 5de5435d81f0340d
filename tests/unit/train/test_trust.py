"""A model class outside the artifact allowlist is refused before training, unless the
project file opts in with ``model.trust``; the opt-in is recorded on the version."""

from __future__ import annotations

from pathlib import Path

import pytest
from sklearn.datasets import load_breast_cancer

from loopml.data import ingest
from loopml.errors import ConfigError
from loopml.project import ProjectConfig
from loopml.registry import load_model
from loopml.train import train
from loopml.workspace import Workspace

STORED = "sklearn.neighbors._classification.RadiusNeighborsClassifier"


def _config(**model: object) -> ProjectConfig:
    return ProjectConfig.from_dict(
        {
            "name": "cancer",
            "data": {"dataset": "cancer", "target": "target"},
            "model": {
                "class": "sklearn.neighbors.RadiusNeighborsClassifier",
                "params": {"radius": 100.0, "algorithm": "brute"},
                **model,
            },
            "evaluation": {"metric": "accuracy", "folds": 0},
        }
    )


@pytest.fixture
def cancer(workspace: Workspace, tmp_path: Path) -> Workspace:
    path = tmp_path / "cancer.csv"
    load_breast_cancer(as_frame=True).frame.to_csv(path, index=False)
    ingest(workspace, path, "cancer")
    return workspace


def test_unlisted_class_is_refused_before_any_run(cancer: Workspace) -> None:
    with pytest.raises(ConfigError, match="not a type loopml loads") as info:
        train(cancer, _config())
    assert info.value.where["field"] == "model.class"
    assert STORED in str(info.value.hint)
    assert cancer.metadata.list_runs() == []


def test_trust_in_the_project_file_is_recorded_on_the_version(cancer: Workspace) -> None:
    res = train(cancer, _config(trust=[STORED]))
    assert res.model_version is not None
    assert STORED in res.model_version.trusted
    loaded = load_model(cancer, "cancer@1")
    assert STORED in loaded.record.trusted
    assert _config(trust=[STORED]).to_dict()["model"]["trust"] == [STORED]


def test_trust_must_be_a_list_of_names() -> None:
    with pytest.raises(ConfigError, match=r"model\.trust"):
        _config(trust="sklearn.anything")
