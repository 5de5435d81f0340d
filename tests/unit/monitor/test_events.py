"""Monitor events through loopml.monitor.events and ``loopml monitor events``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from loopml.cli.main import main
from loopml.errors import InvalidInputError
from loopml.monitor.events import claim_event, list_events, record_event
from loopml.workspace import Workspace


def test_record_claim_and_list(workspace: Workspace) -> None:
    first = record_event(workspace, "drift", "shop", "3 features drifted", {"psi": 0.4})
    assert first.id is not None and first.evidence == {"psi": 0.4}
    event, new = claim_event(workspace, "retrain", "shop", "decay", {"auc": 0.6}, dedupe="k1")
    assert new
    again, new_again = claim_event(workspace, "retrain", "shop", "decay", {}, dedupe="k1")
    assert not new_again and again == event  # the earlier one, nothing written
    assert record_event(workspace, "retrain", "shop", "x", dedupe="k1") == event
    record_event(workspace, "alert", "other", "latency", {"p99_ms": 80}, policy="loopml.yaml")
    assert [e.kind for e in list_events(workspace, "shop")] == ["retrain", "drift"]
    assert [e.model for e in list_events(workspace, kind="alert")] == ["other"]
    with pytest.raises(InvalidInputError, match="unknown monitor event kind"):
        record_event(workspace, "drfit", "shop", "typo")
    with pytest.raises(InvalidInputError, match="unknown monitor event kind"):
        list_events(workspace, kind="drfit")


def test_the_events_command(workspace: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    w = ["-w", str(workspace.root)]
    capsys.readouterr()
    assert main(["monitor", "events", *w]) == 0
    assert "no monitor events" in capsys.readouterr().out
    record_event(workspace, "promote", "shop", "challenger v2 beats the champion", {"v": 2})
    record_event(workspace, "error", "ghost", "NotFoundError: no champion", {})
    assert main(["monitor", "events", *w]) == 0
    shown = capsys.readouterr().out
    assert "challenger v2 beats the champion" in shown and "ghost" in shown
    assert main(["monitor", "events", "--model", "shop", "--json", *w]) == 0
    got = json.loads(capsys.readouterr().out)
    assert [(e["kind"], e["evidence"]) for e in got] == [("promote", {"v": 2})]
    assert main(["monitor", "events", "--limit", "0", *w]) == 2
    assert "--limit" in capsys.readouterr().err


def test_run_once_and_watch_on_the_command_line(
    workspace: Workspace, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    project = {
        "name": "ghost",
        "data": {"dataset": "d", "target": "y"},
        "model": {"class": "sklearn.linear_model.LogisticRegression"},
        "policy": {"trigger": {"on": "schedule", "every": "1d"}},
    }
    good = tmp_path / "loopml.yaml"
    good.write_text(yaml.safe_dump(project))
    w = ["-w", str(workspace.root)]
    capsys.readouterr()
    assert main(["monitor", "run-once", "-f", str(good), "--dry-run", *w]) == 1
    assert "ghost: error (not done): NotFoundError" in capsys.readouterr().out
    assert list_events(workspace) == []  # a dry run records nothing
    assert main(["monitor", "run-once", "-f", str(good), "--json", *w]) == 1
    assert json.loads(capsys.readouterr().out)[0]["kind"] == "error"
    assert [e.kind for e in list_events(workspace, "ghost")] == ["error"]
    assert (
        main(["monitor", "watch", "-f", str(good), "--interval", "0", "--iterations", "2", *w]) == 0
    )
    assert capsys.readouterr().out.count("ghost: error") == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump({**project, "policy": {"trigger": {"on": "schedule", "cron": "61 * * * *"}}})
    )
    assert main(["monitor", "run-once", "-f", str(bad), *w]) == 2
    said = capsys.readouterr().err
    assert "policy.trigger.cron" in said and "Traceback" not in said
