"""``loopml learn`` as a user runs it: bounded runs, resuming, JSON output, one-line errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import Result


def _events(path: Path, n: int, start: int = 0) -> None:
    with path.open("a") as fh:
        for i in range(start, start + n):
            fh.write(json.dumps({"a": (i % 7) / 7, "b": (i % 3) - 1.0, "y": int(i % 7 > 3)}) + "\n")


def _project(folder: Path, stream: str, **extra: str) -> Path:
    lines = [
        "name: toy",
        "online:",
        f"  stream: {json.dumps(stream)}",
        "  target: y",
        "  learner: river.linear_model.LogisticRegression",
        "  checkpoint_every: 50",
        "  alias: null",
        *(f"  {k}: {v}" for k, v in extra.items()),
    ]
    path = folder / "loopml.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.slow
def test_learn_bounded_then_resumed(tmp_path: Path, cli: Callable[..., Result]) -> None:
    events = tmp_path / "events.jsonl"
    _events(events, 120)
    project = _project(tmp_path, str(events))
    ws = tmp_path / "ws"
    assert cli("--workspace", ws, "init").code == 0
    first = cli("--workspace", ws, "learn", "-f", project, "--max-events", "100", "--json")
    assert first.code == 0, first.err
    one = json.loads(first.out)
    assert one["events"] == one["learned"] == 100 and one["stopped"] == "max_events"
    assert one["checkpoints"] == 2 and one["resumed_from"] is None
    _events(events, 30, start=120)
    second = cli("--workspace", ws, "learn", "-f", project, "--idle-timeout", "0.5")
    assert second.code == 0, second.err
    assert "50 events (50 learned" in second.out and "stopped: idle" in second.out
    third = cli("--workspace", ws, "learn", "-f", project, "--idle-timeout", "0.3", "--json")
    assert json.loads(third.out)["events"] == 0  # nothing new: nothing learned twice
    assert json.loads(third.out)["total_events"] == 150


def test_learn_errors_are_one_line(tmp_path: Path, cli: Callable[..., Result]) -> None:
    ws = tmp_path / "ws"
    assert cli("--workspace", ws, "init").code == 0
    missing = cli("--workspace", ws, "learn", "-f", tmp_path / "nope.yaml")
    assert missing.code == 2 and "not found" in missing.err and "Traceback" not in missing.err
    project = _project(tmp_path, str(tmp_path / "absent.jsonl"))
    gone = cli("--workspace", ws, "learn", "-f", project, "--retry-for", "0.3")
    assert gone.code == 2 and "does not exist" in gone.err and "retried for 0.3 s" in gone.err
    assert "Traceback" not in gone.err and gone.err.strip().splitlines()[-1].startswith("error:")
    assert "retrying in" in gone.err  # the retries are shown as they happen
    runs = cli("--workspace", ws, "runs", "list", "--json")
    assert runs.code == 0 and json.loads(runs.out) == []  # a stream that never answered: no run
    bad = _project(tmp_path, str(tmp_path / "e.jsonl"), learner="os.system", task="classification")
    refused = cli("--workspace", ws, "learn", "-f", bad)
    assert refused.code == 2 and "online.learner" in refused.err
    unreachable = _project(tmp_path, "redis://127.0.0.1:1/0?stream=s")
    down = cli("--workspace", ws, "learn", "-f", unreachable, "--retry-for", "0.2")
    assert down.code == 2 and "retried for 0.2 s" in down.err
    events = tmp_path / "ok.jsonl"
    _events(events, 60)
    project = _project(tmp_path, str(events))
    assert cli("--workspace", ws, "learn", "-f", project, "--idle-timeout", "0.3").code == 0
    changed = _project(tmp_path, str(events), params="{l2: 0.5}")
    refused_resume = cli("--workspace", ws, "learn", "-f", changed, "--idle-timeout", "0.3")
    assert refused_resume.code == 2 and "online.params" in refused_resume.err
    assert "changed since checkpoint" in refused_resume.err
