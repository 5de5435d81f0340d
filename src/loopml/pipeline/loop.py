"""The closed loop: apply a model's retraining policy once (``run_once``) or forever (``watch``).

One pass for one model, under a lease in the metadata store (so two watchers never act on the
same model at once) and with a dedupe key on every trigger (so a retrain happens once per
trigger even if a lease ran out mid-pass):

1. a rollout in progress (a ``challenger`` alias on a version the deployment routes to) is
   advanced: shadow -> canary steps -> promote, or an A/B test read by the mixture SPRT;
   a challenger worse on live labelled traffic than the champion is rolled back;
2. otherwise the trigger is checked (decay of the policy metric on the champion's labelled
   traffic, from :func:`loopml.monitor.performance.performance`, against its reference; drift
   on the log window; a schedule; or by hand), after the policy's cooldown since the last
   retrain; when it fires a challenger is trained through :func:`loopml.train` on the policy's
   data (the dataset, plus the labelled production traffic, all of it or a window), judged
   against the champion on the same held-out newest labelled rows (the policy's gate and a
   paired comparison), registered as ``challenger`` and rolled out as the policy says. The
   version rolled out is always the one judged: with ``challenger.refit`` a passing challenger
   is also refit on all of that data (the held-out rows are the newest, the ones that matter
   most for the months ahead), and that refit, judged on nothing yet, replaces the champion
   only after beating it on the labelled traffic that follows (rows neither trained on).

The decay reference (``trigger.reference``): ``judged`` is the champion's value when it was
judged (its training holdout, or the held-out rows that promoted it); ``best`` (the default)
the better of that and its value on its first live window (the first ``window`` of its
labelled traffic), so that a champion judged on an unusually hard (or easy) stretch of data
is measured from what it showed in production.

Every step is a monitor event with its reason and evidence; ``dry_run`` returns the actions
without doing or recording anything. A failure records an ``error`` event and the pass (and
the watcher) carries on with the next model.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from loopml.errors import ConfigError, InvalidInputError, LoopmlError, NotFoundError
from loopml.evaluate.compare import Scored, compare
from loopml.evaluate.metrics import compute_metrics
from loopml.monitor.ab import ab_status
from loopml.monitor.events import claim_event, list_events, record_event
from loopml.monitor.policy import (
    CHALLENGER,
    COOLED_TRIGGERS,
    ERROR,
    LOWER_IS_BETTER,
    PROMOTE,
    RETRAIN,
    ROLLBACK,
    ROLLOUT,
    SKIP,
    WAIT,
    Action,
    LiveArm,
    check_metric_name,
    decide_ab,
    decide_canary_step,
    decide_retrain,
    inputs_of,
    labelled_traffic,
    labelled_traffic_of,
)
from loopml.predictions import read_prediction_log
from loopml.project.config import ProjectConfig
from loopml.project.policy import AB_METRICS, PolicySpec
from loopml.project.weight import WeightSpec
from loopml.registry.deployments import deploy, step_canary
from loopml.registry.models import delete_alias, load_model, set_alias
from loopml.stores.records import ModelVersion
from loopml.utils import utcnow
from loopml.workspace import Workspace

log = logging.getLogger("loopml.pipeline.loop")

CHAMPION = "champion"
LEASE_TTL_S = 900.0
Say = Callable[[str], None]


def default_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _policy(project: ProjectConfig) -> PolicySpec:
    if project.policy is None:
        raise ConfigError(
            f"project {project.name!r} has no policy section",
            where={"file": project.source, "field": "policy"},
            hint="Add policy: {trigger: {on: decay}} (see docs/closed-loop.md)",
        )
    return project.policy


def run_once(
    ws: Workspace,
    project: ProjectConfig | Sequence[ProjectConfig],
    *,
    dry_run: bool = False,
    force: bool = False,
    holder: str | None = None,
    lease_ttl_s: float = LEASE_TTL_S,
    say: Say | None = None,
) -> list[Action]:
    """Apply the policy of each project (one model each) once; the actions taken (or, with
    ``dry_run``, that would be taken). A model that fails gets an ``error`` action and event;
    the others still run. ``force`` retrains now whatever the trigger says."""
    projects = [project] if isinstance(project, ProjectConfig) else list(project)
    actions: list[Action] = []
    for p in projects:
        actions.extend(
            _run_model(
                ws,
                p,
                dry_run=dry_run,
                force=force,
                holder=holder or default_holder(),
                lease_ttl_s=lease_ttl_s,
                say=say or (lambda _m: None),
            )
        )
    return actions


def watch(
    ws: Workspace,
    project: ProjectConfig | Sequence[ProjectConfig],
    interval: float,
    *,
    iterations: int | None = None,
    holder: str | None = None,
    say: Say | None = None,
    stop: Callable[[], bool] | None = None,
) -> list[Action]:
    """``run_once`` every ``interval`` seconds, ``iterations`` times (None: until ``stop()``
    says so). Nothing raised in a pass stops the watcher; returns every action taken."""
    done: list[Action] = []
    count = 0
    who = holder or default_holder()
    while iterations is None or count < iterations:
        if stop is not None and stop():
            break
        started = time.monotonic()
        try:
            done.extend(run_once(ws, project, holder=who, say=say))
        except Exception as exc:  # never stop the watcher (bad project, store down...)
            log.exception("monitor pass failed")
            if say is not None:
                say(f"pass failed: {type(exc).__name__}: {exc}")
        count += 1
        if iterations is not None and count >= iterations:
            break
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
    return done


# -- one model --------------------------------------------------------------------------------


def _run_model(
    ws: Workspace,
    project: ProjectConfig,
    *,
    dry_run: bool,
    force: bool,
    holder: str,
    lease_ttl_s: float,
    say: Say,
) -> list[Action]:
    model = project.name
    lease_name = f"monitor:{model}"
    if not dry_run:
        lease = ws.metadata.acquire_lease(lease_name, holder, lease_ttl_s)
        if lease is None:
            held = ws.metadata.get_lease(lease_name)
            who = "another watcher" if held is None else held.holder
            action = Action(
                model,
                SKIP,
                f"{who} holds the lease on {model!r}: skipped",
                {"lease": lease_name},
                done=True,
            )
            say(str(action))
            return [action]
    try:
        policy = _policy(project)
        return _Pass(ws, project, policy, dry_run=dry_run, say=say).run(force=force)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        evidence: dict[str, Any] = {"error": type(exc).__name__, "message": str(exc)}
        if isinstance(exc, LoopmlError):
            evidence.update({"where": exc.where, "hint": exc.hint})
        else:
            log.exception("monitor pass for %s failed", model)
        action = Action(model, ERROR, reason, evidence, done=not dry_run)
        if not dry_run:
            record_event(ws, "error", model, reason, evidence, policy=project.source)
        say(str(action))
        return [action]
    finally:
        if not dry_run:
            ws.metadata.release_lease(lease_name, holder)


class _Pass:
    def __init__(
        self, ws: Workspace, project: ProjectConfig, policy: PolicySpec, *, dry_run: bool, say: Say
    ) -> None:
        self.ws, self.project, self.policy = ws, project, policy
        self.model = project.name
        self.dry_run = dry_run
        self.say = say
        self.actions: list[Action] = []

    # bookkeeping
    def act(self, action: Action, kind: str | None = None, dedupe: str | None = None) -> bool:
        """Record ``action`` (unless a dry run); False when ``dedupe`` was recorded before."""
        if self.dry_run:
            self.actions.append(action)
            self.say(str(action))
            return True
        _, new = claim_event(
            self.ws,
            kind or action.kind,
            self.model,
            action.reason,
            action.evidence,
            policy=self.project.source,
            dedupe=dedupe,
        )
        if not new:
            skipped = Action(
                self.model, SKIP, f"already acted on: {dedupe}", {"dedupe": dedupe}, done=True
            )
            self.actions.append(skipped)
            self.say(str(skipped))
            return False
        done = replace(action, done=True)
        self.actions.append(done)
        self.say(str(done))
        return True

    def run(self, *, force: bool) -> list[Action]:
        aliases = self.ws.metadata.get_aliases(self.model)
        champion = aliases.get(CHAMPION)
        if champion is None:
            raise NotFoundError(
                f"model {self.model!r} has no champion to monitor",
                where={"model": self.model},
                hint=f"Train it first ('loopml train') or 'loopml models alias {self.model} "
                "champion VERSION'",
            )
        challenger = aliases.get(CHALLENGER)
        dep = self.ws.metadata.get_deployment(self.model)
        if challenger is not None and challenger != champion and dep is not None:
            routed = {v for v, w in dep.routes if w > 0} | ({dep.shadow} if dep.shadow else set())
            if challenger in routed:
                self.advance(champion, challenger)
                return self.actions
        if not force and self.refit_look(champion):
            return self.actions
        if not force and self.policy.challenger.second_look and self.second_look(champion):
            return self.actions
        self.check_trigger(champion, force=force)
        return self.actions

    # -- the refit of the champion, judged on the traffic that followed it ---------------------

    def refit_look(self, champion: int) -> bool:
        """Judge the refit of the champion (trained on all the rows, the champion's held-out
        ones too, when the champion was promoted; see :meth:`retrain`) against the champion on
        the labelled traffic predicted since (rows neither trained on), with the policy's gate
        and paired comparison; True when it passed and its rollout started. Once per refit;
        it needs ``challenger.min_rows`` labelled rows. A refit is never rolled out unjudged."""
        events = list_events(self.ws, self.model, "challenger", limit=50)
        pending: tuple[int, Any] | None = None
        for event in events:
            ev = event.evidence
            if ev.get("refit_of") == champion:
                return False  # already judged (passed or not)
            if ev.get("challenger") == champion:  # the event that made it the challenger
                refit = ev.get("refit")
                if isinstance(refit, dict) and isinstance(refit.get("version"), int):
                    pending = (int(refit["version"]), event)
                break
        if pending is None:
            return False
        candidate, event = pending
        refit = event.evidence["refit"]
        log = read_prediction_log(self.ws.lake, self.model, since=event.at)
        rows = labelled_traffic_of(self.ws, log)
        return self.judge_later(
            champion,
            candidate,
            rows,
            look="refit",
            trained=refit,
            waiting=f"refit v{candidate} of champion v{champion}: {{rows}} labelled predictions "
            "since it was trained, waiting for {need} to judge it",
            said=f"refit v{candidate} of champion v{champion}, on {{rows}} labelled "
            "predictions since it was trained",
            extra={"refit_of": champion},
        )

    # -- a second look at a rejected challenger -------------------------------------------------

    def second_look(self, champion: int) -> bool:
        """Judge the newest challenger rejected against this champion once more, on the
        labelled traffic predicted after its rejection (rows neither model trained on); True
        when it passed and its rollout started. A held-out slice can be unrepresentative (a
        strike, a storm): the rows that came since are the fairest test of the two models
        as they are. Once per rejected challenger; it needs ``challenger.min_rows`` new rows."""
        events = list_events(self.ws, self.model, "challenger", limit=1)
        if not events:
            return False
        event = events[0]
        ev = event.evidence
        candidate = ev.get("candidate")
        if not isinstance(candidate, int) or ev.get("champion") != champion:
            return False
        if ev.get("second_look"):  # this rejection was already the second look
            return False
        log = read_prediction_log(self.ws.lake, self.model, since=event.at, version=champion)
        rows = labelled_traffic_of(self.ws, log)
        return self.judge_later(
            champion,
            candidate,
            rows,
            look="second",
            trained=ev,
            waiting=f"second look at rejected challenger v{candidate}: {{rows}} labelled "
            "predictions since its rejection, waiting for {need}",
            said="second look, on {rows} labelled predictions since its rejection",
        )

    def judge_later(
        self,
        champion: int,
        candidate: int,
        rows: pd.DataFrame,
        *,
        look: str,
        trained: dict[str, Any],
        waiting: str,
        said: str,
        extra: dict[str, Any] | None = None,
    ) -> bool:
        """Judge ``candidate`` (a registered version that is not serving) against the
        champion on labelled traffic predicted after it was made (``rows``: neither model
        trained on them), with the policy's gate and paired comparison; True when it passed
        and its rollout started (or, in a dry run, would start), or when this look was taken
        before. The one judgement behind :meth:`refit_look` (``look="refit"``) and
        :meth:`second_look` (``look="second"``); once per candidate (a dedupe key per look).

        ``trained``: the evidence naming how the candidate was trained (``run``,
        ``dataset_version``, ``training_rows``); ``waiting`` and ``said`` the reason's words
        while it waits for ``challenger.min_rows`` rows and when it is judged (with ``{rows}``
        and ``{need}`` filled in); ``extra``: evidence added to the judgement."""
        need = self.policy.challenger.min_rows
        extra = dict(extra or {})
        if len(rows) < need:
            self.note(
                WAIT,
                waiting.format(rows=len(rows), need=need),
                {"candidate": candidate, **extra, "rows": len(rows)},
            )
            return False
        record = self.ws.metadata.get_model_version(self.model, champion)
        metric = self.metric_name(record)
        action = self.judge(
            champion,
            candidate,
            rows,
            metric,
            (int(trained.get("dataset_version") or 0), int(trained.get("training_rows") or 0)),
            str(trained.get("run") or ""),
            look=look,
        )
        if action is None:
            return False
        action = replace(
            action,
            reason=f"{said.format(rows=len(rows), need=need)}: {action.reason}",
            evidence={**action.evidence, **extra},
        )
        key = "refit" if look == "refit" else "second-look"
        if not self.act(action, kind="challenger", dedupe=f"{key}:{self.model}:v{candidate}"):
            return True
        if self.dry_run:
            return True
        set_alias(self.ws, self.model, CHALLENGER, candidate, reason=action.reason)
        metrics = dict(action.evidence.get("challenger_metrics") or {})
        self.start_rollout(champion, candidate, metrics)
        return True

    # -- metric helpers -----------------------------------------------------------------------

    def metric_name(self, record: ModelVersion) -> str:
        return str(
            self.policy.trigger.metric
            or self.project.evaluation.metric
            or (record.metrics or {}).get("metric")
            or "accuracy"
        )

    def baseline(self, record: ModelVersion, metric: str) -> float | None:
        for event in list_events(self.ws, self.model, PROMOTE, limit=20):
            ev = event.evidence
            if ev.get("version") == record.version and metric in (ev.get("metrics") or {}):
                return float(ev["metrics"][metric])
        holdout = (record.metrics or {}).get("holdout") or {}
        value = holdout.get(metric)
        return None if value is None else float(value)

    def score(
        self, ref: str, frame: pd.DataFrame, y: np.ndarray, metric: str
    ) -> tuple[dict[str, float], Scored]:
        loaded = load_model(self.ws, ref)
        names = [f.name for f in loaded.signature.inputs]
        pred = loaded.predict(inputs_of(frame, names), unknown="flag")
        classes = pred.classes
        y_cast = _as_classes(y, classes)
        task = "classification" if pred.probabilities is not None else "regression"
        metrics = compute_metrics(
            task, y_cast, pred.labels, pred.probabilities, classes, positive=self.project.positive
        )
        return metrics, Scored(pred.labels, pred.probabilities, classes)

    def logged_metric(self, rows: pd.DataFrame, metric: str, record: ModelVersion) -> float | None:
        """``metric`` of the logged outputs of ``rows`` (labelled traffic of one version)."""
        if rows.empty:
            return None
        classes = (record.signature or {}).get("classes")
        y = rows["label"].to_numpy()
        if classes:
            y = _as_classes(y, classes)
            preds = _as_classes(rows["prediction"].to_numpy(), classes)
            proba = None
            if len(classes) == 2 and "score" in rows:
                positive = (
                    self.project.positive if self.project.positive is not None else classes[1]
                )
                pos = list(classes).index(positive) if positive in classes else 1
                s = rows["score"].to_numpy(dtype=np.float64)
                proba = np.column_stack([1 - s, s]) if pos == 1 else np.column_stack([s, 1 - s])
            if len(set(y.tolist())) < 2 and metric in ("roc_auc", "log_loss", "average_precision"):
                return None
            got = compute_metrics(
                "classification", y, preds, proba, list(classes), positive=self.project.positive
            )
        else:
            got = compute_metrics(
                "regression", y.astype(np.float64), rows["prediction"].to_numpy(dtype=np.float64)
            )
        value = got.get(metric)
        return None if value is None or not np.isfinite(value) else float(value)

    # -- steady state: the trigger --------------------------------------------------------------

    def live(self, champion: int, metric: str) -> tuple[float | None, int, dict[str, Any]]:
        """The champion's ``metric`` on its newest labelled traffic (the trigger's window),
        from :func:`~loopml.monitor.performance.performance`: value, labelled rows, and the
        coverage and label delay as evidence."""
        from loopml.monitor.performance import performance

        w = self.policy.trigger.window
        text = f"last {w.last}" if w.last is not None else None
        if w.seconds is not None:
            text = f"{int(w.seconds)}s"
        try:
            report = performance(self.ws, f"{self.model}@{champion}", window=text, metric=metric)
        except InvalidInputError:  # no prediction in the window yet
            return None, 0, {"window": text or "whole log", "predictions": 0}
        row = report.overall
        evidence = {
            "window": report.window,
            "predictions": row.n_predictions,
            "coverage": round(row.coverage, 4),
            "label_delay_p50_s": row.delay_p50_s,
        }
        if row.note:
            evidence["note"] = row.note
        return row.value, row.n_labelled, evidence

    def first_live(self, champion: int, metric: str, record: ModelVersion) -> float | None:
        """``metric`` of the champion's first live window: its oldest ``window.last`` labelled
        predictions (all of its labelled ones for a time window), once there are enough."""
        log = read_prediction_log(self.ws.lake, self.model, version=champion)
        if log.empty:
            return None
        n = self.policy.trigger.window.last or len(log)
        first = log.iloc[: min(len(log), max(n, self.policy.trigger.min_labels) * 2)]
        rows = labelled_traffic_of(self.ws, first).iloc[:n]
        if len(rows) < min(n, self.policy.trigger.min_labels):
            return None
        return self.logged_metric(rows, metric, record)

    def labelled_since(self, at: datetime) -> int:
        """Labelled predictions of this model made after ``at`` (any version)."""
        log = read_prediction_log(self.ws.lake, self.model, since=at)
        return 0 if log.empty else len(labelled_traffic_of(self.ws, log))

    def cooldown(
        self, last: datetime | None, now: datetime, record: ModelVersion
    ) -> tuple[bool, dict[str, Any]]:
        """Whether the cooldown since the last retrain ``last`` has passed, and its evidence."""
        c = self.policy.trigger.cooldown
        evidence: dict[str, Any] = {"cooldown": str(c)}
        if last is None or (c.labelled is None and c.seconds is None and c.share is None):
            return True, evidence
        if c.seconds is not None:
            passed = (now - last).total_seconds()
            evidence["since_last_retrain_s"] = passed
            return passed >= c.seconds, evidence
        need = c.labelled
        if need is None:
            assert c.share is not None
            rows = _training_rows(self.ws, record)
            need = max(1, round(c.share * rows))
            evidence["champion_training_rows"] = rows
        evidence["cooldown_labelled"] = need
        seen = self.labelled_since(last)
        evidence["labelled_since_last_retrain"] = seen
        return seen >= need, evidence

    def check_trigger(self, champion: int, *, force: bool) -> None:
        record = self.ws.metadata.get_model_version(self.model, champion)
        sig = record.signature or {}
        task = str(sig.get("task") or ("classification" if sig.get("classes") else "regression"))
        check_metric_name(
            self.policy.trigger.metric, task, "policy.trigger.metric", self.project.source
        )
        metric = self.metric_name(record)
        t = self.policy.trigger
        current: float | None = None
        n_labelled = 0
        live_evidence: dict[str, Any] = {}
        if t.on == "decay":
            current, n_labelled, live_evidence = self.live(champion, metric)
        drifted = None
        if t.on == "drift":
            drifted = self.drifted(champion)
        retrains = list_events(self.ws, self.model, RETRAIN, limit=1)
        last_retrain = retrains[0].at if retrains else None
        online = self.online_drifts(last_retrain) if t.on == "online_drift" else None
        now = utcnow()
        judged = self.baseline(record, metric)
        baseline, first = judged, None
        if t.on == "decay" and t.reference == "best":
            first = self.first_live(champion, metric, record)
            if first is not None:
                lower = metric in LOWER_IS_BETTER
                pick = min if lower else max
                baseline = first if judged is None else pick(judged, first)
        cooled, cool_evidence = True, dict[str, Any]()
        if t.on in COOLED_TRIGGERS and not force:
            cooled, cool_evidence = self.cooldown(last_retrain, now, record)
        action = decide_retrain(
            self.model,
            self.policy,
            now=now,
            last_retrain=last_retrain,
            metric=metric,
            baseline=baseline,
            current=current,
            n_labelled=n_labelled,
            drifted=drifted,
            forced=force,
            cooled=cooled,
            online_drifts=online,
        )
        extra = {
            "champion": champion,
            "reference": {"kind": t.reference, "judged": judged, "first_live": first},
            **({"live": live_evidence} if live_evidence else {}),
            **cool_evidence,
        }
        action = replace(action, evidence={**action.evidence, **extra})
        if action.kind != RETRAIN:
            self.actions.append(action)
            self.say(str(action))
            return
        if t.on in ("schedule", "manual") or force:
            # once per schedule slot: keyed by the retrain before it
            before = retrains[0].at.isoformat() if retrains else "never"
            slot = f"after={before}"
        elif t.on == "online_drift":  # once per online drift event
            slot = f"event={online[0] if online else 'none'}"
        else:  # once per labelled window: keyed by the newest labelled prediction so far
            slot = f"upto={self.newest_labelled()}"
        dedupe = f"retrain:{self.model}:v{champion}:{'forced' if force else t.on}:{slot}"
        if not self.act(action, dedupe=dedupe) or self.dry_run:
            return
        self.retrain(champion, record, metric)

    def online_drifts(self, since: datetime | None) -> list[int]:
        """Ids (newest first) of the drift events an online learner ('loopml learn')
        recorded for this model after ``since`` (the last retrain; None: ever)."""
        return [
            int(event.id)
            for event in list_events(self.ws, self.model, "drift", since=since, limit=1000)
            if event.evidence.get("source") == "online"
            and event.id is not None
            and (since is None or event.at > since)
        ]

    def newest_labelled(self) -> str:
        """The id of the newest labelled prediction among the trigger window's newest ones."""
        from loopml.predictions import read_last_predictions

        log = read_last_predictions(
            self.ws.lake, self.model, self.policy.trigger.window.last or 5000
        )
        traffic = labelled_traffic_of(self.ws, log)
        return str(traffic["prediction_id"].iloc[-1]) if len(traffic) else "none"

    def drifted(self, champion: int) -> list[str] | None:
        from loopml.monitor.check import check_drift

        w = self.policy.trigger.window
        window = None if w.last is None and w.seconds is None else str(w)
        try:
            check = check_drift(
                self.ws, f"{self.model}@{champion}", window=window, write_report=False
            )
        except LoopmlError as exc:
            self.say(f"{self.model}: drift not checked: {exc}")
            return None
        if check.verdict == "insufficient data":
            return None
        names = list(check.features.drifted_features)
        if check.prediction.drifted:
            names.append("prediction")
        return names

    # -- a challenger -----------------------------------------------------------------------------

    def retrain(self, champion: int, record: ModelVersion, metric: str) -> None:
        spec = self.policy
        traffic = labelled_traffic(self.ws, self.model, window=spec.data.window)
        traffic = traffic.sort_values("timestamp", kind="stable").reset_index(drop=True)
        n_eval = round(len(traffic) * spec.challenger.evaluate_on)
        held = traffic.iloc[len(traffic) - n_eval :] if n_eval else traffic.iloc[0:0]
        learn = traffic.iloc[: len(traffic) - n_eval]
        loaded = load_model(self.ws, f"{self.model}@{champion}")
        names = [f.name for f in loaded.signature.inputs]
        classes = (record.signature or {}).get("classes")
        base: pd.DataFrame | None = None
        if spec.data.window.last is None and spec.data.window.seconds is None:
            from loopml.data.ingest import load_table

            table = load_table(self.ws, self.project.dataset, self.project.dataset_version)
            frame = table.to_pandas()
            weight = self.weight()
            extra = [] if weight is None else [c for c in weight.columns() if c not in names]
            keep = [*names, self.project.target, *extra]
            base = frame[[c for c in dict.fromkeys(keep) if c in frame.columns]]
        if base is None and not (spec.data.include_feedback and len(learn)):
            raise ConfigError(
                f"policy of {self.model!r}: no training data (window {spec.data.window} and "
                "include_feedback false)",
                where={"file": self.project.source, "field": "policy.data"},
                hint="Use data.window: all, or include_feedback: true",
            )
        result, dataset_version = self.fit(base, learn, names, classes, "a challenger")
        if result is None:
            return
        version = result.model_version.version
        action = self.judge(champion, version, held, metric, dataset_version, result.run.id)
        if action is None:
            return
        metrics = dict(action.evidence.get("challenger_metrics") or {})
        if spec.challenger.refit and len(held) and spec.data.include_feedback:
            # the judged version is the one rolled out now. Its refit on all the rows (the
            # held-out newest too, the closest to the traffic ahead) is a candidate that was
            # judged on nothing: it must beat the judged version on the labelled traffic
            # that follows (rows neither trained on) before it may replace it (refit_look)
            refit, refit_dv = self.fit(
                base, pd.concat([learn, held]), names, classes, f"the refit of v{version}"
            )
            if refit is not None:
                refit_version = refit.model_version.version
                action = replace(
                    action,
                    reason=f"{action.reason}; its refit on all {refit_dv[1]} rows (v"
                    f"{refit_version}) must beat it on the labelled traffic that follows",
                    evidence={
                        **action.evidence,
                        "judged_version": version,
                        "refit": {
                            "version": refit_version,
                            "run": refit.run.id,
                            "dataset_version": refit_dv[0],
                            "training_rows": refit_dv[1],
                        },
                    },
                )
        set_alias(self.ws, self.model, CHALLENGER, version, reason=action.reason)
        self.act(action, kind="challenger")
        self.start_rollout(champion, version, metrics)

    def fit(
        self,
        base: pd.DataFrame | None,
        traffic: pd.DataFrame,
        names: list[str],
        classes: Sequence[Any] | None,
        what: str,
    ) -> tuple[Any, tuple[int, int]]:
        """Train through :func:`loopml.train` on ``base`` plus the labelled ``traffic`` (as a
        new version of the ``<model>-loop`` dataset); None (and a recorded rejection) when its
        training gate fails. Returns the train result and (dataset version, rows)."""
        from loopml.data.ingest import ingest
        from loopml.train import train

        target = self.project.target
        parts: list[pd.DataFrame] = [] if base is None else [base]
        weight = self.weight()
        if self.policy.data.include_feedback and len(traffic):
            rows = inputs_of(traffic, names)
            labels = traffic["label"].to_numpy()
            rows[target] = _as_classes(labels, classes) if classes else labels.astype(np.float64)
            if weight is not None:
                _weight_columns(rows, traffic, weight, base)
            parts.append(rows)
        frame = pd.concat(parts, ignore_index=True)
        if base is not None and len(base) and len(parts) > 1:
            frame[target] = frame[target].astype(base[target].dtype)
        dataset = f"{self.model}-loop"
        # its rows are the base and the traffic as they come: no nullability inferred
        dv = ingest(self.ws, frame, dataset, enforce_nullability=False).dataset
        self.say(
            f"{self.model}: training {what} on {dataset}@{dv.version} "
            f"({len(frame)} rows, {len(traffic)} from labelled traffic)"
        )
        result = train(
            self.ws,
            replace(
                self.project,
                dataset=dataset,
                dataset_version=dv.version,
                alias=None,
                weight=weight,
            ),
        )
        if not result.passed or result.model_version is None:
            self.act(
                Action(
                    self.model,
                    ROLLBACK,
                    f"{what} failed its training gate: {result.reason}",
                    {"run": result.run.id},
                ),
                kind="challenger",
            )
            return None, (dv.version, len(frame))
        return result, (dv.version, len(frame))

    def weight(self) -> WeightSpec | None:
        """The retrains' per-row weights: ``policy.data.weight``, else ``train.weight``."""
        return self.policy.data.weight or self.project.weight

    def judge(
        self,
        champion: int,
        version: int,
        held: pd.DataFrame,
        metric: str,
        dataset_version: tuple[int, int],
        run_id: str,
        *,
        look: str = "first",
    ) -> Action | None:
        """The challenger against the champion on the held-out rows: the ``rollout`` action
        when it passes, else None (its rejection recorded, naming the ``candidate`` for a
        :meth:`second_look` when it was judged on enough rows: by its gate or the comparison).
        ``look``: ``first`` (a new challenger), ``second`` (its second look) or ``refit`` (the
        champion's refit, :meth:`refit_look`); only a first look may get another."""
        from loopml.monitor.policy import judge_challenger

        y = held["label"].to_numpy()
        champion_metrics: dict[str, float] | None = None
        comparison = None
        new_metrics: dict[str, float] = {}
        if len(held):
            new_metrics, new_scored = self.score(f"{self.model}@{version}", held, y, metric)
            champion_metrics, old_scored = self.score(f"{self.model}@{champion}", held, y, metric)
            task = "classification" if new_scored.probabilities is not None else "regression"
            y_cast = _as_classes(y, new_scored.classes) if new_scored.classes else y
            comparison = compare(
                task,
                metric,
                y_cast,
                new_scored,
                old_scored,
                positive=self.project.positive,
                n_bootstrap=300,
                blocks=self.policy.challenger.blocks,
            )
        action = judge_challenger(
            self.model,
            self.policy,
            version=version,
            champion=champion,
            challenger_metrics=new_metrics,
            champion_metrics=champion_metrics,
            comparison=comparison,
            rows=len(held),
        )
        action = replace(
            action,
            evidence={
                **action.evidence,
                "run": run_id,
                "dataset_version": dataset_version[0],
                "training_rows": dataset_version[1],
            },
        )
        if action.kind != ROLLOUT:
            extra: dict[str, Any] = {"second_look": look == "second"}
            if (
                look == "first"
                and comparison is not None
                and len(held) >= self.policy.challenger.min_rows
            ):
                extra["candidate"] = version  # lost on these rows: may be looked at again
            said, dedupe = "rejected", None
            if look == "second":
                said, dedupe = "rejected on a second look", f"second-look:{self.model}:v{version}"
            elif look == "refit":
                said, dedupe = f"refit v{version} rejected", f"refit:{self.model}:v{version}"
                extra["refit_of"] = champion
            self.act(
                replace(
                    action,
                    reason=f"{said}: {action.reason}",
                    evidence={**action.evidence, **extra},
                ),
                kind="challenger",
                dedupe=dedupe,
            )
            return None
        return action

    # -- rollout ------------------------------------------------------------------------------

    def start_rollout(self, champion: int, version: int, metrics: dict[str, float]) -> None:
        r = self.policy.rollout
        why = f"rollout of challenger v{version} ({r.mode})"
        if r.mode == "direct":
            self.promote(champion, version, metrics, f"{why}: promoted directly")
            return
        if r.shadow:
            deploy(self.ws, self.model, single=champion, shadow=version, reason=f"{why}: shadow")
            stage = "shadow"
        elif r.mode == "canary":
            deploy(self.ws, self.model, canary=(version, r.steps[0]), reason=f"{why}: canary")
            stage = f"canary {r.steps[0]:g}%"
        else:
            deploy(self.ws, self.model, ab={champion: 50.0, version: 50.0}, reason=f"{why}: A/B")
            stage = "A/B 50/50"
        self.act(
            Action(
                self.model,
                ROLLOUT,
                f"{why}: {stage}",
                {"champion": champion, "challenger": version, "stage": stage, "metrics": metrics},
            )
        )

    def advance(self, champion: int, challenger: int) -> None:
        dep = self.ws.metadata.get_deployment(self.model)
        assert dep is not None
        r = self.policy.rollout
        since = dep.updated_at
        record = self.ws.metadata.get_model_version(self.model, champion)
        metric = self.metric_name(record)
        key = f"{self.model}:v{challenger}:rev{dep.revision}"
        if dep.mode == "single" and dep.shadow == challenger:
            # shadow answers get their own ids and no feedback: judged by volume served
            seen = len(
                read_prediction_log(self.ws.lake, self.model, since=since, version=challenger)
            )
            ev = {"challenger": challenger, "shadow_predictions": seen}
            if seen < r.min_per_arm:
                self.note(
                    WAIT,
                    f"shadow v{challenger}: {seen} predictions scored, waiting for {r.min_per_arm}",
                    ev,
                )
                return
            if r.mode == "canary":
                action = Action(self.model, ROLLOUT, f"shadow done: canary {r.steps[0]:g}%", ev)
                if self.act(action, dedupe=f"step:{key}") and not self.dry_run:
                    deploy(
                        self.ws, self.model, canary=(challenger, r.steps[0]), reason=action.reason
                    )
            else:
                action = Action(self.model, ROLLOUT, "shadow done: A/B 50/50", ev)
                if self.act(action, dedupe=f"step:{key}") and not self.dry_run:
                    deploy(
                        self.ws,
                        self.model,
                        ab={champion: 50.0, challenger: 50.0},
                        reason=action.reason,
                    )
            return
        if dep.mode == "ab":
            status = ab_status(
                self.ws,
                self.model,
                metric=r.metric or (metric if metric in AB_METRICS else "accuracy"),
                alpha=r.alpha,
                min_per_arm=r.min_per_arm,
                since=since,
            )
            action = decide_ab(self.model, status.result, champion=champion, challenger=challenger)
        else:
            percent = next((w for v, w in dep.routes if v == challenger), 0.0)
            arms = []
            for v in (champion, challenger):
                rows = labelled_traffic(self.ws, self.model, since=since, version=v)
                arms.append(LiveArm(v, len(rows), self.logged_metric(rows, metric, record)))
            action = decide_canary_step(
                self.model,
                self.policy,
                percent=percent,
                champion=arms[0],
                challenger=arms[1],
                metric=metric,
            )
        if action.kind == WAIT:
            self.note(WAIT, action.reason, action.evidence)
        elif action.kind == ROLLOUT:
            if self.act(action, dedupe=f"step:{key}") and not self.dry_run:
                step_canary(
                    self.ws,
                    self.model,
                    to=float(action.evidence["to"]),
                    expected=dep.revision,
                    reason=action.reason,
                )
        elif action.kind == PROMOTE:
            self.promote(
                champion,
                challenger,
                {},
                action.reason,
                dedupe=f"promote:{key}",
                evidence=action.evidence,
            )
        elif action.kind == ROLLBACK:
            self.rollback(champion, challenger, action, dedupe=f"rollback:{key}")

    def note(self, kind: str, reason: str, evidence: dict[str, Any]) -> None:
        action = Action(self.model, kind, reason, evidence)
        self.actions.append(action)
        self.say(str(action))

    def promote(
        self,
        champion: int,
        version: int,
        metrics: dict[str, float],
        reason: str,
        *,
        dedupe: str | None = None,
        evidence: dict[str, Any] | None = None,
    ) -> None:
        ev = {**(evidence or {}), "previous": champion, "version": version, "metrics": metrics}
        if not metrics:  # a staged rollout: the metrics it was judged by when it was registered
            for event in list_events(self.ws, self.model, "challenger", limit=20):
                if event.evidence.get("challenger") == version:
                    ev["metrics"] = event.evidence.get("challenger_metrics") or {}
                    break
        action = Action(self.model, PROMOTE, reason, ev)
        if not self.act(action, dedupe=dedupe or f"promote:{self.model}:v{version}"):
            return
        if self.dry_run:
            return
        set_alias(self.ws, self.model, CHAMPION, version, expected=champion, reason=reason)
        if self.ws.metadata.get_deployment(self.model) is not None:
            deploy(self.ws, self.model, single=version, reason=reason)
        delete_alias(self.ws, self.model, CHALLENGER)

    def rollback(self, champion: int, challenger: int, action: Action, *, dedupe: str) -> None:
        if not self.act(action, dedupe=dedupe) or self.dry_run:
            return
        deploy(self.ws, self.model, single=champion, reason=action.reason)
        delete_alias(self.ws, self.model, CHALLENGER)


def _weight_columns(
    rows: pd.DataFrame, traffic: pd.DataFrame, weight: WeightSpec, base: pd.DataFrame | None
) -> None:
    """Give the traffic ``rows`` the weight's columns they lack as model inputs: the
    recency's time column is each row's prediction time (naive UTC when the base dataset's
    is naive), a weight column 1 (labelled traffic weighs as a row of weight 1)."""
    time = weight.recency.time if weight.recency is not None else None
    for col in weight.columns():
        if col in rows.columns:
            continue
        if col != time:
            rows[col] = 1.0
            continue
        at = pd.to_datetime(traffic["timestamp"], utc=True)
        naive = (
            base is not None
            and col in base.columns
            and pd.api.types.is_datetime64_any_dtype(base[col])
            and getattr(base[col].dt, "tz", None) is None
        )
        rows[col] = (at.dt.tz_localize(None) if naive else at).to_numpy()


def _training_rows(ws: Workspace, record: ModelVersion) -> int:
    """The rows ``record`` was fit on (its run's count, else its dataset version's size)."""
    rows = (record.metrics or {}).get("rows") or {}
    fit = rows.get("fit") if isinstance(rows, dict) else None
    if isinstance(fit, int) and fit > 0:
        return fit
    if record.dataset_name is not None and record.dataset_version is not None:
        dv = ws.metadata.get_dataset_version(record.dataset_name, record.dataset_version)
        return int(dv.num_rows or 0)
    return 0


def _as_classes(values: Any, classes: Sequence[Any] | None) -> np.ndarray:
    """``values`` (labels as they came back in feedback or the log) as the model's classes."""
    arr = np.asarray(values, dtype=object)
    if not classes:
        return arr
    by_text: dict[str, Any] = {}
    for c in classes:
        by_text[str(c)] = c
        if isinstance(c, bool | int | np.integer):
            by_text.setdefault(str(int(c)), c)
    out = [by_text.get(str(v), by_text.get(str(_whole(v)), v)) for v in arr]
    return np.asarray(out, dtype=np.asarray(list(classes)).dtype if len(classes) else object)


def _whole(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return int(number) if number.is_integer() else number
    return value


def last_actions(actions: Sequence[Action]) -> dict[str, list[Action]]:
    """Actions grouped by model (for printing)."""
    out: dict[str, list[Action]] = {}
    for a in actions:
        out.setdefault(a.model, []).append(a)
    return out


def now_text(at: datetime | None = None) -> str:
    return (at or utcnow()).isoformat(timespec="seconds")


__all__ = ["default_holder", "run_once", "watch"]
