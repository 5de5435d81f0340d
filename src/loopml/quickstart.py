"""The quickstart: the whole loop on scikit-learn's breast-cancer data, end to end.

ingest -> features -> train with 5-fold CV -> evaluate -> register as champion -> serve on
127.0.0.1 -> real HTTP requests -> predictions logged -> shifted traffic -> drift reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import yaml

from loopml.errors import LoopmlError

Progress = Callable[[str], None]

PROJECT = {
    "name": "cancer",
    "data": {"dataset": "breast_cancer", "target": "target", "task": "classification"},
    "features": {
        "include": "all",
        "numeric": {"impute": "median", "scale": "standard"},
        "categorical": {"impute": "most_frequent", "encode": "onehot"},
    },
    "model": {
        "class": "sklearn.ensemble.RandomForestClassifier",
        "params": {"n_estimators": 100, "random_state": 0, "n_jobs": 1},
    },
    "evaluation": {
        "metric": "roc_auc",
        "folds": 5,
        "holdout": 0.2,
        "seed": 42,
        "gate": "roc_auc >= 0.9",
    },
    "registry": {"alias": "champion"},
}
FRESH_REQUESTS = 60
SHIFTED_ROWS = 200


def run_quickstart(
    workspace: str | Path | None = None, *, port: int = 0, progress: Progress | None = None
) -> dict[str, Any]:
    """Run the loop in ``workspace`` (default ``./.loopml``); returns a summary."""
    from sklearn.datasets import load_breast_cancer

    from loopml.data import ingest
    from loopml.monitor import check_drift
    from loopml.project import ProjectConfig
    from loopml.serve import read_prediction_log, start_background_server
    from loopml.train import train
    from loopml.workspace import init

    say = progress or (lambda _m: None)
    t0 = time.perf_counter()
    ws = init(workspace)
    results: dict[str, str] = {}
    with ws:
        say(f"workspace {ws.root}")
        folder = ws.root / "quickstart"
        folder.mkdir(exist_ok=True)
        frame = load_breast_cancer(as_frame=True).frame
        csv = folder / "breast_cancer.csv"
        frame.to_csv(csv, index=False)
        project_file = folder / "loopml.yaml"
        project_file.write_text(yaml.safe_dump(PROJECT, sort_keys=False))

        res = ingest(ws, csv, "breast_cancer")
        dv = res.dataset
        say(f"ingested {dv.name}@{dv.version}: {dv.num_rows} rows, {len(dv.schema)} columns")
        results["ingest"] = f"{dv.name}@{dv.version}, {dv.num_rows} rows, sha256 {dv.sha256[:12]}"

        config = ProjectConfig.from_file(project_file)
        tr = train(ws, config, progress=say)
        if tr.model_version is None:
            raise LoopmlError(f"quickstart model failed its gate: {tr.reason}")
        mv = tr.model_version
        holdout = tr.run.metrics["holdout"]
        cv = tr.run.metrics["cv"]["roc_auc"]
        results["train"] = (
            f"run {tr.run.id[:12]}: holdout roc_auc {holdout['roc_auc']:.4f}, "
            f"accuracy {holdout['accuracy']:.4f}; 5-fold roc_auc {cv['mean']:.4f} ± {cv['std']:.4f}"
        )
        results["register"] = f"{mv.name}@{mv.version} -> alias {tr.promoted_alias}"

        server = start_background_server(ws, host="127.0.0.1", port=port)
        try:
            say(f"serving on {server.url}")
            rng = np.random.default_rng(7)
            features = frame.drop(columns=["target"])
            fresh = features.sample(FRESH_REQUESTS, random_state=1)
            sent = _send_rows(server.url, fresh, say, "fresh traffic")
            v2 = _send_v2(server.url, fresh.head(5))
            results["serve"] = (
                f"{sent} single-row requests on /v1/models/cancer:predict and one "
                f"5-row /v2/models/cancer/infer ({v2} outputs)"
            )
            _wait_for_log(ws, "cancer", sent + 5, read_prediction_log)
            check = check_drift(ws, "cancer")
            say(
                f"drift check on fresh traffic: "
                f"{'DRIFT' if check.drifted else 'no drift'} "
                f"({len(check.features.drifted_features)}/{len(check.features.features)} features)"
            )
            results["drift (fresh traffic)"] = _verdict(check)

            shifted_from = pd.Timestamp.now(tz="UTC").to_pydatetime()
            shifted = features.sample(SHIFTED_ROWS, random_state=2, replace=True)
            shifted = shifted * rng.normal(1.5, 0.05, size=shifted.shape)
            batch = _send_batches(server.url, shifted, say)
            _wait_for_log(ws, "cancer", batch, read_prediction_log, since=shifted_from)
            check = check_drift(ws, "cancer", since=shifted_from)
            say(
                f"drift check on shifted traffic: "
                f"{'DRIFT' if check.drifted else 'no drift'} "
                f"({len(check.features.drifted_features)}/{len(check.features.features)} features)"
            )
            results["drift (shifted traffic)"] = _verdict(check)
        finally:
            server.stop()
        locations = {
            "workspace": str(ws.root),
            "metadata": ws.metadata_uri,
            "dataset": ws.lake.url(dv.path),
            "model artifact": ws.artifacts.url(mv.artifact_sha256),
            "prediction log": ws.lake.url("predictions/cancer"),
            "drift report": check.report_url,
            "project file": str(project_file),
        }
    return {
        "seconds": time.perf_counter() - t0,
        "results": results,
        "locations": locations,
        "drift_detected": check.drifted,
    }


def _verdict(check: Any) -> str:
    names = check.features.drifted_features
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    if not check.drifted:
        return f"no drift ({check.current})"
    return f"DRIFT in {len(names)} features ({shown}); report {check.report_url}"


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): float(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def _send_rows(url: str, frame: pd.DataFrame, say: Progress, what: str) -> int:
    with httpx.Client(base_url=url, timeout=30) as client:
        for i, rec in enumerate(_records(frame)):
            r = client.post("/v1/models/cancer:predict", json={"instances": [rec]})
            r.raise_for_status()
            if i == 0:
                p = r.json()["predictions"][0]
                say(f"first answer: prediction {p['prediction']} id {p['prediction_id'][:12]}")
    say(f"sent {len(frame)} requests ({what})")
    return len(frame)


def _send_v2(url: str, frame: pd.DataFrame) -> int:
    body = {
        "inputs": [
            {
                "name": col,
                "shape": [len(frame)],
                "datatype": "FP64",
                "data": [float(v) for v in frame[col]],
            }
            for col in frame.columns
        ]
    }
    with httpx.Client(base_url=url, timeout=30) as client:
        r = client.post("/v2/models/cancer/infer", json=body)
        r.raise_for_status()
        return len(r.json()["outputs"])


def _send_batches(url: str, frame: pd.DataFrame, say: Progress, size: int = 20) -> int:
    records = _records(frame)
    with httpx.Client(base_url=url, timeout=30) as client:
        for start in range(0, len(records), size):
            r = client.post(
                "/v1/models/cancer:predict", json={"instances": records[start : start + size]}
            )
            r.raise_for_status()
    say(f"sent {len(records)} shifted rows in batches of {size}")
    return len(records)


def _wait_for_log(
    ws: Any, model: str, rows: int, reader: Callable[..., pd.DataFrame], since: Any = None
) -> None:
    """The log is written in the background; wait (bounded) until the rows are there."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if len(reader(ws.lake, model, since=since)) >= rows:
            return
        time.sleep(0.2)
    raise LoopmlError(f"prediction log of {model} did not reach {rows} rows in 20 s")
