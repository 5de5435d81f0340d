"""``loopml models``: aliases as compare-and-set, history, card, archive, delete, import, export."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import lightgbm
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression

from .conftest import project_file


@pytest.fixture
def trained(tmp_path: Path, cli, cancer_csv: Path) -> Path:  # type: ignore[no-untyped-def]
    ws = tmp_path / "ws"
    assert cli("init", "-w", ws).code == 0
    assert cli("data", "ingest", cancer_csv, "--name", "cancer", "-w", ws).code == 0
    project = project_file(tmp_path)
    for _ in range(2):
        res = cli("train", "-f", project, "-w", ws)
        assert res.code == 0, res.err
    return ws


def test_alias_with_expect_and_history(trained: Path, cli) -> None:  # type: ignore[no-untyped-def]
    ws = trained
    aliases = json.loads(cli("models", "list", "cancer", "-w", ws, "--json").out)
    current = next(r["version"] for r in aliases if "champion" in r["aliases"])
    other = 1 if current == 2 else 2
    stale = cli("models", "alias", "cancer", "champion", other, "--expect", other, "-w", ws)
    assert stale.code == 2
    assert f"points at version {current}, not at version {other}" in stale.err
    res = cli(
        "models", "alias", "cancer", "champion", other, "--expect", current,
        "--reason", "rollback after review", "-w", ws,
    )  # fmt: skip
    assert res.code == 0, res.err
    assert f"-> version {other} (was {current})" in res.out
    res = cli("models", "alias", "cancer", "challenger", current, "--expect", "none", "-w", ws)
    assert res.code == 0, res.err
    again = cli("models", "alias", "cancer", "challenger", other, "--expect", "none", "-w", ws)
    assert again.code == 2 and "not at no version" in again.err
    assert cli("models", "alias", "cancer", "challenger", "--delete", "-w", ws).code == 0
    assert cli("models", "alias", "cancer", "champion", "-w", ws).code == 2  # VERSION or --delete

    events = json.loads(cli("models", "history", "cancer", "-w", ws, "--json").out)
    moves = [(e["alias"], e["from_version"], e["to_version"]) for e in events]
    assert moves[:3] == [
        ("challenger", current, None),
        ("challenger", None, current),
        ("champion", current, other),
    ]
    assert moves[-1] == ("champion", None, 1)  # the first training run took it
    assert moves[3:-1] in ([], [("champion", 1, 2)])  # and the second, when not worse
    assert events[2]["reason"] == "rollback after review"
    assert events[-1]["reason"].startswith("gate passed: roc_auc = ")
    assert all("@" in e["actor"] for e in events)
    table = cli("models", "history", "cancer", "--alias", "champion", "-w", ws)
    assert table.code == 0 and "rollback after review" in table.out
    assert "challenger" not in table.out


def test_card_archive_delete(trained: Path, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ws = trained
    res = cli("models", "card", "cancer@2", "-w", ws)
    assert res.code == 0 and res.out.startswith("# cancer@2")
    card = tmp_path / "card.md"
    assert cli("models", "card", "cancer@2", "-o", card, "-w", ws).code == 0
    assert "## Signature" in card.read_text()

    refused = cli("models", "archive", "cancer@2", "-w", ws)
    assert refused.code == 2 and "alias champion points at it" in refused.err
    assert "loopml models alias cancer champion" in refused.err
    assert cli("models", "delete", "cancer@2", "-w", ws).code == 2
    assert cli("models", "archive", "cancer@1", "-w", ws).code == 0
    listed = json.loads(cli("models", "list", "-w", ws, "--json").out)
    assert [r["version"] for r in listed] == [2]
    every = cli("models", "list", "--all", "-w", ws)
    assert "archived" in every.out
    show = cli("models", "show", "cancer@1", "-w", ws)
    assert "status archived" in show.out
    deleted = cli("models", "delete", "cancer@1", "-w", ws)
    assert deleted.code == 0 and "only its record" in deleted.out
    assert "was deleted" in cli("models", "show", "cancer@1", "-w", ws).err


def test_import_and_export(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    ws = tmp_path / "ws"
    assert cli("init", "-w", ws).code == 0
    data = load_breast_cancer(as_frame=True).frame
    x, y = data.drop(columns="target"), data["target"]
    booster = lightgbm.train(
        {"objective": "binary", "verbose": -1}, lightgbm.Dataset(x, y), num_boost_round=10
    )
    model_txt = tmp_path / "booster.txt"
    booster.save_model(str(model_txt))
    sample = tmp_path / "sample.csv"
    data.head(50).to_csv(sample, index=False)
    res = cli("models", "import", model_txt, "--name", "boost", "--sample", sample, "-w", ws)
    assert res.code == 0, res.err
    assert "as boost@1" in res.out and "alias champion -> boost@1" in res.out

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (open, (str(marker), "w"))

    evil = tmp_path / "model.pkl"
    evil.write_bytes(pickle.dumps(Payload()))
    res = cli("models", "import", evil, "--name", "evil", "-w", ws)
    assert res.code == 2 and "does not unpickle" in res.err and not marker.exists()

    lr = tmp_path / "lr.pkl"
    lr.write_bytes(pickle.dumps(LogisticRegression(max_iter=5000).fit(x.iloc[:, :4], y)))
    res = cli("models", "import", lr, "--name", "lr", "--trust-pickle", "-w", ws)
    assert res.code == 0, res.err
    assert "trusted beyond loopml's allowlist: pickle" in res.out
    assert "pickle" in cli("models", "show", "lr", "-w", ws).out

    out = tmp_path / "boost.zip"
    assert cli("models", "export", "boost@1", "-o", out, "-w", ws).code == 0
    res = cli("models", "import", out, "--name", "boost", "-w", ws, "--json")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert (doc["version"], doc["format"], doc["alias"]) == (2, "bundle", None)
    onnx = cli(
        "models", "export", "boost@1", "-o", tmp_path / "m.onnx", "--format", "onnx", "-w", ws
    )
    assert onnx.code == 0, onnx.err
    assert (tmp_path / "m.onnx").stat().st_size > 0
