"""The learner's fast path (runs of events of a shape already checked, in one loop of local
variables) learns, scores, counts and checkpoints exactly as the event-by-event path does;
Redis entries decoded together stay apart (a crafted one cannot spill into the next); a
broker cut mid-run is retried, then given up on with a clear error."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loopml.errors import StoreError
from loopml.train.online.events import RedisBatch, decode_all
from loopml.workspace import Workspace, init
from tests.conftest import service_unavailable

HOST, REDIS_PORT = "127.0.0.1", 6379


def _spec(stream: str, **changes: Any) -> Any:
    from loopml.project.online import parse_online

    raw: dict[str, Any] = {
        "stream": stream,
        "target": "y",
        "learner": "river.linear_model.LogisticRegression",
        "preprocessing": ["river.preprocessing.StandardScaler"],
        "checkpoint_every": 97,
        "metric_window": 50,
        "alias": None,
    }
    raw.update(changes)
    return parse_online(raw, "loopml.yaml", name="toy")


def _mixed() -> list[Any]:
    """River's Phishing events (two classes) as they come, with every kind of event the
    fast path must leave to the careful one, or take identically."""
    from river import datasets

    rows = [{**x, "y": bool(y)} for x, y in datasets.Phishing()][:600]
    out: list[Any] = []
    for i, r in enumerate(rows):
        if i % 97 == 5:
            out.append("not json")
        if i % 89 == 3:
            out.append("[1, 2]")
        if i % 83 == 7:
            out.append({**r, "https": "yes"})  # a number field as text: dead-lettered
        if i % 79 == 11:
            out.append({k: v for k, v in r.items() if k != "y"})  # predicted only
        if i % 71 == 13:
            r = {**r, "age_of_domain": int(r["age_of_domain"] > 0.5)}  # an integer, a float field
        if i % 67 == 17:
            r = {**r, "ip_in_url": None}  # a missing value
        if i % 61 == 19:
            r = dict(reversed(list(r.items())))  # the same fields in another order
        if i % 59 == 23:
            r = {**r, "note": "text nobody learns", "extra": [1]}  # new fields
        if i % 53 == 29:
            r = {**r, "y": 1}  # the label True as 1
        if i % 131 == 31:
            out.append({**r, "y": "maybe"})  # a third label: dead-lettered
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


@pytest.mark.parametrize("drift", [None, {"detector": "page_hinkley", "threshold": 5.0}])
def test_the_fast_path_learns_as_the_careful_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, drift: Any
) -> None:
    from loopml.train.online import learn as learn_module

    records = _mixed()
    path = tmp_path / "events.jsonl"
    _write(path, records)
    spec = _spec(str(path), drift=drift)
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
            else:  # every event through handle(), as before the fast path
                m.setattr(learn_module._Loop, "_ready", lambda self: None)
            ws = init(tmp_path / f"ws-{on}")
            try:
                res = learn_module.learn(ws, spec, idle_timeout=0.3)
                outcomes.append(_outcome(ws, res))
            finally:
                ws.close()
    with_fast, without = outcomes
    assert sum(taken) > 500  # the fast path took most events
    assert with_fast == without
    events, learned, predicted, dead, drifts = with_fast["counts"]
    assert events == len(records) and learned + predicted + dead == events
    assert dead > 10 and predicted > 5
    if drift is not None:
        assert drifts >= 1 and len(with_fast["drifts"]) == drifts


# -- decoding Redis entries -------------------------------------------------------------------

#: values that, were the entries' JSON joined and parsed as one document, would split into
#: two objects, or merge two entries into one, and shift every event after them
CRAFTED = [
    b'{"x": 1, "y": 0}',
    b'{"x": 2, "y": 1}, {"x": 3, "y": 0}',
    b'{"x": "',
    b'"}',
    b'{"x": 4, "y": 1}]\n[{"x": 5, "y": 0}',
    b"[1, 2]",
    b'"text"',
    b"not json",
    b"",
    b'{"x": 6, "y": 0}',
]


def test_entries_are_decoded_each_on_its_own() -> None:
    records = decode_all(CRAFTED)
    assert records[0] == {"x": 1, "y": 0} and records[-1] == {"x": 6, "y": 0}
    assert records[1:-1] == [None] * (len(CRAFTED) - 2)
    batch = RedisBatch([f"{i}-0".encode() for i in range(len(CRAFTED))], CRAFTED, records, {})
    reasons = [batch.event(i).error for i in range(len(CRAFTED))]
    assert reasons[0] is None and reasons[-1] is None
    assert all(r is not None and r.startswith("not JSON") for r in reasons[1:5] + reasons[7:9])
    assert reasons[5] == "a JSON array, not an object"
    assert reasons[6] == "a JSON string, not an object"
    assert batch.event(2).where == {"entry": "2-0"} and batch.event(2).raw == '{"x": "'
    assert batch.position(9) == {"last_id": "9-0"}
    assert decode_all([b'{"a": 1}', b'{"b": 2}']) == [{"a": 1}, {"b": 2}]


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
def stream_name(redis_client: Any) -> Iterator[str]:
    name = f"loopml-test-fast-{uuid.uuid4().hex[:12]}"
    yield name
    redis_client.delete(name)


def test_crafted_redis_entries_are_dead_lettered_and_the_rest_learned(
    redis_client: Any, stream_name: str, workspace: Workspace
) -> None:
    from loopml.train.online.learn import learn

    good = [{"x": float(i % 7), "y": i % 2} for i in range(40)]
    for event in good[:20]:
        redis_client.xadd(stream_name, {"data": json.dumps(event)})
    for raw in CRAFTED[1:-1]:
        redis_client.xadd(stream_name, {"data": raw})
    redis_client.xadd(stream_name, {"x": "3", "y": "1"})  # fields, each value as JSON
    for event in good[20:]:
        redis_client.xadd(stream_name, {"data": json.dumps(event)})
    spec = _spec(f"redis://{HOST}:{REDIS_PORT}/0?stream={stream_name}")
    res = learn(workspace, spec, idle_timeout=0.3)
    assert (res.events, res.learned, res.dead_letters) == (49, 41, 8)
    letters = [
        json.loads(line)
        for line in (Path(workspace.root) / "online" / "toy" / "dead_letters.jsonl")
        .read_text()
        .splitlines()
    ]
    assert [letter["raw"] for letter in letters] == [r.decode() for r in CRAFTED[1:-1]]
    assert all(letter["where"]["entry"] for letter in letters)
    assert "array" in letters[4]["reason"] and "not JSON" in letters[0]["reason"]
    from loopml.train.online.learner import OnlineLearner

    replay = OnlineLearner.from_spec(spec)
    for event in [*good[:20], {"x": 3, "y": 1}, *good[20:]]:
        replay.learn_one(replay.features_of(event), replay.label_of(event))
    assert res.checksum == replay.checksum()


# -- the broker goes away mid-run -------------------------------------------------------------


class _Proxy:
    """A TCP proxy to Redis that can be cut (every connection closed, none accepted)."""

    def __init__(self) -> None:
        self.server = socket.create_server((HOST, 0))
        self.port = self.server.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.open = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if not self.open:
                client.close()
                continue
            upstream = socket.create_connection((HOST, REDIS_PORT))
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        self.open = False
        for s in self.conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        self.conns = []

    def restore(self) -> None:
        self.open = True

    def close(self) -> None:
        self.cut()
        self.server.close()


def test_a_broker_cut_mid_run_is_retried_then_a_clear_error(
    redis_client: Any, stream_name: str, tmp_path: Path
) -> None:
    from loopml.train.online.learn import learn

    events = [{"x": float(i % 5), "y": i % 2} for i in range(300)]
    for event in events:
        redis_client.xadd(stream_name, {"data": json.dumps(event)})
    proxy = _Proxy()
    spec = _spec(f"redis://{HOST}:{proxy.port}/0?stream={stream_name}", checkpoint_every=50)
    said: list[str] = []
    ws = init(tmp_path / "ws")
    try:
        # cut after the first read; back before the retries run out: every event once
        def progress(msg: str) -> None:
            said.append(msg)
            if msg.startswith("run ") and proxy.open:
                proxy.cut()
                threading.Timer(0.8, proxy.restore).start()

        res = learn(ws, spec, idle_timeout=0.5, retry_for=20, progress=progress)
        assert any("retrying in" in m for m in said)
        assert (res.events, res.learned) == (300, 300)
        latest = ws.metadata.latest_online_checkpoint("toy", res.stream)
        assert latest is not None and latest.events == 300
        # cut for good: retried with a growing pause, then one clear error
        for event in events[:10]:
            redis_client.xadd(stream_name, {"data": json.dumps(event)})
        said.clear()

        def cut_at_start(msg: str) -> None:
            said.append(msg)
            if msg.startswith("run "):
                proxy.cut()

        started = time.monotonic()
        with pytest.raises(StoreError) as info:
            learn(ws, spec, idle_timeout=30, retry_for=1.5, progress=cut_at_start)
        assert time.monotonic() - started < 20
        assert "retried for 1.5 s" in info.value.message
        assert info.value.code == "source_unreachable"
        pauses = [m.rsplit("retrying in ", 1)[1] for m in said if "retrying in" in m]
        assert len(pauses) >= 2 and pauses[0] == "0.1 s" and pauses[1] == "0.2 s"
        latest = ws.metadata.latest_online_checkpoint("toy", res.stream)
        assert latest is not None and latest.events == 300  # nothing half-written
    finally:
        proxy.close()
        ws.close()
