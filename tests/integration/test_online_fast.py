"""The learner's fast paths for multiclass classification and regression (River learners,
event by event) learn, score, count, dead-letter and checkpoint exactly as the event-by-event
path does, on River's bundled ImageSegments (7 classes), TrumpApproval and ChickWeights
(regression) with every kind of event the fast path must leave to the careful one."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from loopml.workspace import Workspace, init


def _spec(stream: str, **changes: Any) -> Any:
    from loopml.project.online import parse_online

    raw: dict[str, Any] = {
        "stream": stream,
        "target": "y",
        "preprocessing": ["river.preprocessing.StandardScaler"],
        "checkpoint_every": 97,
        "metric_window": 50,
        "alias": None,
    }
    raw.update(changes)
    return parse_online(raw, "loopml.yaml", name="toy")


def _rows(dataset: str, n: int) -> list[dict[str, Any]]:
    from river import datasets

    data = getattr(datasets, dataset)()
    return [{**x, "y": y} for x, y in data][:n]


def _mixed(rows: list[dict[str, Any]], task: str) -> list[Any]:
    """``rows`` with malformed events, events without a target, changed shapes, integers
    for floats, missing values, new fields and (by task) labels the fast path refuses."""
    first = next(iter(rows[0]))
    out: list[Any] = []
    for i, r in enumerate(rows):
        if i % 97 == 5:
            out.append("not json")
        if i % 89 == 3:
            out.append("[1, 2]")
        if i % 83 == 7:
            out.append({**r, first: "yes"})  # a number field as text: dead-lettered
        if i % 79 == 11:
            out.append({k: v for k, v in r.items() if k != "y"})  # predicted only
        if i % 71 == 13 and isinstance(r[first], float):
            r = {**r, first: round(r[first])}  # an integer in a float field
        if i % 67 == 17:
            r = {**r, first: None}  # a missing value
        if i % 61 == 19:
            r = dict(reversed(list(r.items())))  # the same fields in another order
        if i % 59 == 23:
            r = {**r, "note": "text nobody learns", "extra": [1]}  # new fields
        if task == "regression":
            if i % 53 == 29:
                r = {**r, "y": int(r["y"])}  # an integer target
            if i % 131 == 31:
                out.append({**r, "y": True})  # a boolean target: dead-lettered
            if i % 113 == 37:
                out.append({**r, "y": "high"})  # text: dead-lettered
        else:
            if i % 131 == 31:
                out.append({**r, "y": 2.5})  # a fractional class: dead-lettered
            if i % 173 == 41:
                out.append({**r, "y": 7})  # a class of another type, learned
        out.append(r)
    return out


def _write(path: Path, records: list[Any]) -> None:
    with path.open("w") as fh:
        for r in records:
            fh.write((r if isinstance(r, str) else json.dumps(r)) + "\n")


def _outcome(ws: Workspace, res: Any) -> dict[str, Any]:
    from loopml.monitor.events import list_events

    steps = [(s.key, s.step, s.value) for s in ws.metadata.list_steps(res.run.id)]
    cps = ws.metadata.list_online_checkpoints("toy", res.stream, limit=1000)
    letters = (Path(ws.root) / "online" / "toy" / "dead_letters.jsonl").read_text().splitlines()
    return {
        "counts": (res.events, res.learned, res.predicted_only, res.dead_letters, res.drifts),
        "checksum": res.checksum,
        "metrics": res.metrics,
        "steps": steps,
        "checkpoints": sorted((c.seq, c.events, c.learned, c.checksum) for c in cps),
        "positions": sorted((c.seq, json.dumps(c.position)) for c in cps),
        "letters": [(json.loads(x)["where"], json.loads(x)["reason"]) for x in letters],
        "drifts": sorted(e.evidence["event"] for e in list_events(ws, model="toy", kind="drift")),
    }


def _both_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, records: list[Any], spec: Any
) -> tuple[dict[str, Any], dict[str, Any], int]:
    """The outcome with the fast path, without it, and how many events it took."""
    from loopml.train.online import learn as learn_module

    taken: list[int] = []
    fast = learn_module._Loop._fast

    def counting(self: Any, batch: Any, start: int, run_id: str, ready: Any) -> int:
        end: int = fast(self, batch, start, run_id, ready)
        taken.append(end - start)
        return end

    outcomes = []
    for on in (True, False):
        with monkeypatch.context() as m:
            if on:
                m.setattr(learn_module._Loop, "_fast", counting)
            else:  # every event through handle()
                m.setattr(learn_module._Loop, "_ready", lambda self: None)
            ws = init(tmp_path / f"ws-{on}")
            try:
                res = learn_module.learn(ws, spec, idle_timeout=0.3)
                outcomes.append(_outcome(ws, res))
            finally:
                ws.close()
    return outcomes[0], outcomes[1], sum(taken)


DRIFT = {"detector": "page_hinkley", "threshold": 5.0}


@pytest.mark.parametrize(
    ("learner", "drift"),
    [
        ("river.linear_model.SoftmaxRegression", None),
        ("river.linear_model.SoftmaxRegression", DRIFT),
        ("river.naive_bayes.GaussianNB", None),
    ],
)
def test_the_multiclass_fast_path_learns_as_the_careful_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, learner: str, drift: Any
) -> None:
    records = _mixed(_rows("ImageSegments", 700), "classification")
    path = tmp_path / "events.jsonl"
    _write(path, records)
    spec = _spec(str(path), learner=learner, drift=drift, task="classification")
    with_fast, without, taken = _both_paths(tmp_path, monkeypatch, records, spec)
    assert taken > 550  # the fast path took most events
    assert with_fast == without
    events, learned, predicted, dead, drifts = with_fast["counts"]
    assert events == len(records) and learned + predicted + dead == events
    assert dead > 10 and predicted > 5
    assert "log_loss" in with_fast["metrics"]["window"]
    if drift is not None:
        assert drifts >= 1 and len(with_fast["drifts"]) == drifts


@pytest.mark.parametrize(
    ("dataset", "learner", "drift"),
    [
        ("TrumpApproval", "river.linear_model.LinearRegression", None),
        ("TrumpApproval", "river.linear_model.LinearRegression", DRIFT),
        ("ChickWeights", "river.tree.HoeffdingTreeRegressor", None),
    ],
)
def test_the_regression_fast_path_learns_as_the_careful_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dataset: str, learner: str, drift: Any
) -> None:
    records = _mixed(_rows(dataset, 578), "regression")
    path = tmp_path / "events.jsonl"
    _write(path, records)
    spec = _spec(str(path), learner=learner, drift=drift, task="regression")
    with_fast, without, taken = _both_paths(tmp_path, monkeypatch, records, spec)
    assert taken > 450
    assert with_fast == without
    events, learned, predicted, dead, drifts = with_fast["counts"]
    assert events == len(records) and learned + predicted + dead == events
    assert dead > 10 and predicted > 5
    assert "mae" in with_fast["metrics"]["window"]
    if drift is not None:
        assert drifts >= 1 and len(with_fast["drifts"]) == drifts


# -- the pipeline's steps called one by one (fast.unrolled) -----------------------------------

TWO_STEPS = ["river.preprocessing.StandardScaler", "river.preprocessing.MinMaxScaler"]


@pytest.mark.parametrize(
    ("dataset", "learner", "task", "n"),
    [
        ("Phishing", "river.linear_model.LogisticRegression", "classification", 600),
        ("ImageSegments", "river.linear_model.SoftmaxRegression", "classification", 700),
        ("TrumpApproval", "river.linear_model.LinearRegression", "regression", 578),
    ],
)
@pytest.mark.parametrize("during_predict", [False, True])
def test_pipelines_of_two_steps_learn_as_the_careful_path(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    dataset: str,
    learner: str,
    task: str,
    n: int,
    during_predict: bool,
) -> None:
    """Each step's learn_one then transform_one, in order, as River's Pipeline does. While
    River's learn_during_predict() is on (a pipeline's steps then learn on each prediction
    asked for) every event takes the careful path."""
    import contextlib

    from river import compose

    rows = _rows(dataset, n)
    if dataset == "Phishing":
        rows = [{**r, "y": bool(r["y"])} for r in rows]
    records = _mixed(rows, task)
    path = tmp_path / "events.jsonl"
    _write(path, records)
    spec = _spec(str(path), learner=learner, task=task, preprocessing=TWO_STEPS)
    with compose.learn_during_predict() if during_predict else contextlib.nullcontext():
        with_fast, without, taken = _both_paths(tmp_path, monkeypatch, records, spec)
    assert taken == 0 if during_predict else taken > n * 3 // 4
    assert _same(with_fast, without)
    if dataset == "Phishing" and not during_predict:  # MinMaxScaler: NaN first, not ranked
        assert math.isnan(with_fast["metrics"]["cumulative"]["log_loss"])
        assert 0.5 < with_fast["metrics"]["cumulative"]["roc_auc"] <= 1.0


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Outcomes equal, a NaN equal to a NaN."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_only_plain_pipelines_are_unrolled() -> None:
    from river import compose, linear_model, preprocessing

    from loopml.train.online.fast import unrolled

    scale, minmax = preprocessing.StandardScaler(), preprocessing.MinMaxScaler()
    final = linear_model.LogisticRegression()
    steps, last = unrolled(compose.Pipeline(scale, minmax, final))
    assert last is final
    assert steps == (
        (scale.learn_one, scale.transform_one),
        (minmax.learn_one, minmax.transform_one),
    )

    class Mine(compose.Pipeline):
        pass

    union = compose.TransformerUnion(preprocessing.StandardScaler(), preprocessing.MinMaxScaler())
    for other in (
        final,  # a learner alone
        compose.Pipeline(union, linear_model.LogisticRegression()),
        Mine(preprocessing.StandardScaler(), linear_model.LogisticRegression()),
        compose.Pipeline(preprocessing.StandardScaler(), preprocessing.MinMaxScaler()),
    ):
        assert unrolled(other) == ((), other)
    pipeline = compose.Pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression())
    with compose.learn_during_predict():
        assert unrolled(pipeline) == ((), pipeline)
    assert unrolled(pipeline)[0]


# -- a checkpoint's metrics written by orjson in one pass (Prequential.state(framed=True)) ----


@pytest.mark.parametrize(
    "labels", [[False, True], [0, 1], [0, 1, 2], ["no", "yes"], [True, 2**70], [None, 1]]
)
@pytest.mark.parametrize("n", [0, 1, 7, 400])
def test_framed_metrics_state_is_the_same_bytes(labels: list[Any], n: int) -> None:
    import random

    import orjson

    from loopml.train.online.metrics import Prequential, _framed_pairs

    rng = random.Random(n)
    metrics = Prequential("classification", 50)
    for i in range(n):
        p = rng.random() if i % 11 else float("nan")
        proba = {labels[0]: 1.0 - p, labels[-1]: p} if i % 7 else None
        metrics.update(rng.choice(labels), labels[i % len(labels)], proba)
    if n == 400:  # a score the generic encoder writes itself: left to it
        metrics.w_scores.append((labels[0], float("inf")))

    def dumps(tree: Any) -> bytes:
        return orjson.dumps(tree, option=orjson.OPT_SORT_KEYS)

    assert dumps(metrics.state(framed=True)) == dumps(metrics.state())
    framed = _framed_pairs(metrics.w_scores)
    plain = labels in ([False, True], [0, 1], [0, 1, 2], [None, 1])
    assert (framed is not None) == (plain and n == 7)  # (an empty window: plain)
    loaded = Prequential.from_state(json.loads(dumps(metrics.state(framed=True))))
    assert list(loaded.w_scores) == list(metrics.w_scores) or n == 400
