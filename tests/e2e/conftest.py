"""End-to-end helpers: run the CLI as a user would."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from sklearn.datasets import load_breast_cancer

from loopml.cli.main import main


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run ``loopml ARGS`` in this process (fast); returns exit code, stdout, stderr."""

    def run(*args: str) -> Result:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def run_subprocess(*args: str, cwd: Path | None = None, timeout: float = 300) -> Result:
    """Run ``python -m loopml ARGS`` in a child process, as a user's shell would."""
    proc = subprocess.run(
        [sys.executable, "-m", "loopml", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def cancer_csv(tmp_path: Path) -> Path:
    path = tmp_path / "cancer.csv"
    load_breast_cancer(as_frame=True).frame.to_csv(path, index=False)
    return path


PROJECT = """
name: cancer
data: {{dataset: cancer, target: {target}}}
features: {{numeric: {{impute: median, scale: standard}}}}
model: {{class: {cls}, params: {params}}}
evaluation: {{metric: roc_auc, folds: 5, holdout: 0.2, seed: 0, gate: "{gate}"}}
registry: {{alias: champion}}
"""


def project_file(
    folder: Path,
    *,
    target: str = "target",
    cls: str = "sklearn.linear_model.LogisticRegression",
    params: str = "{max_iter: 1000}",
    gate: str = "roc_auc >= 0.9",
) -> Path:
    path = folder / "loopml.yaml"
    path.write_text(PROJECT.format(target=target, cls=cls, params=params, gate=gate))
    return path
