"""The stream engine's side of bounded streams and skipped messages (standard input)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from loopml.data import load_dataset
from loopml.data.ingest import ingest_stream
from loopml.data.streams import StdinSource
from loopml.workspace import Workspace, init


def _ws(path: Path) -> Workspace:
    return init(path)


@pytest.mark.timeout(60)
def test_standard_input_ends_the_run_at_its_end(tmp_path: Path) -> None:
    """Without --idle-timeout, the end of standard input ends the run (it used to wait forever)."""
    ws = _ws(tmp_path / "ws")
    source = StdinSource(io.BytesIO(b'{"i": 1}\n{"i": 2}\n{"i": 3}\n'))
    results = ingest_stream(ws, source, "events", micro_batch_seconds=0.2)
    assert sum(r.dataset.num_rows for r in results if r.created) == 3
    assert sorted(load_dataset(ws, "events")["i"]) == [1, 2, 3]


@pytest.mark.timeout(60)
def test_skip_rows_reaches_stream_messages_and_quarantines_them(tmp_path: Path) -> None:
    """on_error="skip-rows" keeps the good messages and puts the bad ones in quarantine (it used
    to stop the run at the first bad message whatever on_error said)."""
    ws = _ws(tmp_path / "ws")
    source = StdinSource(io.BytesIO(b'{"i": 1}\nnot json\n{"i": 3}\n'))
    ingest_stream(ws, source, "events", on_error="skip-rows", micro_batch_seconds=0.2)
    assert sorted(load_dataset(ws, "events")["i"]) == [1, 3]
    reports = [p for p in ws.lake.list("quarantine/events") if p.endswith("report.json")]
    assert len(reports) == 1
    report = json.loads(ws.lake.read_bytes(reports[0]))
    assert report["quarantined_rows"] == 1
    assert report["failures"][0]["examples"][0]["raw"] == "not json"
