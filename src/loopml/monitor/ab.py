"""A/B status of a served model: per-arm outcomes from labelled traffic and feedback, judged by
the mixture SPRT (:mod:`loopml.monitor.sequential`), valid however often it is looked at.

The arms are the versions of the model's deployment (its champion is A, the other B). The
outcome per prediction depends on the metric the policy names:

- ``accuracy``: 1 when the logged prediction equals the label that came back, else 0;
- ``conversion``: 1 when the feedback's reward is above 0 (or its label is truthy), else 0;
- ``reward``: the feedback's reward (a mean is compared);
- ``roc_auc``: each arm's ROC-AUC on its labelled traffic, from the logged score (P(positive)
  of a binary classifier), compared by :func:`~loopml.monitor.sequential.msprt_auc` (the
  DeLong variance of each arm's AUC in the same always-valid test): the decision metric when
  positives are rare and accuracy barely moves.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from loopml.errors import InvalidInputError
from loopml.monitor.sequential import (
    SequentialResult,
    msprt_auc,
    msprt_means,
    msprt_proportions,
)
from loopml.predictions import read_prediction_log
from loopml.project.policy import AB_METRICS

if TYPE_CHECKING:
    from loopml.workspace import Workspace


@dataclass(frozen=True)
class ABStatus:
    model: str
    metric: str
    champion: int
    challenger: int
    result: SequentialResult

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "metric": self.metric,
            "champion": self.champion,
            "challenger": self.challenger,
            **self.result.to_dict(),
        }

    def lines(self) -> list[str]:
        r = self.result
        out = [
            f"A/B {self.model}: champion v{self.champion} (A) vs challenger v{self.challenger} (B)"
            f" on {self.metric}",
            f"  A: {r.mean_a:.4f} over {r.n_a}   B: {r.mean_b:.4f} over {r.n_b}",
            f"  B - A = {r.estimate:+.4f}, always-valid {1 - r.alpha:.0%} CI "
            f"[{r.ci_low:+.4f}, {r.ci_high:+.4f}], p = {r.p_value:.4g}",
        ]
        if r.decided:
            out.append(f"  decision: {r.decision}")
        else:
            more = "unknown" if r.more_traffic is None else f"about {r.more_traffic}"
            out.append(f"  decision: keep going ({more} more observations needed)")
        if r.note:
            out.append(f"  note: {r.note}")
        return out


def _check_metric(metric: str) -> None:
    if metric not in AB_METRICS:
        raise InvalidInputError(
            f"A/B metric {metric!r} is not one of {', '.join(AB_METRICS)}",
            where={"field": "metric", "metric": metric},
            hint="Use accuracy or roc_auc (labelled traffic), conversion or reward (feedback "
            "rewards)",
        )


def arm_outcomes(
    ws: Workspace,
    model: str,
    versions: tuple[int, ...],
    metric: str,
    *,
    since: datetime | None = None,
) -> dict[int, np.ndarray]:
    """Per version, one outcome per logged prediction that has feedback (see the module)."""
    _check_metric(metric)
    if metric == "roc_auc":
        raise InvalidInputError(
            "roc_auc is not a per-prediction outcome",
            where={"field": "metric", "metric": metric},
            hint="Use arm_scores for roc_auc (labels and scores per arm)",
        )
    log = read_prediction_log(ws.lake, model, since=since)
    out: dict[int, np.ndarray] = {v: np.zeros(0) for v in versions}
    if log.empty:
        return out
    log = log[log["version"].isin(list(versions))]
    feedback = ws.metadata.list_feedback(prediction_ids=log["prediction_id"].tolist())
    newest: dict[str, tuple[Any, float | None]] = {}
    for item in feedback:
        newest[item.prediction_id] = (item.label, item.reward)
    for v in versions:
        rows = log[log["version"] == v]
        values: list[float] = []
        for pid, pred in zip(rows["prediction_id"], rows["prediction"], strict=True):
            got = newest.get(pid)
            if got is None:
                continue
            label, reward = got
            if metric == "accuracy":
                if label is None:
                    continue
                values.append(1.0 if str(pred) == str(label) else 0.0)
            elif metric == "conversion":
                if reward is not None:
                    values.append(1.0 if reward > 0 else 0.0)
                elif label is not None:
                    values.append(1.0 if label in (1, True, "1", "yes", "true") else 0.0)
            elif reward is not None:
                values.append(float(reward))
        out[v] = np.asarray(values, dtype=np.float64)
    return out


def arm_scores(
    ws: Workspace,
    model: str,
    versions: tuple[int, ...],
    *,
    since: datetime | None = None,
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per version, ``(labels, scores)`` of its labelled logged predictions: label 1 when the
    feedback's label is the version's positive class, the logged score P(positive).
    InvalidInputError for a version that is not a binary classifier."""
    positives: dict[int, str] = {}
    for v in versions:
        sig = ws.metadata.get_model_version(model, v).signature or {}
        classes = list(sig.get("classes") or [])
        task = sig.get("task") or ("classification" if classes else "regression")
        if task != "classification" or len(classes) != 2:
            raise InvalidInputError(
                f"{model}@{v} is not a binary classifier: roc_auc needs P(positive) per prediction",
                where={"model": model, "version": v, "field": "metric"},
                hint="Use --metric accuracy for a multiclass model, reward for a regression",
            )
        positive = (sig.get("extra") or {}).get("positive")
        positives[v] = _text(positive if positive in classes else classes[1])
    out = {v: (np.zeros(0), np.zeros(0)) for v in versions}
    log = read_prediction_log(ws.lake, model, since=since)
    if log.empty:
        return out
    log = log[log["version"].isin(list(versions))]
    newest: dict[str, Any] = {}
    for item in ws.metadata.list_feedback(prediction_ids=log["prediction_id"].tolist()):
        if item.label is not None:
            newest[item.prediction_id] = item.label
    for v in versions:
        rows = log[log["version"] == v]
        labels = [newest.get(pid) for pid in rows["prediction_id"]]
        has = np.asarray([x is not None for x in labels], dtype=bool)
        y = np.asarray([_text(x) == positives[v] for x in labels], dtype=np.float64)[has]
        out[v] = (y, rows["score"].to_numpy(dtype=np.float64)[has])
    return out


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def sequential_result(
    a: np.ndarray,
    b: np.ndarray,
    metric: str,
    *,
    alpha: float = 0.05,
    min_per_arm: int = 30,
    effect: float | None = None,
) -> SequentialResult:
    """The mSPRT result of outcomes ``a`` (champion) and ``b`` (challenger) so far."""
    _check_metric(metric)
    if metric in ("accuracy", "conversion"):
        return msprt_proportions(
            int(a.sum()),
            len(a),
            int(b.sum()),
            len(b),
            alpha=alpha,
            effect=0.02 if effect is None else effect,
            min_per_arm=min_per_arm,
        )
    return msprt_means(
        len(a),
        float(a.mean()) if len(a) else 0.0,
        float(a.var(ddof=1)) if len(a) > 1 else 0.0,
        len(b),
        float(b.mean()) if len(b) else 0.0,
        float(b.var(ddof=1)) if len(b) > 1 else 0.0,
        alpha=alpha,
        effect=effect,
        min_per_arm=min_per_arm,
    )


def ab_status(
    ws: Workspace,
    model: str,
    *,
    metric: str = "accuracy",
    alpha: float = 0.05,
    min_per_arm: int = 30,
    since: datetime | None = None,
) -> ABStatus:
    """The A/B test of ``model``'s deployment: champion (A) against the other version (B)."""
    _check_metric(metric)
    dep = ws.metadata.get_deployment(model)
    if dep is None or len(dep.routes) != 2:
        shown = "no deployment" if dep is None else f"a {dep.mode} deployment"
        raise InvalidInputError(
            f"model {model!r} has {shown}, not two versions sharing traffic",
            where={"model": model},
            hint=f"Start one with 'loopml deploy {model} --ab CHAMPION=50,CHALLENGER=50'",
        )
    champion = ws.metadata.get_aliases(model).get("champion")
    versions = [v for v, _ in dep.routes]
    a = champion if champion in versions else versions[0]
    b = next(v for v in versions if v != a)
    start = since if since is not None else dep.updated_at
    if metric == "roc_auc":
        scored = arm_scores(ws, model, (a, b), since=start)
        (ya, sa), (yb, sb) = scored[a], scored[b]
        auc = msprt_auc(ya, sa, yb, sb, alpha=alpha, min_per_arm=min_per_arm)
        return ABStatus(model, metric, a, b, auc)
    outcomes = arm_outcomes(ws, model, (a, b), metric, since=start)
    result = sequential_result(
        outcomes[a], outcomes[b], metric, alpha=alpha, min_per_arm=min_per_arm
    )
    return ABStatus(model, metric, a, b, result)


__all__ = ["ABStatus", "ab_status", "arm_outcomes", "arm_scores", "sequential_result"]
