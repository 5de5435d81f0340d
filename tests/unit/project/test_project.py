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


# -- checks against the task's metrics and the dataset's columns ------------------------------

CLASSIFICATION = ("accuracy", "roc_auc", "f1", "precision", "recall", "log_loss")
COLUMNS = ("mean radius", "mean texture", "worst area", "target")


def _cfg(**over: object) -> ProjectConfig:
    base: dict = {
        "name": "m",
        "data": {"dataset": "d", "target": "target"},
        "model": {"class": "sklearn.linear_model.LogisticRegression"},
        "evaluation": {"metric": "roc_auc", "folds": 5, "gate": "roc_auc >= 0.9"},
    }
    base.update(over)
    return ProjectConfig.from_dict(base)


@pytest.mark.parametrize(
    ("gate", "suggested"),
    [
        ("cv.rocauc >= 0.9", "cv.roc_auc"),
        ("roc_auc >= 0.9 and acuracy > 0.8", "accuracy"),
        ("cv.roc_auc.sdt < 0.05", "cv.roc_auc.std"),
    ],
)
def test_a_misspelled_gate_metric_is_a_config_error_with_the_closest_name(
    gate: str, suggested: str
) -> None:
    config = _cfg(evaluation={"gate": gate})
    with pytest.raises(ConfigError) as info:
        config.check_metrics(CLASSIFICATION)
    err = info.value
    assert err.where["field"] == "evaluation.gate"
    assert f"Did you mean '{suggested}'" in (err.hint or "")


def test_gate_names_the_task_computes_pass() -> None:
    gate = "roc_auc >= 0.9 and cv.accuracy > 0.8 and cv.log_loss.std < 0.1"
    _cfg(evaluation={"gate": gate}).check_metrics(CLASSIFICATION)
    _cfg(evaluation={"gate": None}).check_metrics(CLASSIFICATION)


def test_metric_of_another_task_and_cv_without_folds_are_refused() -> None:
    with pytest.raises(ConfigError, match="'rmse' is not a metric") as info:
        _cfg(evaluation={"gate": "rmse < 3"}).check_metrics(CLASSIFICATION)
    assert "roc_auc" in (info.value.hint or "")
    with pytest.raises(ConfigError, match="folds is 0") as info:
        _cfg(evaluation={"folds": 0, "gate": "cv.roc_auc > 0.9"}).check_metrics(CLASSIFICATION)
    assert info.value.where["field"] == "evaluation.gate"
    with pytest.raises(ConfigError) as info:
        _cfg(evaluation={"metric": "rocauc"}).check_metrics(CLASSIFICATION)
    assert info.value.where["field"] == "evaluation.metric"
    assert "Did you mean 'roc_auc'" in (info.value.hint or "")


@pytest.mark.parametrize(
    ("over", "field", "suggested"),
    [
        ({"data": {"dataset": "d", "target": "traget"}}, "data.target", "target"),
        ({"features": {"include": ["mean radius", "mean textur"]}}, "features.include", None),
        ({"features": {"exclude": ["worst aera"]}}, "features.exclude", "worst area"),
        ({"features": {"kinds": {"mean radus": "numeric"}}}, "features.kinds", "mean radius"),
    ],
)
def test_columns_the_file_names_must_be_in_the_dataset(
    over: dict, field: str, suggested: str | None
) -> None:
    with pytest.raises(ConfigError) as info:
        _cfg(**over).check_columns(COLUMNS, source="dataset d@1")
    err = info.value
    assert err.where["field"] == field
    assert "dataset d@1" in err.message
    assert f"Did you mean '{suggested or 'mean texture'}'" in (err.hint or "")


def test_an_unknown_key_suggests_the_closest_known_one() -> None:
    base = {"name": "m", "data": {"dataset": "d", "target": "t"}, "model": {"class": "x.Y"}}
    with pytest.raises(ConfigError) as info:
        ProjectConfig.from_dict({**base, "evalution": {}})
    assert "Did you mean 'evaluation'" in (info.value.hint or "")
    with pytest.raises(ConfigError) as info:
        ProjectConfig.from_dict({**base, "evaluation": {"fold": 3}})
    assert "Did you mean 'folds'" in (info.value.hint or "")


def test_a_superscript_digit_is_not_a_version() -> None:
    # "²".isdigit() is True but int("²") fails: the check must be ASCII digits only
    with pytest.raises(ConfigError, match="is not a number"):
        ProjectConfig.from_dict(
            {
                "name": "m",
                "data": {"dataset": "cancer@²", "target": "t"},
                "model": {"class": "sklearn.linear_model.LogisticRegression"},
            }
        )


EVALUATION = """
name: cancer
data: {dataset: cancer, target: target}
model: {class: sklearn.linear_model.LogisticRegression}
evaluation:
  split: {kind: time, column: ts, gap: 1d}
  folds: 3
  holdout: 0.2
  slices: [site, {column: age, bins: 4}, {column: city, top: 5}]
  bootstrap: 1000
"""


def test_evaluation_split_slices_and_bootstrap_are_read(tmp_path: Path) -> None:
    p = tmp_path / "loopml.yaml"
    p.write_text(EVALUATION)
    c = ProjectConfig.from_file(p)
    ev = c.evaluation
    assert (ev.split.kind, ev.split.column, ev.split.gap_seconds) == ("time", "ts", 86400.0)
    assert [(s.column, s.bins, s.top) for s in ev.slices] == [
        ("site", None, 10),
        ("age", 4, 10),
        ("city", None, 5),
    ]
    assert ev.bootstrap == 1000
    assert ProjectConfig.from_dict(c.to_dict()).to_dict() == c.to_dict()
    assert c.to_dict()["evaluation"]["split"] == {"kind": "time", "column": "ts", "gap": "1d"}
    default = _cfg()
    assert (default.evaluation.split.kind, default.evaluation.bootstrap) == ("random", 200)
    with pytest.raises(ConfigError, match="split column") as e:
        c.check_columns(["target", "site", "age", "city", "tss"], source="dataset cancer@1")
    assert e.value.where["field"] == "evaluation.split.column"
    assert "Did you mean 'tss'" in str(e.value.hint)
    with pytest.raises(ConfigError, match="slice column") as e:
        c.check_columns(["target", "ts", "site", "age"], source="dataset cancer@1")
    assert e.value.where["field"] == "evaluation.slices"


@pytest.mark.parametrize(
    ("evaluation", "field"),
    [
        ({"split": {"kind": "chronological"}}, "evaluation.split.kind"),
        ({"split": {"kind": "time"}}, "evaluation.split.column"),
        ({"split": {"kind": "time", "column": "ts", "gap": "soon"}}, "evaluation.split.gap"),
        ({"split": {"kind": "group", "column": "g", "gap": 3}}, "evaluation.split.gap"),
        ({"split": {"kind": "time", "colum": "ts"}}, "evaluation.split.colum"),
        ({"slices": [{"bins": 3}]}, "evaluation.slices"),
        ({"slices": [{"column": "age", "bins": 0}]}, "evaluation.slices.bins"),
        ({"bootstrap": 5}, "evaluation.bootstrap"),
        ({"bootstrap": "many"}, "evaluation.bootstrap"),
    ],
)
def test_evaluation_mistakes_name_the_field(evaluation: dict, field: str) -> None:
    with pytest.raises(ConfigError) as e:
        _cfg(evaluation=evaluation)
    assert e.value.where["field"] == field
