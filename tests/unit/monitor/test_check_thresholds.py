"""check_drift with the monitor.drift thresholds of loopml.yaml, over windows of the log, with
the reference scores of a version computed once and kept in the lake."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from loopml.data import ingest
from loopml.errors import ConfigError, InvalidInputError
from loopml.monitor import check_drift
from loopml.monitor.check import reference_cache_path
from loopml.monitor.thresholds import DriftThresholds
from loopml.project import ProjectConfig
from loopml.registry import load_model, register_model, set_alias
from loopml.registry.bundle import ModelBundle
from loopml.train import fit_bundle
from loopml.workspace import Workspace

from .logparts import log_rows

NOW = datetime(2026, 11, 3, 12, tzinfo=UTC)


def _frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    x[:, 0] += shift
    colors = rng.choice(["red", "green", "blue"], n, p=[0.5, 0.3, 0.2])
    y = (x[:, 0] + x[:, 1] + rng.normal(size=n) > 0).astype(int)
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "color": colors, "y": y})


def _model(ws: Workspace, n: int) -> Workspace:
    train = _frame(n, 0)
    dv = ingest(ws, train, "points").dataset
    bundle, _ = fit_bundle(train, "y", LogisticRegression())
    mv = register_model(ws, "points", bundle, dataset_name=dv.name, dataset_version=dv.version)
    set_alias(ws, "points", "champion", mv.version)
    return ws


@pytest.mark.slow
def test_a_million_rows_from_the_same_distribution_are_not_flagged_shifted_ones_are(
    workspace: Workspace,
) -> None:
    ws = _model(workspace, 1_000_000)
    same = _frame(1_000_000, 1).drop(columns=["y"])
    log_rows(ws, "points", same, NOW - timedelta(hours=2))
    check = check_drift(ws, "points", window="1d", now=NOW)
    assert check.features.n_current_rows == 1_000_000
    assert check.features.drifted_features == []
    assert not check.prediction.drifted and not check.drifted
    assert all(f.p_value is not None for f in check.features.features)
    shifted = _frame(1_000_000, 2, shift=0.3).drop(columns=["y"])
    log_rows(ws, "points", shifted, NOW + timedelta(hours=1))
    moved = check_drift(ws, "points", window="1h", now=NOW + timedelta(hours=1, minutes=30))
    assert moved.features.drifted_features == ["a"]


def test_per_feature_thresholds_from_the_project_file_decide(
    workspace: Workspace, tmp_path: Path
) -> None:
    ws = _model(workspace, 20_000)
    log_rows(ws, "points", _frame(20_000, 3, shift=0.3).drop(columns=["y"]), NOW)
    default = check_drift(ws, "points", window="last 20000")
    assert default.features.drifted_features == ["a"]
    assert default.features.limits.for_feature("a").wasserstein == 0.2
    project = tmp_path / "loopml.yaml"
    project.write_text(
        "name: points\n"
        "data: {dataset: points, target: y}\n"
        "model: {class: sklearn.linear_model.LogisticRegression}\n"
        "monitor:\n"
        "  drift:\n"
        "    features:\n"
        "      a: {psi: 0.5, wasserstein: 0.5}\n"
    )
    config = ProjectConfig.from_file(project)
    limits = DriftThresholds.from_mapping(config.monitor["drift"])
    relaxed = check_drift(ws, "points", window="last 20000", thresholds=limits)
    assert relaxed.features.drifted_features == []
    a = next(f for f in relaxed.features.features if f.feature == "a")
    assert a.psi is not None and 0.05 < a.psi < 0.5  # it moved, below its own threshold
    # an explicit option still overrides the file
    strict = check_drift(ws, "points", window="last 20000", thresholds=limits, psi_threshold=0.01)
    assert strict.features.limits.psi == 0.01


def test_a_bad_monitor_section_is_a_config_error_naming_the_field(tmp_path: Path) -> None:
    base = "name: p\ndata: {dataset: p, target: y}\nmodel: {class: x.Y}\n"
    (tmp_path / "a.yaml").write_text(base + "monitor: {drfit: {}}\n")
    with pytest.raises(ConfigError, match=r"unknown key monitor\.drfit"):
        ProjectConfig.from_file(tmp_path / "a.yaml")
    with pytest.raises(ConfigError, match=r"monitor.drift.features.a.psi must be a number >= 0"):
        DriftThresholds.from_mapping({"features": {"a": {"psi": -1}}})


def test_windows_of_the_log_and_a_dataset_version(workspace: Workspace) -> None:
    ws = _model(workspace, 5_000)
    log_rows(ws, "points", _frame(400, 4).drop(columns=["y"]), NOW - timedelta(days=3))
    log_rows(ws, "points", _frame(300, 5, shift=2.0).drop(columns=["y"]), NOW - timedelta(hours=1))
    recent = check_drift(ws, "points", window="1d", now=NOW)
    assert recent.features.n_current_rows == 300 and "a" in recent.features.drifted_features
    older = check_drift(ws, "points", window="2026-10-30..2026-11-01")
    assert older.features.n_current_rows == 400 and not older.drifted
    last = check_drift(ws, "points", window="last 350")
    assert last.features.n_current_rows == 350
    ingest(ws, _frame(500, 6, shift=2.0), "points")  # version 2 of the dataset
    as_dataset = check_drift(ws, "points", window="points@2")
    assert "dataset points@2" in as_dataset.current
    assert as_dataset.features.drifted_features == ["a"]
    with pytest.raises(InvalidInputError, match="holds no predictions"):
        check_drift(ws, "points", window="2025-01-01..2025-02-01")
    with pytest.raises(InvalidInputError, match="either data or a window"):
        check_drift(ws, "points", window="1d", data=_frame(50, 1))
    with pytest.raises(InvalidInputError, match="either a window or since/until"):
        check_drift(ws, "points", window="1d", since=NOW)


def test_reference_scores_are_computed_once_per_version(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = _model(workspace, 5_000)
    log_rows(ws, "points", _frame(400, 7).drop(columns=["y"]), NOW)
    scored: list[int] = []
    original = ModelBundle.predict_frame

    def counting(self: ModelBundle, frame: pd.DataFrame, *args: Any, **kwargs: Any) -> Any:
        scored.append(len(frame))
        return original(self, frame, *args, **kwargs)

    monkeypatch.setattr(ModelBundle, "predict_frame", counting)
    first = check_drift(ws, "points", window="last 400")
    assert 5_000 in scored  # the training rows, scored once
    path = reference_cache_path(load_model(ws, "points"))
    assert path.startswith("monitor/reference/points/1-") and ws.lake.exists(path)
    scored.clear()
    second = check_drift(ws, "points", window="last 400")
    assert scored == []  # nothing scored: the window's scores are logged, the reference kept
    assert "cached" in second.reference_scores
    assert second.prediction.features[0].psi == pytest.approx(first.prediction.features[0].psi)


def test_last_n_reads_only_the_newest_days(workspace: Workspace) -> None:
    from loopml.predictions import read_last_predictions, read_prediction_log

    ws = _model(workspace, 2_000)
    for d in range(4):
        log_rows(ws, "points", _frame(100, 10 + d).drop(columns=["y"]), NOW - timedelta(days=d))
    whole = read_prediction_log(ws.lake, "points")
    last = read_last_predictions(ws.lake, "points", 150)
    assert len(last) == 150
    assert last["prediction_id"].tolist() == whole["prediction_id"].tolist()[-150:]
    assert len(read_last_predictions(ws.lake, "points", 10_000)) == 400
    assert read_last_predictions(ws.lake, "points", 5, version=2).empty
    reads: list[str] = []
    original = ws.lake.read_table

    def counting(path: str) -> Any:
        reads.append(path)
        return original(path)

    ws.lake.read_table = counting  # type: ignore[method-assign]
    read_last_predictions(ws.lake, "points", 150)
    assert len({p.split("/")[2] for p in reads}) == 2  # two day partitions of four
