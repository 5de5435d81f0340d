"""``train.weight``: per-row sample weights (a column, a recency decay, both) in the model's fit,
checked against the data before any run, recorded on the run; holdout metrics unweighted."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from loopml.data import ingest
from loopml.errors import ConfigError, InvalidInputError
from loopml.project import ProjectConfig
from loopml.project.weight import RecencySpec, WeightSpec, parse_weight
from loopml.registry.models import load_model
from loopml.train import train
from loopml.train.fit import fit_bundle
from loopml.train.weights import row_weights
from loopml.workspace import Workspace

LOGREG = {"class": "sklearn.linear_model.LogisticRegression"}


def _flipped(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    """``y = a > 0`` in the old half (January), ``y = a < 0`` in the new half (June)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    old = np.arange(n) < n // 2
    y = np.where(old, a > 0, a < 0).astype(int)
    when = np.where(
        old,
        pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(n) % 600, "min"),
        pd.Timestamp("2024-06-01") + pd.to_timedelta(np.arange(n) % 600, "min"),
    )
    return pd.DataFrame({"a": a, "w": np.where(old, 0.0, 1.0), "when": when, "y": y})


def _config(weight: Any = None, model: dict[str, Any] | None = None) -> ProjectConfig:
    data: dict[str, Any] = {
        "name": "flip",
        "data": {"dataset": "flip", "target": "y", "task": "classification"},
        "model": model or LOGREG,
        "evaluation": {"metric": "roc_auc", "folds": 2, "bootstrap": 0},
        "registry": {"alias": None},
    }
    if weight is not None:
        data["train"] = {"weight": weight}
    return ProjectConfig.from_dict(data)


@pytest.fixture
def flip(workspace: Workspace) -> Workspace:
    ingest(workspace, _flipped(), "flip")
    return workspace


def _p_positive_at(ws: Workspace, version: int, a: float) -> float:
    model = load_model(ws, f"flip@{version}")
    row = pd.DataFrame({"a": [a], "w": [1.0], "when": [pd.Timestamp("2024-06-01")]})
    return float(model.predict(row).scores[0])  # the columns the model lacks are ignored


# -- the project file ----------------------------------------------------------------------------


def test_the_weight_section_parses_and_round_trips() -> None:
    cfg = _config({"column": "w", "recency": {"time": "when", "half_life": "30d"}})
    assert cfg.weight == WeightSpec("w", RecencySpec(time="when", half_life_s=30 * 86_400.0))
    assert cfg.to_dict()["train"] == {
        "weight": {"column": "w", "recency": {"time": "when", "half_life": "2.592e+06s"}}
    }
    assert _config({"recency": {"half_life": 500}}).weight == WeightSpec(
        recency=RecencySpec(half_life_rows=500)
    )
    assert _config().weight is None and "train" not in _config().to_dict()


@pytest.mark.parametrize(
    ("weight", "field"),
    [
        ({"colum": "w"}, "train.weight.colum"),
        ({}, "train.weight"),
        ({"column": 3}, "train.weight.column"),
        ({"recency": {"time": "when", "half_life": "soon"}}, "train.weight.recency.half_life"),
        ({"recency": {"time": "when", "half_life": "0d"}}, "train.weight.recency.half_life"),
        ({"recency": {"half_life": "30d"}}, "train.weight.recency.half_life"),
        ({"recency": {"time": "when", "halflife": "3d"}}, "train.weight.recency.halflife"),
    ],
)
def test_a_bad_weight_section_names_its_field(weight: Any, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        _config(weight)
    assert err.value.where["field"] == field
    assert err.value.hint


# -- the weights ---------------------------------------------------------------------------------


def test_recency_halves_per_half_life_before_the_newest_row() -> None:
    frame = pd.DataFrame(
        {"t": pd.to_datetime(["2024-03-31", "2024-03-01", "2024-01-31", "2024-03-31"])}
    )
    spec = parse_weight({"recency": {"time": "t", "half_life": "30d"}}, "p.yaml")
    assert spec is not None
    w = row_weights(frame, spec, source="p.yaml", dataset="d@1")
    np.testing.assert_allclose(w, [1.0, 0.5, 0.25, 1.0])
    by_rows = row_weights(
        frame, WeightSpec(recency=RecencySpec(half_life_rows=1)), source="", dataset="d"
    )
    np.testing.assert_allclose(by_rows, [0.125, 0.25, 0.5, 1.0])
    both = WeightSpec("w", RecencySpec(half_life_rows=1))
    w2 = row_weights(frame.assign(w=[2.0, 2.0, 0.0, 1.0]), both, source="", dataset="d")
    np.testing.assert_allclose(w2, [0.25, 0.5, 0.0, 1.0])


def test_tz_aware_times_are_ages_in_utc() -> None:
    t = pd.to_datetime(["2024-01-01T00:00Z", "2024-01-02T00:00Z"]).tz_convert("America/New_York")
    spec = WeightSpec(recency=RecencySpec(time="t", half_life_s=86_400.0))
    np.testing.assert_allclose(
        row_weights(pd.DataFrame({"t": t}), spec, source="", dataset="d"), [0.5, 1]
    )


@pytest.mark.parametrize("bad", [-1.0, np.nan, np.inf])
def test_a_negative_or_missing_weight_names_the_column_and_row(bad: float) -> None:
    frame = pd.DataFrame({"w": [1.0, 2.0, bad, 1.0]})
    with pytest.raises(InvalidInputError) as err:
        row_weights(frame, WeightSpec("w"), source="p.yaml", dataset="d@1")
    assert err.value.where == {"dataset": "d@1", "column": "w", "row": 2}
    assert "w" in str(err.value) and err.value.hint


def test_a_time_column_that_is_not_a_time_is_refused() -> None:
    spec = WeightSpec(recency=RecencySpec(time="t", half_life_s=60.0))
    with pytest.raises(InvalidInputError) as err:
        row_weights(pd.DataFrame({"t": [1, 2, 3]}), spec, source="", dataset="d@1")
    assert err.value.where["column"] == "t" and "not a time" in str(err.value)
    gaps = pd.DataFrame({"t": pd.to_datetime(["2024-01-01", None])})
    with pytest.raises(InvalidInputError) as err:
        row_weights(gaps, spec, source="", dataset="d@1")
    assert err.value.where == {"dataset": "d@1", "column": "t", "row": 1}


def test_text_weights_and_all_zero_weights_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="not numbers"):
        row_weights(pd.DataFrame({"w": ["a", "b"]}), WeightSpec("w"), source="", dataset="d")
    with pytest.raises(InvalidInputError, match="weighs 0"):
        row_weights(pd.DataFrame({"w": [0.0, 0.0]}), WeightSpec("w"), source="", dataset="d")


def test_weights_are_relative_each_fit_scales_them() -> None:
    lgb = pytest.importorskip("lightgbm")
    frame = _flipped(600).drop(columns=["when"])
    w = np.linspace(0.01, 1.0, len(frame))
    probe = pd.DataFrame({"a": np.linspace(-2, 2, 9), "w": 0.0})
    scores = []
    for scale in (1.0, 1e-3):
        bundle, _ = fit_bundle(
            frame,
            "y",
            lgb.LGBMClassifier(n_estimators=20, verbose=-1),
            task="classification",
            sample_weight=w * scale,
        )
        scores.append(bundle.predict(probe).scores)
    np.testing.assert_allclose(scores[0], scores[1])


# -- training ------------------------------------------------------------------------------------


def test_a_weight_column_reaches_the_fit_and_is_no_feature(flip: Workspace) -> None:
    plain = train(flip, _config())
    weighted = train(flip, _config({"column": "w"}))
    assert plain.model_version is not None and weighted.model_version is not None
    # the old half weighs 0: the model learns the new half's rule, y = a < 0
    assert _p_positive_at(flip, weighted.model_version.version, -2.0) > 0.9
    assert _p_positive_at(flip, weighted.model_version.version, 2.0) < 0.1
    assert "weight" not in plain.run.params
    recorded = weighted.run.params["weight"]
    assert recorded["column"] == "w" and recorded["rows"] == 2000
    assert recorded["effective_rows"] == pytest.approx(1000.0)
    assert weighted.run.params["project"]["train"] == {"weight": {"column": "w"}}
    inputs = {f["name"] for f in weighted.model_version.signature["inputs"]}
    assert "w" not in inputs and "a" in inputs
    # the plain model used w (and when) as features; the weighted one never
    assert "w" in {f["name"] for f in plain.model_version.signature["inputs"]}


def test_a_recency_weight_follows_the_time_column(flip: Workspace) -> None:
    got = train(flip, _config({"recency": {"time": "when", "half_life": "2d"}}))
    assert got.model_version is not None
    # January is ~75 half-lives before June: it weighs nothing
    assert _p_positive_at(flip, got.model_version.version, -2.0) > 0.9
    inputs = {f["name"] for f in got.model_version.signature["inputs"]}
    assert inputs == {"a", "w"}  # when is the weight's: not a feature
    assert got.run.params["weight"]["recency"] == {"time": "when", "half_life": "172800s"}
    # the holdout (random rows of both halves) is scored unweighted: about half is wrong
    assert got.run.metrics["holdout"]["roc_auc"] < 0.8


def test_a_missing_weight_column_fails_before_any_run(flip: Workspace) -> None:
    with pytest.raises(ConfigError) as err:
        train(flip, _config({"recency": {"time": "stamp", "half_life": "2d"}}))
    assert err.value.where["field"] == "train.weight.recency.time"
    assert err.value.where["column"] == "stamp" and "when" in (err.value.hint or "")
    assert flip.metadata.list_runs("flip") == []


def test_an_estimator_without_sample_weight_is_named(flip: Workspace) -> None:
    knn = {"class": "sklearn.neighbors.KNeighborsClassifier"}
    with pytest.raises(ConfigError) as err:
        train(flip, _config({"column": "w"}, model=knn))
    assert "KNeighborsClassifier" in str(err.value)
    assert err.value.where["field"] == "train.weight"
    assert flip.metadata.list_runs("flip") == []


def test_bad_weights_in_the_data_fail_before_any_run(workspace: Workspace) -> None:
    frame = _flipped()
    frame.loc[7, "w"] = -3.0
    ingest(workspace, frame, "flip")
    with pytest.raises(InvalidInputError) as err:
        train(workspace, _config({"column": "w"}))
    assert err.value.where["column"] == "w" and err.value.where["row"] == 7
    assert workspace.metadata.list_runs("flip") == []


def test_a_search_refuses_weights_its_trials_would_not_use(flip: Workspace) -> None:
    pytest.importorskip("optuna")
    from loopml.train.search import search

    cfg = ProjectConfig.from_dict(
        {
            **_config({"column": "w"}).to_dict(),
            "search": {"trials": 2, "space": {"C": {"float": [0.1, 1.0]}}},
        }
    )
    with pytest.raises(ConfigError) as err:
        search(flip, cfg)
    assert err.value.where["field"] == "train.weight"
    assert flip.metadata.list_runs("flip") == []
