"""A model registered from Python is shown, listed and traced like a trained one."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression

import loopml
from loopml.serve import start_background_server

from .conftest import Result


def test_models_show_list_runs_and_trace(tmp_path: Path, cli: Callable[..., Result]) -> None:
    frame = load_breast_cancer(as_frame=True).frame.iloc[:, [0, 1, 2, -1]]
    ws_path = tmp_path / "ws"
    with loopml.init(ws_path) as ws:
        bundle, _ = loopml.fit_bundle(frame, "target", LogisticRegression(max_iter=1000))
        mv = loopml.register_model(ws, "cancer", bundle)
        loopml.set_alias(ws, "cancer", "champion", mv.version)
        server = start_background_server(ws, host="127.0.0.1", port=0)
        try:
            rows = frame.drop(columns=["target"]).head(1).to_dict(orient="records")
            r = httpx.post(
                f"{server.url}/v1/models/cancer:predict", json={"instances": rows}, timeout=30
            )
        finally:
            server.stop()
    assert r.status_code == 200, r.text
    pid = r.json()["predictions"][0]["prediction_id"]

    shown = cli("models", "show", "cancer", "-w", ws_path)
    assert shown.code == 0, shown.err
    assert mv.run_id in shown.out and "None" not in shown.out
    doc = json.loads(cli("models", "show", "cancer", "-w", ws_path, "--json").out)
    assert doc["run"]["params"] == {"registered_from": "python"}

    for command in (("models", "list"), ("runs", "list")):
        listed = cli(*command, "-w", ws_path)
        assert listed.code == 0, listed.err
        assert "None" not in listed.out, listed.out

    traced = cli("trace", pid, "-w", ws_path, "--json")
    assert traced.code == 0, traced.err
    doc = json.loads(traced.out)
    assert doc["run"] == {**doc["run"], "id": mv.run_id, "status": "succeeded"}
    assert doc["dataset"] is None
    assert cli("trace", pid, "-w", ws_path).code == 0
