"""The online learning process in one process: checkpoints in SQLite and PostgreSQL, events
with positions (Redis, a JSON Lines file, MQTT, the server's feedback), dead letters, drift
events, alias moves, resuming that equals an offline replay."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from loopml.errors import ConfigError, ConflictError, InvalidInputError, StoreError
from loopml.settings import Settings
from loopml.stores.records import Feedback, OnlineCheckpoint
from loopml.stores.registry import open_metadata
from loopml.train.online.events import FileEvents, RedisEvents, open_stream
from loopml.utils import utcnow
from loopml.workspace import Workspace, init
from tests.conftest import service_unavailable

HOST, REDIS_PORT, MQTT_PORT = "127.0.0.1", 6379, 1883


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def redis_client() -> Iterator[Any]:
    try:
        import redis
    except ImportError:
        service_unavailable("redis is not installed: pip install 'loopml[redis]'")
    client = redis.Redis(host=HOST, port=REDIS_PORT, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        service_unavailable(f"Redis is not reachable at {HOST}:{REDIS_PORT}: {exc}")
    yield client
    client.close()


@pytest.fixture
def redis_stream(redis_client: Any) -> Iterator[tuple[Any, str]]:
    name = f"loopml-test-learn-{uuid.uuid4().hex[:12]}"
    yield redis_client, name
    redis_client.delete(name)


def _sha(n: int) -> str:
    return f"{n:064x}"


def _cp(seq: int, **changes: Any) -> OnlineCheckpoint:
    cp = OnlineCheckpoint(
        name="m",
        stream="redis://127.0.0.1:6379/0?stream=s",
        seq=seq,
        artifact_sha256=_sha(seq),
        checksum=_sha(500 + seq),
        position={"last_id": f"{seq}-0"},
        events=10 * seq,
        learned=9 * seq,
        run_id="r" * 32,
        created_at=utcnow(),
        metrics={"cumulative": {"accuracy": 0.5}, "nan": float("nan")},
    )
    return replace(cp, **changes)


# -- the checkpoint store: SQLite and PostgreSQL ----------------------------------------------


def _check_checkpoint_store(uri: str) -> None:
    store = open_metadata(uri, Settings())
    try:
        assert store.latest_online_checkpoint("m", "redis://127.0.0.1:6379/0?stream=s") is None
        first = store.add_online_checkpoint(_cp(1))
        second = store.add_online_checkpoint(_cp(2))
        got = store.latest_online_checkpoint("m", first.stream)
        assert got is not None and got.seq == 2
        assert got.position == {"last_id": "2-0"} and got.events == 20 and got.learned == 18
        assert got.artifact_sha256 == second.artifact_sha256
        assert got.checksum == _sha(502)
        assert got.created_at.utcoffset() is not None
        # a seq taken (two learners on one stream), or one that skips: refused, nothing stored
        for seq in (2, 4):
            with pytest.raises(ConflictError) as info:
                store.add_online_checkpoint(_cp(seq))
            assert (
                info.value.code == "checkpoint_taken"
                and "another learner" in info.value.hint.lower()
            )
        # other streams and models are their own sequences
        store.add_online_checkpoint(_cp(1, stream="file:/x.jsonl"))
        store.add_online_checkpoint(_cp(1, name="other"))
        assert [c.seq for c in store.list_online_checkpoints("m", first.stream)] == [2, 1]
        assert len(store.list_online_checkpoints("m")) == 3
        for bad, field in (
            (_cp(3, artifact_sha256="abc"), "artifact_sha256"),
            (_cp(3, checksum="A" * 64), "checksum"),
            (_cp(3, learned=31), "learned"),
            (_cp(3, position=["x"]), "position"),
            (_cp(3, name=""), "name"),
            (replace(_cp(3), seq=0), "seq"),
        ):
            with pytest.raises(InvalidInputError) as bad_info:
                store.add_online_checkpoint(bad)
            assert bad_info.value.where["field"] == field
        latest = store.latest_online_checkpoint("m", first.stream)
        assert latest is not None and latest.seq == 2
        # feedback in the order it was stored, with its sequence
        now = utcnow()
        store.add_feedback([Feedback(f"p{i}", i % 2, None, now, "test") for i in range(5)])
        rows = store.list_feedback_after(0, 3)
        assert len(rows) == 3
        seqs = [s for s, _ in rows]
        assert seqs == sorted(seqs)
        rest = store.list_feedback_after(seqs[-1], 100)
        assert len(rest) == 2 and all(s > seqs[-1] for s, _ in rest)
        assert store.list_feedback_after(0, 100, until=now) == []
    finally:
        store.close()


def test_checkpoints_commit_in_order_sqlite(tmp_path: Path) -> None:
    _check_checkpoint_store(f"sqlite:///{tmp_path / 'loopml.db'}")


@pytest.mark.postgres
def test_checkpoints_commit_in_order_postgres(postgres_uri: str) -> None:
    _check_checkpoint_store(postgres_uri)


# -- events with positions --------------------------------------------------------------------


def test_redis_events_carry_their_entry_ids(redis_stream: tuple[Any, str], workspace: Any) -> None:
    client, name = redis_stream
    ids = [client.xadd(name, {"data": json.dumps({"x": i, "y": i % 2})}).decode() for i in range(5)]
    client.xadd(name, {"data": "not json {"})
    client.xadd(name, {"x": "1.5", "y": "yes"})  # fields without data: JSON where it parses
    client.xadd(name, {"data": json.dumps({"x": 7}), "other": "1"})  # data among others
    client.xadd(name, {"x": "2"})  # one field, not data
    uri = f"redis://{HOST}:{REDIS_PORT}/0?stream={name}"
    stream = open_stream(uri, workspace, target="y")
    assert isinstance(stream, RedisEvents) and stream.stream_key == uri
    events = stream.read_events(100, 1.0)
    assert [e.position["last_id"] for e in events[:5]] == ids
    assert [e.record for e in events[:2]] == [{"x": 0, "y": 0}, {"x": 1, "y": 1}]
    assert events[5].record is None and events[5].error and "not JSON" in events[5].error
    assert events[6].record == {"x": 1.5, "y": "yes"}
    assert events[7].record == {"x": 7} and events[8].record == {"x": 2}
    assert len(events) == 9
    stream.close()
    again = open_stream(uri, workspace, target="y")
    again.resume(events[2].position)
    assert [e.record for e in again.read_events(2, 1.0)] == [{"x": 3, "y": 1}, {"x": 4, "y": 0}]
    again.close()


def test_a_missing_redis_stream_is_retryable(redis_client: Any, workspace: Any) -> None:
    stream = open_stream(
        f"redis://{HOST}:{REDIS_PORT}/0?stream=nope-{uuid.uuid4().hex}", workspace, target="y"
    )
    with pytest.raises(StoreError) as info:
        stream.read_events(1, 0.1)
    assert info.value.code == "stream_missing" and "does not exist" in info.value.message
    with pytest.raises(InvalidInputError, match="consumer group"):
        open_stream(f"redis://{HOST}:{REDIS_PORT}/0?stream=s&group=g", workspace, target="y")


def test_an_unreachable_redis_is_retryable(workspace: Any) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    stream = open_stream(f"redis://127.0.0.1:{port}/0?stream=s", workspace, target="y")
    with pytest.raises(StoreError) as info:
        stream.read_events(1, 0.1)
    assert info.value.code == "source_unreachable"


def test_file_events_resume_after_their_byte_offset(tmp_path: Path, workspace: Any) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"x": 1, "y": 0}\n\n[1, 2]\n{"x": 2, "y": 1}\n{"x": 3, "y"')
    stream = open_stream(str(path), workspace, target="y")
    assert isinstance(stream, FileEvents)
    events = stream.read_events(10, 0.2)
    assert [e.record for e in events] == [{"x": 1, "y": 0}, None, {"x": 2, "y": 1}]
    assert "array" in (events[1].error or "") and events[1].where == {"line": 3}
    offset = events[2].position["offset"]
    assert offset == len(path.read_bytes().rsplit(b"\n", 1)[0]) + 1
    with path.open("a") as fh:
        fh.write(": 0}\n")  # the last line completed
    again = open_stream(str(path), workspace, target="y")
    again.resume(events[0].position)
    assert [e.record for e in again.read_events(10, 0.2)] == [
        None,
        {"x": 2, "y": 1},
        {"x": 3, "y": 0},
    ]
    missing = open_stream(str(tmp_path / "nope.jsonl"), workspace, target="y")
    with pytest.raises(StoreError) as info:
        missing.read_events(1, 0.1)
    assert info.value.code == "stream_missing"


def test_unknown_stream_schemes_are_named(workspace: Any) -> None:
    with pytest.raises(LookupError, match="kafka"):
        open_stream("kafka://broker/topic", workspace, target="y")
    with pytest.raises(InvalidInputError):
        open_stream("  ", workspace, target="y")


__all__ = ["ConfigError", "Workspace", "init"]


# -- the loop ---------------------------------------------------------------------------------

PHISHING_FEATURES = None  # every field but the target


def _spec(stream: str, **changes: Any) -> Any:
    from loopml.project.online import parse_online

    raw: dict[str, Any] = {
        "stream": stream,
        "target": "y",
        "learner": "river.linear_model.LogisticRegression",
        "preprocessing": ["river.preprocessing.StandardScaler"],
        "checkpoint_every": 100,
        "alias": None,
    }
    raw.update(changes)
    return parse_online(raw, "loopml.yaml", name="toy")


def _phishing(n: int | None = None) -> list[dict[str, Any]]:
    from river import datasets

    rows = [{**x, "y": bool(y)} for x, y in datasets.Phishing()]
    return rows if n is None else rows[:n]


def _write(path: Path, records: list[Any]) -> None:
    with path.open("a") as fh:
        for r in records:
            fh.write((r if isinstance(r, str) else json.dumps(r)) + "\n")


def _replay(spec: Any, records: list[dict[str, Any]]) -> str:
    """The checksum of a fresh learner fed ``records`` (the labelled ones) in one process."""
    from loopml.train.online.learner import OnlineLearner

    learner = OnlineLearner.from_spec(spec)
    for r in records:
        y = learner.label_of(r)
        if y is not None:
            learner.learn_one(learner.features_of(r), y)
    return str(learner.checksum())


def test_learning_in_pieces_reaches_the_replayed_model(tmp_path: Path, workspace: Any) -> None:
    from loopml.train.online.learn import learn

    records = _phishing(700)
    path = tmp_path / "events.jsonl"
    _write(path, records)
    spec = _spec(str(path), metric_window=200)
    results = [learn(workspace, spec, max_events=n, idle_timeout=0.5) for n in (150, 333, 1000)]
    assert [r.events for r in results] == [150, 333, 217]
    assert [r.resumed_from for r in results] == [None, 2, 6]
    assert results[-1].total_events == 700
    assert results[-1].checksum == _replay(spec, records)
    ws2 = init(tmp_path / "ws2")
    one_go = learn(ws2, spec, max_events=700)
    assert one_go.checksum == results[-1].checksum
    # the prequential totals resumed with the model: the same as in one go
    assert results[-1].metrics["cumulative"] == one_go.metrics["cumulative"]
    # windowed metrics are steps of the runs, one per window of learned events
    steps = [
        (s.step, s.value)
        for r in results
        for s in workspace.metadata.list_steps(r.run.id, "online.accuracy")
    ]
    assert [step for step, _ in steps] == [200, 400, 600]
    one_go_steps = ws2.metadata.list_steps(one_go.run.id, "online.accuracy")
    assert steps == [(s.step, s.value) for s in one_go_steps]
    ws2.close()
    run = workspace.metadata.get_run(results[1].run.id)
    assert run.status == "succeeded" and run.parent_id == results[0].run.id
    assert run.params["online"]["learner"] == spec.learner


def test_bad_events_are_dead_lettered_and_unlabelled_ones_only_predicted(
    tmp_path: Path, workspace: Any
) -> None:
    from loopml.train.online.learn import learn

    good = _phishing(60)
    path = tmp_path / "events.jsonl"
    _write(path, good[:30])
    _write(
        path,
        [
            "not json",
            "[1, 2]",
            {"https": "yes", "y": True},  # a number field as text
            {"https": [1], "y": True},
            {"https": 1.0, "y": {"a": 1}},
            {"https": 1.0, "y": 0.5},  # a class that is not a whole number
            {k: v for k, v in good[30].items() if k != "y"},  # no target: predicted
            {**good[31], "y": None},
        ],
    )
    _write(path, good[32:])
    spec = _spec(str(path))
    res = learn(workspace, spec, idle_timeout=0.3)
    assert (res.events, res.learned, res.predicted_only, res.dead_letters) == (66, 58, 2, 6)
    letters = [
        json.loads(line)
        for line in (Path(workspace.root) / "online" / "toy" / "dead_letters.jsonl")
        .read_text()
        .splitlines()
    ]
    reasons = [letter["reason"] for letter in letters]
    assert "not JSON" in reasons[0] and "array" in reasons[1]
    assert "'https' is text ('yes'); earlier events gave number" in reasons[2]
    assert "'https' is list [1]" in reasons[3] and "target 'y'" in reasons[4]
    assert letters[0]["where"] == {"line": 31} and letters[0]["raw"] == "not json"
    expected = _replay(spec, good[:30] + good[32:])
    assert res.checksum == expected


def test_dead_letters_go_to_a_redis_stream(
    tmp_path: Path, workspace: Any, redis_stream: tuple[Any, str]
) -> None:
    from loopml.train.online.learn import learn

    client, name = redis_stream
    path = tmp_path / "events.jsonl"
    _write(path, [*_phishing(5), "oops", *_phishing(10)[5:]])
    spec = _spec(str(path), dead_letter=f"redis://{HOST}:{REDIS_PORT}/0?stream={name}")
    res = learn(workspace, spec, idle_timeout=0.3)
    assert res.dead_letters == 1 and res.learned == 10
    entries = client.xrange(name)
    letter = json.loads(entries[0][1][b"data"])
    assert letter["raw"] == "oops" and "not JSON" in letter["reason"]


def test_drift_on_the_error_stream_is_a_monitor_event(tmp_path: Path, workspace: Any) -> None:
    from loopml.monitor.events import list_events
    from loopml.train.online.learn import learn

    records = _phishing()
    flipped = [{**r, "y": not r["y"]} for r in records]  # the concept turns over
    path = tmp_path / "events.jsonl"
    _write(path, records + flipped)
    spec = _spec(str(path), drift={"detector": "adwin"})
    res = learn(workspace, spec, idle_timeout=0.3)
    assert res.drifts >= 1
    events = list_events(workspace, model="toy", kind="drift")
    assert len(events) == res.drifts
    first = min(e.evidence["event"] for e in events)
    assert first > len(records)  # found after the change, not before
    assert events[0].evidence["source"] == "online" and "adwin" in events[0].reason.lower()


class _Scored:
    def __init__(self, n: int) -> None:
        import numpy as np

        self.labels = np.zeros(n, dtype=int)
        self.scores = np.full(n, 0.5)


def test_feedback_joined_to_logged_predictions_is_a_stream(workspace: Any) -> None:
    import pandas as pd

    from loopml.predictions import write_predictions
    from loopml.train.online import events as events_module
    from loopml.train.online.learn import learn

    records = _phishing(40)
    frame = pd.DataFrame([{k: v for k, v in r.items() if k != "y"} for r in records])
    ids = [uuid.uuid4().hex for _ in records]
    write_predictions(workspace.lake, "toy", 1, frame, _Scored(len(ids)), ids, latency_ms=1.0)
    other = [uuid.uuid4().hex for _ in range(3)]
    write_predictions(workspace.lake, "other", 1, frame.head(3), _Scored(3), other, latency_ms=1.0)
    at = utcnow() - timedelta(seconds=5)
    fb = [
        Feedback(pid, r["y"], None, at, "test")
        for pid, r in zip(ids[:30], records[:30], strict=True)
    ]
    fb.insert(5, Feedback(other[0], 1, None, at, "test"))  # another model's: passed over
    workspace.metadata.add_feedback(fb)
    spec = _spec("feedback:toy")
    res = learn(workspace, spec, idle_timeout=0.5)
    assert res.learned == 30 and res.dead_letters == 0
    by_id = dict(zip(ids, records, strict=True))

    def stored_order() -> list[dict[str, Any]]:  # the order the store numbered the labels
        rows = workspace.metadata.list_feedback_after(0, 1000)
        return [by_id[fb.prediction_id] for _, fb in rows if fb.prediction_id in by_id]

    assert res.checksum == _replay(spec, stored_order())
    # more labels later: the next run learns only those
    workspace.metadata.add_feedback(
        [
            Feedback(pid, r["y"], None, at, "t2")
            for pid, r in zip(ids[30:], records[30:], strict=True)
        ]
    )
    again = learn(workspace, spec, idle_timeout=0.5)
    assert again.learned == 10 and again.checksum == _replay(spec, stored_order())
    # a label whose prediction never reaches the log is dead-lettered after the grace time
    workspace.metadata.add_feedback([Feedback("f" * 32, 1, None, at, "t3")])
    old = events_module.FeedbackEvents.grace
    events_module.FeedbackEvents.grace = 0.2
    try:
        late = learn(workspace, spec, idle_timeout=0.6)
    finally:
        events_module.FeedbackEvents.grace = old
    assert late.dead_letters == 1 and late.learned == 0


def _mqtt_ready() -> None:
    try:
        import paho.mqtt.client  # noqa: F401
    except ImportError:
        service_unavailable("paho-mqtt is not installed: pip install 'loopml[mqtt]'")
    with socket.socket() as sock:
        sock.settimeout(1)
        if sock.connect_ex((HOST, MQTT_PORT)) != 0:
            service_unavailable(f"the MQTT broker is not reachable at {HOST}:{MQTT_PORT}")


@pytest.mark.slow
def test_mqtt_messages_are_acknowledged_by_checkpoints(workspace: Any) -> None:
    import time

    from loopml.train.online.learn import learn

    _mqtt_ready()
    import paho.mqtt.client as mqtt

    tag = uuid.uuid4().hex[:12]
    topic, client_id = f"loopml/test/learn/{tag}", f"loopml-learn-{tag}"
    uri = f"mqtt://{HOST}:{MQTT_PORT}/{topic}?client_id={client_id}"
    spec = _spec(uri)
    first = learn(workspace, spec, idle_timeout=0.5)  # makes the persistent session
    assert first.events == 0
    records = _phishing(45)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
    pub.connect(HOST, MQTT_PORT)
    pub.loop_start()
    try:
        for r in records:
            pub.publish(topic, json.dumps(r), qos=1).wait_for_publish(5)
    finally:
        pub.loop_stop()
        pub.disconnect()
    try:
        res = learn(workspace, spec, idle_timeout=1.0)
        # the broker holds 20 unacknowledged messages at most: checkpoints acknowledge them
        assert res.learned == 45 and res.checkpoints >= 3
        assert res.checksum == _replay(spec, records)
        again = learn(workspace, spec, idle_timeout=0.5)
        assert again.events == 0  # all acknowledged: nothing redelivered
    finally:
        cleaner = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True
        )
        cleaner.connect(HOST, MQTT_PORT)
        cleaner.loop_start()
        time.sleep(0.2)
        cleaner.loop_stop()
        cleaner.disconnect()


@pytest.mark.slow
def test_checkpoints_move_the_alias_a_server_follows(
    tmp_path: Path, workspace: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    import time

    import httpx

    from loopml.serve import start_background_server
    from loopml.train.online.learn import learn

    records = _phishing(600)
    path = tmp_path / "events.jsonl"
    _write(path, records[:200])
    spec = _spec(str(path), alias="online")
    workspace.settings = workspace.settings.model_copy(update={"online_swap_seconds": 0.0})
    first = learn(workspace, spec, max_events=200)
    assert first.versions and workspace.metadata.get_aliases("toy") == {
        "online": first.versions[-1]
    }
    server = start_background_server(
        workspace,
        "127.0.0.1",
        0,
        models={"toy": "toy@online"},
        reload_interval=0.1,
        log_predictions=False,
    )
    rows = [{k: v for k, v in r.items() if k != "y"} for r in records[:20]]
    seen: list[tuple[int, Any]] = []
    stop = threading.Event()

    def client_loop() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for i in range(2000):
                if stop.is_set():
                    break
                r = client.post("/v1/models/toy:predict", json={"instances": [rows[i % 20]]})
                seen.append((r.status_code, r.json().get("version")))

    thread = threading.Thread(target=client_loop)
    try:
        thread.start()
        time.sleep(0.3)
        _write(path, records[200:])
        second = learn(workspace, spec, idle_timeout=0.3)
        assert second.versions and second.versions[0] > first.versions[-1]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            info = httpx.get(f"{server.url}/v2/models/toy", timeout=5).json()
            if info["versions"] == [str(second.versions[-1])]:
                break
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join(60)
        server.stop()
    assert {s for s, _ in seen} == {200}
    versions = [v for _, v in seen]
    assert versions == sorted(versions) and versions[-1] == second.versions[-1]
    assert len(set(versions)) >= 2
