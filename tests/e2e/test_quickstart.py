"""``loopml quickstart`` as a user runs it, on the embedded default and on team backends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import run_subprocess


@pytest.mark.slow
def test_quickstart_embedded(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    res = run_subprocess("--workspace", ws, "quickstart", "--json")
    assert res.code == 0, res.err[-3000:]
    summary = json.loads(res.out)
    assert summary["drift_detected"] is True
    assert summary["results"]["drift (fresh traffic)"].startswith("no drift")
    assert summary["results"]["drift (shifted traffic)"].startswith("DRIFT")
    report = Path(summary["locations"]["drift report"].removeprefix("file://"))
    assert report.exists()
    assert "<svg" in report.read_text()
    assert list((ws / "lake" / "predictions" / "cancer").rglob("*.parquet"))
    assert "cross-validation fold 5/5" in res.err  # progress output


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.s3
def test_quickstart_on_postgres_and_s3(
    tmp_path: Path,
    postgres_uri: str,
    s3_uri: str,
    s3_env: None,
    cli,  # type: ignore[no-untyped-def]
) -> None:
    ws = tmp_path / "ws"
    res = cli("init", "-w", ws, "--metadata", postgres_uri, "--lake", s3_uri, "--json")
    assert res.code == 0, res.err
    described = json.loads(res.out)
    assert described["metadata"].startswith("postgresql")
    assert described["lake"].startswith("s3://")
    res = cli("-w", ws, "quickstart", "--json")
    assert res.code == 0, res.err[-3000:]
    summary = json.loads(res.out)
    assert summary["drift_detected"] is True
    assert summary["locations"]["drift report"].startswith("s3://")
    assert summary["locations"]["model artifact"].startswith("s3://")
    assert not (ws / "lake").exists()
