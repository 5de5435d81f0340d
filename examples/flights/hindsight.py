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
    python examples/flights/hindsight.py --any-switch --held-out 0.1   # the loop's ceiling

``--window N`` asks the same of a recency window (the policy's ``data.window``, in months):
each model is trained on months ``i-N+1..i`` only; the oracle stays the issue's (all months).
``--half-life 30d [60d ...]`` asks it of recency-weighted fits (``train.weight.recency``):
each model on all months so far, a row weighing half per half-life of age before the newest
(a duration, or a number of rows); one ceiling per half-life, against the issue's oracle.

``--any-switch`` bounds everything the replay's loop can do, not just "retrain after month
``i`` and serve that model until the next retrain". Its decision points are the month ends:
``run.py`` sends a month's traffic as one burst, then its labels, then calls ``run_once``
once, so no label (no information) arrives between two month ends and nothing acts in
between; a watcher running all the time would see the same labels at the same instants. At
each month end the loop may retrain (one ``retrain`` event: a challenger trained on the
dataset plus all labelled traffic minus its newest ``evaluate_on`` share, and with
``refit: true`` that model again on all of it), and, for no retrain, serve any model trained
so far (a second look, a refit look, a promotion, a rollback) or the static one. The bound
(``any_switch``) lets each month be served by the best, in hindsight, of the static model and
every model trained so far in both training variants: the judged challenger (``--held-out
0.1``, the policy's share) from the month after its retrain, its refit on all rows from the
month after that (a refit serves only once it has beaten the judged version on the labels
that follow), for every set of ``k`` retrain month ends: no trigger, judgement or promotion
rule with ``k`` retrains of this learner, trained so, beats it. ``any_switch_unjudged`` lets
the refit serve at once (the loop never does). Other ``evaluate_on`` shares, windows and
weights are other variants, not enumerated here.

The last line is one JSON object: ``{"static": …, "oracle": …, "best": {"1": [share, [months]],
…}}`` (months numbered as the replayed ones, 0 = the first, whose model is the static one;
with ``--any-switch`` also ``"any_switch"`` and ``"any_switch_unjudged"``: the same for the
bounds, each schedule with ``[model, variant]`` serving each month, variant 0 the judged
challenger, 1 its refit). ``--save FILE.npz`` keeps the matrices, ``--load`` reuses them.
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


def any_switch_mean(
    variants: list[tuple[np.ndarray, int]], retrain_after: set[int]
) -> tuple[float, list[list[int]]]:
    """Mean metric over months 1..n-1 when models are trained after each month in
    ``retrain_after`` and every month ``j`` is served by the best, in hindsight, of the static
    model and every variant ``(m, delay)`` of every model trained after a month ``i`` with
    ``i + delay < j`` (``m[i, j]``: that variant on month ``j``; ``delay`` 0: it may serve the
    month after its retrain, 1: the month after that, as a refit judged on the labels of the
    month that follows it); and ``[model, variant]`` of each month's pick."""
    n = variants[0][0].shape[0]
    values: list[float] = []
    served: list[list[int]] = []
    for j in range(1, n):
        best, pick = variants[0][0][0, j], [0, 0]
        for v, (m, delay) in enumerate(variants):
            for i in retrain_after:
                if i + delay < j and np.isfinite(m[i, j]) and not m[i, j] <= best:
                    best, pick = m[i, j], [i, v]
        values.append(float(best))
        served.append(pick)
    return float(np.nanmean(values)), served


def any_switch_ceilings(
    variants: list[tuple[np.ndarray, int]], matrix: np.ndarray, max_retrains: int, top: int = 3
) -> dict[str, Any]:
    """The ceiling of everything the loop can act on with ``k`` retrains (see the module's
    ``--any-switch``): for every set of ``k`` retrain month ends, each month served by the
    best, in hindsight, of the models trained so far in every training variant
    ``(m, delay)`` (see :func:`any_switch_mean`); shares of the issue's oracle gain
    (``matrix``: the oracle's own models, all rows so far; its row 0, the static model,
    serves when nothing else does)."""
    variants = [(m.copy(), d) for m, d in variants]
    for m, _ in variants:
        m[0] = matrix[0]
    n = matrix.shape[0]
    static = schedule_mean(matrix, set())
    oracle = float(np.nanmean([matrix[j - 1, j] for j in range(1, n)]))
    gain = oracle - static
    out: dict[str, Any] = {"static": round(static, 4), "oracle": round(oracle, 4), "best": {}}
    months = range(1, n - 1)
    for k in range(1, min(max_retrains, len(months)) + 1):
        scored = []
        for s in itertools.combinations(months, k):
            mean, served = any_switch_mean(variants, set(s))
            scored.append((mean, list(s), served))
        scored.sort(key=lambda t: -t[0])
        out["best"][str(k)] = [
            [round((m - static) / gain, 3) if gain > 0 else float("nan"), s, served]
            for m, s, served in scored[:top]
        ]
    return out


def training_frame(
    chunks: list[pd.DataFrame], i: int, *, window: int | None = None, held_out: float | None = None
) -> tuple[int, pd.DataFrame]:
    """The first month and the rows of the model trained after month ``i``: months
    ``0..i`` (the newest ``window`` of them), without the newest ``held_out`` share of the
    traffic (months ``1..i``; month 0 is the dataset), as the loop's challenger leaves out
    ``challenger.evaluate_on`` of the labelled traffic to judge it."""
    first = 0 if window is None else max(0, i + 1 - window)
    data = pd.concat(chunks[first : i + 1], ignore_index=True)
    if held_out is not None and i > 0:
        traffic = sum(len(c) for c in chunks[max(first, 1) : i + 1])
        data = data.iloc[: len(data) - round(traffic * held_out)]
    return first, data


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
    held_out: float | None = None,
) -> np.ndarray:
    """``m[i, j]``: ROC-AUC on month ``j`` of the learner trained on months ``0..i`` (on
    its newest ``window`` of them, when given; weighted by recency with ``half_life``, a
    duration such as 30d or a number of rows, as ``train.weight.recency`` weighs them;
    without the newest ``held_out`` share of months ``1..i``, as the loop's challenger is
    trained: month 0 is the dataset, the later months its labelled traffic)."""
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
        first, data = training_frame(chunks, i, window=window, held_out=held_out)
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


def _any_switch(full: np.ndarray, held: np.ndarray, max_retrains: int, top: int) -> dict[str, Any]:
    """The bounds of ``--any-switch``: ``any_switch`` as the loop judges (the held-out
    challenger from the month after its retrain, its refit from the month after that: a
    refit must first beat it on the labels that follow), ``any_switch_unjudged`` with the
    refit serving at once (which the loop never does); variants: 0 held-out, 1 refit."""
    judged = any_switch_ceilings([(held, 0), (full, 1)], full, max_retrains, top)
    unjudged = any_switch_ceilings([(held, 0), (full, 0)], full, max_retrains, top)
    return {"any_switch": judged["best"], "any_switch_unjudged": unjudged["best"]}


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
    parser.add_argument(
        "--any-switch",
        action="store_true",
        help="also the bound over every action the loop can take (see the module's help)",
    )
    parser.add_argument(
        "--held-out",
        type=float,
        default=0.1,
        help="--any-switch: the challenger's held-out share (policy challenger.evaluate_on)",
    )
    parser.add_argument("--save", help="write the matrices to this .npz file")
    parser.add_argument("--load", help="read the matrices from this .npz file (no training)")
    args = parser.parse_args(argv)
    if args.load:
        saved = np.load(args.load)
        out = ceilings(saved["full"], args.max_retrains, args.top)
        if "held" in saved:
            out.update(_any_switch(saved["full"], saved["held"], args.max_retrains, args.top))
        print(json.dumps(out))
        return out
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
    saved = {"full": matrix}
    if args.any_switch:
        held = month_matrix(
            frame,
            target,
            time_col,
            months=args.months,
            trees=args.trees,
            say=print,
            held_out=args.held_out,
        )
        saved["held"] = held
        out.update(_any_switch(matrix, held, args.max_retrains, args.top))
        out["held_out"] = args.held_out
    if args.save:
        np.savez(args.save, **saved)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
