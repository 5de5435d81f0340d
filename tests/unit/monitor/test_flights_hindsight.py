"""The hindsight ceiling of the replay (examples/flights/hindsight.py): schedule arithmetic."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).parents[3] / "examples" / "flights"


@pytest.fixture(scope="module")
def hindsight():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(HERE))
    try:
        spec = importlib.util.spec_from_file_location("flights_hindsight", HERE / "hindsight.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(HERE))


def _matrix() -> np.ndarray:
    # m[i, j]: the model trained on months 0..i, scored on month j (4 months)
    nan = np.nan
    return np.array(
        [
            [nan, 0.60, 0.50, 0.50],
            [nan, nan, 0.70, 0.65],
            [nan, nan, nan, 0.80],
            [nan, nan, nan, nan],
        ]
    )


def test_schedule_mean_switches_models_after_each_retrain(hindsight) -> None:  # type: ignore[no-untyped-def]
    m = _matrix()
    assert hindsight.schedule_mean(m, set()) == pytest.approx((0.60 + 0.50 + 0.50) / 3)
    assert hindsight.schedule_mean(m, {1}) == pytest.approx((0.60 + 0.70 + 0.65) / 3)
    assert hindsight.schedule_mean(m, {2}) == pytest.approx((0.60 + 0.50 + 0.80) / 3)
    assert hindsight.schedule_mean(m, {1, 2}) == pytest.approx((0.60 + 0.70 + 0.80) / 3)


def test_ceilings_rank_schedules_by_the_share_of_the_oracles_gain(hindsight) -> None:  # type: ignore[no-untyped-def]
    got = hindsight.ceilings(_matrix(), max_retrains=3, top=2)
    static, oracle = (0.60 + 0.50 + 0.50) / 3, (0.60 + 0.70 + 0.80) / 3
    assert got["static"] == round(static, 4) and got["oracle"] == round(oracle, 4)
    gain = oracle - static
    # one retrain: after month 1 gives (0.6+0.7+0.65)/3, after month 2 (0.6+0.5+0.8)/3
    assert got["best"]["1"] == [
        [round(((0.6 + 0.7 + 0.65) / 3 - static) / gain, 3), [1]],
        [round(((0.6 + 0.5 + 0.8) / 3 - static) / gain, 3), [2]],
    ]
    # retraining after every month is the oracle itself; no retrain after the last month
    assert got["best"]["2"] == [[1.0, [1, 2]]]
    assert "3" not in got["best"]


def test_the_replay_takes_its_policy_from_the_file_given(tmp_path: Path) -> None:
    import yaml

    sys.path.insert(0, str(HERE))
    try:
        spec = importlib.util.spec_from_file_location("flights_run", HERE / "run.py")
        assert spec is not None and spec.loader is not None
        run = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(run)
    finally:
        sys.path.remove(str(HERE))
    default = yaml.safe_load((HERE / "policy.yaml").read_text())
    flipped = not default["challenger"]["refit"]
    mine = {**default, "challenger": {**default["challenger"], "refit": flipped}}
    assert mine != default
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(mine))
    written = run._project(tmp_path, ["a"], "y", 5, tmp_path / "mine.yaml")
    assert yaml.safe_load(written.read_text())["policy"] == mine
    written = run._project(tmp_path, ["a"], "y", 5)
    assert yaml.safe_load(written.read_text())["policy"] == default


def test_weighted_ceilings_are_shares_of_the_issues_oracle(hindsight) -> None:  # type: ignore[no-untyped-def]
    m = _matrix()
    other = m.copy()
    other[0] = 0.0  # the first model is the replay's unweighted one, whatever other says
    other[1, 2:], other[2, 3] = [0.80, 0.75], 0.90  # better-fitted refits
    got = hindsight.against_oracle(other, m, max_retrains=2, top=1)
    static, oracle = (0.60 + 0.50 + 0.50) / 3, (0.60 + 0.70 + 0.80) / 3
    assert got["static"] == round(static, 4) and got["oracle"] == round(oracle, 4)
    # retraining after both months: (0.6 + 0.8 + 0.9) / 3, above the oracle's own models
    best = (0.60 + 0.80 + 0.90) / 3
    assert got["best"]["2"] == [[round((best - static) / (oracle - static), 3), [1, 2]]]
    assert got["best"]["2"][0][0] > 1.0


def test_the_any_switch_bound_serves_each_month_by_the_best_model_so_far(hindsight) -> None:  # type: ignore[no-untyped-def]
    m = _matrix()
    nan = np.nan
    held = np.array(  # the held-out variants: model 1 better on month 3, model 2 worse
        [
            [0.0, 0.0, 0.0, 0.0],  # row 0 is the static model whatever a variant says
            [nan, nan, 0.68, 0.85],
            [nan, nan, nan, 0.70],
            [nan, nan, nan, nan],
        ]
    )
    held[0] = m[0]
    now = [(held, 0), (m, 0)]
    # one retrain after month 1: month 2 by model 1 (0.70), month 3 by held model 1 (0.85)
    mean, served = hindsight.any_switch_mean(now, {1})
    assert mean == pytest.approx((0.60 + 0.70 + 0.85) / 3)
    assert served == [[0, 0], [1, 1], [1, 0]]
    # retrain after month 2 only: the static model still serves month 2; month 3 by model 2
    mean, served = hindsight.any_switch_mean(now, {2})
    assert mean == pytest.approx((0.60 + 0.50 + 0.80) / 3)
    # after both: month 3 goes back to model 1's held variant (0.85 > 0.80), for no retrain
    mean, served = hindsight.any_switch_mean(now, {1, 2})
    assert mean == pytest.approx((0.60 + 0.70 + 0.85) / 3) and served[2] == [1, 0]
    # a refit that may serve only from the month after next: month 2 gets the held 0.68
    judged = [(held, 0), (m, 1)]
    mean, served = hindsight.any_switch_mean(judged, {1})
    assert mean == pytest.approx((0.60 + 0.68 + 0.85) / 3) and served[1] == [1, 0]
    got = hindsight.any_switch_ceilings(now, m, max_retrains=2, top=2)
    static, oracle = (0.60 + 0.50 + 0.50) / 3, (0.60 + 0.70 + 0.80) / 3
    assert got["static"] == round(static, 4) and got["oracle"] == round(oracle, 4)
    share = round(((0.60 + 0.70 + 0.85) / 3 - static) / (oracle - static), 3)
    assert got["best"]["1"][0][:2] == [share, [1]]
    assert got["best"]["2"][0][:2] == [share, [1, 2]]
    # never below the plain schedules (the full models at once): the bound covers them
    plain = hindsight.ceilings(m, max_retrains=2, top=1)
    for k, rows in plain["best"].items():
        assert got["best"][k][0][0] >= rows[0][0]


def test_the_held_out_variant_drops_the_newest_share_of_the_traffic(hindsight) -> None:  # type: ignore[no-untyped-def]
    import pandas as pd

    chunks = [pd.DataFrame({"x": np.arange(n)}) for n in (100, 50, 30)]
    assert len(hindsight.training_frame(chunks, 0)[1]) == 100
    assert len(hindsight.training_frame(chunks, 2)[1]) == 180
    # month 0 is the dataset (never held out); the newest tenth of the traffic is, as the
    # loop's challenger is trained
    first, data = hindsight.training_frame(chunks, 0, held_out=0.1)
    assert first == 0 and len(data) == 100
    _, data = hindsight.training_frame(chunks, 1, held_out=0.1)
    assert data["x"].tolist() == [*range(100), *range(45)]
    _, data = hindsight.training_frame(chunks, 2, held_out=0.1)
    assert len(data) == 180 - 8  # 80 traffic rows: 8 held out, the newest (month 2's last)
    assert data["x"].tolist()[-1] == 21
    first, data = hindsight.training_frame(chunks, 2, window=2, held_out=0.1)
    assert first == 1 and len(data) == 80 - 8
