"""Ingestion on the embedded workspace under stress: concurrent writers and a failing database.

Each concurrent writer opens its own Workspace on the same folder (its own SQLite connection),
as separate processes or CLI calls would.
"""

from __future__ import annotations

import importlib
import json
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from subprocess import PIPE
from typing import TypeVar

import pandas as pd
import pyarrow as pa
import pytest
from sklearn.datasets import load_breast_cancer

from loopml.data import IngestResult, ingest, list_datasets, load_dataset, load_table
from loopml.errors import StoreError
from loopml.utils import process_owner
from loopml.workspace import Workspace, init, open_workspace

T = TypeVar("T")
WRITERS = 6


def run_together(root: Path, jobs: list[Callable[[Workspace], T]]) -> list[T]:
    """Run each job in its own thread with its own workspace, all released at once."""
    barrier = threading.Barrier(len(jobs))
    results: list[T | None] = [None] * len(jobs)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            with open_workspace(root) as ws:
                barrier.wait()
                results[i] = jobs[i](ws)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    if errors:
        raise errors[0]
    return [r for r in results if r is not None]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    init(path).close()
    return path


def test_concurrent_ingests_of_the_same_content_make_one_version(
    root: Path, tmp_path: Path
) -> None:
    frame = load_breast_cancer(as_frame=True).frame
    csv = tmp_path / "cancer.csv"
    frame.to_csv(csv, index=False)
    results = run_together(root, [lambda ws: ingest(ws, csv, "cancer")] * WRITERS)
    assert len(results) == WRITERS
    assert sum(r.created for r in results) == 1
    assert {r.dataset.version for r in results} == {1}
    with open_workspace(root) as ws:
        assert [dv.version for dv in list_datasets(ws)] == [1]
        assert ws.lake.list() == [
            "datasets/cancer/v=1/_stats.npz",
            "datasets/cancer/v=1/part-00000.parquet",
        ]
        pd.testing.assert_frame_equal(load_dataset(ws, "cancer"), frame)


def test_concurrent_ingests_of_different_content_never_mix(root: Path) -> None:
    frames = [pd.DataFrame({"writer": [i] * 50, "x": range(i, i + 50)}) for i in range(WRITERS)]

    def job(i: int) -> Callable[[Workspace], IngestResult]:
        return lambda ws: ingest(ws, frames[i], "shared")

    results = run_together(root, [job(i) for i in range(WRITERS)])
    assert all(r.created for r in results)
    versions = sorted(r.dataset.version for r in results)
    assert len(set(versions)) == WRITERS
    with open_workspace(root) as ws:
        for i, res in enumerate(results):
            # every version holds exactly the content its writer gave, and nothing else
            table = load_table(ws, "shared", res.dataset.version, verify=True)
            assert table.column("writer").to_pylist() == [i] * 50
        parts = [p for p in ws.lake.list() if p.endswith(".parquet")]
        assert len(parts) == WRITERS
        assert not [p for p in ws.lake.list() if "_claim" in p]
        assert [dv.version for dv in list_datasets(ws, "shared")] == versions


def test_a_failing_record_removes_the_written_data(root: Path) -> None:
    # a real database failure on insert only (reads keep working): the trigger's body names a
    # table that does not exist
    db = sqlite3.connect(root / "loopml.db")
    db.execute(
        "CREATE TRIGGER fail BEFORE INSERT ON datasets BEGIN INSERT INTO nowhere VALUES (1); END"
    )
    db.commit()
    db.close()
    with open_workspace(root) as ws:
        with pytest.raises(StoreError, match="nowhere"):
            ingest(ws, pd.DataFrame({"x": [1, 2]}), "doomed")
        assert ws.metadata.list_dataset_versions() == []
        assert ws.lake.list() == []

    db = sqlite3.connect(root / "loopml.db")
    db.execute("DROP TRIGGER fail")
    db.commit()
    db.close()
    with open_workspace(root) as ws:
        res = ingest(ws, pd.DataFrame({"x": [1, 2]}), "doomed")
        assert res.created
        assert res.dataset.version == 1
        assert ws.lake.list() == [
            "datasets/doomed/v=1/_stats.npz",
            "datasets/doomed/v=1/part-00000.parquet",
        ]


def _dead_owner() -> dict[str, object]:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=PIPE)
    owner = process_owner(child.pid)
    child.kill()
    child.wait(30)
    return owner


def test_concurrent_ingests_take_a_dead_claim_over_once(root: Path) -> None:
    with open_workspace(root) as ws:
        marker = json.dumps({"owner": _dead_owner()}).encode()
        ws.lake.write_bytes("datasets/shared/v=1/_claim-killed", marker)
        ws.lake.write_table("datasets/shared/v=1/part-0.parquet", pa.table({"writer": [-1]}))
    frames = [pd.DataFrame({"writer": [i] * 20, "x": range(i, i + 20)}) for i in range(WRITERS)]

    def job(i: int) -> Callable[[Workspace], IngestResult]:
        return lambda ws: ingest(ws, frames[i], "shared")

    results = run_together(root, [job(i) for i in range(WRITERS)])
    # no number lost to the killed ingest, none written twice
    assert sorted(r.dataset.version for r in results) == list(range(1, WRITERS + 1))
    with open_workspace(root) as ws:
        for i, res in enumerate(results):
            table = load_table(ws, "shared", res.dataset.version, verify=True)
            assert table.column("writer").to_pylist() == [i] * 20
        assert not [p for p in ws.lake.list() if "_claim" in p]


# -- an ingest killed mid-way -----------------------------------------------------------------

_KILLED_INGEST = """
import sys, time
import pandas as pd
from loopml.data import ingest
from loopml.workspace import open_workspace

ws = open_workspace(sys.argv[1])
write = ws.lake.write_table

def write_then_hang(path, table):
    write(path, table)
    print("written", flush=True)
    time.sleep(600)

ws.lake.write_table = write_then_hang
ingest(ws, pd.read_csv(sys.argv[2]), "cancer")
"""


def _never_wait(seconds: float) -> None:
    raise AssertionError(f"the ingest waited ({seconds:.3f} s) for a killed ingest's claim")


@pytest.mark.parametrize("lake", [pytest.param("file"), pytest.param("s3", marks=pytest.mark.s3)])
def test_an_ingest_killed_mid_way_leaves_nothing_in_the_way(
    lake: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "killed"
    lake_uri = str(request.getfixturevalue("s3_uri")) if lake == "s3" else None
    init(root, lake_uri=lake_uri).close()
    frame = load_breast_cancer(as_frame=True).frame
    csv = tmp_path / "cancer.csv"
    frame.to_csv(csv, index=False)
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_INGEST, str(root), str(csv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = child.stdout.readline() if child.stdout else ""
        if line.strip() != "written":
            child.kill()
            _, err = child.communicate(30)
            pytest.fail(f"the child ingest did not get to its write: {err[-2000:]}")
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL

    with open_workspace(root) as ws:
        left = ws.lake.list("datasets/cancer")
        assert "datasets/cancer/v=1/part-00000.parquet" in left
        assert [p for p in left if "/_claim-" in p]  # the killed ingest's claim is still there
        # the next ingest neither waits for the dead claim nor skips its number
        monkeypatch.setattr(importlib.import_module("loopml.data.ingest"), "_wait", _never_wait)
        res = ingest(ws, csv, "cancer")
        assert res.created
        assert res.dataset.version == 1
        assert ws.lake.list("datasets") == [
            "datasets/cancer/v=1/_stats.npz",
            "datasets/cancer/v=1/part-00000.parquet",
        ]
        pd.testing.assert_frame_equal(load_dataset(ws, "cancer", verify=True), frame)
