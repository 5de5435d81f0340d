"""Run steps logged in batches (``log_steps``), and with an online checkpoint in its own
transaction, on SQLite and PostgreSQL: all rows or none, a step logged again replaced."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from loopml.errors import ConflictError, InvalidInputError, NotFoundError
from loopml.settings import Settings
from loopml.stores.records import OnlineCheckpoint, Run
from loopml.stores.registry import open_metadata
from loopml.utils import new_id, utcnow


def _run(store: object) -> Run:
    run = Run(
        id=new_id(),
        name="m",
        status="running",
        started_at=utcnow(),
        params={},
        owner="test",
        parent_id=None,
        tags={},
    )
    store.add_run(run)  # type: ignore[attr-defined]
    return run


def _cp(seq: int, run_id: str) -> OnlineCheckpoint:
    return OnlineCheckpoint(
        name="m",
        stream="redis://127.0.0.1:6379/0?stream=s",
        seq=seq,
        artifact_sha256=f"{seq:064x}",
        checksum=f"{500 + seq:064x}",
        position={"last_id": f"{seq}-0"},
        events=10 * seq,
        learned=10 * seq,
        run_id=run_id,
        created_at=utcnow(),
        metrics={},
    )


def _check_steps(uri: str) -> None:
    store = open_metadata(uri, Settings())
    try:
        run = _run(store)

        def stored() -> list[tuple[str, int, float | None]]:
            return [(s.key, s.step, s.value) for s in store.list_steps(run.id)]

        got = store.log_steps(run.id, [("a", 1, 0.5), ("a", 2, 0.25), ("b", 1, None)])
        assert [(s.key, s.step, s.value) for s in got] == [
            ("a", 1, 0.5),
            ("a", 2, 0.25),
            ("b", 1, None),
        ]
        assert stored() == [("a", 1, 0.5), ("a", 2, 0.25), ("b", 1, None)]
        # a step logged again is replaced; of one given twice in a call, the last wins
        store.log_steps(run.id, [("a", 2, 0.75), ("c", 0, 1.0), ("c", 0, 2)])
        assert stored() == [("a", 1, 0.5), ("a", 2, 0.75), ("b", 1, None), ("c", 0, 2.0)]
        # mixed with log_step: one table
        store.log_step(run.id, "a", 1, 9.0)
        assert stored()[0] == ("a", 1, 9.0)
        # a bad row is named, and nothing of the call is stored
        for rows, where in (
            ([("d", 1, 1.0), ("d", -1, 1.0)], 1),
            ([("d", 1, 1.0), ("", 2, 1.0)], 1),
            ([("d", 1, "high")], 0),
            ([("d", 1)], 0),
        ):
            with pytest.raises(InvalidInputError) as info:
                store.log_steps(run.id, rows)  # type: ignore[arg-type]
            assert info.value.where["row"] == where
            assert f"step row {where}" in info.value.message
        assert [k for k, _, _ in stored()].count("d") == 0
        with pytest.raises(NotFoundError):
            store.log_steps("f" * 32, [("a", 1, 1.0)])
        assert store.log_steps(run.id, []) == []

        # with a checkpoint: in its transaction
        store.add_online_checkpoint(_cp(1, run.id), [("online.accuracy", 100, 0.9)])
        assert ("online.accuracy", 100, 0.9) in stored()
        with pytest.raises(ConflictError):  # seq 1 taken: its steps are not logged either
            store.add_online_checkpoint(_cp(1, run.id), [("online.accuracy", 200, 0.8)])
        assert ("online.accuracy", 200, 0.8) not in stored()
        with pytest.raises(InvalidInputError):  # a bad step: no checkpoint either
            store.add_online_checkpoint(_cp(2, run.id), [("online.accuracy", -5, 0.8)])
        latest = store.latest_online_checkpoint("m", _cp(1, run.id).stream)
        assert latest is not None and latest.seq == 1
        store.add_online_checkpoint(replace(_cp(2, run.id)))  # no steps: as before
        latest = store.latest_online_checkpoint("m", _cp(1, run.id).stream)
        assert latest is not None and latest.seq == 2
        # steps of a run that is not stored: NotFoundError, and no checkpoint either
        with pytest.raises(NotFoundError):
            store.add_online_checkpoint(_cp(3, "f" * 32), [("online.accuracy", 300, 0.7)])
        latest = store.latest_online_checkpoint("m", _cp(1, run.id).stream)
        assert latest is not None and latest.seq == 2
        # a seq taken is told first, whatever the run
        with pytest.raises(ConflictError) as taken:
            store.add_online_checkpoint(_cp(2, "f" * 32), [("online.accuracy", 300, 0.7)])
        assert taken.value.code == "checkpoint_taken"
        # another store (another process) commits the next seq: this one's same seq is
        # refused as taken, read from the database, not from what this one committed last
        other = open_metadata(uri, Settings())
        try:
            other.add_online_checkpoint(_cp(3, run.id), [("online.accuracy", 300, 0.7)])
        finally:
            other.close()
        with pytest.raises(ConflictError) as taken:
            store.add_online_checkpoint(_cp(3, run.id), [("online.accuracy", 300, 0.6)])
        assert taken.value.code == "checkpoint_taken" and "is 3" in taken.value.message
        assert ("online.accuracy", 300, 0.7) in stored()
        store.add_online_checkpoint(_cp(4, run.id), [("online.accuracy", 400, 0.5)])
        assert ("online.accuracy", 400, 0.5) in stored()
    finally:
        store.close()


def test_log_steps_sqlite(tmp_path: Path) -> None:
    _check_steps(f"sqlite:///{tmp_path / 'meta.db'}")


@pytest.mark.postgres
def test_log_steps_postgres(postgres_uri: str) -> None:
    _check_steps(postgres_uri)
