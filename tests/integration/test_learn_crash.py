"""``kill -9`` of a learning ``loopml learn`` process, then a restart to the end of the stream:
the model reached equals an in-process replay of the same events (same checksum), and the
last checkpoint counts every event once — on a Redis stream and on a JSON Lines file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loopml.project.online import load_online
from loopml.workspace import init, open_workspace
from tests.conftest import service_unavailable

HOST, REDIS_PORT = "127.0.0.1", 6379
BAD = ('{"age_of_domain": [1, 2], "is_phishing": true}', "not json {", '{"https": "yes"}')


def phishing_events() -> list[str]:
    """River's Phishing stream (on disk, in the package) as JSON lines, with bad ones mixed
    in and some events without a target (only predicted)."""
    from river import datasets

    lines = []
    for i, (x, y) in enumerate(datasets.Phishing()):
        event = {**x, "is_phishing": bool(y)} if i % 50 != 7 else dict(x)
        lines.append(json.dumps(event))
        if i % 400 == 100:
            lines.append(BAD[(i // 400) % len(BAD)])
    return lines


def replay(spec: Any, lines: list[str]) -> tuple[str, int]:
    """The checksum of a learner fed, in one process, every labelled well-formed event."""
    from loopml.train.online.learner import OnlineLearner

    learner = OnlineLearner.from_spec(spec)
    learned = 0
    kinds: dict[str, type] = {}
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        x = {k: v for k, v in record.items() if spec.is_feature(k) and v is not None}
        if any(isinstance(v, list | dict) for v in x.values()):
            continue
        kind = {k: (str if isinstance(v, str) else float) for k, v in x.items()}
        if any(kinds.get(k, t) is not t for k, t in kind.items()):
            continue
        kinds.update(kind)
        y = learner.label_of(record)
        if y is None:
            continue
        learner.learn_one(learner.features_of(record), y)
        learned += 1
    return learner.checksum(), learned


def _project(tmp: Path, stream: str) -> Path:
    path = tmp / "loopml.yaml"
    path.write_text(
        "name: phish\n"
        "online:\n"
        f"  stream: {json.dumps(stream)}\n"
        "  target: is_phishing\n"
        "  learner: river.linear_model.LogisticRegression\n"
        "  preprocessing: [river.preprocessing.StandardScaler]\n"
        "  checkpoint_every: 20\n"
        "  alias: null\n"
    )
    return path


def _learn(ws: Path, project: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "loopml",
            "--workspace",
            str(ws),
            "learn",
            "-f",
            str(project),
            "--json",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


def _kill_after_checkpoints(ws_root: Path, proc: subprocess.Popen[bytes], stream_key: str) -> int:
    """SIGKILL ``proc`` once it committed 3 checkpoints; the events the last one held."""
    ws = open_workspace(ws_root)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            cp = ws.metadata.latest_online_checkpoint("phish", stream_key)
            if cp is not None and cp.seq >= 3:
                proc.send_signal(signal.SIGKILL)
                proc.wait(30)
                after = ws.metadata.latest_online_checkpoint("phish", stream_key)
                assert after is not None
                return after.events
            if proc.poll() is not None:
                pytest.fail(f"loopml learn ended early: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            time.sleep(0.002)
    finally:
        ws.close()
    proc.kill()
    pytest.fail("no checkpoint within 60 s")


def _crash_and_resume(tmp_path: Path, stream: str, lines: list[str], key: str) -> None:
    ws_root = tmp_path / "ws"
    init(ws_root).close()
    project = _project(tmp_path, stream)
    spec = load_online(project)
    first = _learn(ws_root, project, "--idle-timeout", "5")
    held = _kill_after_checkpoints(ws_root, first, key)
    assert 0 < held < len(lines), "killed after the whole stream: nothing to resume"
    second = _learn(ws_root, project, "--idle-timeout", "1.5")
    stdout, stderr = second.communicate(timeout=120)
    assert second.returncode == 0, stderr.decode()[-3000:]
    result = json.loads(stdout)
    expected, learned = replay(spec, lines)
    assert result["resumed_from"] is not None and result["resumed_from"] >= 3
    assert result["total_events"] == len(lines)  # every event once, none twice
    assert result["checksum"] == expected
    ws = open_workspace(ws_root)
    try:
        last = ws.metadata.latest_online_checkpoint("phish", key)
        assert last is not None and last.learned == learned and last.events == len(lines)
        # the resumed run is the killed one's child; the killed one is seen as aborted
        run = ws.metadata.get_run(result["run"])
        assert run.status == "succeeded" and run.parent_id is not None
        assert ws.metadata.get_run(run.parent_id).status == "aborted"
    finally:
        ws.close()
    letters = [
        json.loads(line)
        for line in (ws_root / "online" / "phish" / "dead_letters.jsonl").read_text().splitlines()
    ]
    bad = sum(1 for line in lines if line in BAD)
    assert len({letter["id"] for letter in letters}) == bad  # each at least once
    assert all(letter["reason"] for letter in letters)


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
    name = f"loopml-test-crash-{uuid.uuid4().hex[:12]}"
    yield client, name
    client.delete(name)
    client.close()


@pytest.mark.slow
def test_kill_9_on_a_redis_stream_resumes_to_the_replayed_model(
    tmp_path: Path, redis_stream: tuple[Any, str]
) -> None:
    client, name = redis_stream
    lines = phishing_events()
    pipe = client.pipeline()
    for line in lines:
        pipe.xadd(name, {"data": line})
    pipe.execute()
    uri = f"redis://{HOST}:{REDIS_PORT}/0?stream={name}"
    _crash_and_resume(tmp_path, uri, lines, uri)


@pytest.mark.slow
def test_kill_9_on_a_json_lines_file_resumes_to_the_replayed_model(tmp_path: Path) -> None:
    lines = phishing_events()
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    _crash_and_resume(tmp_path, str(path), lines, f"file:{path}")
