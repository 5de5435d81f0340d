"""Hyperparameter search: the ``search:`` section, trials as child runs, the best trained."""

from pathlib import Path
from typing import Any

import pytest
import yaml
from sklearn.datasets import load_breast_cancer

from loopml.data import ingest
from loopml.errors import ConfigError
from loopml.project import ProjectConfig
from loopml.project.search import SearchSpec
from loopml.registry import list_models
from loopml.train.search import TrialEvent, search
from loopml.workspace import Workspace, init

SPACE = {"C": {"float": [0.01, 10.0], "log": True}}


def _config(search_section: Any = None, **over: Any) -> ProjectConfig:
    base: dict = {
        "name": "cancer",
        "data": {"dataset": "cancer", "target": "target"},
        "model": {"class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 2000}},
        "evaluation": {"metric": "roc_auc", "folds": 3, "gate": "roc_auc >= 0.9"},
        "search": search_section if search_section is not None else {"trials": 3, "space": SPACE},
    }
    base.update(over)
    return ProjectConfig.from_dict(base)


@pytest.fixture
def cancer(workspace: Workspace, tmp_path: Path) -> Workspace:
    path = tmp_path / "cancer.csv"
    load_breast_cancer(as_frame=True).frame.to_csv(path, index=False)
    ingest(workspace, path, "cancer")
    return workspace


# -- parsing --------------------------------------------------------------------------------


def test_parses_every_kind_of_range() -> None:
    spec = SearchSpec.from_config(
        {
            "trials": 5,
            "metric": "accuracy",
            "pruner": "none",
            "space": {
                "n_estimators": {"int": [50, 300], "step": 50},
                "max_depth": {"int": [2, 12]},
                "learning_rate": {"float": [0.01, 0.3], "log": True},
                "criterion": {"choice": ["gini", "entropy"]},
            },
        }
    )
    kinds = {p.name: p.kind for p in spec.space}
    assert kinds == {
        "n_estimators": "int",
        "max_depth": "int",
        "learning_rate": "float",
        "criterion": "choice",
    }
    assert spec.trials == 5 and spec.pruner == "none" and spec.metric == "accuracy"
    assert spec.to_dict()["space"]["n_estimators"] == {"int": [50, 300], "step": 50}
    # the same space gives the same hash; another space another one
    again = SearchSpec.from_config(spec.to_dict())
    assert again.space_hash() == spec.space_hash()
    other = SearchSpec.from_config({"space": {"max_depth": {"int": [2, 13]}}})
    assert other.space_hash() != spec.space_hash()


@pytest.mark.parametrize(
    ("section", "field", "words"),
    [
        ({"space": {}}, "search.space", "empty"),
        ({"trials": 3}, "search.space", "empty"),
        ({"space": SPACE, "trails": 3}, "search.trails", "'trials'"),
        ({"space": {"C": {"flaot": [0.1, 1.0]}}}, "search.space.C.flaot", "'float'"),
        ({"space": {"C": {"float": [1.0, 0.1]}}}, "search.space.C.float", "not below"),
        ({"space": {"C": {"float": [0.0, 1.0], "log": True}}}, "search.space.C.float", "log"),
        ({"space": {"C": {"int": [1.5, 3]}}}, "search.space.C.int", "whole numbers"),
        ({"space": {"C": {"choice": []}}}, "search.space.C.choice", "non-empty"),
        ({"space": {"C": {"int": [1, 3], "float": [1, 3]}}}, "search.space.C", "exactly one"),
        ({"space": SPACE, "pruner": "hyperband"}, "search.pruner", "median"),
        ({"space": SPACE, "trials": 0}, "search.trials", "1 or more"),
    ],
)
def test_bad_section_names_the_field(section: dict, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        _config(section)
    err = info.value
    assert err.where["field"] == field
    assert words in f"{err.message} {err.hint}"


def test_search_section_round_trips_through_to_dict() -> None:
    config = _config()
    assert config.search is not None
    again = ProjectConfig.from_dict(config.to_dict())
    assert again.search == config.search
    assert "search" not in _config(search_section={"space": SPACE}).to_dict()["model"]


# -- checks before any work -----------------------------------------------------------------


def test_param_the_estimator_does_not_take_fails_before_any_run(cancer: Workspace) -> None:
    config = _config({"trials": 2, "space": {"Cc": {"float": [0.1, 1.0]}}})
    with pytest.raises(ConfigError) as info:
        search(cancer, config)
    assert info.value.where["field"] == "search.space.Cc"
    assert "Did you mean 'C'" in (info.value.hint or "")
    assert cancer.metadata.list_runs() == []


def test_range_the_estimator_refuses_fails_before_any_run(cancer: Workspace) -> None:
    config = _config({"trials": 2, "space": {"C": {"float": [-1.0, 1.0]}}})
    with pytest.raises(ConfigError) as info:
        search(cancer, config)
    assert info.value.where["field"] == "search.space.C.float"
    assert cancer.metadata.list_runs() == []


def test_metric_of_another_task_fails_before_any_run(cancer: Workspace) -> None:
    config = _config({"trials": 2, "metric": "rmse", "space": SPACE})
    with pytest.raises(ConfigError) as info:
        search(cancer, config)
    assert info.value.where["field"] == "search.metric"
    assert cancer.metadata.list_runs() == []


# -- the search -----------------------------------------------------------------------------


def test_search_records_trials_as_children_and_trains_the_best(cancer: Workspace) -> None:
    events: list[TrialEvent] = []
    res = search(cancer, _config(), progress=lambda _m: None, on_trial=events.append)
    assert res.trials == 3
    assert [e.done for e in events] == [1, 2, 3]
    assert events[-1].best == pytest.approx(res.best_score)
    assert res.direction == "maximize" and res.metric == "roc_auc"
    assert 0.01 <= res.best_params["C"] <= 10.0
    runs = cancer.metadata.list_runs()
    parent = cancer.metadata.get_run(res.run.id)
    assert parent.tags["kind"] == "search"
    assert parent.status == "succeeded"
    assert parent.metrics["best_params"] == res.best_params
    trials = [r for r in runs if r.tags.get("kind") == "trial"]
    assert len(trials) == 3
    assert {r.parent_id for r in trials} == {parent.id}
    assert sorted(r.params["trial"] for r in trials) == [0, 1, 2]
    for r in trials:
        assert r.status == "succeeded"
        assert len(r.metrics["folds"]) == 3
        assert r.metrics["score"] == pytest.approx(r.metrics["cv"]["roc_auc"]["mean"])
    best = max(trials, key=lambda r: r.metrics["score"])
    assert best.params["params"] == res.best_params
    # the best is trained through the ordinary trainer: evaluated, gated, registered
    final = cancer.metadata.get_run(res.result.run.id)
    assert final.parent_id == parent.id
    assert final.params["search"]["params"] == res.best_params
    assert final.params["project"]["model"]["params"]["C"] == res.best_params["C"]
    assert final.metrics["holdout"]["roc_auc"] > 0.95
    assert res.result.passed and res.result.model_version is not None
    assert cancer.metadata.get_aliases("cancer") == {"champion": 1}


def test_rerun_adds_only_the_missing_trials(cancer: Workspace) -> None:
    first = search(cancer, _config(), trials=2)
    assert first.trials == 2
    second = search(cancer, _config(), trials=3)
    assert second.trials == 3
    assert second.study == first.study
    assert second.run.metrics["trials"]["this_process"] == 1
    trials = [r for r in cancer.metadata.list_runs() if r.tags.get("kind") == "trial"]
    assert sorted(r.params["trial"] for r in trials) == [0, 1, 2]


def test_median_pruner_prunes_on_fold_scores(cancer: Workspace) -> None:
    # a forest of one shallow tree is far worse than the rest; after five trials the
    # median pruner stops such trials at their first fold
    section = {
        "trials": 10,
        "pruner": "median",
        "study": "pruning",
        "space": {"max_depth": {"int": [1, 8]}, "n_estimators": {"choice": [1, 30]}},
    }
    config = _config(
        section,
        model={"class": "sklearn.ensemble.RandomForestClassifier", "params": {"random_state": 0}},
    )
    res = search(cancer, config)
    trials = [r for r in cancer.metadata.list_runs() if r.tags.get("kind") == "trial"]
    assert res.trials == 10 == len(trials)
    pruned = [r for r in trials if r.status == "pruned"]
    assert pruned, [(r.params["params"], r.metrics["folds"]) for r in trials]
    assert all(len(r.metrics["folds"]) < 3 for r in pruned)
    assert res.run.metrics["trials"]["pruned"] == len(pruned)


def test_project_without_search_section_is_refused(cancer: Workspace) -> None:
    config = ProjectConfig.from_dict({**_config().to_dict(), "search": None})
    with pytest.raises(ConfigError) as info:
        search(cancer, config)
    assert info.value.where["field"] == "search"


def test_a_trial_that_fails_to_fit_fails_the_search_and_registers_nothing(
    cancer: Workspace,
) -> None:
    # 5000 neighbours of a few hundred rows: scikit-learn refuses them only in predict
    section = {"trials": 6, "pruner": "none", "space": {"n_neighbors": {"choice": [5000]}}}
    model = {"class": "sklearn.neighbors.KNeighborsClassifier"}
    with pytest.raises(ValueError, match="n_neighbors"):
        search(cancer, _config(section, model=model))
    runs = cancer.metadata.list_runs()
    (parent,) = [r for r in runs if r.tags.get("kind") == "search"]
    (trial,) = [r for r in runs if r.tags.get("kind") == "trial"]
    assert parent.status == "failed" and "n_neighbors" in (parent.error or "")
    assert trial.status == "failed" and trial.parent_id == parent.id
    assert list_models(cancer) == []


def test_same_file_data_and_seed_give_the_same_search(cancer: Workspace, tmp_path: Path) -> None:
    first = search(cancer, _config())
    with init(tmp_path / "other") as other:
        ingest(other, tmp_path / "cancer.csv", "cancer")
        second = search(other, _config())
        trials = {
            ws_: sorted(
                (r.params["trial"], r.params["params"]["C"], r.metrics["score"])
                for r in ws_.metadata.list_runs()
                if r.tags.get("kind") == "trial"
            )
            for ws_ in (cancer, other)
        }
    assert second.best_params == first.best_params
    assert second.best_score == first.best_score
    assert trials[cancer] == trials[other]
    # trials draw different params from one another (a seed per trial number)
    assert len({c for _, c, _ in trials[cancer]}) == 3


def test_cli_search_shows_the_best_and_trains_it(
    cancer: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from loopml.cli.main import main

    project = tmp_path / "loopml.yaml"
    project.write_text(yaml.safe_dump(_config().to_dict()))
    ws = ["--workspace", str(cancer.root)]
    assert main(["train", "-f", str(project), "--trials", "2", *ws]) == 2  # needs --search
    assert "--search" in capsys.readouterr().err
    assert main(["train", "-f", str(project), "--search", "--trials", "2", *ws]) == 0
    captured = capsys.readouterr()
    assert "best trial" in captured.out and "registered cancer@1" in captured.out
    assert "search" in captured.err  # the bar and the steps, on stderr
    trials = [r for r in cancer.metadata.list_runs() if r.tags.get("kind") == "trial"]
    assert len(trials) == 2
