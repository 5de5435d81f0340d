"""The closed loop end to end on one workspace: real training, the real ASGI app, feedback.

The world changes under a model (its label moves from feature ``a`` to feature ``b``); the
loop sees the decay on labelled traffic, trains a challenger through ``loopml.train``,
judges it against the champion on held-out labelled rows, and rolls it out (directly, or by
canary steps), recording every step as an event.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from loopml.data import ingest
from loopml.feedback import record_feedback
from loopml.monitor.events import list_events
from loopml.pipeline.loop import run_once, watch
from loopml.project.config import ProjectConfig
from loopml.serve import create_app
from loopml.train import train
from loopml.workspace import Workspace

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


def _world(n: int, seed: int, *, by: str) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(size=n)
    signal = a if by == "a" else b
    y = (signal + rng.normal(scale=0.3, size=n) > 0).astype(int)
    return pd.DataFrame({"a": a, "b": b, "y": y})


def _config(
    rollout: dict[str, Any] | None = None, *, refit: bool = True, **trigger: Any
) -> ProjectConfig:
    return ProjectConfig.from_dict(
        {
            "name": "shop",
            "data": {"dataset": "shop", "target": "y", "task": "classification"},
            "model": {"class": "sklearn.linear_model.LogisticRegression"},
            "evaluation": {"metric": "roc_auc", "folds": 0, "holdout": 0.2, "bootstrap": 0},
            "policy": {
                "trigger": {"on": "decay", "drop": 0.05, "min_labels": 100, **trigger},
                "data": {"window": "last 1000"},
                "challenger": {
                    "gate": "roc_auc >= 0.7",
                    "evaluate_on": 0.3,
                    "min_rows": 50,
                    "refit": refit,
                },
                "rollout": rollout or {"mode": "direct"},
            },
        }
    )


def _serve(ws: Workspace, frame: pd.DataFrame, *, per_request: int = 20) -> None:
    """Send ``frame`` through the app, then the labels back as feedback."""
    app = create_app(ws, reload_interval=0)
    items = []
    with TestClient(app, base_url="http://127.0.0.1") as client:
        rows = frame.drop(columns=["y"]).to_dict(orient="records")
        for start in range(0, len(rows), per_request):
            r = client.post(
                "/v1/models/shop:predict",
                json={"instances": rows[start : start + per_request]},
                headers={"x-loopml-key": f"k{start}"},
            )
            assert r.status_code == 200, r.text
            for i, p in enumerate(r.json()["predictions"]):
                items.append(
                    {"prediction_id": p["prediction_id"], "label": int(frame.y.iloc[start + i])}
                )
    record_feedback(ws, items, check_known=False)


@pytest.fixture
def champion(workspace: Workspace) -> Workspace:
    ingest(workspace, _world(600, 0, by="a"), "shop")
    result = train(workspace, _config())
    assert result.promoted_alias == "champion"
    return workspace


def test_no_decay_no_retrain(champion: Workspace) -> None:
    _serve(champion, _world(300, 1, by="a"))
    actions = run_once(champion, _config())
    assert [a.kind for a in actions] == ["skip"]
    assert "within" in actions[0].reason
    assert champion.metadata.get_aliases("shop") == {"champion": 1}


def test_decay_retrains_judges_and_promotes_directly(champion: Workspace) -> None:
    _serve(champion, _world(800, 2, by="b"))
    planned = run_once(champion, _config(), dry_run=True)
    assert [(a.kind, a.done) for a in planned] == [("retrain", False)]
    assert "decayed" in planned[0].reason
    assert list_events(champion, "shop") == []  # a dry run records nothing
    assert [m.version for m in champion.metadata.list_model_versions("shop")] == [1]

    actions = run_once(champion, _config())
    assert [a.kind for a in actions] == ["retrain", "rollout", "promote"], actions
    assert all(a.done for a in actions)
    # v2 was judged (trained without the held-out newest 240 rows) and is the one promoted;
    # v3, its refit on all 800, was judged on nothing: it waits for the traffic that follows
    assert champion.metadata.get_aliases("shop") == {"champion": 2}
    kinds = [e.kind for e in list_events(champion, "shop")]
    assert kinds == ["promote", "challenger", "retrain"]
    judged = list_events(champion, "shop", "challenger")[0].evidence
    assert judged["rows"] == 240
    assert judged["judged_version"] == 2 and judged["challenger"] == 2
    assert judged["refit"]["version"] == 3
    assert judged["training_rows"] == 560
    c = judged["comparison"]
    assert c["challenger"] > c["champion"] + 0.2 and c["ci_low"] > 0
    refit_dv = judged["refit"]["dataset_version"]
    rows = champion.metadata.get_dataset_version("shop-loop", refit_dv).num_rows
    assert rows == 800  # the refit saw the held-out rows too
    retrain = list_events(champion, "shop", "retrain")[0].evidence
    assert retrain["live"]["predictions"] == 800 and retrain["live"]["coverage"] == 1.0
    # no labelled traffic since: the refit waits, the new champion has nothing to decide
    again = run_once(champion, _config())
    assert [a.kind for a in again] == ["wait", "skip"], again
    assert "refit v3" in again[0].reason


def test_the_policys_blocks_resample_runs_of_the_judged_rows(champion: Workspace) -> None:
    # challenger.blocks: the paired interval resamples contiguous runs of the held-out rows
    _serve(champion, _world(800, 2, by="b"))
    base = _config(refit=False)
    assert base.policy is not None
    policy = replace(base.policy, challenger=replace(base.policy.challenger, blocks=12))
    actions = run_once(champion, replace(base, policy=policy))
    assert [a.kind for a in actions] == ["retrain", "rollout", "promote"], actions
    c = list_events(champion, "shop", "challenger")[0].evidence["comparison"]
    assert "block bootstrap" in c["test"] and "12 contiguous runs" in c["test"]
    assert c["rows"] == 240 and c["ci_low"] > 0  # a real edge stays certain by runs


def _promoted_versions(ws: Workspace) -> list[int]:
    return [e.evidence["version"] for e in reversed(list_events(ws, "shop", "promote"))]


def test_the_promoted_model_is_always_the_one_judged(champion: Workspace) -> None:
    # every promotion names a version judged better than the champion it replaced, on rows
    # it did not train on; a refit (trained on the held-out rows too) is never promoted unseen
    _serve(champion, _world(800, 2, by="b"))
    run_once(champion, _config())
    [promoted] = list_events(champion, "shop", "promote")
    [passed] = list_events(champion, "shop", "challenger")
    assert passed.evidence["comparison"]["ci_low"] > 0 and passed.evidence["rows"] == 240
    version = promoted.evidence["version"]
    assert champion.metadata.get_aliases("shop")["champion"] == version
    record = champion.metadata.get_model_version("shop", version)
    assert record.dataset_name is not None and record.dataset_version is not None
    dv = champion.metadata.get_dataset_version(record.dataset_name, record.dataset_version)
    # the promoted model never saw the 240 held-out rows that judged it
    assert dv.num_rows == passed.evidence["training_rows"] == 560
    assert passed.evidence["challenger"] == version


@pytest.mark.slow
def test_a_refit_replaces_the_judged_champion_only_after_beating_it(champion: Workspace) -> None:
    # the labels move to b, and in the newest (held-out) rows to b - a: the judged v2 (trained
    # on b) beats v1 there; its refit v3 also saw the b - a rows
    _serve(champion, _world(560, 2, by="b"))
    turn = _world(240, 3, by="b")
    turn["y"] = (turn.b - turn.a > 0).astype(int)
    _serve(champion, turn)
    assert [a.kind for a in run_once(champion, _config())] == ["retrain", "rollout", "promote"]
    assert champion.metadata.get_aliases("shop") == {"champion": 2}
    # the traffic that follows is b - a: the refit is judged on it against v2 and wins
    after = _world(300, 4, by="b")
    after["y"] = (after.b - after.a > 0).astype(int)
    _serve(champion, after)
    looked = run_once(champion, _config(cooldown=10_000))
    assert [a.kind for a in looked] == ["rollout", "promote"], looked
    assert "refit v3 of champion v2" in looked[0].reason
    assert champion.metadata.get_aliases("shop") == {"champion": 3}
    ev = list_events(champion, "shop", "challenger")[0].evidence
    assert ev["refit_of"] == 2 and ev["rows"] == 300 and ev["comparison"]["ci_low"] > 0
    assert _promoted_versions(champion) == [2, 3]
    # judged once: nothing more to look at
    assert [a.kind for a in run_once(champion, _config(cooldown=10_000))] == ["skip"]


def test_a_refit_no_better_than_the_judged_champion_is_never_promoted(
    champion: Workspace,
) -> None:
    _serve(champion, _world(800, 2, by="b"))
    assert [a.kind for a in run_once(champion, _config())] == ["retrain", "rollout", "promote"]
    # the traffic that follows is noise: the refit cannot show it is better, and stays out
    noise = _world(300, 5, by="b")
    noise["y"] = np.random.default_rng(6).integers(0, 2, len(noise))
    _serve(champion, noise)
    looked = run_once(champion, _config(cooldown=10_000))
    assert [a.kind for a in looked][:1] == ["rollback"], looked
    assert "refit v3 rejected" in looked[0].reason
    assert champion.metadata.get_aliases("shop") == {"champion": 2}
    assert _promoted_versions(champion) == [2]
    ev = list_events(champion, "shop", "challenger")[0].evidence
    assert ev["refit_of"] == 2 and "candidate" not in ev  # no second look for a refit
    assert [a.kind for a in run_once(champion, _config(cooldown=10_000))] == ["skip"]


def test_a_worse_challenger_is_rejected_and_the_champion_stays(champion: Workspace) -> None:
    # labels are noise: no challenger can beat the champion with confidence
    noise = _world(800, 3, by="a")
    noise["y"] = np.random.default_rng(9).integers(0, 2, len(noise))
    _serve(champion, noise)
    actions = run_once(champion, _config())
    assert [a.kind for a in actions] == ["retrain", "rollback"]
    assert "rejected" in actions[1].reason
    assert champion.metadata.get_aliases("shop") == {"champion": 1}
    assert champion.metadata.get_deployment("shop") is None


@pytest.mark.slow
def test_canary_steps_then_promotes(champion: Workspace) -> None:
    cfg = _config({"mode": "canary", "steps": [30, 60], "min_per_arm": 40}, refit=False)
    _serve(champion, _world(800, 4, by="b"))
    first = run_once(champion, cfg)
    assert [a.kind for a in first] == ["retrain", "rollout", "rollout"]
    dep = champion.metadata.get_deployment("shop")
    assert dep is not None and dep.mode == "canary" and dep.routes == ((1, 70.0), (2, 30.0))
    assert champion.metadata.get_aliases("shop") == {"champion": 1, "challenger": 2}
    waiting = run_once(champion, cfg)  # no live labelled traffic on the challenger yet
    assert [a.kind for a in waiting] == ["wait"]
    _serve(champion, _world(600, 5, by="b"))
    stepped = run_once(champion, cfg)
    assert [a.kind for a in stepped] == ["rollout"] and "60%" in stepped[0].reason
    dep = champion.metadata.get_deployment("shop")
    assert dep is not None and dep.routes == ((1, 40.0), (2, 60.0))
    _serve(champion, _world(600, 6, by="b"))
    done = run_once(champion, cfg)
    assert [a.kind for a in done] == ["promote"]
    assert champion.metadata.get_aliases("shop") == {"champion": 2}
    dep = champion.metadata.get_deployment("shop")
    assert dep is not None and dep.mode == "single" and dep.routes == ((2, 100.0),)


def test_one_bad_model_records_an_error_and_the_others_go_on(champion: Workspace) -> None:
    ghost = replace(_config(), name="ghost")
    _serve(champion, _world(300, 7, by="a"))
    actions = run_once(champion, [ghost, _config()])
    assert [(a.model, a.kind) for a in actions] == [("ghost", "error"), ("shop", "skip")]
    assert "no champion" in actions[0].reason
    errors = list_events(champion, "ghost", "error")
    assert len(errors) == 1 and errors[0].evidence["error"] == "NotFoundError"
    # the watcher carries on through passes with the bad model in them
    passes = watch(champion, [ghost, _config()], 0.0, iterations=2)
    assert [a.kind for a in passes] == ["error", "skip", "error", "skip"]


def test_a_held_lease_skips_the_model(champion: Workspace) -> None:
    assert champion.metadata.acquire_lease("monitor:shop", "someone-else", 60) is not None
    _serve(champion, _world(800, 8, by="b"))
    actions = run_once(champion, _config())
    assert [a.kind for a in actions] == ["skip"] and "someone-else" in actions[0].reason
    assert list_events(champion, "shop") == []


def test_a_policy_naming_an_unknown_metric_is_an_error_event(champion: Workspace) -> None:
    actions = run_once(champion, _config(metric="roc_acu"))
    assert [a.kind for a in actions] == ["error"]
    assert actions[0].evidence["where"]["field"] == "policy.trigger.metric"
    assert "roc_auc" in actions[0].evidence["hint"]
    assert champion.metadata.get_aliases("shop") == {"champion": 1}


def test_without_refit_the_judged_version_is_the_challenger(champion: Workspace) -> None:
    _serve(champion, _world(800, 2, by="b"))
    actions = run_once(champion, _config(refit=False))
    assert [a.kind for a in actions] == ["retrain", "rollout", "promote"], actions
    assert champion.metadata.get_aliases("shop") == {"champion": 2}
    assert [m.version for m in champion.metadata.list_model_versions("shop")] == [1, 2]


@pytest.mark.slow
def test_cooldown_holds_a_second_retrain_until_enough_new_labels(champion: Workspace) -> None:
    cfg = _config(cooldown=1000)
    _serve(champion, _world(800, 2, by="b"))
    assert [a.kind for a in run_once(champion, cfg)] == ["retrain", "rollout", "promote"]
    # the world flips back: the new champion decays at once, but only 600 labels came since
    _serve(champion, _world(600, 3, by="a"))
    held = run_once(champion, cfg)
    # the refit v3 (judged on these 600 rows) loses too; the retrain waits for the cooldown
    assert [a.kind for a in held] == ["rollback", "skip"], held
    assert "refit v3 rejected" in held[0].reason
    assert "decayed" in held[1].reason and "cooling down" in held[1].reason
    assert held[1].evidence["labelled_since_last_retrain"] == 600
    assert champion.metadata.get_aliases("shop") == {"champion": 2}
    _serve(champion, _world(500, 4, by="a"))  # 1100 since the retrain: cooled down
    again = run_once(champion, cfg)
    assert [a.kind for a in again][:1] == ["retrain"], again


def test_best_reference_is_the_first_live_window_when_it_was_higher(
    champion: Workspace,
) -> None:
    # the champion's first 300 live predictions are easy (a clean signal), which sets its
    # reference above its training holdout; then the signal weakens by half
    easy = _world(300, 11, by="a")
    easy["y"] = (easy["a"] > 0).astype(int)  # no label noise at all
    _serve(champion, easy)
    assert [a.kind for a in run_once(champion, _config(window="last 300"))] == ["skip"]
    rng = np.random.default_rng(12)
    hard = _world(300, 12, by="a")
    flip = rng.random(len(hard)) < 0.12
    hard.loc[flip, "y"] = 1 - hard.loc[flip, "y"]
    _serve(champion, hard)
    best = run_once(champion, _config(window="last 300"), dry_run=True)
    judged = run_once(champion, _config(window="last 300", reference="judged"), dry_run=True)
    ref = best[0].evidence["reference"]
    assert ref["first_live"] > ref["judged"], ref
    assert best[0].evidence["baseline"] == ref["first_live"]
    assert judged[0].evidence["baseline"] == ref["judged"]
    fall_best = best[0].evidence["fall"]
    fall_judged = judged[0].evidence["fall"]
    assert fall_best > fall_judged


@pytest.mark.slow
def test_a_challenger_rejected_on_an_odd_slice_gets_a_second_look(champion: Workspace) -> None:
    # the world moves to feature b, but the newest 240 labels (the held-out slice) are noise,
    # like a strike week: the challenger loses there and is rejected ...
    _serve(champion, _world(560, 2, by="b"))
    odd = _world(240, 3, by="b")
    odd["y"] = np.random.default_rng(5).integers(0, 2, len(odd))
    _serve(champion, odd)
    first = run_once(champion, _config())
    assert [a.kind for a in first] == ["retrain", "rollback"], first
    rejected = list_events(champion, "shop", "challenger")[0].evidence
    assert rejected["candidate"] == 2 and rejected["second_look"] is False
    # ... too few labels since: it waits
    waiting = run_once(champion, _config(cooldown=10_000))
    assert waiting[0].kind == "wait" and "second look" in waiting[0].reason
    # ... then the next labelled traffic (rows neither model trained on) shows it is better
    _serve(champion, _world(300, 4, by="b"))
    second = run_once(champion, _config(cooldown=10_000))
    assert [a.kind for a in second] == ["rollout", "promote"], second
    assert "second look" in second[0].reason
    assert champion.metadata.get_aliases("shop") == {"champion": 2}
    looked = list_events(champion, "shop", "challenger")[0].evidence
    assert looked["rows"] == 300 and looked["comparison"]["ci_low"] > 0
    # once only: nothing more to look at
    assert [a.kind for a in run_once(champion, _config(cooldown=10_000))] == ["skip"]


def test_online_drift_events_trigger_a_retrain_once_each(champion: Workspace) -> None:
    from loopml.monitor.events import record_event

    cfg = _config(on="online_drift")
    _serve(champion, _world(800, 2, by="b"))
    quiet = run_once(champion, cfg)
    assert [a.kind for a in quiet] == ["skip"] and "no drift found" in quiet[0].reason
    # a drift event from another source (a batch drift check) is not the online learner's
    record_event(champion, "drift", "shop", "drift check", {"source": "check"})
    assert [a.kind for a in run_once(champion, cfg)] == ["skip"]
    # what 'loopml learn' records when its detector fires on the error stream
    event = record_event(
        champion,
        "drift",
        "shop",
        "online learner: adwin found a change in the error stream at event 900",
        {"source": "online", "event": 900, "learned": 900, "error": 0.4},
        dedupe="online-drift:shop:abc:900",
    )
    acted = run_once(champion, cfg)
    assert [a.kind for a in acted] == ["retrain", "rollout", "promote"], acted
    assert acted[0].evidence["online_drift_events"] == [event.id]
    assert champion.metadata.get_aliases("shop") == {"champion": 2}
    # that event was acted on: no second retrain for it
    again = run_once(champion, cfg)
    assert [a.kind for a in again] == ["wait", "skip"], again
    assert "no drift found" in again[1].reason
