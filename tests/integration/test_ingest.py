"""Ingestion on the embedded workspace under stress: concurrent writers and a failing database.

Each concurrent writer opens its own Workspace on the same folder (its own SQLite connection),
as separate processes or CLI calls would.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from loopml.data import IngestResult, ingest, list_datasets, load_dataset, load_table
from loopml.errors import StoreError
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
        assert ws.lake.list() == ["datasets/cancer/v=1/part-0.parquet"]
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
        assert ws.lake.list() == ["datasets/doomed/v=1/part-0.parquet"]
