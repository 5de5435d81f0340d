"""A workspace is a folder that can be moved, copied and found from a subfolder (as git does)."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_breast_cancer

from loopml.cli.main import main
from loopml.settings import SETTINGS_FILE
from loopml.workspace import open_workspace

PROJECT = """
name: cancer
data: {dataset: cancer, target: target}
features: {numeric: {impute: median, scale: standard}}
model: {class: sklearn.linear_model.LogisticRegression, params: {max_iter: 1000}}
evaluation: {metric: roc_auc, folds: 0, holdout: 0.2, seed: 0, gate: "roc_auc >= 0.9"}
registry: {alias: champion}
"""

Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """``loopml ARGS`` in this process: (exit code, stdout, stderr)."""

    def run(*args: object) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    """The breast-cancer data as CSV and a project file, both outside every workspace."""
    folder = tmp_path / "inputs"
    folder.mkdir()
    csv = folder / "cancer.csv"
    load_breast_cancer(as_frame=True).frame.to_csv(csv, index=False)
    project = folder / "loopml.yaml"
    project.write_text(PROJECT)
    return csv, project


def _ok(result: tuple[int, str, str]) -> str:
    code, out, err = result
    assert code == 0, err
    return out


def test_a_moved_workspace_keeps_everything(
    tmp_path: Path, cli: Cli, inputs: tuple[Path, Path]
) -> None:
    csv, project = inputs
    old, new = tmp_path / "wsA", tmp_path / "wsB"
    _ok(cli("init", "-w", old))
    _ok(cli("data", "ingest", csv, "--name", "cancer", "-w", old))
    _ok(cli("train", "-f", project, "-w", old))
    settings = (old / SETTINGS_FILE).read_text()
    assert str(old) not in settings  # nothing in the settings names where the folder is
    shutil.move(old, new)

    listing = json.loads(_ok(cli("data", "list", "-w", new, "--json")))
    assert [(d["name"], d["version"]) for d in listing] == [("cancer", 1)]
    shown = json.loads(_ok(cli("data", "show", "cancer@1", "-w", new, "--json")))
    assert shown["num_rows"] == 569
    assert shown["url"].startswith(new.as_uri())
    model = json.loads(_ok(cli("models", "show", "cancer@champion", "-w", new, "--json")))
    assert model["artifact_url"].startswith(new.as_uri())
    _ok(cli("train", "-f", project, "-w", new))
    versions = json.loads(_ok(cli("models", "list", "-w", new, "--json")))
    assert [m["version"] for m in versions] == [1, 2]
    scored = tmp_path / "scored.parquet"
    _ok(cli("predict", "-m", "cancer", "-i", csv, "-o", scored, "-w", new))
    assert len(pd.read_parquet(scored)) == 569
    assert not old.exists()  # nothing was written where the workspace used to be

    # nor does the metadata database name the folder anywhere (paths are lake-relative,
    # artifacts addressed by their sha256)
    assert str(old).encode() not in (new / "loopml.db").read_bytes()
    assert str(new).encode() not in (new / "loopml.db").read_bytes()


def test_a_copied_workspace_is_a_workspace_of_its_own(
    tmp_path: Path, cli: Cli, inputs: tuple[Path, Path]
) -> None:
    csv, _ = inputs
    first, copy = tmp_path / "first", tmp_path / "copy"
    _ok(cli("init", "-w", first))
    _ok(cli("data", "ingest", csv, "--name", "cancer", "-w", first))
    shutil.copytree(first, copy)
    _ok(cli("data", "ingest", csv, "--name", "other", "-w", copy))
    names = [d["name"] for d in json.loads(_ok(cli("data", "list", "-w", first, "--json")))]
    assert names == ["cancer"]
    names = [d["name"] for d in json.loads(_ok(cli("data", "list", "-w", copy, "--json")))]
    assert names == ["cancer", "other"]


def _legacy_settings(root: Path) -> None:
    """The settings file an older loopml wrote: version 1, the defaults as absolute paths."""
    body = {
        "version": 1,
        "metadata_uri": f"sqlite:///{root / 'loopml.db'}",
        "lake_uri": (root / "lake").as_uri(),
        "artifacts_uri": (root / "artifacts").as_uri(),
    }
    (root / SETTINGS_FILE).write_text(yaml.safe_dump(body, sort_keys=False))


def test_an_older_settings_file_keeps_working_and_follows_a_move(
    tmp_path: Path, cli: Cli, inputs: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    csv, _ = inputs
    old, new = tmp_path / "old", tmp_path / "new"
    _ok(cli("init", "-w", old))
    _legacy_settings(old)
    _ok(cli("data", "ingest", csv, "--name", "cancer", "-w", old))  # the paths still exist
    shutil.move(old, new)

    with caplog.at_level(logging.WARNING, logger="loopml"):
        listing = json.loads(_ok(cli("data", "list", "-w", new, "--json")))
    assert [d["name"] for d in listing] == ["cancer"]
    assert any(str(old) in r.getMessage() and "moved" in r.getMessage() for r in caplog.records)
    with open_workspace(new) as ws:
        assert ws.metadata_uri == f"sqlite:///{new / 'loopml.db'}"
        assert ws.lake_uri == (new / "lake").as_uri()
        assert ws.artifacts_uri == (new / "artifacts").as_uri()
    assert not old.exists()

    # init rewrites the file without the old paths
    _ok(cli("init", "-w", new))
    assert str(old) not in (new / SETTINGS_FILE).read_text()
    assert yaml.safe_load((new / SETTINGS_FILE).read_text())["version"] == 2


def test_a_store_outside_the_workspace_stays_where_it_is(tmp_path: Path, cli: Cli) -> None:
    shared = tmp_path / "shared" / "lake"
    old, new = tmp_path / "old", tmp_path / "new"
    _ok(cli("init", "-w", old, "--lake", shared.as_uri()))
    shutil.move(old, new)
    with open_workspace(new) as ws:
        assert ws.lake_uri == shared.as_uri()
        assert ws.metadata_uri == f"sqlite:///{new / 'loopml.db'}"


def test_a_store_inside_the_workspace_moves_with_it(tmp_path: Path, cli: Cli) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    _ok(
        cli(
            "init",
            "-w",
            old,
            "--lake",
            (old / "data" / "lake").as_uri(),
            "--metadata",
            f"sqlite:///{old / 'db' / 'meta.db'}",
        )
    )
    written = yaml.safe_load((old / SETTINGS_FILE).read_text())
    assert written["lake_uri"] == "data/lake"  # relative to the workspace folder
    assert written["metadata_uri"] == "sqlite:///db/meta.db"
    shutil.move(old, new)
    with open_workspace(new) as ws:
        assert ws.lake_uri == (new / "data" / "lake").as_uri()
        assert ws.metadata_uri == f"sqlite:///{new / 'db' / 'meta.db'}"
    assert not old.exists()


def test_an_older_settings_file_naming_another_database_keeps_it(tmp_path: Path) -> None:
    root, other = tmp_path / "ws", tmp_path / "elsewhere" / "loopml.db"
    main(["init", "-w", str(root)])
    _legacy_settings(root)
    body = yaml.safe_load((root / SETTINGS_FILE).read_text())
    body["metadata_uri"] = f"sqlite:///{other}"  # not this workspace's: kept as it is
    (root / SETTINGS_FILE).write_text(yaml.safe_dump(body))
    with open_workspace(root) as ws:
        assert ws.metadata_uri == f"sqlite:///{other}"
        assert ws.lake_uri == (root / "lake").as_uri()


# -- finding the workspace from a subfolder ---------------------------------------------------


def test_a_workspace_is_found_from_a_subfolder(
    tmp_path: Path, cli: Cli, inputs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    csv, _ = inputs
    project = tmp_path / "project"
    deep = project / "src" / "notebooks"
    deep.mkdir(parents=True)
    monkeypatch.chdir(project)
    _ok(cli("init"))  # ./.loopml
    assert (project / ".loopml" / SETTINGS_FILE).exists()
    monkeypatch.chdir(deep)
    _ok(cli("data", "ingest", csv, "--name", "cancer"))
    assert not (deep / ".loopml").exists()
    listing = json.loads(_ok(cli("data", "list", "--json")))
    assert [d["name"] for d in listing] == ["cancer"]
    with open_workspace() as ws:
        assert ws.root == (project / ".loopml").resolve()
    monkeypatch.chdir(project / ".loopml" / "lake")  # inside the workspace folder itself
    with open_workspace() as ws:
        assert ws.root == (project / ".loopml").resolve()


def test_init_without_a_path_creates_the_workspace_here(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    outer = tmp_path / "outer"
    inner = outer / "inner"
    inner.mkdir(parents=True)
    monkeypatch.chdir(outer)
    _ok(cli("init"))
    monkeypatch.chdir(inner)
    _ok(cli("init"))  # a new workspace here, not the one found above
    assert (inner / ".loopml" / SETTINGS_FILE).exists()
    with open_workspace() as ws:
        assert ws.root == (inner / ".loopml").resolve()


def test_the_home_variable_wins_over_a_found_workspace(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _ok(cli("init"))
    home = tmp_path / "home"
    monkeypatch.setenv("LOOPML_HOME", str(home))
    code, _, err = cli("data", "list")
    assert code == 2
    assert "no loopml workspace" in err and str(home) in err


def test_no_workspace_found_names_where_it_looked(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("data", "list")
    assert code == 2
    assert "no loopml workspace" in err
    assert "loopml init" in err


def test_a_folder_named_like_a_workspace_without_settings_is_passed_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loopml.workspace import find_workspace, init

    init(tmp_path / ".loopml").close()
    (tmp_path / "sub" / ".loopml").mkdir(parents=True)  # not a workspace: no settings file
    assert find_workspace(tmp_path / "sub") == tmp_path / ".loopml"
    assert find_workspace(tmp_path.parent) != tmp_path / ".loopml"  # below is not above
