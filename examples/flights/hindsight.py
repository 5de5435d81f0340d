"""What any retraining schedule can recover on the replay, in hindsight: the ceiling for k retrains.

Trains the replay's learner (``run.py``'s LightGBM) on the months up to each month ``i``, scores
it on every later month ``j``, and from that matrix computes, for each number of retrains
``k``, the schedules (the months after which a model trained on all labels so far takes over)
that recover the largest share of the oracle's gain (the oracle retrains after every month).
No loop, no server: this bounds what a trigger can do with this learner and this data. A
trigger that retrains ``k`` times cannot beat the best ``k``-month schedule here, except by
training differently from the oracle.

    python examples/flights/hindsight.py [--months 12] [--trees 100] [--top 3]
    python examples/flights/hindsight.py --data FILE --target COL --time COL
    python examples/flights/hindsight.py --window 2   # each model on its newest 2 months only
    python examples/flights/hindsight.py --half-life 30d 60d   # recency-weighted refits

``--window N`` asks the same of a recency window (the policy's ``data.window``, in months):
each model is trained on months ``i-N+1..i`` only; the oracle stays the issue's (all months).
``--half-life 30d [60d ...]`` asks it of recency-weighted fits (``train.weight.recency``):
each model on all months so far, a row weighing half per half-life of age before the newest
(a duration, or a number of rows); one ceiling per half-life, against the issue's oracle.

The last line is one JSON object: ``{"static": …, "oracle": …, "best": {"1": [share, [months]],
…}}`` (months numbered as the replayed ones, 0 = the first, whose model is the static one).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))

import run as replay  # the replay's data and learner

import loopml
from loopml.project.weight import parse_weight
from loopml.train.weights import row_weights


def schedule_mean(matrix: np.ndarray, retrain_after: set[int]) -> float:
    """Mean metric over months 1..n-1 when the model trained on months 0..i takes over after
    each month ``i`` in ``retrain_after`` (``matrix[i, j]``: that model on month ``j``)."""
    current, values = 0, []
    for j in range(1, matrix.shape[0]):
        values.append(matrix[current, j])
        if j in retrain_after:
            current = j
    return float(np.nanmean(values))


def ceilings(matrix: np.ndarray, max_retrains: int, top: int = 3) -> dict[str, Any]:
    """Static and oracle means, and for k = 1..max_retrains the ``top`` schedules of k
    retrains by the share of the oracle's gain over the static model they recover."""
    n = matrix.shape[0]
    static = schedule_mean(matrix, set())
    oracle = float(np.nanmean([matrix[j - 1, j] for j in range(1, n)]))
    gain = oracle - static
    best: dict[str, list[list[Any]]] = {}
    months = range(1, n - 1)  # a retrain after the last month serves nothing
    for k in range(1, min(max_retrains, len(months)) + 1):
        scored = [
            (schedule_mean(matrix, set(s)), list(s)) for s in itertools.combinations(months, k)
        ]
        scored.sort(key=lambda t: -t[0])
        best[str(k)] = [
            [round((m - static) / gain, 3) if gain > 0 else float("nan"), s]
            for m, s in scored[:top]
        ]
    return {"static": round(static, 4), "oracle": round(oracle, 4), "best": best}


def against_oracle(
    other: np.ndarray, matrix: np.ndarray, max_retrains: int, top: int
) -> dict[str, Any]:
    """:func:`ceilings` of the models of ``other`` (trained differently from the oracle's:
    a window, weights), as shares of the issue's oracle gain (``matrix``: its own models).
    The static model is the oracle's first (the replay trains it so, unweighted)."""
    n = matrix.shape[0]
    other = other.copy()
    other[0] = matrix[0]
    out = ceilings(other, max_retrains, top)
    oracle = float(np.nanmean([matrix[j - 1, j] for j in range(1, n)]))
    static = out["static"]
    for rows in out["best"].values():
        for row in rows:
            mean = schedule_mean(other, set(row[1]))
            row[0] = round((mean - static) / (oracle - static), 3)
    out["oracle"] = round(oracle, 4)
    return out


def month_matrix(
    frame: pd.DataFrame,
    target: str,
    time_col: str,
    *,
    months: int | None,
    trees: int,
    say: Any,
    window: int | None = None,
    half_life: str | None = None,
) -> np.ndarray:
    """``m[i, j]``: ROC-AUC on month ``j`` of the learner trained on months ``0..i`` (on
    its newest ``window`` of them, when given; weighted by recency with ``half_life``, a
    duration such as 30d or a number of rows, as ``train.weight.recency`` weighs them)."""
    period = frame[time_col].dt.to_period("M")
    periods = sorted(period.unique())[: months or None]
    with_time = [frame[period == p].reset_index(drop=True) for p in periods]
    chunks = [c.drop(columns=[time_col]) for c in with_time]
    features = [c for c in chunks[0].columns if c != target]
    spec = None
    if half_life is not None:
        recency: dict[str, Any] = (
            {"half_life": int(half_life)}
            if half_life.isdigit()
            else {"time": time_col, "half_life": half_life}
        )
        spec = parse_weight({"recency": recency}, "--half-life")
    n = len(chunks)
    m = np.full((n, n), np.nan)
    for i in range(n - 1):
        first = 0 if window is None else max(0, i + 1 - window)
        data = pd.concat(chunks[first : i + 1], ignore_index=True)
        weights = None
        if spec is not None:
            timed = pd.concat(with_time[first : i + 1], ignore_index=True)
            weights = row_weights(timed, spec, source="--half-life", dataset="the replay")
        bundle, _ = loopml.fit_bundle(
            data, target, replay._lgbm(trees), task="classification", sample_weight=weights
        )
        for j in range(i + 1, n):
            x, y = chunks[j][features], chunks[j][target].to_numpy()
            m[i, j] = replay._auc(y, bundle.predict(x, unknown="flag").scores)
        say(
            f"trained on {periods[first]}..{periods[i]} ({len(data)} rows): "
            f"{np.round(m[i, i + 1 :], 4)}"
        )
    return m


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="a time-ordered CSV or Parquet file instead of flights")
    parser.add_argument("--target", default="late")
    parser.add_argument("--time", default="time_hour")
    parser.add_argument("--months", type=int)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--max-retrains", type=int, default=4)
    parser.add_argument("--top", type=int, default=3)
    parser.add_argument(
        "--window", type=int, help="train each model on its newest N months only (default: all)"
    )
    parser.add_argument(
        "--half-life",
        nargs="+",
        help="recency-weighted fits: half-lives such as 30d (or a number of rows); one "
        "ceiling each",
    )
    args = parser.parse_args(argv)
    if args.data:
        frame, target, time_col = (
            replay.file_frame(args.data, args.target, args.time),
            args.target,
            args.time,
        )
    else:
        frame, target, time_col = replay.flights_frame(), "late", "time_hour"
    matrix = month_matrix(
        frame, target, time_col, months=args.months, trees=args.trees, say=print, window=None
    )
    if args.half_life:
        out = ceilings(matrix, args.max_retrains, args.top)
        out["half_life"] = {}
        for half_life in args.half_life:
            weighted = month_matrix(
                frame,
                target,
                time_col,
                months=args.months,
                trees=args.trees,
                say=print,
                half_life=half_life,
            )
            got = against_oracle(weighted, matrix, args.max_retrains, args.top)
            out["half_life"][half_life] = got["best"]
            print(json.dumps({"half_life": half_life, "best": got["best"]}))
    elif args.window:
        # the schedules of models trained on a recency window, against the oracle
        windowed = month_matrix(
            frame,
            target,
            time_col,
            months=args.months,
            trees=args.trees,
            say=print,
            window=args.window,
        )
        out = against_oracle(windowed, matrix, args.max_retrains, args.top)
        out["window_months"] = args.window
    else:
        out = ceilings(matrix, args.max_retrains, args.top)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
