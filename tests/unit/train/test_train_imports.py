"""What a fresh ``loopml train`` of a LightGBM model imports: no more than it uses.

Each module below costs import time in every ``loopml train`` process (issue 7: the run
within 1.1x of LightGBM called directly, imports included) and is used only by other
models, other commands, or a run with a champion to compare with.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from loopml.data import ingest
from loopml.workspace import Workspace

#: never imported by a LightGBM run that has no champion yet
UNUSED = (
    "sklearn.ensemble",  # the tree checks of loaded models: no tree of scikit-learn's here
    "sklearn.tree",
    "loopml.evaluate.compare",  # the champion comparison (scipy.stats)
    "loopml.registry.compiled",  # ONNX compiling, for servers
    "loopml.registry.transfer",  # export / import
    "loopml.registry.flavors.river",  # other flavors
    "loopml.registry.flavors.xgboost",
    "loopml.registry.flavors.torch",
    "loopml.train.deep",  # torch estimators and their checkpoints
    "sqlalchemy.dialects.postgresql",  # the store is SQLite
    "sklearn.impute",  # LightGBM routes missing values itself: nothing is imputed
    "pydantic_settings",  # loopml.settings reads the LOOPML_* environment itself
)

PROJECT = """
name: small
data: {dataset: small, target: label}
model: {class: lightgbm.LGBMClassifier, params: {n_estimators: 5, n_jobs: 1}}
evaluation: {metric: roc_auc, folds: 0, holdout: 0.25, seed: 0, bootstrap: 20}
registry: {alias: champion}
"""

SCRIPT = """
import json, sys
from loopml.cli.main import main
code = main(["-w", sys.argv[1], "train", "-f", sys.argv[2]])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def test_a_fresh_lightgbm_train_imports_nothing_it_does_not_use(
    workspace: Workspace, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(400, 4)), columns=["a", "b", "c", "d"])
    frame["label"] = (frame["a"] + rng.normal(0, 0.5, 400) > 0).astype(int)
    data = tmp_path / "small.csv"
    frame.to_csv(data, index=False)
    ingest(workspace, data, "small")
    project = tmp_path / "loopml.yaml"
    project.write_text(PROJECT)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(workspace.root), str(project)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["code"] == 0, done.stderr[-3000:]
    modules = set(result["modules"])
    assert "lightgbm" in modules  # it did train
    imported = [m for m in UNUSED if m in modules]
    assert imported == [], f"a LightGBM run imported {imported}"
