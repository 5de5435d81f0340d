"""Alerts: rules over a monitoring check, sent to a webhook and the log, recorded with evidence.

Rules live in ``loopml.yaml``::

    monitor:
      alerts:
        - {when: drift, features: 3}                  # 3 or more features drift
        - {when: prediction_drift}                    # the model's scores drift
        - {when: metric, metric: roc_auc, below: 0.7} # from delayed labels (or above: for
                                                      #   a lower-is-better metric)
        - {when: error_rate, above: 0.01}             # errors / requests of the server
        - {when: latency_p99_ms, above: 50}           # logged latency of the window
      webhook: {url: https://hooks.example/loopml, token_env: LOOPML_ALERT_TOKEN}

:func:`evaluate_alerts` turns the rules and what a check measured into :class:`Alert` values
(a rule whose evidence is missing, say a metric with no labels yet, does not fire and says so
in :attr:`AlertOutcome.skipped`). :func:`raise_alerts` records each alert as a monitor event
(``kind="alert"``, its rule and values as evidence, deduplicated per rule and window so a
repeated check never alerts twice), writes it to the ``loopml.monitor.alerts`` log, and POSTs
one JSON document to the webhook, retrying with exponential backoff. A webhook that is down
or answers an error is recorded as an ``error`` event with the attempts made: it never raises.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from loopml.errors import ConfigError
from loopml.utils import utcnow

if TYPE_CHECKING:
    from loopml.monitor.check import DriftCheck
    from loopml.monitor.performance import PerformanceReport
    from loopml.stores.records import MonitorEvent
    from loopml.workspace import Workspace

log = logging.getLogger("loopml.monitor.alerts")

WHEN = ("drift", "prediction_drift", "metric", "error_rate", "latency_p99_ms")
_KEYS = {
    "drift": {"features", "share"},
    "prediction_drift": set(),
    "metric": {"metric", "below", "above"},
    "error_rate": {"above"},
    "latency_p99_ms": {"above"},
}
_WEBHOOK_KEYS = ("url", "token_env", "timeout_s", "retries", "backoff_s")


@dataclass(frozen=True)
class AlertRule:
    """One rule: ``when`` it fires and its threshold."""

    when: str
    features: int | None = None  # drift: at least this many drifting features
    share: float | None = None  # drift: or at least this share of them
    metric: str | None = None
    below: float | None = None
    above: float | None = None

    @property
    def name(self) -> str:
        """A short, stable name: ``drift>=3``, ``metric:roc_auc<0.7``, ``latency_p99_ms>50``."""
        if self.when == "drift":
            if self.features is not None:
                return f"drift>={self.features}"
            return f"drift>={self.share:g}" if self.share is not None else "drift"
        if self.when == "metric":
            side = f"<{self.below:g}" if self.below is not None else f">{self.above:g}"
            return f"metric:{self.metric}{side}"
        if self.above is not None:
            return f"{self.when}>{self.above:g}"
        return self.when

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class WebhookSpec:
    """Where alerts are POSTed; the bearer token is read from ``token_env`` when sending."""

    url: str
    token_env: str | None = None
    timeout_s: float = 5.0
    retries: int = 3  # attempts after the first
    backoff_s: float = 0.5  # wait before retry i: backoff_s * 2**i


@dataclass(frozen=True)
class AlertConfig:
    """The ``monitor.alerts`` rules and the ``monitor.webhook`` of a project file."""

    rules: tuple[AlertRule, ...] = ()
    webhook: WebhookSpec | None = None


@dataclass(frozen=True)
class ServingStats:
    """Requests and errors of a server over the period checked (e.g. from its /metrics)."""

    requests: int
    errors: int

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None


@dataclass(frozen=True)
class Alert:
    """A rule that fired, with the value that made it fire and the evidence."""

    model: str
    rule: AlertRule
    value: float
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "rule": self.rule.name,
            "when": self.rule.when,
            "threshold": self.rule.to_dict(),
            "value": self.value,
            "reason": self.reason,
            "evidence": self.evidence,
        }


@dataclass(frozen=True)
class AlertOutcome:
    """What :func:`evaluate_alerts` found: alerts that fired and rules it could not decide."""

    alerts: list[Alert]
    skipped: list[str]  # "rule: why" for rules without the evidence to decide


@dataclass(frozen=True)
class Delivery:
    """How sending to the webhook went."""

    ok: bool
    attempts: int
    status: int | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RaisedAlerts:
    """What :func:`raise_alerts` did: the events recorded (new ones) and the delivery."""

    events: list[MonitorEvent]
    repeated: list[Alert]  # already recorded for this window: not sent again
    delivery: Delivery | None  # None: no webhook, or nothing new to send


# -- the rules in loopml.yaml -----------------------------------------------------------------


def parse_alerts(monitor: Mapping[str, Any] | None) -> AlertConfig:
    """:class:`AlertConfig` from the ``monitor`` mapping of ``loopml.yaml`` (``None``: none).

    Raises :class:`ConfigError` naming the field for an unknown rule, key or a bad value.
    """
    if not monitor:
        return AlertConfig()
    raw = monitor.get("alerts")
    rules: list[AlertRule] = []
    if raw is not None:
        if not isinstance(raw, list):
            raise _bad("monitor.alerts", raw, "a list of rules, e.g. [{when: drift, features: 3}]")
        rules = [_rule(item, f"monitor.alerts[{i}]") for i, item in enumerate(raw)]
    hook = monitor.get("webhook")
    return AlertConfig(tuple(rules), None if hook is None else _webhook(hook))


def _rule(item: Any, where: str) -> AlertRule:
    if not isinstance(item, Mapping):
        raise _bad(where, item, "a mapping such as {when: drift, features: 3}")
    when = item.get("when")
    if when not in WHEN:
        raise ConfigError(
            f"{where}.when must be one of {', '.join(WHEN)}, got {when!r}",
            where={"field": f"{where}.when"},
            hint="e.g. {when: metric, metric: roc_auc, below: 0.7}",
        )
    allowed = _KEYS[when] | {"when"}
    for key in item:
        if key not in allowed:
            raise ConfigError(
                f"unknown key {key!r} in {where} (when: {when})",
                where={"field": f"{where}.{key}"},
                hint=f"keys of a {when} rule: {', '.join(sorted(allowed))}",
            )
    values: dict[str, Any] = {"when": when}
    for key in ("share", "below", "above"):
        if key in item:
            values[key] = _number(item[key], f"{where}.{key}")
    if "features" in item:
        n = item["features"]
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise _bad(f"{where}.features", n, "a whole number of at least 1")
        values["features"] = int(n)
    if when == "drift" and "features" in values and "share" in values:
        raise _bad(where, dict(item), "features or share, not both")
    if when == "metric":
        metric = item.get("metric")
        if not isinstance(metric, str) or not metric:
            raise _bad(f"{where}.metric", metric, "a metric name, e.g. roc_auc")
        from loopml.evaluate.metrics import CLASSIFICATION_METRICS, REGRESSION_METRICS

        known = (*CLASSIFICATION_METRICS, *REGRESSION_METRICS)
        if metric not in known:
            raise ConfigError(
                f"unknown metric {metric!r} in {where}.metric",
                where={"field": f"{where}.metric"},
                hint=f"Choose one of: {', '.join(known)}",
            )
        values["metric"] = metric
        if ("below" in values) == ("above" in values):
            raise _bad(where, dict(item), "exactly one of below: or above:")
    if when in ("error_rate", "latency_p99_ms") and "above" not in values:
        raise _bad(f"{where}.above", None, "a number (the rule fires above it)")
    return AlertRule(**values)


def _webhook(hook: Any) -> WebhookSpec:
    where = "monitor.webhook"
    if isinstance(hook, str):
        hook = {"url": hook}
    if not isinstance(hook, Mapping):
        raise _bad(where, hook, "a mapping {url: ..., token_env: ...}")
    for key in hook:
        if key not in _WEBHOOK_KEYS:
            raise ConfigError(
                f"unknown key {key!r} in {where}",
                where={"field": f"{where}.{key}"},
                hint=f"known keys: {', '.join(_WEBHOOK_KEYS)}",
            )
    url = hook.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise _bad(f"{where}.url", url, "an http:// or https:// URL")
    token_env = hook.get("token_env")
    if token_env is not None and not (isinstance(token_env, str) and token_env):
        raise _bad(f"{where}.token_env", token_env, "the name of an environment variable")
    retries = hook.get("retries", 3)
    if isinstance(retries, bool) or not isinstance(retries, numbers.Integral) or retries < 0:
        raise _bad(f"{where}.retries", retries, "a whole number >= 0")
    return WebhookSpec(
        url=url,
        token_env=token_env,
        timeout_s=_number(hook.get("timeout_s", 5.0), f"{where}.timeout_s", positive=True),
        retries=int(retries),
        backoff_s=_number(hook.get("backoff_s", 0.5), f"{where}.backoff_s"),
    )


def _number(value: Any, where: str, *, positive: bool = False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not math.isfinite(float(value)) or (positive and value <= 0):
        raise _bad(where, value, "a positive number" if positive else "a number")
    return float(value)


def _bad(where: str, value: Any, expected: str) -> ConfigError:
    return ConfigError(
        f"{where} must be {expected}, got {value!r}",
        where={"field": where},
        hint=f"fix {where} in loopml.yaml (see docs/monitoring.md, 'Alerts')",
    )


# -- evaluating the rules ---------------------------------------------------------------------


def evaluate_alerts(
    config: AlertConfig,
    model: str,
    *,
    drift: DriftCheck | None = None,
    performance: PerformanceReport | None = None,
    latency_p99_ms: float | None = None,
    serving: ServingStats | None = None,
) -> AlertOutcome:
    """The alerts the rules raise on what was measured; rules lacking evidence are skipped."""
    alerts: list[Alert] = []
    skipped: list[str] = []
    for rule in config.rules:
        fired, why = _evaluate(rule, model, drift, performance, latency_p99_ms, serving)
        if fired is not None:
            alerts.append(fired)
        elif why is not None:
            skipped.append(f"{rule.name}: {why}")
    return AlertOutcome(alerts, skipped)


def _evaluate(
    rule: AlertRule,
    model: str,
    drift: DriftCheck | None,
    perf: PerformanceReport | None,
    latency: float | None,
    serving: ServingStats | None,
) -> tuple[Alert | None, str | None]:
    if rule.when in ("drift", "prediction_drift"):
        if drift is None:
            return None, "no drift check"
        if drift.features.insufficient is not None:
            return None, f"insufficient data ({drift.features.insufficient})"
        window: dict[str, Any] = {"current": drift.current, "reference": drift.reference}
        if rule.when == "prediction_drift":
            if not drift.prediction.drifted:
                return None, None
            psi = drift.prediction.features[0].psi
            shown_fd = drift.prediction.features[0].to_dict()
            shown_fd.pop("histogram", None)
            evidence: dict[str, Any] = {**window, "prediction": shown_fd}
            return Alert(model, rule, float(psi or 0.0), "the model's scores drift", evidence), None
        names = drift.features.drifted_features
        n = len(drift.features.features)
        value = float(len(names)) if rule.share is None else len(names) / max(n, 1)
        limit = rule.features if rule.features is not None else rule.share
        fires = drift.features.drifted if limit is None else value >= limit
        if not fires:
            return None, None
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        evidence = {
            **window,
            "drifted_features": names,
            "features": {
                f.feature: {"psi": f.psi, "p_value": f.p_value, "reasons": list(f.reasons)}
                for f in drift.features.features
                if f.drifted
            },
            "report_url": drift.report_url,
        }
        reason = f"{len(names)} of {n} features drift ({shown})"
        return Alert(model, rule, value, reason, evidence), None
    if rule.when == "metric":
        if perf is None:
            return None, "no performance report"
        if perf.metric == rule.metric:
            got = perf.overall.value
        else:
            got = perf.overall.metrics.get(str(rule.metric))
        if got is None:
            return None, perf.overall.note or f"{rule.metric} is not measured on these labels"
        fires = (rule.below is not None and got < rule.below) or (
            rule.above is not None and got > rule.above
        )
        if not fires:
            return None, None
        side = f"below {rule.below:g}" if rule.below is not None else f"above {rule.above:g}"
        evidence = {
            "window": perf.window,
            "metric": rule.metric,
            "value": got,
            "training": perf.training,
            "n_labelled": perf.overall.n_labelled,
            "coverage": perf.overall.coverage,
            "delay_p50_s": perf.overall.delay_p50_s,
        }
        reason = f"{rule.metric} {got:.4g} is {side} on {perf.overall.n_labelled} labels"
        return Alert(model, rule, float(got), reason, evidence), None
    assert rule.above is not None
    if rule.when == "latency_p99_ms":
        if latency is None:
            return None, "no logged latency"
        if latency <= rule.above:
            return None, None
        reason = f"p99 latency {latency:.3g} ms is above {rule.above:g} ms"
        return Alert(model, rule, latency, reason, {"latency_p99_ms": latency}), None
    rate = serving.error_rate if serving is not None else None
    if serving is None or rate is None:
        return None, "no request counts from the server"
    if rate <= rule.above:
        return None, None
    reason = (
        f"error rate {rate:.3%} ({serving.errors} of {serving.requests}) is above {rule.above:g}"
    )
    return Alert(model, rule, rate, reason, asdict(serving) | {"error_rate": rate}), None


_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'(?P<key>[a-zA-Z_][a-zA-Z0-9_]*)="(?P<value>(?:[^"\\]|\\.)*)"')
_COUNTED = {"loopml_requests_total": "requests", "loopml_request_errors_total": "errors"}


def serving_stats(metrics_text: str, model: str) -> ServingStats:
    """Requests and errors of ``model`` from a server's Prometheus ``/metrics`` text."""
    counts = {"requests": 0.0, "errors": 0.0}
    for line in metrics_text.splitlines():
        found = _SAMPLE.match(line)
        if found is None or found["name"] not in _COUNTED:
            continue
        labels = {
            m["key"]: re.sub(r"\\(.)", lambda e: "\n" if e[1] == "n" else e[1], m["value"])
            for m in _LABEL.finditer(found["labels"] or "")
        }
        if labels.get("model") == model:
            counts[_COUNTED[found["name"]]] += float(found["value"])
    return ServingStats(int(counts["requests"]), int(counts["errors"]))


# -- raising: events, the log, the webhook ----------------------------------------------------


def raise_alerts(
    ws: Workspace,
    config: AlertConfig,
    alerts: Sequence[Alert],
    *,
    key: str,
    sleep: Callable[[float], None] = time.sleep,
) -> RaisedAlerts:
    """Record, log and send ``alerts`` once per ``key`` (e.g. the window's end time).

    Each alert is a monitor event of kind ``alert`` with dedupe key
    ``alert:<model>:<rule>:<key>``; alerts already recorded under their key are not sent
    again. New ones go to the webhook in one POST; a failed delivery is an ``error`` event.
    """
    from loopml.monitor.events import claim_event, record_event

    events: list[MonitorEvent] = []
    repeated: list[Alert] = []
    fresh: list[Alert] = []
    for alert in alerts:
        evidence = {"rule": alert.rule.to_dict(), "value": alert.value, **alert.evidence}
        event, new = claim_event(
            ws,
            "alert",
            alert.model,
            f"{alert.rule.name}: {alert.reason}",
            evidence,
            dedupe=f"alert:{alert.model}:{alert.rule.name}:{key}",
        )
        if not new:
            repeated.append(alert)
            continue
        events.append(event)
        fresh.append(alert)
        log.warning("alert %s on %s: %s", alert.rule.name, alert.model, alert.reason)
    delivery = None
    if fresh and config.webhook is not None:
        payload = {
            "source": "loopml",
            "at": utcnow().isoformat(),
            "key": key,
            "alerts": [
                a.to_dict() | {"event_id": e.id} for a, e in zip(fresh, events, strict=True)
            ],
        }
        delivery = send_webhook(config.webhook, payload, sleep=sleep)
        if not delivery.ok:
            log.error("alert webhook %s failed: %s", config.webhook.url, delivery.error)
            models = sorted({a.model for a in fresh})
            for model in models:
                record_event(
                    ws,
                    "error",
                    model,
                    f"alert webhook {config.webhook.url} failed after {delivery.attempts} "
                    f"attempts: {delivery.error}",
                    {
                        "webhook": config.webhook.url,
                        "delivery": delivery.to_dict(),
                        "alerts": [a.rule.name for a in fresh if a.model == model],
                    },
                )
    return RaisedAlerts(events, repeated, delivery)


def send_webhook(
    spec: WebhookSpec,
    payload: Mapping[str, Any],
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> Delivery:
    """POST ``payload`` as JSON; retry a refused connection, a timeout or a 5xx/429 answer."""
    body = json.dumps(payload, default=str).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "loopml-monitor"}
    if spec.token_env:
        token = os.environ.get(spec.token_env)
        if token:
            headers["Authorization"] = f"Bearer {token}"
    attempts = 0
    status: int | None = None
    error: str | None = None
    for attempt in range(spec.retries + 1):
        if attempt:
            sleep(spec.backoff_s * 2 ** (attempt - 1))
        attempts += 1
        request = urllib.request.Request(spec.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=spec.timeout_s) as answer:
                status = int(answer.status)
            return Delivery(True, attempts, status)
        except urllib.error.HTTPError as exc:
            status, error = exc.code, f"HTTP {exc.code} {exc.reason}"
            if exc.code < 500 and exc.code != 429:
                break  # the receiver refuses it: retrying will not help
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            status = None
            error = str(getattr(exc, "reason", exc))
    return Delivery(False, attempts, status, error)


@dataclass(frozen=True)
class MonitorCheck:
    """One monitoring pass over a model's window: what was measured and what it raised."""

    model: str
    window: str
    drift: DriftCheck | None
    performance: PerformanceReport | None
    latency_p99_ms: float | None
    outcome: AlertOutcome
    raised: RaisedAlerts | None
    problems: list[str] = field(default_factory=list)  # parts that could not be measured

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "window": self.window,
            "drift": None if self.drift is None else _drift_summary(self.drift),
            "performance": None if self.performance is None else self.performance.to_dict(),
            "latency_p99_ms": self.latency_p99_ms,
            "alerts": [a.to_dict() for a in self.outcome.alerts],
            "skipped": list(self.outcome.skipped),
            "repeated": [] if self.raised is None else [a.rule.name for a in self.raised.repeated],
            "delivery": None
            if self.raised is None or self.raised.delivery is None
            else self.raised.delivery.to_dict(),
            "problems": list(self.problems),
        }


def _drift_summary(check: DriftCheck) -> dict[str, Any]:
    keys = ("verdict", "summary", "drifted_features", "predictions_drifted", "report_url")
    doc = check.to_dict()
    return {k: doc[k] for k in keys}


def check_model(
    ws: Workspace,
    model: str,
    monitor: Mapping[str, Any] | None,
    *,
    window: str = "1d",
    now: datetime | None = None,
    serving: ServingStats | None = None,
    send: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> MonitorCheck:
    """Drift, performance and latency of ``model`` over ``window``; alerts per the rules.

    ``monitor`` is the ``monitor:`` mapping of ``loopml.yaml`` (its ``drift`` thresholds and
    ``alerts``/``webhook``). A part that cannot be measured (no predictions in the window, no
    labels yet) is listed in ``problems`` and its rules are skipped; nothing fires on missing
    evidence. ``send=False`` evaluates without recording or sending anything (a dry run).
    """
    from loopml.errors import LoopmlError
    from loopml.monitor.check import check_drift, read_window
    from loopml.monitor.performance import performance as measure
    from loopml.monitor.thresholds import DriftThresholds
    from loopml.monitor.windows import parse_window, select_window

    config = parse_alerts(monitor)
    thresholds = DriftThresholds.from_mapping((monitor or {}).get("drift"))
    win = parse_window(window)
    at = now or utcnow()
    problems: list[str] = []
    drift = perf = None
    latency = None
    try:
        drift = check_drift(ws, model, window=win, thresholds=thresholds, now=at)
    except LoopmlError as exc:
        problems.append(f"drift: {exc}")
    try:
        perf = measure(ws, model, window=win, now=at, metric=_metric_of(config))
    except ConfigError:
        raise  # a rule naming a metric the model has not: the project file is wrong
    except LoopmlError as exc:
        problems.append(f"performance: {exc}")
    if win.on_log:
        name = model.split("@", 1)[0]
        frame = select_window(read_window(ws, name, win, now=at), win, now=at, allow_empty=True)
        if len(frame) and frame["latency_ms"].notna().any():
            latency = float(frame["latency_ms"].dropna().quantile(0.99))
    outcome = evaluate_alerts(
        config, model, drift=drift, performance=perf, latency_p99_ms=latency, serving=serving
    )
    raised = None
    if send and outcome.alerts:
        key = f"{win.text}@{window_key(at)}"
        raised = raise_alerts(ws, config, outcome.alerts, key=key, sleep=sleep)
    return MonitorCheck(model, win.text, drift, perf, latency, outcome, raised, problems)


def _metric_of(config: AlertConfig) -> str | None:
    metrics = [r.metric for r in config.rules if r.when == "metric" and r.metric]
    return metrics[0] if metrics else None


def window_key(at: datetime | None = None) -> str:
    """A dedupe key for a check's window: its end, to the minute (UTC)."""
    return (at or utcnow()).strftime("%Y-%m-%dT%H:%M")


__all__ = [
    "WHEN",
    "Alert",
    "AlertConfig",
    "AlertOutcome",
    "AlertRule",
    "Delivery",
    "MonitorCheck",
    "RaisedAlerts",
    "ServingStats",
    "WebhookSpec",
    "check_model",
    "evaluate_alerts",
    "parse_alerts",
    "raise_alerts",
    "send_webhook",
    "serving_stats",
    "window_key",
]
