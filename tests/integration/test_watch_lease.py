"""Two watcher processes on one workspace never act twice on the same trigger: the lease in
the metadata store (and the trigger's dedupe key) let exactly one retrain, on SQLite and on
PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from loopml.data import ingest
from loopml.monitor.events import list_events
from loopml.project.config import ProjectConfig
from loopml.train import train
from loopml.workspace import init

PROJECT = {
    "name": "shop",
    "data": {"dataset": "shop", "target": "y", "task": "classification"},
    "model": {"class": "sklearn.linear_model.LogisticRegression"},
    "evaluation": {"metric": "roc_auc", "folds": 0, "holdout": 0.2, "bootstrap": 0},
    "policy": {
        "trigger": {"on": "schedule", "every": "1d"},
        "challenger": {"promote": "if_not_worse", "min_rows": 1},
    },
}

CHILD = textwrap.dedent(
    """
    import json, sys, time
    from loopml.pipeline.loop import run_once
    from loopml.project.config import ProjectConfig
    from loopml.workspace import open_workspace

    root, project, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
    cfg = ProjectConfig.from_file(project)
    with open_workspace(root) as ws:
        while time.time() < start:
            time.sleep(0.005)
        actions = run_once(ws, cfg)
    print(json.dumps([[a.kind, a.reason] for a in actions]))
    """
)


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(size=n)
    return pd.DataFrame({"a": a, "b": b, "y": (a + 0.3 * rng.normal(size=n) > 0).astype(int)})


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_two_watchers_retrain_once(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    root = tmp_path / "ws"
    uri = None if backend == "sqlite" else str(request.getfixturevalue("postgres_uri"))
    ws = init(root) if uri is None else init(root, metadata_uri=uri)
    project = tmp_path / "loopml.yaml"
    project.write_text(yaml.safe_dump(PROJECT))
    with ws:
        ingest(ws, _frame(400, 0), "shop")
        assert train(ws, ProjectConfig.from_file(project)).promoted_alias == "champion"
    start = time.time() + 4.0  # both are imported and connected by then
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(root), str(project), str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    kinds = sorted(k for actions in outputs for k, _ in actions)
    assert kinds.count("retrain") == 1, outputs
    assert "skip" in kinds, outputs
    from loopml.workspace import open_workspace

    with open_workspace(root) as again:
        assert len(list_events(again, "shop", "retrain")) == 1
        assert len(again.metadata.list_model_versions("shop")) == 2  # the champion + one
        assert again.metadata.get_lease("monitor:shop") is None  # released
