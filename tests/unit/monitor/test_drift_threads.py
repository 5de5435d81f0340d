"""compute_drift compares the features of large frames on a few threads: the report is the
one a single thread makes, and errors are those of the first bad feature in order."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

import loopml.monitor.drift as drift
from loopml.errors import InvalidInputError


def _frames(n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    rng = np.random.default_rng(seed)
    kinds: dict[str, str] = {}
    ref: dict[str, object] = {}
    cur: dict[str, object] = {}
    for i in range(6):
        a, b = rng.normal(size=n), rng.normal(0.2 * i, 1.0 + 0.1 * i, size=n)
        a[rng.random(n) < 0.01] = np.nan
        b[rng.random(n) < 0.03] = np.inf
        ref[f"x{i}"], cur[f"x{i}"], kinds[f"x{i}"] = a, b, "numeric"
    cats = np.array(list("abcdefg"))
    for j in range(3):
        ref[f"k{j}"] = rng.choice(cats[:5], size=n)
        cur[f"k{j}"] = rng.choice(cats[j : j + 5], size=n)  # unseen categories too
        kinds[f"k{j}"] = "categorical"
    return pd.DataFrame(ref), pd.DataFrame(cur), kinds


def _report(monkeypatch: pytest.MonkeyPatch, cores: int, *args: object) -> dict[str, object]:
    monkeypatch.setattr(drift, "_cores", lambda: cores)
    monkeypatch.setattr(drift, "PARALLEL_MIN_ROWS", 0)
    return drift.compute_drift(*args).to_dict()  # type: ignore[arg-type]


def test_the_threaded_report_is_the_single_threaded_one(monkeypatch: pytest.MonkeyPatch) -> None:
    ref, cur, kinds = _frames(5000, 3)
    one = _report(monkeypatch, 1, ref, cur, kinds)
    many = _report(monkeypatch, 4, ref, cur, kinds)
    assert many == one
    assert [f["feature"] for f in many["features"]] == list(kinds)  # type: ignore[index]


def test_large_frames_use_several_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    ref, cur, kinds = _frames(2000, 4)
    names: set[str] = set()
    numeric = drift._numeric_drift

    def recording(*args: object, **kwargs: object) -> object:
        names.add(threading.current_thread().name)
        return numeric(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(drift, "_numeric_drift", recording)
    _report(monkeypatch, 4, ref, cur, kinds)
    assert names and all(n.startswith("loopml-drift") for n in names)
    names.clear()
    monkeypatch.setattr(drift, "PARALLEL_MIN_ROWS", 10**9)  # small frames: this thread
    drift.compute_drift(ref, cur, kinds)
    assert names == {threading.current_thread().name}


@pytest.mark.parametrize("cores", [1, 4])
def test_the_first_bad_feature_in_order_is_the_error(
    monkeypatch: pytest.MonkeyPatch, cores: int
) -> None:
    ref, cur, kinds = _frames(1000, 5)
    for name in ("x2", "x4"):
        ref[name] = ref[name].astype(str)
    with pytest.raises(InvalidInputError) as err:
        _report(monkeypatch, cores, ref, cur, kinds)
    assert "x2" in err.value.message and "x4" not in err.value.message
