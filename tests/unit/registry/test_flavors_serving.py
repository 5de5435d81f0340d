"""An XGBoost project trained through loopml.train and answered by a real server."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

import loopml
from loopml.data import ingest
from loopml.project import ProjectConfig
from loopml.registry import load_model
from loopml.serve import start_background_server
from loopml.workspace import Workspace

JSON = {"Content-Type": "application/json"}


def test_a_served_xgboost_model_answers_the_native_probabilities(workspace: Workspace) -> None:
    xgboost = pytest.importorskip("xgboost")
    frame = load_breast_cancer(as_frame=True).frame
    ingest(workspace, frame, "cancer")
    config = ProjectConfig.from_dict(
        {
            "name": "cancer",
            "data": {"dataset": "cancer", "target": "target", "positive": 1},
            "model": {"class": "xgboost.XGBClassifier", "params": {"n_estimators": 30}},
            "evaluation": {"metric": "roc_auc", "folds": 2, "gate": "roc_auc >= 0.9"},
        }
    )
    res = loopml.train(workspace, config)
    assert res.passed, res.reason
    assert res.model_version is not None and res.model_version.flavor == "xgboost"
    loaded = load_model(workspace, "cancer@1")
    booster = loaded.bundle.estimator
    assert isinstance(booster, xgboost.Booster)
    rows = frame.drop(columns="target").iloc[:25]
    native = booster.predict(xgboost.DMatrix(loaded.bundle.features.transform(rows)))
    records: list[dict[str, Any]] = rows.to_dict(orient="records")
    server = start_background_server(workspace, "127.0.0.1", 0, reload_interval=0)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            resp = client.post(
                "/v1/models/cancer:predict", json={"instances": records}, headers=JSON
            )
    finally:
        server.stop()
    assert resp.status_code == 200, resp.text
    answered = [p["probabilities"] for p in resp.json()["predictions"]]
    got = np.array([[a[str(c)] for c in (0, 1)] for a in answered])
    np.testing.assert_allclose(got[:, 1], native, rtol=0, atol=1e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-6)
