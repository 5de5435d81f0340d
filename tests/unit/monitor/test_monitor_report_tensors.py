"""The per-day monitoring page of a model with a tensor input (a CNN on digits images) shows
the tensor's drift per period and over the whole window, as `loopml monitor drift` does."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits

pytest.importorskip("torch")

from loopml.data import ingest
from loopml.monitor.check import monitor_report
from loopml.monitor.tensors import tensor_drift, tensor_inputs
from loopml.project import ProjectConfig
from loopml.registry import load_model
from loopml.train import train
from loopml.workspace import Workspace

from .logparts import log_rows

NOW = datetime(2026, 11, 5, 12, tzinfo=UTC)
CNN = {
    "class": "loopml.train.deep.CNNClassifier",
    "params": {"channels": 1, "height": 8, "width": 8, "filters": [4, 8], "epochs": 1,
               "batch_size": 128, "random_state": 0},
}  # fmt: skip


@pytest.fixture(scope="module")
def digits() -> pd.DataFrame:
    return load_digits(as_frame=True).frame


@pytest.fixture
def three_days(workspace: Workspace, digits: pd.DataFrame) -> list[pd.DataFrame]:
    """A CNN trained on the digits; three days of logged images, the last one brighter."""
    ingest(workspace, digits, "digits")
    config = ProjectConfig.from_dict(
        {
            "name": "digits",
            "data": {"dataset": "digits", "target": "target"},
            "model": CNN,
            "evaluation": {"folds": 0, "holdout": 0.2, "seed": 0, "metric": "accuracy"},
        }
    )
    assert train(workspace, config).model_version is not None
    pixels = digits.drop(columns="target").sample(frac=1.0, random_state=3)
    days = [pixels.iloc[:300], pixels.iloc[300:600], np.clip(pixels.iloc[600:900] + 3.0, 0, 16)]
    for i, part in enumerate(days):
        log_rows(workspace, "digits", part, NOW - timedelta(days=3 - i))
    return days


def test_the_monitoring_page_shows_the_tensor_drift_per_day(
    workspace: Workspace, three_days: list[pd.DataFrame], digits: pd.DataFrame
) -> None:
    rep = monitor_report(workspace, "digits", window="7d", now=NOW)
    assert rep.periods == ["2026-11-02", "2026-11-03", "2026-11-04"]
    html = workspace.lake.read_bytes(rep.url.split("/lake/", 1)[1]).decode()
    assert "Tensor image [1, 8, 8] over time" in html
    assert "tensor image: intensity histogram against the reference, per period" in html
    table = html.split('<table class="tensors">', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr(?: class=\"drift\")?><td>([^<]*)", table)
    assert rows == ["reference (training)", *rep.periods, "whole window"]
    drifted = re.findall(r"<tr class=\"drift\"><td>([^<]*)", table)
    assert drifted == ["2026-11-04", "whole window"]  # the brighter day, and so the window
    # each day's numbers are those of the tensor check on that day's images alone
    model = load_model(workspace, "digits")
    (image,) = tensor_inputs(model.signature)
    reference = digits.drop(columns="target")
    for day, part in zip(rep.periods, three_days, strict=True):
        want = tensor_drift(reference, part, image)
        row = re.search(rf"<tr(?: class=\"drift\")?><td>{day}.*?</tr>", table)
        assert row is not None
        cells = re.findall(r'<td class="num">([^<]*)</td>', row.group(0))
        assert cells[0] == str(len(part))
        assert cells[1] == f"{want.mean['current']:.3f}"
        assert cells[3] == f"{want.histogram['psi']:.4f}"
        assert ("per-image mean" in row.group(0)) == want.drifted
    assert "<script" not in html


def test_a_tabular_model_has_no_tensor_section(workspace: Workspace) -> None:
    from .logparts import cancer, train_cancer

    train_cancer(workspace)
    log_rows(workspace, "cancer", cancer().drop(columns="target").iloc[:200], NOW)
    rep = monitor_report(workspace, "cancer", window="7d", now=NOW)
    html = workspace.lake.read_bytes(rep.url.split("/lake/", 1)[1]).decode()
    assert "Tensor " not in html and 'class="tensors"' not in html
