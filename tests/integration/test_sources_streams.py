"""Stream sources against the real Mosquitto and Redis on 127.0.0.1, standard input and a
growing file; the kill tests run an ingester in a subprocess and ``kill -9`` it mid-stream."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loopml.data.sources import source_for
from loopml.data.streams import (
    FollowSource,
    MqttSource,
    RedisStreamSource,
    StdinSource,
)
from loopml.errors import InvalidInputError, StoreError
from tests.conftest import service_unavailable

HOST, MQTT_PORT, REDIS_PORT = "127.0.0.1", 1883, 6379
ROOT = Path(__file__).resolve().parents[2]


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture
def redis_stream() -> Iterator[tuple[Any, str]]:
    try:
        import redis
    except ImportError:
        service_unavailable("redis is not installed: pip install 'loopml[redis]'")
    client = redis.Redis(host=HOST, port=REDIS_PORT, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        service_unavailable(f"Redis is not reachable at {HOST}:{REDIS_PORT}: {exc}")
    name = f"loopml-test-{uuid.uuid4().hex[:12]}"
    yield client, name
    client.delete(name)
    client.close()


@pytest.fixture
def mqtt_topic() -> Iterator[tuple[str, str]]:
    """``(topic, client id)``; the broker's persistent session is removed afterwards."""
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        service_unavailable("paho-mqtt is not installed: pip install 'loopml[mqtt]'")
    if not _reachable(MQTT_PORT):
        service_unavailable(f"the MQTT broker is not reachable at {HOST}:{MQTT_PORT}")
    tag = uuid.uuid4().hex[:12]
    topic, client_id = f"loopml/test/{tag}", f"loopml-test-{tag}"
    yield topic, client_id
    cleaner = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    cleaner.connect(HOST, MQTT_PORT)
    cleaner.loop_start()
    time.sleep(0.2)
    cleaner.loop_stop()
    cleaner.disconnect()


def publish(topic: str, payloads: list[bytes | str]) -> None:
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
    client.connect(HOST, MQTT_PORT)
    client.loop_start()
    try:
        for payload in payloads:
            client.publish(topic, payload, qos=1).wait_for_publish(5)
    finally:
        client.loop_stop()
        client.disconnect()


def _ids(table: Any, column: str = "i") -> list[int]:
    return [] if table is None else table.column(column).to_pylist()


# -- standard input ---------------------------------------------------------------------------


def test_stdin_reads_until_the_end() -> None:
    source = StdinSource(io.BytesIO(b'{"i": 1}\n\n{"i": 2}\n'))
    assert _ids(source.poll(10, 2.0)) == [1, 2]
    assert source.poll(10, 0.1) is None and source.exhausted
    assert source.key is None  # not resumable


def test_stdin_bad_line_is_named_or_skipped() -> None:
    with pytest.raises(InvalidInputError, match=r"line 2 is not JSON.*'oops'"):
        StdinSource(io.BytesIO(b'{"i": 1}\noops\n')).poll(10, 2.0)
    with pytest.raises(InvalidInputError, match="line 1 is a JSON array, not an object"):
        StdinSource(io.BytesIO(b"[1, 2]\n")).poll(10, 2.0)
    skipping = StdinSource(io.BytesIO(b'{"i": 1}\noops\n{"i": 3}\n'), on_error="skip-rows")
    assert _ids(skipping.poll(10, 2.0)) == [1, 3]
    assert skipping.rejected[0]["where"] == {"line": 2}


# -- a followed file --------------------------------------------------------------------------


def test_follow_reads_complete_lines_and_resumes(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"i": 1}\n{"i": 2}\n{"i": ')
    source = source_for(str(path), follow=True)
    assert isinstance(source, FollowSource)
    assert _ids(source.poll(10, 0.5)) == [1, 2]
    pos = source.position()
    assert pos is not None and pos["offset"] == len('{"i": 1}\n{"i": 2}\n')
    assert source.poll(10, 0.1) is None  # the last line is not complete yet
    with path.open("a") as fh:
        fh.write('3}\n{"i": 4}\n')
    assert _ids(source.poll(1, 0.5)) == [3]

    again = FollowSource(path)
    again.resume(source.position())
    assert _ids(again.poll(10, 0.5)) == [4]


def test_follow_detects_rotation_and_truncation(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"i": 1}\n{"i": 2}\n')
    source = FollowSource(path)
    assert _ids(source.poll(10, 0.5)) == [1, 2]
    path.rename(tmp_path / "events.jsonl.1")
    path.write_text('{"i": 10}\n')
    assert _ids(source.poll(10, 0.5)) == [10]
    assert "replaced" in source.restarts[-1]

    path.write_text("")  # truncated in place (same inode)
    time.sleep(0.01)
    assert source.poll(10, 0.1) is None
    path.write_text('{"i": 20}\n')
    assert _ids(source.poll(10, 0.5)) == [20]
    assert "truncated" in source.restarts[-1]

    fresh = FollowSource(path)  # a stored position of the rotated-away file
    fresh.resume({"offset": 5, "line": 1, "dev": 0, "inode": 0})
    assert _ids(fresh.poll(10, 0.5)) == [20]


def test_follow_bad_line_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"i": 1}\n{bad\n')
    with pytest.raises(InvalidInputError, match=r"line 2 is not JSON"):
        FollowSource(path).poll(10, 0.5)
    with pytest.raises(InvalidInputError, match="file not found"):
        FollowSource(tmp_path / "nope.jsonl").poll(1, 0.1)


# -- Redis streams ----------------------------------------------------------------------------


def test_redis_position_resumes_without_duplicates(redis_stream: tuple[Any, str]) -> None:
    client, name = redis_stream
    for i in range(5):
        client.xadd(name, {"data": json.dumps({"i": i})})
    uri = f"redis://{HOST}:{REDIS_PORT}/0?stream={name}"
    source = source_for(uri)
    assert isinstance(source, RedisStreamSource) and source.key is not None
    assert _ids(source.poll(3, 1.0)) == [0, 1, 2]
    pos = source.position()
    again = RedisStreamSource(uri)
    again.resume(pos)
    client.xadd(name, {"data": json.dumps({"i": 5})})
    assert _ids(again.poll(10, 1.0)) == [3, 4, 5]
    assert again.poll(10, 0.1) is None
    client.xadd(name, {"plain": "text"})  # no data field: read as its fields
    assert again.poll(10, 1.0).column("plain").to_pylist() == ["text"]


def test_redis_group_acks_only_what_was_recorded(redis_stream: tuple[Any, str]) -> None:
    client, name = redis_stream
    for i in range(6):
        client.xadd(name, {"data": json.dumps({"i": i})})
    uri = f"redis://{HOST}:{REDIS_PORT}/0?stream={name}&group=g&consumer=c1"
    first = RedisStreamSource(uri)
    assert _ids(first.poll(4, 1.0)) == [0, 1, 2, 3]
    recorded = first.position()
    first.committed(recorded)
    assert client.xpending(name, "g")["pending"] == 0
    assert _ids(first.poll(10, 1.0)) == [4, 5]  # delivered, never recorded: a crash
    first.close()

    second = RedisStreamSource(uri)
    second.resume(recorded)
    assert _ids(second.poll(10, 1.0)) == [4, 5]  # the pending entries again
    pos = second.position()
    second.close()  # recorded but killed before XACK
    third = RedisStreamSource(uri)
    third.resume(pos)
    assert third.poll(10, 0.2) is None  # dropped (and acked): already in the dataset
    assert client.xpending(name, "g")["pending"] == 0


def test_redis_bad_entry_and_unreachable(redis_stream: tuple[Any, str]) -> None:
    client, name = redis_stream
    eid = client.xadd(name, {"data": "not json"}).decode()
    with pytest.raises(InvalidInputError, match=f"entry {eid} is not JSON"):
        RedisStreamSource(f"redis://{HOST}:{REDIS_PORT}/0?stream={name}").poll(10, 1.0)
    with pytest.raises(StoreError, match="ConnectionError"):
        RedisStreamSource(f"redis://{HOST}:1/0?stream={name}").poll(1, 0.1)
    with pytest.raises(InvalidInputError, match="not a Redis stream URL"):
        RedisStreamSource(f"redis://{HOST}:{REDIS_PORT}/0")


# -- MQTT -------------------------------------------------------------------------------------


def test_mqtt_acks_only_in_committed(mqtt_topic: tuple[str, str]) -> None:
    topic, client_id = mqtt_topic
    uri = f"mqtt://{HOST}:{MQTT_PORT}/{topic}?client_id={client_id}"
    first = source_for(uri)
    assert isinstance(first, MqttSource) and first.key is not None
    assert first.poll(10, 0.5) is None  # subscribes (the session is created)
    publish(topic, [json.dumps({"i": i}) for i in range(4)])
    got = _ids(first.poll(10, 3.0))
    while len(got) < 4:
        got += _ids(first.poll(10, 3.0))
    assert got == [0, 1, 2, 3]
    first.close()  # killed before the version was recorded: nothing acknowledged

    second = MqttSource(uri)
    again = []
    for _ in range(20):
        again += _ids(second.poll(10, 1.0))
        if len(again) >= 4:
            break
    assert sorted(again) == [0, 1, 2, 3]  # redelivered
    recorded = second.position()
    second.close()  # recorded, but killed before PUBACK

    third = MqttSource(uri)
    third.resume(recorded)
    publish(topic, [json.dumps({"i": 4})])
    late = []
    for _ in range(20):
        late += _ids(third.poll(10, 1.0))
        if late:
            break
    assert late == [4]  # the redelivered 0..3 were dropped
    third.committed(third.position())
    third.close()


def test_mqtt_bad_message_and_unreachable(mqtt_topic: tuple[str, str]) -> None:
    topic, client_id = mqtt_topic
    source = MqttSource(f"mqtt://{HOST}:{MQTT_PORT}/{topic}?client_id={client_id}")
    assert source.poll(1, 0.3) is None
    publish(topic, ["not json"])

    def poll_until_bad() -> None:
        for _ in range(10):
            source.poll(10, 1.0)

    with pytest.raises(InvalidInputError, match=f"topic {topic}, message \\d+ is not JSON"):
        poll_until_bad()
    source.close()
    with pytest.raises(StoreError, match="cannot reach the MQTT broker"):
        MqttSource(f"mqtt://{HOST}:1/x").poll(1, 0.1)


# -- kill -9 mid-stream -----------------------------------------------------------------------

INGESTER = textwrap.dedent(
    """
    import sys
    from loopml.data.ingest import ingest_stream
    from loopml.workspace import open_workspace

    ws = open_workspace(sys.argv[1])
    ingest_stream(ws, sys.argv[2], "events", idle_timeout=float(sys.argv[3]),
                  micro_batch_rows=25, micro_batch_seconds=0.3)
    """
)


def _versions(ws_path: Path) -> int:
    from loopml.data import list_datasets
    from loopml.workspace import open_workspace

    with open_workspace(ws_path) as ws:
        return len(list_datasets(ws, "events"))


def _events(ws_path: Path) -> list[int]:
    from loopml.data import load_table
    from loopml.workspace import open_workspace

    with open_workspace(ws_path) as ws:
        return sorted(load_table(ws, "events").column("i").to_pylist())


def _kill_and_resume(tmp_path: Path, uri: str, send: Any, n: int) -> None:
    from loopml.workspace import init

    init(tmp_path / "ws").close()
    ws_path = tmp_path / "ws"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-c", INGESTER, str(ws_path), uri]
    proc = subprocess.Popen([*cmd, "60"], env=env)
    try:
        time.sleep(1.5)  # connected and subscribed
        send(0, n // 2)
        deadline = time.monotonic() + 60
        while _versions(ws_path) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _versions(ws_path) >= 2, "the ingester recorded nothing"
        send(n // 2, n)  # some arrive while it is killed
        time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    rerun = subprocess.run([*cmd, "3"], env=env, timeout=180, check=False)
    assert rerun.returncode == 0
    assert _events(ws_path) == list(range(n))  # every event exactly once


@pytest.mark.slow
def test_mqtt_kill_mid_stream_loses_and_duplicates_nothing(
    tmp_path: Path, mqtt_topic: tuple[str, str]
) -> None:
    topic, client_id = mqtt_topic
    uri = f"mqtt://{HOST}:{MQTT_PORT}/{topic}?client_id={client_id}"

    def send(start: int, stop: int) -> None:
        publish(topic, [json.dumps({"i": i}) for i in range(start, stop)])

    session = MqttSource(uri)  # the persistent session exists before anything is published
    assert session.poll(1, 0.3) is None
    session.close()
    _kill_and_resume(tmp_path, uri, send, 120)


@pytest.mark.slow
@pytest.mark.parametrize("group", [False, True])
def test_redis_kill_mid_stream_loses_and_duplicates_nothing(
    tmp_path: Path, redis_stream: tuple[Any, str], group: bool
) -> None:
    client, name = redis_stream
    uri = f"redis://{HOST}:{REDIS_PORT}/0?stream={name}" + ("&group=ingest" if group else "")

    def send(start: int, stop: int) -> None:
        for i in range(start, stop):
            client.xadd(name, {"data": json.dumps({"i": i})})
            if i % 10 == 0:
                time.sleep(0.02)

    _kill_and_resume(tmp_path, uri, send, 200)


@pytest.mark.slow
def test_cli_stdin_and_follow(tmp_path: Path) -> None:
    from loopml.workspace import init

    init(tmp_path / "ws").close()
    ws = str(tmp_path / "ws")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}

    def loopml(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "loopml", *args, "-w", ws],
            input=stdin,
            capture_output=True,
            env=env,
            timeout=120,
            check=False,
        )

    lines = b'{"i": 1}\n{"i": 2}\n'
    ok = loopml("data", "ingest", "-", "--name", "s", "--idle-timeout", "3", stdin=lines)
    assert ok.returncode == 0, ok.stderr
    bad = loopml("data", "ingest", "-", "--name", "b", "--idle-timeout", "3", stdin=b"{}\nbad\n")
    assert bad.returncode == 2 and b"line 2 is not JSON" in bad.stderr
    assert b"Traceback" not in bad.stderr
    path = tmp_path / "events.jsonl"
    path.write_bytes(lines)
    follow = ("data", "ingest", str(path), "--follow", "--name", "f", "--idle-timeout", "3")
    assert loopml(*follow).returncode == 0
    with path.open("ab") as fh:
        fh.write(b'{"i": 3}\n')
    assert loopml(*follow).returncode == 0
    from loopml.data import list_datasets, load_table
    from loopml.workspace import open_workspace

    with open_workspace(tmp_path / "ws") as opened:
        assert load_table(opened, "s").column("i").to_pylist() == [1, 2]
        assert sorted(load_table(opened, "f").column("i").to_pylist()) == [1, 2, 3]
        assert len(list_datasets(opened, "f")) == 2  # the second run read only the new line
