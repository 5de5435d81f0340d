"""A real standalone cluster on 127.0.0.1 (a master and two workers from pyspark's own
scripts): ingestion, and batch scoring, through ``spark://127.0.0.1:PORT``.

The loopml commands run in child processes, as a cron job would: each opens its own Spark
session against the cluster, so this test process's local session (the ``spark`` fixture of
the other tests) is never stopped or replaced.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loopml.data import get_dataset, ingest
from loopml.workspace import init, open_workspace
from tests.conftest import service_unavailable
from tests.integration.spark.cluster import standalone_cluster

pytestmark = pytest.mark.slow

# small executors: two workers of 1 core and 1 GiB, one 512 MiB executor each
CONF = "spark.executor.memory=512m,spark.cores.max=2,spark.sql.shuffle.partitions=4"


# both commands in one child process: one driver and one application on the cluster (the
# session opened by the first command serves the second), as a job script would run them
SCRIPT = """
import json, sys
from loopml.cli.main import main
for args in json.loads(sys.argv[1]):
    code = main(args)
    print("@@", code, flush=True)
    if code:
        break
"""


def loopml(*commands: list[str], timeout: float = 400) -> tuple[list[int], list[str], str]:
    """Run loopml ``commands`` in one child process: their exit codes and stdouts, stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(list(commands))],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**env, "LOOPML_SPARK_CONF": CONF, "COLUMNS": "300"},
        check=False,
    )
    codes, outs, current = [], [], []
    for line in proc.stdout.splitlines():
        if line.startswith("@@ "):
            codes.append(int(line[3:]))
            outs.append("\n".join(current))
            current = []
        else:
            current.append(line)
    return codes, outs, proc.stderr


def test_ingest_and_score_on_a_standalone_cluster(tmp_path: Path) -> None:
    if importlib.util.find_spec("pyspark") is None:
        service_unavailable("pyspark is not installed (pip install 'loopml[spark]')")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        service_unavailable("Spark needs Java 17 and no java is on the PATH")
    rng = np.random.default_rng(0)
    n = 3_000
    data = pd.DataFrame(
        {
            "x1": rng.normal(size=n).round(6),
            "x2": rng.uniform(0, 10, size=n).round(6),
            "colour": rng.choice(["red", "green", "blue"], n),
        }
    )
    data["label"] = np.where(data.x1 + (data.colour == "red") > 0.4, "yes", "no")
    path = tmp_path / "events.csv"
    data.to_csv(path, index=False)
    with init(tmp_path / "local") as local_ws:
        want = ingest(local_ws, path, "events").dataset
    ws = tmp_path / "ws"
    init(ws).close()
    scoring = importlib.util.find_spec("loopml.engines.spark.score") is not None
    if scoring:
        _register_model(ws, data)
    out = tmp_path / "scores"

    with standalone_cluster(tmp_path / "cluster") as cluster:
        on = ["--engine", "spark", "--spark-master", cluster.master_url, "-w", str(ws), "--json"]
        commands = [["data", "ingest", str(path), "-n", "events", *on]]
        if scoring:
            commands.append(["predict", "-m", "churn", "-i", "events@1", "-o", str(out), *on])
        codes, outs, err = loopml(*commands)
        assert codes == [0] * len(commands), err[-3000:]
        # the work ran in executors the workers launched, not in the driver
        assert cluster.executor_dirs(), cluster.log("master")[-2000:]

    assert json.loads(outs[0])["num_rows"] == n
    with open_workspace(ws) as opened:
        got = get_dataset(opened, "events")
    assert (got.sha256, got.schema, got.parts) == (want.sha256, want.schema, want.parts)
    if scoring:  # batch scoring on Spark (loopml.engines.spark.score)
        assert json.loads(outs[1])["rows"] == n
        parts = sorted(out.glob("part-*"))
        scored = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
        assert len(scored) == n and scored["prediction_id"].is_unique
        assert set(scored["prediction"]) <= {"yes", "no"}


def _register_model(ws: Path, data: pd.DataFrame) -> None:
    from sklearn.linear_model import LogisticRegression

    from loopml.registry import register_model, set_alias
    from loopml.train import fit_bundle

    bundle, _ = fit_bundle(data, "label", LogisticRegression(max_iter=200))
    with open_workspace(ws) as opened:
        mv = register_model(opened, "churn", bundle)
        set_alias(opened, "churn", "champion", mv.version)
