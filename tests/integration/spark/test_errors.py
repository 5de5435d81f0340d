"""What a user gets wrong with --engine spark: one line naming it and the fix, exit 2, and
nothing in the lake or the metadata."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from loopml.cli.main import main
from loopml.data import list_datasets
from loopml.engines.spark.ingest import ingest as spark_ingest
from loopml.errors import ConfigError, NotFoundError
from loopml.workspace import Workspace, init, open_workspace

pytestmark = pytest.mark.slow


@pytest.fixture
def csv(tmp_path: Path) -> Path:
    path = tmp_path / "small.csv"
    pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]}).to_csv(path, index=False)
    return path


def nothing_committed(ws: Workspace) -> None:
    assert list_datasets(ws) == []
    assert [p for p in ws.lake.list("") if p.startswith(("datasets/", "_staging/"))] == []


def one_line_error(text: str, *needles: str) -> None:
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, text  # progress lines ("• reading ...") may come before it
    assert "Traceback" not in text and "py4j" not in text
    for needle in needles:
        assert needle in text, (needle, text)


def run_loopml(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A fresh process: these checks happen before a JVM would start, so no Spark session of
    this process interferes (and none is started)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    return subprocess.run(
        [sys.executable, "-m", "loopml", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, "COLUMNS": "400", **env},
        check=False,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_no_java(tmp_path: Path, csv: Path) -> None:
    ws = tmp_path / "ws"
    init(ws).close()
    proc = run_loopml(
        "data", "ingest", str(csv), "-n", "t", "-w", str(ws), "--engine", "spark",
        env={"JAVA_HOME": str(tmp_path / "no-java-here"), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    one_line_error(proc.stderr, "JAVA_HOME", "no bin/java", "Java 17")
    with open_workspace(ws) as opened:
        nothing_committed(opened)


def test_malformed_spark_conf(tmp_path: Path, csv: Path) -> None:
    ws = tmp_path / "ws"
    init(ws).close()
    proc = run_loopml(
        "data", "ingest", str(csv), "-n", "t", "-w", str(ws), "--engine", "spark",
        env={"LOOPML_SPARK_CONF": "spark.executor.memory=2g,spark.sql.shuffle.partitions"},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    one_line_error(proc.stderr, "spark_conf", "'spark.sql.shuffle.partitions' is not key=value")


def test_unreachable_master(
    spark: Any, tmp_path: Path, csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "ws"
    init(ws).close()
    master = f"spark://127.0.0.1:{free_port()}"
    capsys.readouterr()
    code = main(
        ["data", "ingest", str(csv), "-n", "t", "-w", str(ws), "--engine", "spark",
         "--spark-master", master]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    one_line_error(err, master, "does not answer")
    with open_workspace(ws) as opened:
        nothing_committed(opened)
    assert not spark.sparkContext._jsc.sc().isStopped()  # the open local session survives


def test_a_path_spark_cannot_read(spark: Any, workspace: Workspace, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        spark_ingest(workspace, "s3a://no-bucket/events.csv", "t")
    assert "no filesystem for s3a://" in str(info.value)
    assert "hadoop-aws" in (info.value.hint or "")
    with pytest.raises(NotFoundError, match="file not found"):
        spark_ingest(workspace, tmp_path / "missing.csv", "t")
    nothing_committed(workspace)


def test_spark_options_need_the_spark_engine(
    tmp_path: Path, csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "ws"
    init(ws).close()
    capsys.readouterr()
    code = main(["data", "ingest", str(csv), "-n", "t", "-w", str(ws), "--spark-master", "x"])
    assert code == 2
    assert "--spark-master is given without --engine spark" in capsys.readouterr().err
    code = main(["data", "ingest", str(csv), "-n", "t", "-w", str(ws), "--engine", "dask"])
    assert code == 2
    assert "unknown engine 'dask'" in capsys.readouterr().err
