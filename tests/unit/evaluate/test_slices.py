"""slice_metrics: values, buckets, top-N + other, and the flag rule."""

import json

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from loopml.evaluate.slices import OTHER, flagged_lines, slice_metrics
from loopml.project.evaluation import SliceSpec


def _data() -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    n = 400
    city = rng.choice(list("abcdefghijkl"), n)
    age = rng.uniform(18, 80, n)
    y = rng.integers(0, 2, n)
    pred = y.copy()
    bad = city == "a"  # the model is right on every row but those of city a (half wrong)
    pred[bad] = np.where(rng.random(bad.sum()) < 0.5, 1 - y[bad], y[bad])
    frame = pd.DataFrame({"city": city, "age": age})
    frame.loc[:4, "city"] = None
    return frame, y, pred


def test_slices_by_value_and_bucket_with_the_flag_rule() -> None:
    frame, y, pred = _data()
    out = slice_metrics(
        "classification",
        frame,
        y,
        pred,
        classes=[0, 1],
        specs=[SliceSpec("city", top=5), SliceSpec("age", bins=4)],
        metric="accuracy",
    )
    assert out["overall"] == skm.accuracy_score(y, pred)
    city = {r["slice"]: r for r in out["columns"]["city"]}
    assert len(city) == 7  # the five most frequent, (other), (missing)
    assert OTHER in city and "(missing)" in city
    assert sum(r["rows"] for r in city.values()) == len(y)
    a = city.get("a") or city[OTHER]
    assert a["delta"] < -0.05
    for r in city.values():
        assert r["flagged"] == (r["delta"] < -0.05 and r["rows"] >= 30)
        mask = frame["city"].fillna("(missing)").to_numpy() == r["slice"]
        if r["slice"] not in (OTHER,):
            assert r["metrics"]["accuracy"] == skm.accuracy_score(y[mask], pred[mask])
    ages = out["columns"]["age"]
    assert len(ages) == 4 and all(90 <= r["rows"] <= 110 for r in ages)
    lefts = [float(r["slice"][1:].split(",")[0]) for r in ages]
    assert lefts == sorted(lefts)
    assert {(f["column"], f["slice"]) for f in out["flagged"]} == {
        ("city", r["slice"]) for r in city.values() if r["flagged"]
    }
    assert out["flagged"]
    assert all("vs the whole holdout" in line for line in flagged_lines(out))
    json.dumps(out, allow_nan=False)  # storable in any metadata store


def test_lower_is_better_metrics_flag_higher_values_and_tiny_slices_never_flag() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(size=200)
    group = np.array(["x"] * 190 + ["y"] * 10)
    pred = y + np.where(group == "y", 3.0, 0.1)
    out = slice_metrics(
        "regression",
        pd.DataFrame({"g": group}),
        y,
        pred,
        specs=["g"],
        metric="rmse",
        min_rows=30,
    )
    rows = {r["slice"]: r for r in out["columns"]["g"]}
    assert rows["y"]["delta"] > 0.05 and not rows["y"]["flagged"]  # 10 rows: below min_rows
    out = slice_metrics(
        "regression", pd.DataFrame({"g": group}), y, pred, specs=["g"], metric="rmse", min_rows=5
    )
    assert [f["slice"] for f in out["flagged"]] == ["y"]
