"""``policy:`` in the project file: when the model is retrained, on what, and how it rolls out.

```yaml
policy:
  trigger:
    on: decay            # drift | decay | schedule | manual | online_drift (a drift event
                         # that 'loopml learn' recorded for this model since the last retrain)
    metric: roc_auc      # decay: the labelled-traffic metric watched (default: evaluation.metric)
    drop: 0.02           # decay: retrain when it falls this far below the training-time value
    window: last 5000    # the labelled predictions (or the log window, for drift) looked at
    min_labels: 500      # decay: fewer labelled predictions than this decide nothing
    reference: best      # decay: best (of its judged value and its first live window) | judged
    cooldown: 0.5x       # no retrain before new labelled predictions since the last one
                         # reach half the champion's training rows (or 20000 of them, or 7d)
    every: 1d            # schedule: an interval (30m, 6h, 1d, 1w) ...
    cron: "0 3 * * 1"    # ... or a cron expression (minute hour day month weekday)
  data:
    window: all          # all | last N (labelled rows) | 30d
    include_feedback: true
    weight:              # per-row weights of the retrains (train.weight's fields; default:
      recency:           # the project's train.weight): a row weighs half per half-life of
        half_life: 20000 # age, in rows (base dataset first, traffic in prediction order),
                         # or time: COL and half_life: 30d (traffic rows: COL when it is a
                         # model input, else their prediction time)
  challenger:
    gate: roc_auc >= champion + 0.005   # the training gates, on recent labelled data
    evaluate_on: 0.3     # the newest share of labelled traffic held out to judge both models
    promote: if_better   # if_better | if_not_worse
    alpha: 0.05          # if_better: the one-sided level of "the challenger is better" (its
                         # bootstrap p-value); default none: the two-sided 95% interval lies
                         # above 0 (a one-sided 2.5% test)
    blocks: 20           # the paired interval resamples 20 contiguous runs of the judged rows
                         # (in time order), not single rows: traffic comes in correlated runs
                         # (a session, a stormy day); 0 (the default): single rows
    refit: true          # once judged, also refit on all of it (held-out rows too); the refit
                         # replaces the judged version only once it beats it on later traffic
    second_look: true    # a rejected challenger is judged once more on the labelled traffic
                         # that arrives after its rejection (min_rows of it)
  rollout:
    mode: canary         # direct | canary | ab
    shadow: false        # score in shadow first
    steps: [10, 50]      # canary percentages before the promotion
    metric: roc_auc      # ab: accuracy | roc_auc | reward | conversion (default: the
                         # policy's metric when it is one of these, else accuracy)
    alpha: 0.05
  rollback:
    tolerance: 0.02      # roll back when the challenger's live metric is this much worse
```
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from loopml.errors import ConfigError
from loopml.project.gate import Gate
from loopml.project.suggest import check_known, did_you_mean
from loopml.project.weight import WeightSpec, parse_weight

TRIGGERS = ("drift", "decay", "schedule", "manual", "online_drift")
ROLLOUTS = ("direct", "canary", "ab")
AB_METRICS = ("accuracy", "reward", "conversion", "roc_auc")
REFERENCES = ("best", "judged")
CHALLENGER_PROMOTE = ("if_better", "if_not_worse")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_EVERY = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_LAST = re.compile(r"^\s*last\s+(\d+)\s*$")
_SHARE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*x\s*$")
_CRON_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day", 1, 31),
    ("month", 1, 12),
    ("weekday", 0, 6),
)
_CRON_HORIZON_DAYS = 366 * 5


# -- windows over labelled traffic ------------------------------------------------------------


@dataclass(frozen=True)
class RowWindow:
    """Which rows: all, the newest ``last`` ones, or those of the last ``seconds``."""

    last: int | None = None
    seconds: float | None = None

    def __str__(self) -> str:
        if self.last is not None:
            return f"last {self.last}"
        if self.seconds is not None:
            return f"{self.seconds:g}s"
        return "all"


def parse_row_window(value: Any, field_name: str, source: str) -> RowWindow:
    if value is None or value == "all":
        return RowWindow()
    text = str(value)
    m = _LAST.match(text)
    if m and int(m.group(1)) > 0:
        return RowWindow(last=int(m.group(1)))
    m = _EVERY.match(text)
    if m and int(m.group(1)) > 0:
        return RowWindow(seconds=float(int(m.group(1)) * _UNITS[m.group(2)]))
    raise _bad(source, field_name, value, "all, 'last N' (rows) or a duration such as 30d")


@dataclass(frozen=True)
class Cooldown:
    """The least that must pass between two retrains: ``labelled`` new labelled predictions,
    ``share`` times the champion's training rows of them (scale-free: retraining pays when
    the new data is a good part of what the champion has seen), or ``seconds`` of time (none
    set: no cooldown)."""

    labelled: int | None = None
    seconds: float | None = None
    share: float | None = None

    def __str__(self) -> str:
        if self.labelled is not None:
            return f"{self.labelled} labelled predictions"
        if self.share is not None:
            return f"{self.share:g}x the champion's training rows in labelled predictions"
        if self.seconds is not None:
            return f"{self.seconds:g}s"
        return "none"


def parse_cooldown(value: Any, field_name: str, source: str) -> Cooldown:
    if value is None or value == "none" or value == 0:
        return Cooldown()
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return Cooldown(labelled=value)
    m = _EVERY.match(str(value)) if isinstance(value, str) else None
    if m and int(m.group(1)) > 0:
        return Cooldown(seconds=float(int(m.group(1)) * _UNITS[m.group(2)]))
    m = _SHARE.match(value) if isinstance(value, str) else None
    if m and 0 < float(m.group(1)) <= 100:
        return Cooldown(share=float(m.group(1)))
    raise _bad(
        source,
        field_name,
        value,
        "a share of the champion's training rows such as 0.5x, a number of labelled "
        "predictions (e.g. 20000), a duration such as 7d, or none",
    )


# -- schedules --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cron:
    """A five-field cron expression (minute hour day month weekday; ``*``, lists, ranges,
    steps; weekday 0 or 7 is Sunday), matched in UTC. Day and weekday both restricted: either
    matches (as cron does)."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    any_day: bool
    any_weekday: bool

    def matches(self, at: datetime) -> bool:
        return (
            at.minute in self.minutes
            and at.hour in self.hours
            and at.month in self.months
            and self._day_ok(at)
        )

    def _day_ok(self, at: datetime) -> bool:
        day = at.day in self.days
        weekday = (at.isoweekday() % 7) in self.weekdays
        if self.any_day and self.any_weekday:
            return True
        if self.any_day:
            return weekday
        if self.any_weekday:
            return day
        return day or weekday

    def next_after(self, after: datetime) -> datetime:
        """The first matching minute strictly after ``after`` (UTC)."""
        at = after.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        end = at + timedelta(days=_CRON_HORIZON_DAYS)
        while at < end:
            if at.month not in self.months or not self._day_ok(at):
                at = (at + timedelta(days=1)).replace(hour=0, minute=0)
                continue
            if at.hour not in self.hours:
                at = (at + timedelta(hours=1)).replace(minute=0)
                continue
            if at.minute in self.minutes:
                return at
            at += timedelta(minutes=1)
        raise ConfigError(
            f"cron expression {self.text!r} never fires",
            where={"field": "policy.trigger.cron"},
            hint="Check the day and month fields (e.g. day 31 of February)",
        )


def parse_cron(text: Any, field_name: str = "policy.trigger.cron", source: str = "") -> Cron:
    parts = str(text).split()
    if not isinstance(text, str) or len(parts) != 5:
        raise _bad(source, field_name, text, "five fields: minute hour day month weekday")
    sets: list[frozenset[int]] = []
    for part, (name, lo, hi) in zip(parts, _CRON_FIELDS, strict=True):
        values: set[int] = set()
        for item in part.split(","):
            values |= _cron_item(
                item, name, lo, hi + (1 if name == "weekday" else 0), text, field_name, source
            )
        if name == "weekday" and 7 in values:
            values = (values - {7}) | {0}
        sets.append(frozenset(values))
    minutes, hours, days, months, weekdays = sets
    return Cron(
        text,
        minutes,
        hours,
        days,
        months,
        weekdays,
        any_day=parts[2] == "*",
        any_weekday=parts[4] == "*",
    )


def _cron_item(
    item: str, name: str, lo: int, hi: int, text: str, field_name: str, source: str
) -> set[int]:
    base, _, step_text = item.partition("/")
    try:
        step = int(step_text) if step_text else 1
        if base == "*":
            first, last = lo, hi
        elif "-" in base:
            a, b = base.split("-", 1)
            first, last = int(a), int(b)
        else:
            first = int(base)
            last = hi if step_text else first
    except ValueError:
        raise _bad(
            source,
            field_name,
            text,
            f"numbers, '*', ranges and steps in the {name} field, e.g. */15 or 1-5",
        ) from None
    if step < 1 or not lo <= first <= last <= hi:
        raise _bad(source, field_name, text, f"a {name} between {lo} and {hi}")
    return set(range(first, last + 1, step))


@dataclass(frozen=True)
class Schedule:
    """``every`` seconds, or a cron expression."""

    every_s: float | None = None
    cron: Cron | None = None

    def due(self, last: datetime | None, now: datetime) -> bool:
        """Whether a run is due at ``now`` when the last one was at ``last`` (None: never)."""
        if last is None:
            return True
        if self.every_s is not None:
            return (now - last).total_seconds() >= self.every_s
        assert self.cron is not None
        return self.cron.next_after(last) <= now

    def __str__(self) -> str:
        if self.cron is not None:
            return f"cron {self.cron.text!r}"
        return f"every {self.every_s:g}s"


# -- the policy -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TriggerSpec:
    on: str = "manual"
    metric: str | None = None
    drop: float = 0.02
    window: RowWindow = field(default_factory=lambda: RowWindow(last=5000))
    min_labels: int = 200
    schedule: Schedule | None = None
    drift_features: int = 1  # drift: retrain when at least this many features drift
    reference: str = "best"  # decay: from what the fall is measured (see REFERENCES)
    cooldown: Cooldown = field(default_factory=Cooldown)


@dataclass(frozen=True)
class DataSpec:
    window: RowWindow = field(default_factory=RowWindow)
    include_feedback: bool = True
    # per-row weights of the retrains (project/weight.py); None: the project's train.weight
    weight: WeightSpec | None = None


@dataclass(frozen=True)
class ChallengerSpec:
    gate: Gate = field(default_factory=lambda: Gate(()))
    evaluate_on: float = 0.3
    promote: str = "if_better"
    min_rows: int = 100
    refit: bool = True
    second_look: bool = True
    blocks: int = 0  # > 1: block bootstrap over this many contiguous runs of the judged rows
    # if_better at this one-sided level (the comparison's p-value / 2); None: the interval
    alpha: float | None = None


@dataclass(frozen=True)
class RolloutSpec:
    mode: str = "direct"
    shadow: bool = False
    steps: tuple[float, ...] = (10.0, 50.0)
    metric: str | None = None  # None: the policy's metric when an A/B test takes it
    alpha: float = 0.05
    min_per_arm: int = 100


@dataclass(frozen=True)
class RollbackSpec:
    tolerance: float = 0.02


@dataclass(frozen=True)
class PolicySpec:
    trigger: TriggerSpec = field(default_factory=TriggerSpec)
    data: DataSpec = field(default_factory=DataSpec)
    challenger: ChallengerSpec = field(default_factory=ChallengerSpec)
    rollout: RolloutSpec = field(default_factory=RolloutSpec)
    rollback: RollbackSpec = field(default_factory=RollbackSpec)

    def to_dict(self) -> dict[str, Any]:
        t = self.trigger
        return {
            "trigger": {
                "on": t.on,
                "metric": t.metric,
                "drop": t.drop,
                "window": str(t.window),
                "min_labels": t.min_labels,
                "schedule": None if t.schedule is None else str(t.schedule),
                "reference": t.reference,
                "cooldown": str(t.cooldown),
            },
            "data": {
                "window": str(self.data.window),
                "include_feedback": self.data.include_feedback,
                **({"weight": self.data.weight.to_dict()} if self.data.weight else {}),
            },
            "challenger": {
                "gate": str(self.challenger.gate),
                "evaluate_on": self.challenger.evaluate_on,
                "promote": self.challenger.promote,
                "refit": self.challenger.refit,
                "second_look": self.challenger.second_look,
                "blocks": self.challenger.blocks,
                "alpha": self.challenger.alpha,
            },
            "rollout": {
                "mode": self.rollout.mode,
                "shadow": self.rollout.shadow,
                "steps": list(self.rollout.steps),
                "metric": self.rollout.metric,
                "alpha": self.rollout.alpha,
            },
            "rollback": {"tolerance": self.rollback.tolerance},
        }


def parse_policy(data: Any, source: str) -> PolicySpec | None:
    """The ``policy`` section (None when there is none); ConfigError naming the field."""
    if data is None:
        return None
    where = "policy"
    d = _mapping(data, where, source)
    check_known(d, ("trigger", "data", "challenger", "rollout", "rollback"), where, source)
    return PolicySpec(
        trigger=_trigger(d.get("trigger"), source),
        data=_data(d.get("data"), source),
        challenger=_challenger(d.get("challenger"), source),
        rollout=_rollout(d.get("rollout"), source),
        rollback=_rollback(d.get("rollback"), source),
    )


def _trigger(data: Any, source: str) -> TriggerSpec:
    where = "policy.trigger"
    d = _mapping(data or {}, where, source)
    # YAML 1.1 (PyYAML) reads a bare `on:` key as the boolean true
    d = {("on" if k is True else k): v for k, v in d.items()}
    check_known(
        d,
        (
            *("on", "metric", "drop", "window", "min_labels", "every", "cron", "features"),
            *("reference", "cooldown"),
        ),
        where,
        source,
    )
    on = d.get("on", "manual")
    if on not in TRIGGERS:
        raise ConfigError(
            f"{where}.on is {on!r}",
            where=_where(source, f"{where}.on"),
            hint=f"{did_you_mean(str(on), TRIGGERS)}Use one of: {', '.join(TRIGGERS)}",
        )
    schedule = None
    if "every" in d and "cron" in d:
        raise ConfigError(
            f"{where} has both every and cron",
            where=_where(source, f"{where}.every"),
            hint="Keep one: every: 1d, or cron: '0 3 * * *'",
        )
    if "every" in d:
        m = _EVERY.match(str(d["every"]))
        if not m or int(m.group(1)) == 0:
            raise _bad(source, f"{where}.every", d["every"], "an interval such as 30m, 6h, 1d")
        schedule = Schedule(every_s=float(int(m.group(1)) * _UNITS[m.group(2)]))
    elif "cron" in d:
        schedule = Schedule(cron=parse_cron(d["cron"], f"{where}.cron", source))
    if on == "schedule" and schedule is None:
        raise ConfigError(
            f"{where}.on is schedule but neither every nor cron is given",
            where=_where(source, f"{where}.every"),
            hint="Add every: 1d or cron: '0 3 * * *'",
        )
    metric = d.get("metric")
    reference = d.get("reference", "best")
    if reference not in REFERENCES:
        raise ConfigError(
            f"{where}.reference is {reference!r}",
            where=_where(source, f"{where}.reference"),
            hint=f"{did_you_mean(str(reference), REFERENCES)}Use best (the better of the "
            "champion's judged value and its first live window) or judged",
        )
    return TriggerSpec(
        on=str(on),
        metric=None if metric is None else str(metric),
        drop=_number(d.get("drop", 0.02), f"{where}.drop", source, lo=0.0),
        window=parse_row_window(d.get("window", "last 5000"), f"{where}.window", source),
        min_labels=_count(d.get("min_labels", 200), f"{where}.min_labels", source),
        schedule=schedule,
        drift_features=_count(d.get("features", 1), f"{where}.features", source),
        reference=str(reference),
        cooldown=parse_cooldown(d.get("cooldown"), f"{where}.cooldown", source),
    )


def _data(data: Any, source: str) -> DataSpec:
    where = "policy.data"
    d = _mapping(data or {}, where, source)
    check_known(d, ("window", "include_feedback", "weight"), where, source)
    include = d.get("include_feedback", True)
    if not isinstance(include, bool):
        raise _bad(source, f"{where}.include_feedback", include, "true or false")
    return DataSpec(
        parse_row_window(d.get("window"), f"{where}.window", source),
        include,
        parse_weight(d.get("weight"), source, f"{where}.weight"),
    )


def _challenger(data: Any, source: str) -> ChallengerSpec:
    where = "policy.challenger"
    d = _mapping(data or {}, where, source)
    check_known(
        d,
        ("gate", "evaluate_on", "promote", "min_rows", "refit", "second_look", "blocks", "alpha"),
        where,
        source,
    )
    share = _number(d.get("evaluate_on", 0.3), f"{where}.evaluate_on", source, lo=0.0)
    if not 0 < share < 1:
        raise _bad(source, f"{where}.evaluate_on", share, "a share between 0 and 1, e.g. 0.3")
    promote = d.get("promote", "if_better")
    if promote not in CHALLENGER_PROMOTE:
        raise _bad(source, f"{where}.promote", promote, " or ".join(CHALLENGER_PROMOTE))
    refit = d.get("refit", True)
    if not isinstance(refit, bool):
        raise _bad(source, f"{where}.refit", refit, "true or false")
    second_look = d.get("second_look", True)
    if not isinstance(second_look, bool):
        raise _bad(source, f"{where}.second_look", second_look, "true or false")
    blocks = d.get("blocks", 0)
    if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 0 or blocks == 1:
        raise _bad(
            source,
            f"{where}.blocks",
            blocks,
            "0 (resample single rows) or a number of contiguous runs of at least 2, e.g. 20",
        )
    alpha = d.get("alpha")
    if alpha is not None:
        alpha = _number(alpha, f"{where}.alpha", source, lo=0.0)
        if not 0 < alpha < 0.5:
            raise _bad(source, f"{where}.alpha", alpha, "a level between 0 and 0.5, e.g. 0.05")
    return ChallengerSpec(
        gate=Gate.parse(d.get("gate"), f"{where}.gate"),
        blocks=blocks,
        alpha=alpha,
        refit=refit,
        second_look=second_look,
        evaluate_on=share,
        promote=str(promote),
        min_rows=_count(d.get("min_rows", 100), f"{where}.min_rows", source),
    )


def _rollout(data: Any, source: str) -> RolloutSpec:
    where = "policy.rollout"
    d = _mapping(data or {}, where, source)
    check_known(d, ("mode", "shadow", "steps", "metric", "alpha", "min_per_arm"), where, source)
    mode = d.get("mode", "direct")
    if mode not in ROLLOUTS:
        raise ConfigError(
            f"{where}.mode is {mode!r}",
            where=_where(source, f"{where}.mode"),
            hint=f"{did_you_mean(str(mode), ROLLOUTS)}Use one of: {', '.join(ROLLOUTS)}",
        )
    steps = d.get("steps", [10, 50])
    if (
        not isinstance(steps, list)
        or not steps
        or not all(isinstance(s, int | float) and not isinstance(s, bool) for s in steps)
        or not all(0 < s < 100 for s in steps)
        or list(steps) != sorted(set(steps))
    ):
        raise _bad(
            source, f"{where}.steps", steps, "rising percentages between 0 and 100, e.g. [10, 50]"
        )
    metric = d.get("metric")
    if metric is not None and metric not in AB_METRICS:
        raise ConfigError(
            f"{where}.metric is {metric!r}",
            where=_where(source, f"{where}.metric"),
            hint=f"{did_you_mean(str(metric), AB_METRICS)}Use one of: {', '.join(AB_METRICS)}",
        )
    shadow = d.get("shadow", False)
    if not isinstance(shadow, bool):
        raise _bad(source, f"{where}.shadow", shadow, "true or false")
    alpha = _number(d.get("alpha", 0.05), f"{where}.alpha", source, lo=0.0)
    if not 0 < alpha < 0.5:
        raise _bad(source, f"{where}.alpha", alpha, "a level between 0 and 0.5, e.g. 0.05")
    return RolloutSpec(
        mode=str(mode),
        shadow=shadow,
        steps=tuple(float(s) for s in steps),
        metric=None if metric is None else str(metric),
        alpha=alpha,
        min_per_arm=_count(d.get("min_per_arm", 100), f"{where}.min_per_arm", source),
    )


def _rollback(data: Any, source: str) -> RollbackSpec:
    where = "policy.rollback"
    d = _mapping(data or {}, where, source)
    check_known(d, ("tolerance",), where, source)
    return RollbackSpec(_number(d.get("tolerance", 0.02), f"{where}.tolerance", source, lo=0.0))


# -- helpers ----------------------------------------------------------------------------------


def _where(source: str, field_name: str) -> dict[str, Any]:
    return {"file": source, "field": field_name} if source else {"field": field_name}


def _bad(source: str, field_name: str, value: Any, expected: str) -> ConfigError:
    return ConfigError(
        f"{field_name} is {value!r}",
        where=_where(source, field_name),
        hint=f"Give {expected}",
    )


def _mapping(data: Any, where: str, source: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise _bad(source, where, data, "a mapping")
    return data


def _number(value: Any, field_name: str, source: str, *, lo: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= lo:
        raise _bad(source, field_name, value, f"a number of at least {lo:g}")
    return float(value)


def _count(value: Any, field_name: str, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _bad(source, field_name, value, "a whole number of at least 1")
    return value
