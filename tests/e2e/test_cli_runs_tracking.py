"""``loopml runs list|show|compare|tag|delete`` and ``loopml evaluate`` on real trained runs."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from loopml.cli import common
from loopml.utils import new_id, utcnow
from loopml.workspace import open_workspace

from .conftest import project_file


@pytest.fixture(autouse=True)
def _eighty_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common.out, "width", 80)


def _fits(text: str) -> bool:
    """Every line but a lone URL is at most 80 wide."""
    return all(len(line) <= 80 or line.startswith("file://") for line in text.splitlines())


@pytest.fixture
def two_runs(tmp_path: Path, cli, cancer_csv: Path) -> tuple[Path, list[dict]]:  # type: ignore[no-untyped-def]
    """A workspace with two cancer runs that differ in C (v1 champion, v2 registered too)."""
    ws = tmp_path / "ws"
    assert cli("init", "-w", ws).code == 0
    assert cli("data", "ingest", cancer_csv, "--name", "cancer", "-w", ws).code == 0
    for c in ("1.0", "0.01"):
        folder = tmp_path / f"c{c}"
        folder.mkdir()
        project = project_file(folder, params=f"{{max_iter: 1000, C: {c}}}", gate="roc_auc >= 0.5")
        # the registered model is the one the holdout scored (not refit on all the rows)
        project.write_text(project.read_text().replace("seed: 0,", "seed: 0, refit: false,"))
        res = cli("train", "-f", project, "-w", ws)
        assert res.code == 0, res.err
    runs = json.loads(cli("runs", "list", "-w", ws, "--json").out)
    return ws, runs[::-1]  # oldest first


def test_each_fold_is_a_step_and_show_lists_steps(cli, two_runs) -> None:  # type: ignore[no-untyped-def]
    ws, runs = two_runs
    shown = json.loads(cli("runs", "show", runs[0]["id"][:8], "-w", ws, "--json").out)
    steps = [(s["key"], s["step"]) for s in shown["steps"]]
    assert steps == [("cv.roc_auc", i) for i in range(5)]  # folds: 5 in the project file
    values = [s["value"] for s in shown["steps"]]
    assert shown["metrics"]["cv"]["roc_auc"]["mean"] == pytest.approx(sum(values) / 5)
    res = cli("runs", "show", runs[0]["id"][:8], "-w", ws)
    assert res.code == 0, res.err
    assert "metrics per step" in res.out and "cv.roc_auc" in res.out
    assert _fits(res.out), res.out


def test_training_writes_a_report_per_run(cli, two_runs) -> None:  # type: ignore[no-untyped-def]
    ws, runs = two_runs
    path = runs[0]["metrics"]["report"]
    assert path == f"reports/runs/{runs[0]['id']}.html"
    with open_workspace(ws) as w:
        page = w.lake.read_bytes(path).decode()
    assert "<svg" in page and "ROC curve" in page and "Confusion matrix" in page
    assert "Permutation importance" not in page  # only `loopml evaluate` pays for that


def test_tag_and_untag_a_run(cli, two_runs) -> None:  # type: ignore[no-untyped-def]
    ws, runs = two_runs
    rid = runs[0]["id"][:10]
    res = cli("runs", "tag", rid, "team=risk", "note=a b=c", "-w", ws)
    assert res.code == 0, res.err
    got = json.loads(cli("runs", "show", rid, "-w", ws, "--json").out)["tags"]
    assert got == {"team": "risk", "note": "a b=c"}
    res = cli("runs", "tag", rid, "--delete", "note", "stage=dev", "-w", ws, "--json")
    assert json.loads(res.out)["tags"] == {"team": "risk", "stage": "dev"}
    assert "team=risk" in cli("runs", "list", "-w", ws).out
    bad = cli("runs", "tag", rid, "novalue", "-w", ws)
    assert bad.code == 2 and "KEY=VALUE" in bad.err
    gone = cli("runs", "tag", rid, "--delete", "absent", "-w", ws)
    assert gone.code == 2 and "no tag 'absent'" in gone.err


def test_compare_shows_differences_and_writes_html(cli, two_runs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ws, runs = two_runs
    page = tmp_path / "out" / "compare.html"
    ids = [r["id"][:8] for r in runs]
    res = cli("runs", "compare", *ids, "--html", page, "-w", ws)
    assert res.code == 0, res.err
    assert "estimator.C" in res.out and "holdout.roc_auc" in res.out
    assert "estimator.max_iter" not in res.out  # equal in both: hidden unless --all
    assert "estimator.max_iter" in cli("runs", "compare", *ids, "--all", "-w", ws).out
    assert _fits(res.out), res.out
    html = page.read_text()
    assert 'class="differs"' in html and "estimator.C" in html and "<script" not in html
    doc = json.loads(cli("runs", "compare", *ids, "-w", ws, "--json").out)
    c_row = next(r for r in doc["params"] if r["key"] == "estimator.C")
    assert c_row["values"] == [1.0, 0.01] and c_row["differs"]
    one = cli("runs", "compare", ids[0], "-w", ws)
    assert one.code == 2 and "two or more" in one.err


def test_children_of_a_run(cli, two_runs) -> None:  # type: ignore[no-untyped-def]
    ws, runs = two_runs
    parent = runs[0]["id"]
    with open_workspace(ws) as w:
        template = w.metadata.get_run(parent)
        child = replace(
            template,
            id=new_id(),
            parent_id=parent,
            started_at=utcnow(),
            model_version=None,
            tags={"trial": "1"},
        )
        w.metadata.add_run(child)
    listed = json.loads(cli("runs", "list", "--parent", parent[:8], "-w", ws, "--json").out)
    assert [r["id"] for r in listed] == [child.id]
    shown = cli("runs", "show", parent[:8], "-w", ws)
    assert "children (1)" in shown.out and child.id[:12] in shown.out
    assert json.loads(cli("runs", "show", parent, "-w", ws, "--json").out)["children"] == [child.id]


def test_delete_refuses_a_run_with_a_version(cli, two_runs) -> None:  # type: ignore[no-untyped-def]
    ws, runs = two_runs
    res = cli("runs", "delete", runs[0]["id"][:8], "-w", ws)
    assert res.code == 2 and "cancer@1" in res.err and "bug" not in res.err
    with open_workspace(ws) as w:
        orphan = replace(w.metadata.get_run(runs[0]["id"]), id=new_id(), model_version=None)
        w.metadata.add_run(orphan)
        w.metadata.log_step(orphan.id, "loss", 0, 0.5)
    assert cli("runs", "delete", orphan.id[:10], "-w", ws).code == 0
    with open_workspace(ws) as w:
        assert w.metadata.list_steps(orphan.id) == []
        assert orphan.id not in [r.id for r in w.metadata.list_runs()]


def test_evaluate_a_version_on_its_holdout_with_champion(cli, two_runs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ws, runs = two_runs
    page = tmp_path / "eval.html"
    res = cli("evaluate", "cancer@2", "--html", page, "-w", ws, "--json")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    # the holdout re-created from the run's seed and fraction: the run's own holdout scores
    assert doc["rows"] == runs[1]["metrics"]["rows"]["holdout"]
    assert doc["metrics"]["roc_auc"] == pytest.approx(runs[1]["metrics"]["holdout"]["roc_auc"])
    assert doc["champion"]["model"] == "cancer@1"
    assert doc["champion"]["metrics"]["roc_auc"] == pytest.approx(
        runs[0]["metrics"]["holdout"]["roc_auc"]
    )
    html = page.read_text()
    for part in (
        "ROC curve",
        "precision-recall",
        "calibration",
        "Confusion matrix",
        "Permutation importance",
        "Model importances",
        "cancer@1",
    ):
        assert part in html, part
    assert "<script" not in html and not re.search(r'(src|href)="http', html)


def test_evaluate_on_a_named_dataset_warns_when_it_is_the_training_data(cli, two_runs) -> None:  # type: ignore[no-untyped-def]
    ws, _ = two_runs
    res = cli("evaluate", "cancer@1", "--data", "cancer@1", "--no-permutation", "-w", ws)
    assert res.code == 0, res.err
    assert "optimistic" in res.out and "569 rows" in res.out
    assert _fits(res.out), res.out
    bad = cli("evaluate", "cancer@1", "--data", "nosuch", "-w", ws)
    assert bad.code == 2 and "no dataset named 'nosuch'" in bad.err
