"""Test helpers: a trained model and prediction-log parts written at chosen times.

The parts are built by the log's own writer (``loopml.predictions.build_table``), so they are
what the server writes; only their timestamps are chosen, to test windows and label delays.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer

from loopml.data import ingest
from loopml.predictions import _Entry, _part_path, build_table
from loopml.project import ProjectConfig
from loopml.registry import load_model
from loopml.stores.records import Feedback
from loopml.train import train
from loopml.workspace import Workspace


def cancer() -> pd.DataFrame:
    return load_breast_cancer(as_frame=True).frame


def train_cancer(ws: Workspace, name: str = "cancer") -> None:
    """A logistic regression on the breast-cancer data, trained by ``loopml train``."""
    ingest(ws, cancer(), "cancer")
    config = ProjectConfig.from_dict(
        {
            "name": name,
            "data": {"dataset": "cancer", "target": "target"},
            "model": {
                "class": "sklearn.linear_model.LogisticRegression",
                "params": {"max_iter": 5000},
            },
            "evaluation": {"folds": 0, "holdout": 0.2, "seed": 42, "metric": "roc_auc"},
        }
    )
    assert train(ws, config).passed


def log_rows(
    ws: Workspace, model: str, frame: pd.DataFrame, at: datetime, *, version: int = 1
) -> list[str]:
    """Score ``frame`` (features only) with ``model@version`` and log it at time ``at``."""
    loaded = load_model(ws, f"{model}@{version}")
    p = loaded.bundle.predict_frame(frame)
    ids = [uuid.uuid4().hex for _ in range(len(frame))]
    ts_us = int(at.timestamp() * 1_000_000)
    entry = _Entry(model, version, ts_us, frame, p.labels, p.scores, ids, 1.0)
    day = at.strftime("%Y-%m-%d")
    path = _part_path(model, day)
    ws.lake.write_table(path, build_table([entry]))
    return ids


def label(ws: Workspace, ids: list[str], labels: list[object], received: datetime) -> None:
    """Store true labels for ``ids`` as received at ``received`` (as feedback does)."""
    ws.metadata.add_feedback(
        [Feedback(i, lab, None, received, "test") for i, lab in zip(ids, labels, strict=True)]
    )


def labels_of(frame: pd.DataFrame) -> list[object]:
    return [int(v) for v in np.asarray(frame["target"])]
