"""``loopml runs`` on runs recorded straight into a real workspace (no training needed)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest

from loopml.cli import common
from loopml.cli.main import main
from loopml.stores.records import ModelVersion, Run
from loopml.utils import new_id, utcnow
from loopml.workspace import Workspace


@pytest.fixture(autouse=True)
def _eighty_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common.out, "width", 80)


def _cli(capsys: pytest.CaptureFixture[str], ws: Workspace, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([*args, "-w", str(ws.root)])
    got = capsys.readouterr()
    return code, got.out, got.err


def _run(**changes: object) -> Run:
    run = Run(
        id=new_id(),
        name="cancer",
        status="succeeded",
        started_at=utcnow(),
        params={"estimator": {"C": 1.0, "penalty": "[l2]"}},
        metrics={"metric": "roc_auc", "holdout": {"roc_auc": 0.95}},
    )
    return replace(run, **changes)  # type: ignore[arg-type]


def test_children_tags_and_markup(workspace: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    parent = workspace.metadata.add_run(_run())
    kids = [
        workspace.metadata.add_run(
            _run(parent_id=parent.id, started_at=utcnow() + timedelta(seconds=i))
        )
        for i in range(2)
    ]
    code, out, _ = _cli(capsys, workspace, "runs", "list", "--parent", parent.id[:6], "--json")
    assert code == 0 and [r["id"] for r in json.loads(out)] == [kids[1].id, kids[0].id]
    code, out, _ = _cli(capsys, workspace, "runs", "tag", kids[0].id, "note=[bold]x[/bold]")
    assert code == 0 and "[bold]x[/bold]" in out  # printed as written, not as markup
    code, out, _ = _cli(capsys, workspace, "runs", "show", parent.id)
    assert code == 0 and "children (2)" in out and "[l2]" in out
    assert all(len(line) <= 80 for line in out.splitlines()), out


def test_compare_needs_two_runs_and_marks_differences(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    a = workspace.metadata.add_run(_run())
    b = workspace.metadata.add_run(_run(params={"estimator": {"C": 0.1, "penalty": "[l2]"}}))
    code, out, _ = _cli(capsys, workspace, "runs", "compare", a.id, b.id, "--json")
    rows = {r["key"]: r for r in json.loads(out)["params"]}
    assert code == 0 and rows["estimator.C"]["differs"] and not rows["estimator.penalty"]["differs"]
    code, _, err = _cli(capsys, workspace, "runs", "compare", a.id)
    assert code == 2 and "two or more" in err


def test_delete_names_the_version(workspace: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    run = workspace.metadata.add_run(_run())
    mv = ModelVersion(
        name="cancer",
        version=0,
        run_id=run.id,
        artifact_sha256="ab" * 32,
        flavor="sklearn",
        signature={},
        metrics={},
        dataset_name=None,
        dataset_version=None,
        created_at=utcnow(),
    )
    workspace.metadata.add_model_version(mv)
    code, _, err = _cli(capsys, workspace, "runs", "delete", run.id[:8])
    assert code == 2 and "cancer@1" in err
    other = workspace.metadata.add_run(_run())
    code, out, _ = _cli(capsys, workspace, "runs", "delete", other.id[:8], "--json")
    assert code == 0 and json.loads(out) == {"deleted": other.id}
    code, _, err = _cli(capsys, workspace, "runs", "tag", run.id)
    assert code == 2 and "nothing to tag" in err
