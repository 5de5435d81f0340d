"""Retraining policies: parsing (schedules, cron, windows, errors naming the field) and the
pure decisions (trigger, challenger, canary step, A/B) on plain numbers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from loopml.errors import ConfigError
from loopml.evaluate.compare import Comparison
from loopml.monitor.policy import (
    LiveArm,
    decide_ab,
    decide_canary_step,
    decide_retrain,
    judge_challenger,
)
from loopml.monitor.sequential import msprt_proportions
from loopml.project.config import ProjectConfig
from loopml.project.policy import PolicySpec, RowWindow, parse_cron, parse_policy

NOW = datetime(2026, 3, 4, 10, 30, tzinfo=UTC)  # a Wednesday


def _policy(**sections: Any) -> PolicySpec:
    got = parse_policy(sections, "loopml.yaml")
    assert got is not None
    return got


def test_defaults_and_the_project_file_hook() -> None:
    cfg = ProjectConfig.from_dict(
        {
            "name": "m",
            "data": {"dataset": "d", "target": "y"},
            "model": {"class": "sklearn.linear_model.LogisticRegression"},
            "policy": {"trigger": {"on": "decay", "window": "last 300"}},
        }
    )
    assert cfg.policy is not None
    assert cfg.policy.trigger.window == RowWindow(last=300)
    assert cfg.policy.rollout.mode == "direct"
    assert cfg.policy.data.window == RowWindow() and cfg.policy.data.include_feedback
    assert parse_policy(None, "x") is None
    assert cfg.policy.to_dict()["trigger"]["window"] == "last 300"


@pytest.mark.parametrize(
    ("sections", "field"),
    [
        ({"trigger": {"on": "drfit"}}, "policy.trigger.on"),
        ({"trigger": {"on": "schedule"}}, "policy.trigger.every"),
        ({"trigger": {"on": "schedule", "every": "1 fortnight"}}, "policy.trigger.every"),
        ({"trigger": {"on": "schedule", "cron": "61 * * * *"}}, "policy.trigger.cron"),
        ({"trigger": {"on": "schedule", "cron": "0 3 * *"}}, "policy.trigger.cron"),
        ({"trigger": {"on": "schedule", "cron": "a b c d e"}}, "policy.trigger.cron"),
        ({"trigger": {"windw": "last 5"}}, "policy.trigger.windw"),
        ({"data": {"window": "recent"}}, "policy.data.window"),
        ({"challenger": {"evaluate_on": 1.5}}, "policy.challenger.evaluate_on"),
        ({"challenger": {"gate": "roc_auc >> 3"}}, "policy.challenger.gate"),
        ({"rollout": {"mode": "blue-green"}}, "policy.rollout.mode"),
        ({"rollout": {"steps": [50, 10]}}, "policy.rollout.steps"),
        ({"rollout": {"metric": "ctr"}}, "policy.rollout.metric"),
        ({"rollback": {"tolerance": -1}}, "policy.rollback.tolerance"),
        ({"trigger": {"reference": "peak"}}, "policy.trigger.reference"),
        ({"trigger": {"cooldown": "soon"}}, "policy.trigger.cooldown"),
        ({"trigger": {"cooldown": -5}}, "policy.trigger.cooldown"),
        ({"trigger": {"cooldown": "0x"}}, "policy.trigger.cooldown"),
        ({"challenger": {"refit": "yes"}}, "policy.challenger.refit"),
        ({"challenger": {"second_look": 1}}, "policy.challenger.second_look"),
        ({"challenger": {"blocks": 1}}, "policy.challenger.blocks"),
        ({"challenger": {"blocks": -3}}, "policy.challenger.blocks"),
        ({"challenger": {"blocks": "days"}}, "policy.challenger.blocks"),
    ],
)
def test_bad_policies_name_the_field(sections: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_policy(sections, "loopml.yaml")
    assert info.value.where["field"] == field
    assert info.value.hint


def test_reference_cooldown_refit_and_the_ab_metric_parse() -> None:
    from loopml.project.policy import Cooldown

    p = _policy()
    assert p.trigger.reference == "best" and p.trigger.cooldown == Cooldown()
    assert p.challenger.refit and p.challenger.second_look and p.rollout.metric is None
    by_labels = _policy(trigger={"cooldown": 20000, "reference": "judged"})
    assert by_labels.trigger.cooldown == Cooldown(labelled=20000)
    assert by_labels.trigger.reference == "judged"
    assert str(by_labels.trigger.cooldown) == "20000 labelled predictions"
    by_time = _policy(trigger={"cooldown": "7d"}, rollout={"metric": "roc_auc"})
    assert by_time.trigger.cooldown == Cooldown(seconds=7 * 86400.0)
    assert by_time.rollout.metric == "roc_auc"
    assert _policy(challenger={"refit": False}).challenger.refit is False
    share = _policy(trigger={"cooldown": "0.5x"}).trigger.cooldown
    assert share == Cooldown(share=0.5) and "0.5x" in str(share)
    shown = by_time.to_dict()
    assert shown["trigger"]["cooldown"] == "604800s" and shown["challenger"]["refit"] is True
    assert p.challenger.blocks == 0 and shown["challenger"]["blocks"] == 0
    blocked = _policy(challenger={"blocks": 20})
    assert blocked.challenger.blocks == 20 and blocked.to_dict()["challenger"]["blocks"] == 20


def test_a_cooling_down_trigger_says_what_it_would_have_done() -> None:
    p = _policy(trigger={"on": "decay", "drop": 0.02, "min_labels": 10, "cooldown": 500})
    kw: dict[str, Any] = dict(
        now=NOW, last_retrain=NOW, metric="roc_auc", baseline=0.8, n_labelled=1000
    )
    held = decide_retrain("m", p, current=0.7, cooled=False, **kw)
    assert held.kind == "skip" and "decayed" in held.reason and "cooling down" in held.reason
    assert held.evidence["cooling_down"] is True
    assert decide_retrain("m", p, current=0.7, cooled=True, **kw).kind == "retrain"
    # nothing to do anyway: the cooldown is not mentioned
    calm = decide_retrain("m", p, current=0.79, cooled=False, **kw)
    assert calm.kind == "skip" and "cooling" not in calm.reason
    assert decide_retrain("m", p, current=0.7, cooled=False, forced=True, **kw).kind == "retrain"


def test_on_written_bare_in_yaml_is_the_trigger() -> None:
    import yaml

    got = parse_policy(yaml.safe_load("trigger:\n  on: drift\n  features: 2\n"), "loopml.yaml")
    assert got is not None and got.trigger.on == "drift" and got.trigger.drift_features == 2


def test_cron_expressions() -> None:
    nightly = parse_cron("0 3 * * *")
    assert nightly.next_after(NOW) == datetime(2026, 3, 5, 3, 0, tzinfo=UTC)
    quarter = parse_cron("*/15 9-17 * * 1-5")
    assert quarter.next_after(NOW) == datetime(2026, 3, 4, 10, 45, tzinfo=UTC)
    friday_evening = datetime(2026, 3, 6, 17, 50, tzinfo=UTC)
    assert quarter.next_after(friday_evening) == datetime(2026, 3, 9, 9, 0, tzinfo=UTC)
    sunday = parse_cron("30 6 * * 7")  # 7 is Sunday too
    assert sunday.next_after(NOW) == datetime(2026, 3, 8, 6, 30, tzinfo=UTC)
    first = parse_cron("0 0 1 1,7 *")
    assert first.next_after(NOW) == datetime(2026, 7, 1, 0, 0, tzinfo=UTC)
    with pytest.raises(ConfigError, match="never fires"):
        parse_cron("0 0 31 2 *").next_after(NOW)


def test_schedules_are_due_by_interval_or_cron() -> None:
    every = _policy(trigger={"on": "schedule", "every": "1d"})
    hour_ago = NOW - timedelta(hours=1)
    args: dict[str, Any] = dict(metric="roc_auc", baseline=None, current=None, n_labelled=0)
    assert decide_retrain("m", every, now=NOW, last_retrain=None, **args).kind == "retrain"
    assert decide_retrain("m", every, now=NOW, last_retrain=hour_ago, **args).kind == "skip"
    two_days = NOW - timedelta(days=2)
    assert decide_retrain("m", every, now=NOW, last_retrain=two_days, **args).kind == "retrain"
    cron = _policy(trigger={"on": "schedule", "cron": "0 10 * * *"})
    assert decide_retrain("m", cron, now=NOW, last_retrain=hour_ago, **args).kind == "retrain"
    half = NOW - timedelta(minutes=20)
    assert decide_retrain("m", cron, now=NOW, last_retrain=half, **args).kind == "skip"


def test_decay_needs_enough_labels_and_a_real_fall() -> None:
    p = _policy(trigger={"on": "decay", "drop": 0.02, "min_labels": 100})

    def decide(current: float | None, n: int, metric: str = "roc_auc") -> str:
        return decide_retrain(
            "m",
            p,
            now=NOW,
            last_retrain=None,
            metric=metric,
            baseline=0.80,
            current=current,
            n_labelled=n,
        ).kind

    assert decide(0.70, 99) == "skip"
    assert decide(0.70, 100) == "retrain"
    assert decide(0.79, 5000) == "skip"
    assert decide(None, 5000) == "skip"
    assert decide(0.83, 5000, metric="log_loss") == "retrain"  # lower is better
    manual = _policy(trigger={"on": "manual"})
    kw: dict[str, Any] = dict(
        now=NOW, last_retrain=None, metric="roc_auc", baseline=0.8, current=0.1, n_labelled=10**6
    )
    assert decide_retrain("m", manual, **kw).kind == "skip"
    assert decide_retrain("m", manual, forced=True, **kw).kind == "retrain"


def test_drift_trigger_counts_features() -> None:
    p = _policy(trigger={"on": "drift", "features": 2})
    kw: dict[str, Any] = dict(
        now=NOW, last_retrain=None, metric="roc_auc", baseline=None, current=None, n_labelled=0
    )
    assert decide_retrain("m", p, drifted=["a"], **kw).kind == "skip"
    fired = decide_retrain("m", p, drifted=["a", "b"], **kw)
    assert fired.kind == "retrain" and fired.evidence["drifted"] == ["a", "b"]
    assert decide_retrain("m", p, drifted=None, **kw).kind == "skip"


def _comparison(new: float, old: float, lo: float, hi: float) -> Comparison:
    return Comparison("roc_auc", new, old, new - old, lo, hi, 0.01, "paired bootstrap", 500)


def test_a_challenger_must_pass_the_gate_and_beat_the_champion() -> None:
    p = _policy(challenger={"gate": "roc_auc >= 0.7 and roc_auc >= champion + 0.01"})
    kw: dict[str, Any] = dict(version=2, champion=1, rows=500)

    def judge(new: float, old: float, lo: float, hi: float, **more: Any) -> str:
        return judge_challenger(
            "m",
            p,
            challenger_metrics={"roc_auc": new},
            champion_metrics={"roc_auc": old},
            comparison=_comparison(new, old, lo, hi),
            **{**kw, **more},
        ).kind

    assert judge(0.80, 0.75, 0.02, 0.08) == "rollout"
    assert judge(0.80, 0.75, -0.01, 0.08) == "rollback"  # the interval reaches 0
    assert judge(0.755, 0.75, 0.001, 0.01) == "rollback"  # the gate's margin
    assert judge(0.69, 0.60, 0.05, 0.1) == "rollback"  # below the bound
    assert judge(0.80, 0.75, 0.02, 0.08, rows=10) == "rollback"  # too little evidence
    lenient = _policy(challenger={"promote": "if_not_worse"})
    got = judge_challenger(
        "m",
        lenient,
        version=2,
        champion=1,
        rows=500,
        challenger_metrics={"roc_auc": 0.75},
        champion_metrics={"roc_auc": 0.75},
        comparison=_comparison(0.75, 0.75, -0.02, 0.02),
    )
    assert got.kind == "rollout"


def test_canary_steps_wait_roll_back_and_promote() -> None:
    p = _policy(
        rollout={"mode": "canary", "steps": [10, 50], "min_per_arm": 100},
        rollback={"tolerance": 0.02},
    )

    def step(percent: float, new: float, rows: int = 500) -> tuple[str, Any]:
        a = decide_canary_step(
            "m",
            p,
            percent=percent,
            champion=LiveArm(1, 1000, 0.80),
            challenger=LiveArm(2, rows, new),
            metric="roc_auc",
        )
        return a.kind, a.evidence.get("to")

    assert step(10, 0.81, rows=50) == ("wait", None)
    assert step(10, 0.81) == ("rollout", 50.0)
    assert step(10, 0.79) == ("rollout", 50.0)  # within the tolerance
    assert step(10, 0.77) == ("rollback", None)
    assert step(50, 0.81) == ("promote", None)


def test_ab_decisions_follow_the_sequential_test() -> None:
    better = msprt_proportions(800, 1000, 900, 1000)
    assert decide_ab("m", better, champion=1, challenger=2).kind == "promote"
    worse = msprt_proportions(900, 1000, 800, 1000)
    assert decide_ab("m", worse, champion=1, challenger=2).kind == "rollback"
    even = msprt_proportions(80, 100, 81, 100)
    waiting = decide_ab("m", even, champion=1, challenger=2)
    assert waiting.kind == "wait" and "more observations" in waiting.reason


def test_a_one_sided_level_promotes_a_challenger_better_at_that_level() -> None:
    # +0.017 with a two-sided 95% interval reaching just below 0 (p 0.06): the interval
    # rule rejects it; "better at the one-sided 5% level" (p / 2 = 0.03) promotes it
    def judge(p: PolicySpec, improvement: float, p_value: float) -> str:
        comparison = Comparison(
            "roc_auc",
            0.61 + improvement,
            0.61,
            improvement,
            improvement - 0.018,
            improvement + 0.017,
            p_value,
            "paired bootstrap",
            8000,
        )
        return judge_challenger(
            "m",
            p,
            version=2,
            champion=1,
            rows=8000,
            challenger_metrics={"roc_auc": 0.61 + improvement},
            champion_metrics={"roc_auc": 0.61},
            comparison=comparison,
        ).kind

    interval = _policy(challenger={"promote": "if_better"})
    one_sided = _policy(challenger={"promote": "if_better", "alpha": 0.05})
    assert interval.challenger.alpha is None
    assert judge(interval, 0.017, 0.06) == "rollback"
    assert judge(one_sided, 0.017, 0.06) == "rollout"
    assert judge(one_sided, 0.017, 0.12) == "rollback"  # one-sided 0.06: not at 5%
    assert judge(one_sided, -0.017, 0.06) == "rollback"  # significant, the wrong way
    assert judge(one_sided, 0.017, float("nan")) == "rollback"
    assert one_sided.to_dict()["challenger"]["alpha"] == 0.05
    for bad in (0, 0.5, "0.05", True):
        with pytest.raises(ConfigError, match=r"policy\.challenger\.alpha"):
            _policy(challenger={"alpha": bad})
