"""Two real processes run ``loopml train --search`` on one study, on SQLite and PostgreSQL.

The trials add up to the study's target without duplicates, each is a child run of its
process's search run, and the best params are trained and registered.
"""

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from sklearn.datasets import load_breast_cancer

from loopml.data import ingest
from loopml.workspace import init

TRIALS = 8


def _project(folder: Path) -> Path:
    path = folder / "loopml.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "cancer",
                "data": {"dataset": "cancer", "target": "target"},
                "model": {
                    "class": "sklearn.linear_model.LogisticRegression",
                    "params": {"max_iter": 3000},
                },
                "evaluation": {"metric": "roc_auc", "folds": 3, "gate": "roc_auc >= 0.9"},
                "search": {
                    "trials": TRIALS,
                    "pruner": "none",
                    "space": {
                        "C": {"float": [0.001, 10.0], "log": True},
                        "fit_intercept": {"choice": [True, False]},
                    },
                },
            }
        )
    )
    return path


def _two_processes(ws_path: Path, project: Path) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    cmd = [sys.executable, "-m", "loopml", "train", "-f", str(project), "--search", "--json"]
    cmd += ["--workspace", str(ws_path)]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(2)
    ]
    outs = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr[-3000:]
        outs.append(json.loads(stdout))
    return outs


def _check_shared_study(ws_path: Path, outs: list[dict]) -> None:
    import optuna

    from loopml.train.study import study_storage
    from loopml.workspace import open_workspace

    assert outs[0]["study"] == outs[1]["study"]
    # the two processes' trials add up to the target
    ran = [o["run"]["metrics"]["trials"]["this_process"] for o in outs]
    assert sum(ran) == TRIALS, ran
    with open_workspace(ws_path) as ws:
        study = optuna.load_study(study_name=outs[0]["study"], storage=study_storage(ws))
        done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
        assert sorted(t.number for t in done) == list(range(TRIALS))
        assert len({tuple(sorted(t.params.items())) for t in done}) == TRIALS  # no duplicates
        runs = ws.metadata.list_runs(limit=1000)
        searches = {r.id for r in runs if r.tags.get("kind") == "search"}
        assert searches == {o["run"]["id"] for o in outs}
        trials = [r for r in runs if r.tags.get("kind") == "trial"]
        assert sorted(r.params["trial"] for r in trials) == list(range(TRIALS))
        assert all(r.parent_id in searches and r.status == "succeeded" for r in trials)
        # the process that ran the last trial trains the best, once every trial is over (a
        # process that found the study complete and ran none trains it too)
        last = max(done, key=lambda t: t.number)
        last_search = ws.metadata.get_run(last.user_attrs["loopml_run"]).parent_id
        best = max(done, key=lambda t: t.value or 0.0)
        trained = [o for o in outs if o["result"] is not None]
        for o, n in zip(outs, ran, strict=True):
            assert (o["result"] is not None) == (o["run"]["id"] == last_search or n == 0)
        for o in trained:  # after every trial was over: the study's best
            assert o["best_params"] == best.params
            final = ws.metadata.get_run(o["result"]["run"]["id"])
            assert final.parent_id == o["run"]["id"]
            assert final.params["search"]["params"] == best.params
            assert final.status == "succeeded"
        versions = [o["result"]["model_version"]["version"] for o in trained]
        assert ws.metadata.get_aliases("cancer")["champion"] == max(versions)


def _ingest(ws_path: Path, tmp_path: Path, metadata_uri: str | None = None) -> None:
    csv = tmp_path / "cancer.csv"
    load_breast_cancer(as_frame=True).frame.to_csv(csv, index=False)
    with init(ws_path, metadata_uri=metadata_uri) as ws:
        ingest(ws, csv, "cancer")


def test_two_processes_share_one_study_on_sqlite(tmp_path: Path) -> None:
    ws_path = tmp_path / "ws"
    _ingest(ws_path, tmp_path)
    outs = _two_processes(ws_path, _project(tmp_path))
    _check_shared_study(ws_path, outs)
    # Optuna's tables (and its alembic_version) are beside loopml's database, never in it
    import sqlite3

    with contextlib.closing(sqlite3.connect(ws_path / "loopml.db")) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "runs" in tables and not tables & {"studies", "trials", "version_info"}
    with contextlib.closing(sqlite3.connect(ws_path / "loopml.optuna.db")) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"studies", "trials"} <= tables and "runs" not in tables


@pytest.fixture
def pg_workspace_uri(postgres_uri: str) -> Iterator[str]:
    yield postgres_uri
    import psycopg

    schema = postgres_uri.rsplit("%3D", 1)[1]
    base = postgres_uri.split("?", 1)[0]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}_optuna" CASCADE')


def test_two_processes_share_one_study_on_postgres(tmp_path: Path, pg_workspace_uri: str) -> None:
    import psycopg

    ws_path = tmp_path / "ws"
    _ingest(ws_path, tmp_path, metadata_uri=pg_workspace_uri)
    outs = _two_processes(ws_path, _project(tmp_path))
    _check_shared_study(ws_path, outs)
    schema = pg_workspace_uri.rsplit("%3D", 1)[1]
    with psycopg.connect(pg_workspace_uri.split("?", 1)[0]) as conn:
        tables = {
            (s, t)
            for s, t in conn.execute(
                "SELECT table_schema, table_name FROM information_schema.tables "
                "WHERE table_schema IN (%s, %s)",
                (schema, f"{schema}_optuna"),
            )
        }
    # Optuna's tables (and its alembic_version) live in a schema of their own
    assert (f"{schema}_optuna", "trials") in tables
    assert (schema, "trials") not in tables
    assert (schema, "runs") in tables
