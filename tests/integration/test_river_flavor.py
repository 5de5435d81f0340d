"""The online flavor: a learner registered as a version loads back without pickle and
predicts what the in-memory learner predicts, through the registry and the server's path."""

from __future__ import annotations

import hashlib
import io
import zipfile

import numpy as np
import orjson
import pandas as pd
import pytest

pytest.importorskip("river")

from river import datasets

from loopml.errors import IntegrityError, UnsafeFormatError
from loopml.project.online import parse_online
from loopml.registry import load_model, register_model
from loopml.registry.bundle import ModelBundle
from loopml.registry.flavors import flavor_for, get_flavor
from loopml.train.online import OnlineLearner
from loopml.train.online.learner import bundle_of
from loopml.workspace import Workspace


def _learned(spec_raw: dict, events: list[dict]) -> OnlineLearner:
    learner = OnlineLearner.from_spec(parse_online(spec_raw, name="m"))
    if learner.kind == "sklearn":
        for i in range(0, len(events), 32):
            chunk = events[i : i + 32]
            learner.learn_many(
                [learner.features_of(e) for e in chunk], [learner.label_of(e) for e in chunk]
            )
        return learner
    for e in events:
        learner.learn_one(learner.features_of(e), learner.label_of(e))
    return learner


@pytest.fixture(scope="module")
def phishing() -> list[dict]:
    return [dict(x, is_phishing=y) for x, y in datasets.Phishing()]


@pytest.fixture(scope="module")
def trump() -> list[dict]:
    return [dict(x, approval=y) for x, y in datasets.TrumpApproval()]


def test_classifier_round_trip_through_the_registry(
    workspace: Workspace, phishing: list[dict]
) -> None:
    spec = {
        "stream": "events.jsonl",
        "target": "is_phishing",
        "learner": "river.linear_model.LogisticRegression",
        "preprocessing": ["river.preprocessing.StandardScaler"],
    }
    learner = _learned(spec, phishing[:800])
    bundle = bundle_of(learner, parse_online(spec, name="phish"), phishing[795:800])
    assert bundle.flavor == "online"
    assert flavor_for(learner).name == "online"
    mv = register_model(workspace, "phish", bundle)
    loaded = load_model(workspace, f"phish@{mv.version}")
    assert loaded.bundle.estimator.checksum() == learner.checksum()

    rest = phishing[800:]
    frame = pd.DataFrame([{k: v for k, v in e.items() if k != "is_phishing"} for e in rest])
    p = loaded.predict(frame)
    expected = np.asarray(
        [
            [learner.predict_proba_one(learner.features_of(e))[c] for c in (False, True)]
            for e in rest
        ]
    )
    assert p.classes == [False, True]
    np.testing.assert_array_equal(p.probabilities, expected)
    assert list(p.labels) == [learner.predict_one(learner.features_of(e)) for e in rest]
    # records, as the server takes them, and its predictor (native: no ONNX for River)
    records = [{k: v for k, v in e.items() if k != "is_phishing"} for e in rest[:20]]
    np.testing.assert_array_equal(loaded.predict(records).probabilities, expected[:20])
    # the server's path: records checked into columns, predicted by the version's predictor
    predictor = loaded.predictor
    assert predictor.kind == "native" and "no ONNX" in (predictor.reason or "")
    checked = loaded.signature.check_records_columns(records)
    np.testing.assert_array_equal(
        predictor.predict_columns(checked.columns).probabilities, expected[:20]
    )
    loaded.bundle.warm_up()  # its sample events predict


def test_regressor_and_text_fields(workspace: Workspace, trump: list[dict]) -> None:
    events = [dict(e, weekday=f"d{i % 7}") for i, e in enumerate(trump)]
    spec = {
        "stream": "events.jsonl",
        "target": "approval",
        "task": "regression",
        "learner": "river.linear_model.LinearRegression",
        "preprocessing": [
            "river.preprocessing.StandardScaler",
            "river.preprocessing.OneHotEncoder",
        ],
    }
    learner = _learned(spec, events[:600])
    mv = register_model(workspace, "trump", bundle_of(learner, None, events[590:600]))
    loaded = load_model(workspace, f"trump@{mv.version}")
    sig = {f.name: f for f in loaded.signature.inputs}
    assert sig["weekday"].kind == "categorical" and sig["ordinal_date"].kind == "numeric"
    rest = events[600:700]
    frame = pd.DataFrame([{k: v for k, v in e.items() if k != "approval"} for e in rest])
    got = loaded.predict(frame).labels
    want = [learner.predict_one(learner.features_of(e)) for e in rest]
    np.testing.assert_array_equal(got, np.asarray(want))
    # a weekday never seen is scored (flagged), never refused
    unseen = loaded.predict([dict(rest[0], weekday="holiday")])
    assert unseen.unknown_fields == [["weekday"]]


def test_sklearn_partial_fit_learner(workspace: Workspace, phishing: list[dict]) -> None:
    spec = {
        "stream": "events.jsonl",
        "target": "is_phishing",
        "learner": "sklearn.linear_model.SGDClassifier",
        "params": {"loss": "log_loss"},
        "classes": [False, True],
        "batch": 32,
    }
    learner = _learned(spec, phishing[:640])
    mv = register_model(workspace, "sgd", bundle_of(learner, None, phishing[:5]))
    loaded = load_model(workspace, f"sgd@{mv.version}")
    rest = phishing[640:]
    p = loaded.predict(
        pd.DataFrame([{k: v for k, v in e.items() if k != "is_phishing"} for e in rest])
    )
    want = [learner.predict_proba_one(learner.features_of(e))[True] for e in rest]
    np.testing.assert_array_equal(p.probabilities[:, 1], np.asarray(want))


def _bundle_members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _rezip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for n, b in members.items():
            zf.writestr(n, b)
    return buf.getvalue()


def test_a_tampered_state_is_refused(phishing: list[dict]) -> None:
    spec = {
        "stream": "s.jsonl",
        "target": "is_phishing",
        "learner": "river.linear_model.LogisticRegression",
    }
    learner = _learned(spec, phishing[:100])
    members = _bundle_members(bundle_of(learner, None, phishing[:5]).to_bytes())
    state = orjson.loads(members["learner.json"])
    # a class outside the allowlist, with the manifest's checksum made to match
    state["estimator"]["$object"] = "subprocess.Popen"
    forged = orjson.dumps(state, option=orjson.OPT_SORT_KEYS)
    manifest = orjson.loads(members["manifest.json"])
    manifest["model"]["checksum"] = hashlib.sha256(forged).hexdigest()
    bad = _rezip({**members, "learner.json": forged, "manifest.json": orjson.dumps(manifest)})
    with pytest.raises(UnsafeFormatError, match=r"subprocess\.Popen"):
        ModelBundle.from_bytes(bad, what="forged")
    # changed bytes without the checksum: damaged
    changed = _rezip({**members, "learner.json": members["learner.json"].replace(b"0.", b"1.", 1)})
    with pytest.raises(IntegrityError, match="checksum"):
        ModelBundle.from_bytes(changed, what="changed")


def test_flavor_table_entry() -> None:
    flavor = get_flavor("online")
    assert flavor.members == ("learner.json",)
    assert not flavor.handles("river.linear_model.LogisticRegression")  # never a batch model
    assert flavor.handles("loopml.train.online.learner.OnlineLearner")
