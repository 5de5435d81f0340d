from pathlib import Path

import pytest

from loopml.errors import ConfigError, LoopmlError, NotFoundError
from loopml.project import ProjectConfig

GOOD = """
name: cancer
data: {dataset: cancer@2, target: target}
model: {class: sklearn.linear_model.LogisticRegression, params: {max_iter: 500}}
evaluation: {metric: roc_auc, folds: 3, holdout: 0.25, gate: "roc_auc >= 0.9"}
"""


def test_reads_a_project_file(tmp_path: Path) -> None:
    p = tmp_path / "loopml.yaml"
    p.write_text(GOOD)
    c = ProjectConfig.from_file(p)
    assert (c.name, c.dataset, c.dataset_version, c.target) == ("cancer", "cancer", 2, "target")
    assert c.model.params == {"max_iter": 500}
    assert c.evaluation.folds == 3
    assert c.evaluation.holdout == 0.25
    assert str(c.evaluation.gate) == "roc_auc >= 0.9"
    assert c.alias == "champion"
    assert ProjectConfig.from_dict(c.to_dict()).to_dict() == c.to_dict()


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="not found"):
        ProjectConfig.from_file(tmp_path / "nope.yaml")
    p = tmp_path / "loopml.yaml"
    p.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        ProjectConfig.from_file(p)
    assert info.value.where["file"] == str(p)
    assert "line" in info.value.where


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"name": "../evil"}, "model"),
        ({"data": {"target": "t"}}, "data.dataset"),
        ({"data": {"dataset": "d", "target": "t", "task": "ranking"}}, "data.task"),
        ({"model": None}, "model"),
        ({"evaluation": {"folds": 1}}, "evaluation.folds"),
        ({"evaluation": {"holdout": 1.5}}, "evaluation.holdout"),
        ({"evaluation": {"foldz": 3}}, "evaluation.foldz"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_errors_name_the_field(patch: dict, field: str) -> None:
    base = {
        "name": "m",
        "data": {"dataset": "d", "target": "t"},
        "model": {"class": "sklearn.linear_model.LogisticRegression"},
    }
    base.update(patch)
    with pytest.raises(LoopmlError) as info:
        ProjectConfig.from_dict(base)
    where = info.value.where
    assert field in where or where.get("field") == field
