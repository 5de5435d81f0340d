"""The ``online:`` section and the learner built from it: errors that name the field,
events turned into features, labels for two-class learners, mini-batches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("river")

from river import compose, datasets, linear_model, preprocessing

from loopml.errors import ConfigError, IntegrityError, InvalidInputError, NotFoundError
from loopml.project.config import ProjectConfig
from loopml.project.online import OnlineSpec, load_online, parse_online
from loopml.train.online import OnlineLearner

BASE = {"stream": "events.jsonl", "target": "y", "learner": "river.linear_model.LogisticRegression"}


def spec(**kw: Any) -> OnlineSpec:
    return parse_online({**BASE, **kw}, "loopml.yaml", name="m")


def learner(**kw: Any) -> OnlineLearner:
    return OnlineLearner.from_spec(spec(**kw))


# -- the section ------------------------------------------------------------------------------


def test_defaults_and_inferred_task() -> None:
    s = spec()
    assert (s.task, s.batch, s.checkpoint_every, s.alias, s.model) == (
        "classification",
        1,
        1000,
        "online",
        "m",
    )
    assert spec(learner="river.linear_model.LinearRegression").task == "regression"
    assert spec(learner="sklearn.linear_model.SGDRegressor").task == "regression"
    assert spec(learner="river.naive_bayes.GaussianNB").task == "classification"
    assert s.is_feature("a") and not s.is_feature("y")
    t = spec(time="ts", ignore=["id"])
    assert not t.is_feature("ts") and not t.is_feature("id")
    assert parse_online(s.to_dict(), name="m") == s


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"stream": None}, "online.stream"),
        ({"target": 3}, "online.target"),
        ({"learner": "LogisticRegression"}, "online.learner"),
        ({"batch": 0}, "online.batch"),
        ({"batch": True}, "online.batch"),
        ({"checkpoint_seconds": -1}, "online.checkpoint_seconds"),
        ({"task": "ranking"}, "online.task"),
        ({"learner": "river.anomaly.HalfSpaceTrees"}, "online.task"),
        ({"drift": {"detector": "kswin"}}, "online.drift.detector"),
        ({"drift": {"detector": "adwin", "delta": [1]}}, "online.drift.delta"),
        ({"features": ["a", "a"]}, "online.features"),
        ({"features": ["y"]}, "online.features"),
        ({"preprocessing": [{"step": "x.Y", "extra": 1}]}, "online.preprocessing[0]"),
        ({"preprocessing": "river.preprocessing.StandardScaler"}, "online.preprocessing"),
        ({"alias": "bad alias"}, "online.alias"),
        ({"strings": "hash"}, "online.strings"),
        ({"classes": ["a"]}, "online.classes"),
        ({"positive": [1]}, "online.positive"),
        ({"batchh": 3}, "online.batchh"),
    ],
)
def test_section_errors_name_the_field(raw: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_online({**BASE, **raw}, "loopml.yaml", name="m")
    assert info.value.where == {"file": "loopml.yaml", "field": field}


def test_unknown_key_suggests_the_right_one() -> None:
    with pytest.raises(ConfigError, match=r"unknown key online\.batchh") as info:
        spec(batchh=3)
    assert "Did you mean 'batch'" in (info.value.hint or "")


def test_project_file_hook(tmp_path: Path) -> None:
    base = {
        "name": "cancer",
        "data": {"dataset": "cancer", "target": "target"},
        "model": {"class": "sklearn.linear_model.LogisticRegression"},
    }
    assert ProjectConfig.from_dict(base).online is None
    cfg = ProjectConfig.from_dict({**base, "online": dict(BASE)})
    assert cfg.online is not None and cfg.online.model == "cancer"
    with pytest.raises(ConfigError, match=r"online\.batch"):
        ProjectConfig.from_dict({**base, "online": {**BASE, "batch": -1}})
    # a project that only learns online: no data or model section
    path = tmp_path / "loopml.yaml"
    path.write_text("name: phish\nonline:\n  stream: s.jsonl\n  target: y\n"
                    "  learner: river.linear_model.LogisticRegression\n")  # fmt: skip
    assert load_online(path).model == "phish"
    path.write_text("name: phish\n")
    with pytest.raises(ConfigError, match="no 'online:' section"):
        load_online(path)
    with pytest.raises(NotFoundError):
        load_online(tmp_path / "missing.yaml")


# -- building the learner -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "field", "text"),
    [
        ({"learner": "river.forest.ARFClassifier"}, "online.learner", "not one whose state"),
        (
            {"learner": "sklearn.ensemble.RandomForestClassifier"},
            "online.learner",
            "cannot learn online",
        ),
        (
            {"learner": "river.linear_model.Nope", "task": "classification"},
            "online.learner",
            "has no 'Nope'",
        ),
        ({"learner": "nosuchpkg.Model", "task": "classification"}, "online.learner", "imported"),
        ({"params": {"l3": 1}}, "online.params.l3", "no parameter 'l3'"),
        ({"params": {"l1": 0.1, "l2": 0.1}}, "online.params", "refused"),
        (
            {"params": {"optimizer": {"class": "os.system"}}},
            "online.params.optimizer.class",
            "not a class",
        ),
        (
            {"params": {"optimizer": {"class": "subprocess.Popen"}}},
            "online.params.optimizer.class",
            "not one of the classes",
        ),
        (
            {"params": {"optimizer": {"class": "river.stats.Mean"}}},
            None,
            "",
        ),
        (
            {"preprocessing": ["river.preprocessing.RobustScaler"]},
            "online.preprocessing[0].step",
            "not one of the classes",
        ),
        (
            {"learner": "river.linear_model.LinearRegression", "task": "classification"},
            "online.task",
            "is a regressor",
        ),
        (
            {"learner": "sklearn.linear_model.SGDClassifier", "batch": 1, "classes": [0, 1]},
            "online.batch",
            "mini-batches",
        ),
        (
            {"learner": "sklearn.linear_model.SGDClassifier", "batch": 8},
            "online.classes",
            "up front",
        ),
        (
            {"learner": "sklearn.linear_model.SGDClassifier", "batch": 8, "classes": [0, 1],
             "strings": "keep"},
            "online.strings",
            "numbers only",
        ),
        ({"strings": "keep"}, "online.strings", "OneHotEncoder"),
        ({"classes": ["a", "b", "c"]}, "online.classes", "two classes"),
        ({"classes": ["no", "yes"]}, "online.positive", "positive"),
    ],
)  # fmt: skip
def test_learner_errors_name_the_field(raw: dict, field: str | None, text: str) -> None:
    if field is None:  # allowlisted, but not an optimizer: River's own error at learning
        learner(**raw)
        return
    with pytest.raises(ConfigError, match=text) as info:
        learner(**raw)
    assert info.value.where["field"] == field


def test_nested_objects_in_params() -> None:
    lr = learner(params={"optimizer": {"class": "river.optim.Adam", "params": {"lr": 0.05}}})
    assert type(lr.estimator.optimizer).__name__ == "Adam"
    assert lr.estimator.optimizer.lr.learning_rate == 0.05


def test_the_pipeline_is_rivers_own() -> None:
    events = [dict(x, y=y) for x, y in list(datasets.Phishing())[:300]]
    ours = learner(preprocessing=["river.preprocessing.StandardScaler"])
    theirs = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    for e in events:
        x = {k: v for k, v in e.items() if k != "y"}
        assert (
            ours.predict_proba_one(ours.features_of(e))[True] == theirs.predict_proba_one(x)[True]
        )
        ours.learn_one(ours.features_of(e), ours.label_of(e))
        theirs.learn_one(x, e["y"])
    assert isinstance(ours.estimator, compose.Pipeline)


# -- events ---------------------------------------------------------------------------------


def test_features_of_coerces_and_refuses() -> None:
    lr = learner(ignore=["id"], time="ts")
    x = lr.features_of(
        {"a": 1, "b": True, "c": 2.5, "d": None, "e": "txt", "y": 1, "id": 7, "ts": 3}
    )
    assert x == {"a": 1.0, "b": 1.0, "c": 2.5}  # text dropped: a linear model takes numbers
    assert all(type(v) is float for v in x.values())
    for bad in ([1], {"k": 1}, float("nan")):
        with pytest.raises(InvalidInputError) as info:
            lr.features_of({"a": bad})
        assert info.value.where == {"field": "a"}
    only = learner(features=["a"])
    assert only.features_of({"a": 1, "b": [1], "y": 0}) == {"a": 1.0}  # b is not a feature
    kept = learner(preprocessing=["river.preprocessing.OneHotEncoder"])
    assert kept.strings == "keep" and kept.features_of({"e": "txt"}) == {"e": "txt"}


def test_label_of() -> None:
    lr = learner()
    assert lr.label_of({"y": "yes"}) == "yes" and lr.label_of({"x": 1}) is None
    with pytest.raises(InvalidInputError, match="class label"):
        lr.label_of({"y": [1]})
    reg = learner(learner="river.linear_model.LinearRegression")
    assert reg.label_of({"y": 3}) == 3.0
    for bad in ("3", True, float("inf")):
        with pytest.raises(InvalidInputError, match="finite number"):
            reg.label_of({"y": bad})
    declared = learner(classes=[0, 1])
    with pytest.raises(InvalidInputError, match="declared classes"):
        declared.label_of({"y": 2})


def test_two_class_learner_with_text_labels() -> None:
    lr = learner(positive="spam")
    lr.learn_one({"a": 1.0}, "spam")
    lr.learn_one({"a": -1.0}, "ham")
    assert lr.labels == ["ham", "spam"]
    p = lr.predict_proba_one({"a": 1.0})
    assert set(p) == {"ham", "spam"} and p["spam"] > 0.5
    assert lr.predict_one({"a": 1.0}) == "spam" and lr.predict_one({"a": -5.0}) == "ham"
    with pytest.raises(InvalidInputError, match="third"):
        lr.learn_one({"a": 0.0}, "eggs")
    assert lr.labels == ["ham", "spam"] and lr.learned == 2
    unsure = learner()
    with pytest.raises(ConfigError, match="positive"):
        unsure.learn_one({"a": 1.0}, "spam")
    assert unsure.labels == [] and unsure.learned == 0
    ints = learner()
    ints.learn_one({"a": 1.0}, 1)
    ints.learn_one({"a": 0.0}, 0)
    assert ints.predict_one({"a": 3.0}) in (0, 1) and set(ints.predict_proba_one({"a": 1.0})) == {
        0,
        1,
    }


def test_multiclass_and_an_event_passed_whole() -> None:
    lr = learner(learner="river.naive_bayes.GaussianNB")
    for x, y in list(datasets.Bananas())[:50]:
        lr.learn_one(dict(x, y=y), y)  # the target in x is never learned as a feature
    assert "y" not in lr.fields and lr.labels == [False, True]


def test_learn_many_is_learn_one_in_order_for_river() -> None:
    events = [dict(x, y=y) for x, y in list(datasets.Phishing())[:200]]
    one, many = learner(batch=8), learner(batch=8)
    for e in events:
        one.learn_one(one.features_of(e), one.label_of(e))
    for i in range(0, len(events), 8):
        part = events[i : i + 8]
        many.learn_many([many.features_of(e) for e in part], [many.label_of(e) for e in part])
    assert one.checksum() == many.checksum()
    with pytest.raises(InvalidInputError, match="one label per event"):
        many.learn_many([{}], [])


def test_sklearn_learner_columns_and_preprocessing() -> None:
    lr = learner(
        learner="sklearn.linear_model.SGDRegressor",
        preprocessing=["river.preprocessing.StandardScaler"],
        batch=4,
    )
    assert lr.predict_one({"a": 1.0}) == 0.0  # nothing learned yet
    xs = [{"b": float(i), "a": 2.0 * i} for i in range(8)]
    lr.learn_many(xs, [float(i) for i in range(8)])
    assert lr.columns == ["a", "b"] and lr.learned == 8
    assert isinstance(lr.predict_one({"a": 1.0, "b": 0.5}), float)
    assert lr.estimator.random_state == 0  # set, so that shuffling repeats


def test_signature_fields() -> None:
    lr = learner(preprocessing=["river.preprocessing.OneHotEncoder"])
    for i in range(20):
        lr.learn_one({"n": float(i), "c": "ab"[i % 2], **({"m": 1.0} if i % 3 else {})}, i % 2 == 0)
    assert lr.fields["n"]["kind"] == "numeric" and lr.fields["n"]["max"] >= 16.0
    assert lr.fields["c"]["categories"] == ["a", "b"] and lr.fields["m"]["nullable"]


def test_tree_defaults_and_text() -> None:
    reg = learner(learner="river.tree.HoeffdingTreeRegressor")
    assert type(reg.estimator.splitter).__name__ == "QOSplitter"  # flat, unlike EBST
    tree = learner(learner="river.tree.HoeffdingTreeClassifier", params={"grace_period": 20})
    assert tree.strings == "keep"  # trees split on text themselves
    for i in range(200):
        tree.learn_one({"n": float(i % 7), "c": "abc"[i % 3]}, i % 3 == 0)
    back = OnlineLearner.from_state_bytes(tree.state_bytes())
    assert back.checksum() == tree.checksum()
    assert back.predict_proba_one({"n": 1.0, "c": "a"}) == tree.predict_proba_one(
        {"n": 1.0, "c": "a"}
    )


def test_checkpoint_document_holds_learner_metrics_and_detector() -> None:
    from loopml.train.online import DriftDetector, LearnerState, Prequential

    events = [dict(x, y=y) for x, y in list(datasets.Phishing())[:400]]
    state = LearnerState(learner(), Prequential("classification", 50), DriftDetector("adwin"))
    for e in events[:250]:
        x, y = state.learner.features_of(e), state.learner.label_of(e)
        err = state.metrics.update(
            y, state.learner.predict_one(x), state.learner.predict_proba_one(x)
        )
        state.drift.update(err)
        state.learner.learn_one(x, y)
    again = LearnerState.from_bytes(state.to_bytes())
    assert again.checksum() == state.checksum()
    for s in (state, again):
        for e in events[250:]:
            x, y = s.learner.features_of(e), s.learner.label_of(e)
            s.drift.update(
                s.metrics.update(y, s.learner.predict_one(x), s.learner.predict_proba_one(x))
            )
            s.learner.learn_one(x, y)
    assert again.to_bytes() == state.to_bytes()
    assert LearnerState(learner()).to_bytes() != state.to_bytes()
    with pytest.raises(IntegrityError, match="checkpoint"):
        LearnerState.from_bytes(state.learner.state_bytes())  # a learner is not a checkpoint


def test_predictions_are_rivers_own_for_a_two_class_learner() -> None:
    events = list(datasets.Phishing())[:300]
    ours, theirs = learner(), linear_model.LogisticRegression()
    for x, y in events:
        assert ours.predict_one(ours.features_of(x)) == theirs.predict_one(x)  # ties too
        ours.learn_one(ours.features_of(x), y)
        theirs.learn_one(x, y)


# -- the prequential metrics' checkpoint layout ------------------------------------------------


def _generic_state(metrics: Any) -> dict[str, Any]:
    """The metrics' state as loopml wrote it before the windows were written directly: the
    generic encoder over ``vars()`` (the ROC-AUC bins sparse ``[bin, count, ...]``)."""
    from collections import deque

    from loopml.registry.flavors.river_state import encode

    attrs = {k: getattr(metrics, k) for k in metrics.STATE_ATTRS[metrics.task]}
    if "bins" in attrs:
        attrs["bins"] = {
            pos: [[x for b, c in enumerate(row) if c for x in (b, c)] for row in rows]
            for pos, rows in attrs["bins"].items()
        }
    return {
        "task": metrics.task,
        "window": metrics.window,
        "positive": encode(metrics.positive, "metrics.positive"),
        "attrs": encode({k: list(v) if isinstance(v, deque) else v for k, v in attrs.items()}),
    }


@pytest.mark.parametrize(
    ("task", "labels"),
    [
        ("classification", [0, 1]),
        ("classification", ["no", "yes"]),
        ("classification", ["a", "b", "c"]),
        ("regression", None),
    ],
)
def test_metrics_state_is_the_generic_layout_and_old_checkpoints_load(
    task: str, labels: list[Any] | None
) -> None:
    import random

    from loopml.registry.flavors.river_state import dumps
    from loopml.train.online import Prequential

    rng = random.Random(7)
    metrics = Prequential(task, 40)
    for i in range(400):
        if labels is None:
            metrics.update(rng.gauss(0, 1), rng.gauss(0, 1))
            continue
        proba = {label: rng.random() for label in labels} if i % 5 else None
        y_pred = max(proba, key=proba.__getitem__) if proba else None
        metrics.update(rng.choice(labels), y_pred, proba)
    old = _generic_state(metrics)
    # the same bytes as before: a checkpoint's document does not change
    assert dumps(metrics.state()) == dumps(old)
    # a checkpoint written by the generic encoder loads, and continues identically
    loaded = Prequential.from_state(old)
    assert loaded.snapshot() == metrics.snapshot()
    for m in (metrics, loaded):
        m.update(*((1.0, 0.5) if labels is None else (labels[0], labels[0], {labels[0]: 0.9})))
    assert loaded.snapshot() == metrics.snapshot()
    assert dumps(loaded.state()) == dumps(metrics.state())


def test_metrics_state_refuses_damaged_bins() -> None:
    from loopml.train.online import Prequential

    metrics = Prequential("classification", 10)
    metrics.update(1, 1, {0: 0.2, 1: 0.8})
    doc = metrics.state()
    pairs = doc["attrs"]["$dict"]
    bins = next(p for p in pairs if p[0] == "bins")
    bins[1]["$dict"][0][1] = [[5000, 1], []]  # a bin past AUC_BINS
    with pytest.raises(IntegrityError, match="ROC-AUC bin 5000"):
        Prequential.from_state(doc)


#: a metrics state written by loopml before the ROC-AUC bins were dense in memory (window
#: 3; events (1, 0.8), (0, 0.3), (1, 0.35), (0, 0.9) then 1 without probabilities)
OLD_METRICS_STATE = {
    "task": "classification",
    "window": 3,
    "positive": None,
    "attrs": {
        "$dict": [
            ["n", 5],
            ["labels", [0, 1]],
            ["correct", 3],
            ["n_proba", 4],
            ["loss_sum", 3.932225712745666],
            ["w_correct", [False, False, True]],
            ["w_loss", [0.35667494393873245, 1.0498221244986778, 2.302585092994046]],
            ["w_scores", [{"$tuple": [0, 0.3]}, {"$tuple": [1, 0.35]}, {"$tuple": [0, 0.9]}]],
            ["bins", {"$dict": [[1, [[350, 1, 800, 1], [300, 1, 900, 1]]]]}],
        ]
    },
}


def test_a_metrics_state_written_before_loads_and_writes_back_the_same() -> None:
    from loopml.registry.flavors.river_state import dumps
    from loopml.train.online import Prequential

    loaded = Prequential.from_state(OLD_METRICS_STATE)
    assert loaded.snapshot() == {
        "events": 5,
        "cumulative": {"accuracy": 0.6, "log_loss": 0.9830564281864165, "roc_auc": 0.5},
        "window": {"accuracy": 1 / 3, "log_loss": 1.236360720477152, "roc_auc": 0.5},
    }
    assert dumps(loaded.state()) == dumps(OLD_METRICS_STATE)
    fresh = Prequential("classification", 3)
    for y, p in [(1, 0.8), (0, 0.3), (1, 0.35), (0, 0.9)]:
        fresh.update(y, 1 if p >= 0.5 else 0, {0: 1 - p, 1: p})
    fresh.update(1, 1, None)
    assert dumps(fresh.state()) == dumps(OLD_METRICS_STATE)


def test_the_loop_freezes_the_heap_only_while_it_runs() -> None:
    import gc

    from loopml.train.online.learn import _frozen_heap

    assert gc.get_freeze_count() == 0
    with _frozen_heap():
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0
    with pytest.raises(KeyboardInterrupt), _frozen_heap():
        raise KeyboardInterrupt
    assert gc.get_freeze_count() == 0
    gc.freeze()  # someone else's freeze is theirs to undo
    try:
        before = gc.get_freeze_count()
        with _frozen_heap():
            pass
        assert gc.get_freeze_count() == before
    finally:
        gc.unfreeze()
