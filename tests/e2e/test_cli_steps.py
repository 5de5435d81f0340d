"""The loop step by step on the command line, and every bad input the issue lists."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from loopml.registry import load_model
from loopml.serve import start_background_server
from loopml.workspace import open_workspace

from .conftest import project_file


@pytest.fixture
def trained(tmp_path: Path, cli, cancer_csv: Path) -> Path:  # type: ignore[no-untyped-def]
    ws = tmp_path / "ws"
    assert cli("init", "--workspace", ws).code == 0
    assert cli("data", "ingest", cancer_csv, "--name", "cancer", "-w", ws).code == 0
    res = cli("train", "-f", project_file(tmp_path), "-w", ws)
    assert res.code == 0, res.err
    return ws


def test_step_by_step(tmp_path: Path, cli, cancer_csv: Path, trained: Path) -> None:  # type: ignore[no-untyped-def]
    ws = trained
    # same content again: no new version
    res = cli("data", "ingest", cancer_csv, "--name", "cancer", "-w", ws, "--json")
    assert res.code == 0
    assert json.loads(res.out)["created"] is False
    listing = json.loads(cli("data", "list", "-w", ws, "--json").out)
    assert [(d["name"], d["version"]) for d in listing] == [("cancer", 1)]
    shown = json.loads(cli("data", "show", "cancer@1", "-w", ws, "--json").out)
    assert shown["num_rows"] == 569
    assert len(shown["schema"]) == 31
    assert "mean radius" in shown["stats"]

    models = json.loads(cli("models", "list", "-w", ws, "--json").out)
    assert len(models) == 1
    assert models[0]["aliases"] == ["champion"]
    m = json.loads(cli("models", "show", "cancer@champion", "-w", ws, "--json").out)
    assert m["metrics"]["holdout"]["roc_auc"] >= 0.9
    assert set(m["metrics"]["cv"]["roc_auc"]) == {"mean", "std", "min", "max"}
    assert m["run"]["dataset_name"] == "cancer"
    assert m["run"]["dataset_version"] == 1
    assert m["run"]["packages"]["scikit-learn"]
    assert m["signature"]["inputs"][0]["name"] == "mean radius"
    assert m["run"]["duration_s"] > 0
    assert cli("models", "show", "cancer", "-w", ws).code == 0
    runs = json.loads(cli("runs", "list", "-w", ws, "--json").out)
    assert runs[0]["status"] == "succeeded"

    # batch scoring
    out = tmp_path / "scored.parquet"
    res = cli("predict", "--model", "cancer", "--input", cancer_csv, "--output", out, "-w", ws)
    assert res.code == 0, res.err
    scored = pd.read_parquet(out)
    assert len(scored) == 569
    assert {"prediction", "proba_0", "proba_1"} <= set(scored.columns)

    # drift: a file from the same distribution passes, a shifted one is a finding (exit 1)
    frame = load_breast_cancer(as_frame=True).frame
    fresh = tmp_path / "fresh.csv"
    frame.sample(150, random_state=3).to_csv(fresh, index=False)
    res = cli("monitor", "drift", "--model", "cancer", "--data", fresh, "-w", ws)
    assert res.code == 0, res.out + res.err
    assert "no drift" in res.out
    shifted = tmp_path / "shifted.csv"
    features = frame.drop(columns=["target"]).sample(150, random_state=4)
    (features * 1.5).to_csv(shifted, index=False)
    res = cli("monitor", "drift", "--model", "cancer", "--data", shifted, "-w", ws, "--json")
    assert res.code == 1
    doc = json.loads(res.out)
    assert doc["drifted"] is True
    assert Path(doc["report_url"].removeprefix("file://")).read_text().count("<svg") >= 5


def test_gate_failure_is_recorded_and_not_promoted(tmp_path: Path, cli, trained: Path) -> None:  # type: ignore[no-untyped-def]
    pf = project_file(tmp_path, gate="roc_auc >= 0.9999")
    res = cli("train", "-f", pf, "-w", trained)
    assert res.code == 1
    assert "failed its gate" in res.err
    assert "Traceback" not in res.err
    runs = json.loads(cli("runs", "list", "-w", trained, "--json").out)
    assert runs[0]["status"] == "gate_failed"
    assert "roc_auc" in runs[0]["error"]
    models = json.loads(cli("models", "list", "-w", trained, "--json").out)
    assert len(models) == 1  # nothing new registered


def _predict_over_http(workspace: Path, rows: pd.DataFrame) -> httpx.Response:
    """POST ``rows`` to a real server on 127.0.0.1; stopping it flushes the prediction log."""
    with open_workspace(workspace) as ws:
        server = start_background_server(ws, host="127.0.0.1", port=0)
        try:
            r = httpx.post(
                f"{server.url}/v1/models/cancer:predict",
                json={"instances": rows.to_dict(orient="records")},
                timeout=30,
            )
        finally:
            server.stop()
    assert r.status_code == 200, r.text
    return r


def test_http_cli_and_python_give_identical_predictions(tmp_path: Path, cli, trained: Path) -> None:  # type: ignore[no-untyped-def]
    frame = load_breast_cancer(as_frame=True).frame.drop(columns=["target"]).head(25)
    path = tmp_path / "rows.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / "scored.csv"
    assert cli("predict", "-m", "cancer", "-i", path, "-o", out, "-w", trained).code == 0
    by_cli = pd.read_csv(out)
    # read the CSV back the way the CLI did, so every path sees the same floats
    rows = pd.read_csv(path)
    with open_workspace(trained) as ws:
        by_api = load_model(ws, "cancer").predict(rows)
    r = _predict_over_http(trained, rows)
    by_http = r.json()["predictions"]
    # the CLI (and the server) predict through the compiled model where the version has one:
    # checked against the native model to 1e-6 when it is built (registry.compiled)
    np.testing.assert_allclose(
        by_cli["proba_1"].to_numpy(), by_api.probabilities[:, 1], rtol=0, atol=1e-6
    )
    np.testing.assert_allclose(
        [p["probabilities"]["1"] for p in by_http], by_api.probabilities[:, 1], rtol=0, atol=1e-6
    )
    assert [p["prediction"] for p in by_http] == list(by_api.labels)
    assert list(by_cli["prediction"]) == list(by_api.labels)


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda d: d / "missing.csv", "not found"),
        (lambda d: _write(d / "empty.csv", ""), "no rows"),
        (lambda d: _write(d / "header.csv", "a,b\n"), "no rows"),
        (lambda d: _write(d / "broken.csv", "a,b\n1,2\n3,4,5\n6,7\n"), "line 3"),
    ],
)
def test_bad_files_get_one_line_errors(tmp_path: Path, cli, make, words: str) -> None:  # type: ignore[no-untyped-def]
    ws = tmp_path / "ws"
    cli("init", "-w", ws)
    res = cli("data", "ingest", make(tmp_path), "--name", "bad", "-w", ws)
    assert res.code == 2
    assert words in res.err
    assert "Traceback" not in res.err
    assert json.loads(cli("data", "list", "-w", ws, "--json").out) == []
    assert not list((ws / "lake").rglob("*.parquet"))


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", ["a/b", "..", "../x", "/abs"])
def test_unsafe_names_are_refused(tmp_path: Path, cli, cancer_csv: Path, name: str) -> None:  # type: ignore[no-untyped-def]
    ws = tmp_path / "ws"
    cli("init", "-w", ws)
    res = cli("data", "ingest", cancer_csv, "--name", name, "-w", ws)
    assert res.code == 2
    assert "invalid dataset" in res.err
    assert not (ws / "lake" / "datasets").exists() or not any((ws / "lake").rglob("*.parquet"))


def test_missing_workspace(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    res = cli("data", "list", "-w", tmp_path / "nowhere")
    assert res.code == 2
    assert "no loopml workspace" in res.err
    assert "loopml init" in res.err
    assert not (tmp_path / "nowhere").exists()


def test_missing_target_and_unknown_model_class_leave_no_run(
    tmp_path: Path,
    cli,  # type: ignore[no-untyped-def]
    trained: Path,
) -> None:
    before = json.loads(cli("runs", "list", "-w", trained, "--json").out)
    res = cli("train", "-f", project_file(tmp_path, target="diagnosis"), "-w", trained)
    assert res.code == 2
    assert "target column 'diagnosis'" in res.err
    res = cli(
        "train", "-f", project_file(tmp_path, cls="sklearn.ensemble.MagicForest"), "-w", trained
    )
    assert res.code == 2
    assert "MagicForest" in res.err
    res = cli("train", "-f", project_file(tmp_path, cls="os.system"), "-w", trained)
    assert res.code == 2
    assert "is not an estimator of a package loopml trains" in res.err
    after = json.loads(cli("runs", "list", "-w", trained, "--json").out)
    assert len(after) == len(before)


def test_every_command_has_help(cli) -> None:  # type: ignore[no-untyped-def]
    for args in [
        [],
        ["init"],
        ["data"],
        ["data", "ingest"],
        ["data", "list"],
        ["data", "show"],
        ["train"],
        ["models"],
        ["models", "list"],
        ["models", "show"],
        ["models", "alias"],
        ["runs", "list"],
        ["serve"],
        ["predict"],
        ["monitor", "drift"],
        ["quickstart"],
        ["trace"],
        ["runs", "show"],
    ]:
        res = cli(*args, "--help")
        assert res.code == 0, args
        assert "Usage" in res.out, args


def test_loopml_serve_command(trained: Path) -> None:
    """`loopml serve` in its own process, as a user starts it; stopped by its pid."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "LOOPML_HOME": str(trained)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "loopml", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail("loopml serve did not become ready in 60 s")
        meta = httpx.get(f"{url}/v2/models/cancer", timeout=5).json()
        assert meta["name"] == "cancer"
        assert len(meta["inputs"]) == 30
        assert httpx.get(f"{url}/openapi.json", timeout=5).json()["paths"]
        assert "loopml_" in httpx.get(f"{url}/metrics", timeout=5).text
        bad = httpx.post(
            f"{url}/v1/models/cancer:predict", json={"instances": [{"x": 1}]}, timeout=5
        )
        assert bad.status_code == 422
        assert bad.json()["where"]["row"] == 0
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_trace_a_served_prediction_back_to_its_source(
    cli,  # type: ignore[no-untyped-def]
    trained: Path,
    cancer_csv: Path,
) -> None:
    rows = load_breast_cancer(as_frame=True).frame.drop(columns=["target"]).head(2)
    r = _predict_over_http(trained, rows)
    pid = r.json()["predictions"][1]["prediction_id"]
    res = cli("trace", pid, "-w", trained, "--json")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert doc["prediction"]["inputs"]["mean radius"] == rows["mean radius"].iloc[1]
    assert doc["model"] == {**doc["model"], "name": "cancer", "version": 1}
    assert doc["run"]["status"] == "succeeded"
    assert doc["dataset"]["name"] == "cancer"
    assert doc["dataset"]["source"].endswith("cancer.csv")
    assert cli("trace", pid, "-w", trained).code == 0
    missing = cli("trace", "0" * 32, "-w", trained)
    assert missing.code == 2
    assert "not in the prediction log" in missing.err
    assert cli("trace", "nope", "-w", trained).code == 2
