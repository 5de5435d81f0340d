"""Retraining-policy decisions: numbers in, an :class:`Action` with its reason and evidence out.

Nothing here trains, deploys or writes: :mod:`loopml.pipeline.loop` gathers the evidence
(labelled traffic, drift, the deployment), asks these functions what to do, does it and
records each action as a monitor event. Keeping the decisions pure makes every branch
testable with plain numbers and makes ``--dry-run`` exact: it prints these actions, undone.

The labelled traffic of a model (its logged predictions joined with the feedback that
arrived for them) is read here too, by :func:`labelled_traffic`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from loopml.errors import ConfigError
from loopml.evaluate.compare import Comparison
from loopml.evaluate.metrics import metric_names
from loopml.monitor.sequential import A_BETTER, B_BETTER, SequentialResult
from loopml.predictions import feature_column, read_prediction_log
from loopml.project.gate import Gate
from loopml.project.policy import PolicySpec, RowWindow
from loopml.project.suggest import did_you_mean

if TYPE_CHECKING:
    from loopml.workspace import Workspace

RETRAIN = "retrain"
ROLLOUT = "rollout"
PROMOTE = "promote"
ROLLBACK = "rollback"
WAIT = "wait"
SKIP = "skip"
ERROR = "error"
CHALLENGER = "challenger"
#: triggers that wait out the policy's cooldown since the last retrain
COOLED_TRIGGERS = ("drift", "decay", "online_drift")
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "rmse", "mae", "mse"})


@dataclass(frozen=True)
class Action:
    """What the loop does (or, in a dry run, would do) for one model, and why."""

    model: str
    kind: str  # retrain | challenger | rollout | promote | rollback | wait | skip | error
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)
    done: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        state = "" if self.done else " (not done)"
        return f"{self.model}: {self.kind}{state}: {self.reason}"


# -- labelled traffic -------------------------------------------------------------------------


def labelled_traffic(
    ws: Workspace,
    model: str,
    *,
    window: RowWindow | None = None,
    since: datetime | None = None,
    version: int | None = None,
    now: datetime | None = None,
) -> pd.DataFrame:
    """The logged predictions of ``model`` that have a label, oldest first: the log's
    columns plus ``label`` (the newest label sent for each) and ``labelled_at``.

    ``window``: all, the newest ``last`` labelled rows, or those predicted in the last
    ``seconds`` (before ``now``); ``since`` and ``version`` filter the log first.
    """
    lo = since
    if window is not None and window.seconds is not None:
        start = (now or datetime.now().astimezone()) - timedelta(seconds=window.seconds)
        lo = start if lo is None else max(lo, start)
    log = read_prediction_log(ws.lake, model, since=lo, version=version)
    out = labelled_traffic_of(ws, log)
    if window is not None and window.last is not None:
        out = out.iloc[-window.last :].reset_index(drop=True)
    return out


def labelled_traffic_of(ws: Workspace, log: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``log`` (logged predictions) that have a label, in their order, with
    ``label`` (the newest label sent for each) and ``labelled_at``."""
    if log.empty:
        return log.assign(
            label=pd.Series([], dtype=object), labelled_at=pd.Series([], dtype=object)
        )
    feedback = ws.metadata.list_feedback(prediction_ids=log["prediction_id"].tolist())
    labels: dict[str, tuple[Any, datetime]] = {}
    for item in feedback:  # oldest first: the newest label of a prediction wins
        if item.label is not None:
            labels[item.prediction_id] = (item.label, item.received_at)
    keep = log["prediction_id"].map(lambda pid: pid in labels).to_numpy(dtype=bool)
    out = log.loc[keep].reset_index(drop=True)
    out["label"] = [labels[p][0] for p in out["prediction_id"]]
    out["labelled_at"] = [labels[p][1] for p in out["prediction_id"]]
    return out


def inputs_of(traffic: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """The input features of logged rows, by feature name (as the model was called)."""
    return pd.DataFrame(
        {
            n: traffic[feature_column(n)].to_numpy()
            for n in names
            if feature_column(n) in traffic.columns
        }
    )


def check_metric_name(policy_metric: str | None, task: str, field_name: str, source: str) -> None:
    """ConfigError naming the field when the policy names a metric the task has not."""
    names = metric_names(task)
    if policy_metric is not None and policy_metric not in names:
        raise ConfigError(
            f"{field_name} {policy_metric!r} is not a metric of a {task} model",
            where={"file": source, "field": field_name},
            hint=f"{did_you_mean(policy_metric, names)}Choose one of: {', '.join(names)}",
        )


# -- triggers ---------------------------------------------------------------------------------


def decide_retrain(
    model: str,
    policy: PolicySpec,
    *,
    now: datetime,
    last_retrain: datetime | None,
    metric: str,
    baseline: float | None,
    current: float | None,
    n_labelled: int,
    drifted: list[str] | None = None,
    forced: bool = False,
    cooled: bool = True,
    online_drifts: list[int] | None = None,
) -> Action:
    """Whether the policy's trigger fires now: an action ``retrain`` (with why), else ``skip``.

    ``baseline`` is the champion's value of ``metric`` when it was judged (training holdout
    or the comparison that promoted it), ``current`` its value on the recent labelled
    traffic (``n_labelled`` rows); ``drifted`` the drifting features of the recent window;
    ``cooled`` False while the policy's cooldown since the last retrain has not passed (a
    drift or decay trigger then skips, saying so); ``online_drifts`` the ids of the drift
    events an online learner recorded for the model since the last retrain, newest first.
    """
    t = policy.trigger
    evidence: dict[str, Any] = {
        "trigger": t.on,
        "metric": metric,
        "baseline": baseline,
        "current": current,
        "labelled": n_labelled,
    }
    if forced:
        return Action(model, RETRAIN, "retrain asked for by hand", evidence)
    if t.on == "manual":
        return Action(model, SKIP, "trigger is manual: retrains only when asked", evidence)
    if t.on == "schedule":
        assert t.schedule is not None
        evidence["schedule"] = str(t.schedule)
        evidence["last_retrain"] = None if last_retrain is None else last_retrain.isoformat()
        if t.schedule.due(last_retrain, now):
            return Action(model, RETRAIN, f"schedule {t.schedule} is due", evidence)
        return Action(model, SKIP, f"schedule {t.schedule} is not due yet", evidence)
    if t.on in COOLED_TRIGGERS and not cooled:
        would = decide_retrain(
            model,
            policy,
            now=now,
            last_retrain=last_retrain,
            metric=metric,
            baseline=baseline,
            current=current,
            n_labelled=n_labelled,
            drifted=drifted,
            online_drifts=online_drifts,
        )
        if would.kind != RETRAIN:
            return would
        return Action(
            model,
            SKIP,
            f"{would.reason}, but cooling down: less than {t.cooldown} since the last retrain",
            {**would.evidence, "cooldown": str(t.cooldown), "cooling_down": True},
        )
    if t.on == "online_drift":
        found = list(online_drifts or [])
        evidence["online_drift_events"] = found
        if not found:
            return Action(
                model, SKIP, "no drift found by an online learner since the last retrain", evidence
            )
        return Action(
            model,
            RETRAIN,
            f"an online learner found drift {len(found)} time(s) since the last retrain "
            f"(newest: monitor event {found[0]})",
            evidence,
        )
    if t.on == "drift":
        if drifted is None:
            return Action(model, SKIP, "no drift result for the window (no data yet)", evidence)
        evidence["drifted"] = list(drifted)
        if len(drifted) >= t.drift_features:
            shown = ", ".join(drifted[:5])
            return Action(model, RETRAIN, f"{len(drifted)} feature(s) drifted: {shown}", evidence)
        return Action(
            model,
            SKIP,
            f"{len(drifted)} feature(s) drifted, fewer than {t.drift_features}",
            evidence,
        )
    # decay
    if n_labelled < t.min_labels:
        return Action(
            model,
            SKIP,
            f"{n_labelled} labelled predictions, fewer than {t.min_labels}: no decision",
            evidence,
        )
    if baseline is None or current is None or not np.isfinite(current):
        return Action(
            model, SKIP, f"{metric} could not be computed on the labelled traffic", evidence
        )
    lower = metric in LOWER_IS_BETTER
    fall = (current - baseline) if lower else (baseline - current)
    evidence["fall"] = fall
    evidence["drop"] = t.drop
    if fall > t.drop:
        return Action(
            model,
            RETRAIN,
            f"{metric} decayed to {current:.4f} from {baseline:.4f} (more than {t.drop:g})",
            evidence,
        )
    return Action(
        model, SKIP, f"{metric} = {current:.4f}, within {t.drop:g} of its {baseline:.4f}", evidence
    )


# -- the challenger ---------------------------------------------------------------------------


def judge_challenger(
    model: str,
    policy: PolicySpec,
    *,
    version: int,
    champion: int | None,
    challenger_metrics: dict[str, float],
    champion_metrics: dict[str, float] | None,
    comparison: Comparison | None,
    rows: int,
) -> Action:
    """``rollout`` when the challenger passes the policy's gate and beats (``if_better``: the
    paired interval of the improvement lies above 0, or with ``challenger.alpha`` its
    one-sided p-value, half the comparison's two-sided one, is below alpha) or matches
    (``if_not_worse``) the champion on the same held-out labelled rows; else ``rollback``
    (rejected), with why."""
    spec = policy.challenger
    evidence: dict[str, Any] = {
        "challenger": version,
        "champion": champion,
        "rows": rows,
        "challenger_metrics": challenger_metrics,
        "champion_metrics": champion_metrics,
        "comparison": None if comparison is None else comparison.to_dict(),
    }
    if rows < spec.min_rows:
        return Action(
            model,
            ROLLBACK,
            f"only {rows} held-out labelled rows, fewer than "
            f"{spec.min_rows}: not enough evidence to replace the champion",
            evidence,
        )
    passed, why = spec.gate.check(challenger_metrics, champion=champion_metrics)
    evidence["gate"] = {"passed": passed, "reason": why, "gate": str(spec.gate)}
    if not passed:
        return Action(model, ROLLBACK, f"challenger v{version} failed the gate: {why}", evidence)
    if comparison is None:
        return Action(
            model, ROLLOUT, f"challenger v{version} passed ({why}); no champion to beat", evidence
        )
    c = comparison
    said = (
        f"{c.metric} {c.challenger:.4f} vs champion {c.champion:.4f} "
        f"(improvement {c.improvement:+.4f}, 95% CI {c.ci_low:+.4f} to {c.ci_high:+.4f})"
    )
    if not np.isfinite(c.improvement):
        return Action(model, ROLLBACK, f"no comparison possible: {said}", evidence)
    if spec.alpha is None:
        better = c.improvement > 0 and c.ci_low > 0
    else:  # one-sided: the share of resamples (or McNemar's) with no improvement, halved
        one_sided = c.p_value / 2
        evidence["one_sided_p"] = one_sided
        evidence["alpha"] = spec.alpha
        better = c.improvement > 0 and np.isfinite(one_sided) and one_sided < spec.alpha
        said += f", one-sided p {one_sided:.3f} against {spec.alpha:g}"
    ok = better if spec.promote == "if_better" else c.improvement >= 0
    if ok:
        return Action(model, ROLLOUT, f"challenger v{version} beats the champion: {said}", evidence)
    return Action(model, ROLLBACK, f"challenger v{version} is not better: {said}", evidence)


# -- rollout steps ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LiveArm:
    """One version's labelled live traffic during a rollout."""

    version: int
    rows: int
    metric: float | None


def decide_canary_step(
    model: str,
    policy: PolicySpec,
    *,
    percent: float,
    champion: LiveArm,
    challenger: LiveArm,
    metric: str,
) -> Action:
    """Next move of a canary at ``percent``: ``rollback`` when the challenger's live metric
    is worse than the champion's by more than the rollback tolerance; ``wait`` until it has
    ``min_per_arm`` labelled rows; then ``rollout`` to the next step, or ``promote``."""
    r = policy.rollout
    evidence: dict[str, Any] = {
        "percent": percent,
        "metric": metric,
        "champion": asdict(champion),
        "challenger": asdict(challenger),
    }
    if challenger.rows < r.min_per_arm or champion.rows < 1:
        return Action(
            model,
            WAIT,
            f"challenger v{challenger.version} has {challenger.rows} "
            f"labelled rows at {percent:g}%, waiting for {r.min_per_arm}",
            evidence,
        )
    if challenger.metric is None or champion.metric is None:
        return Action(model, WAIT, f"{metric} not computable on the live traffic yet", evidence)
    lower = metric in LOWER_IS_BETTER
    worse = (
        (challenger.metric - champion.metric) if lower else (champion.metric - challenger.metric)
    )
    evidence["worse_by"] = worse
    if worse > policy.rollback.tolerance:
        return Action(
            model,
            ROLLBACK,
            f"challenger v{challenger.version} {metric} "
            f"{challenger.metric:.4f} is worse than the champion's {champion.metric:.4f} "
            f"by more than {policy.rollback.tolerance:g} at {percent:g}%",
            evidence,
        )
    later = [s for s in r.steps if s > percent]
    if later:
        evidence["to"] = later[0]
        return Action(
            model,
            ROLLOUT,
            f"canary healthy at {percent:g}% ({metric} "
            f"{challenger.metric:.4f} vs {champion.metric:.4f}): step to {later[0]:g}%",
            evidence,
        )
    return Action(
        model,
        PROMOTE,
        f"canary healthy at the last step {percent:g}% ({metric} "
        f"{challenger.metric:.4f} vs {champion.metric:.4f}): promote",
        evidence,
    )


def decide_ab(model: str, result: SequentialResult, *, champion: int, challenger: int) -> Action:
    """``promote`` when the sequential test says the challenger (B) is better, ``rollback``
    when the champion (A) is, else ``wait`` with how much more traffic it needs."""
    evidence = {"test": result.to_dict(), "champion": champion, "challenger": challenger}
    ci = f"{result.estimate:+.4f} (CI {result.ci_low:+.4f} to {result.ci_high:+.4f})"
    if result.decision == B_BETTER:
        return Action(model, PROMOTE, f"A/B: challenger v{challenger} better by {ci}", evidence)
    if result.decision == A_BETTER:
        return Action(
            model, ROLLBACK, f"A/B: champion v{champion} better, challenger worse by {ci}", evidence
        )
    more = "unknown" if result.more_traffic is None else f"about {result.more_traffic}"
    return Action(model, WAIT, f"A/B undecided at {ci}: needs {more} more observations", evidence)


def gate_for(policy: PolicySpec) -> Gate:
    return policy.challenger.gate


__all__ = [
    "Action",
    "LiveArm",
    "decide_ab",
    "decide_canary_step",
    "decide_retrain",
    "inputs_of",
    "judge_challenger",
    "labelled_traffic",
    "labelled_traffic_of",
]
