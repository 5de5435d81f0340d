"""Alerts: rules from loopml.yaml, evaluated on a real check, sent to an HTTP receiver on
127.0.0.1 started here, recorded as monitor events with their evidence."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from loopml.errors import ConfigError
from loopml.monitor.alerts import (
    AlertConfig,
    AlertRule,
    WebhookSpec,
    check_model,
    parse_alerts,
    send_webhook,
)
from loopml.monitor.events import list_events
from loopml.workspace import Workspace

from .logparts import cancer, label, labels_of, log_rows, train_cancer

NOW = datetime(2026, 11, 3, 12, tzinfo=UTC)


class Receiver:
    """An HTTP server on 127.0.0.1 that keeps what it is sent; answers ``codes`` in turn."""

    def __init__(self, codes: list[int] | None = None) -> None:
        self.codes = list(codes or [])
        self.posts: list[tuple[dict[str, str], dict[str, Any]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                code = outer.codes.pop(0) if outer.codes else 200
                if code == 200:
                    outer.posts.append((dict(self.headers), json.loads(body)))
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def decayed(workspace: Workspace) -> Workspace:
    """A model whose last day of traffic is shifted and whose labels say it is wrong."""
    train_cancer(workspace)
    data = cancer().sample(400, random_state=1)
    x = data.drop(columns=["target"])
    shifted = x * 1.5
    ids = log_rows(workspace, "cancer", shifted, NOW - timedelta(hours=3))
    flipped = [1 - v for v in labels_of(data)]  # type: ignore[operator]
    label(workspace, ids, flipped, NOW - timedelta(hours=1))
    return workspace


def _monitor(url: str, **hook: Any) -> dict[str, Any]:
    return {
        "drift": {"psi": 0.25},
        "alerts": [
            {"when": "drift", "features": 3},
            {"when": "metric", "metric": "roc_auc", "below": 0.7},
            {"when": "latency_p99_ms", "above": 0.5},
            {"when": "error_rate", "above": 0.01},
        ],
        "webhook": {"url": url, "token_env": "LOOPML_TEST_HOOK_TOKEN", **hook},
    }


def test_rules_fire_are_sent_once_and_recorded_with_evidence(
    decayed: Workspace, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOPML_TEST_HOOK_TOKEN", "s3cret")
    result = check_model(decayed, "cancer", _monitor(receiver.url), window="1d", now=NOW)
    fired = {a.rule.name for a in result.outcome.alerts}
    assert fired == {"drift>=3", "metric:roc_auc<0.7", "latency_p99_ms>0.5"}
    assert any(s.startswith("error_rate>0.01: no request counts") for s in result.outcome.skipped)
    assert len(receiver.posts) == 1
    headers, body = receiver.posts[0]
    assert headers["Authorization"] == "Bearer s3cret"
    assert {a["rule"] for a in body["alerts"]} == fired
    metric = next(a for a in body["alerts"] if a["when"] == "metric")
    assert metric["value"] < 0.7 and metric["evidence"]["n_labelled"] == 400
    events = list_events(decayed, model="cancer", kind="alert")
    assert {e.evidence["rule"]["when"] for e in events} == {"drift", "metric", "latency_p99_ms"}
    drift_event = next(e for e in events if e.evidence["rule"]["when"] == "drift")
    assert len(drift_event.evidence["drifted_features"]) >= 3
    assert result.raised is not None and result.raised.delivery is not None
    assert result.raised.delivery.ok and result.raised.delivery.attempts == 1
    # the same window checked again: nothing new recorded or sent
    again = check_model(decayed, "cancer", _monitor(receiver.url), window="1d", now=NOW)
    assert again.raised is not None and len(again.raised.repeated) == 3
    assert len(receiver.posts) == 1
    assert len(list_events(decayed, model="cancer", kind="alert")) == 3


def test_a_webhook_that_is_down_is_recorded_never_raised(decayed: Workspace) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/hook"
    waits: list[float] = []
    result = check_model(
        decayed,
        "cancer",
        _monitor(url, retries=2, backoff_s=0.2),
        window="1d",
        now=NOW,
        sleep=waits.append,
    )
    assert result.raised is not None and result.raised.delivery is not None
    assert not result.raised.delivery.ok and result.raised.delivery.attempts == 3
    assert waits == [0.2, 0.4]  # exponential backoff
    errors = list_events(decayed, model="cancer", kind="error")
    assert len(errors) == 1 and "failed after 3 attempts" in errors[0].reason
    assert errors[0].evidence["delivery"]["ok"] is False
    assert len(list_events(decayed, model="cancer", kind="alert")) == 3


def test_a_receiver_that_fails_twice_gets_it_on_the_third_try() -> None:
    r = Receiver(codes=[503, 503])
    try:
        spec = WebhookSpec(url=r.url, retries=3, backoff_s=0.0)
        delivery = send_webhook(spec, {"alerts": []}, sleep=lambda s: None)
        assert delivery.ok and delivery.attempts == 3 and len(r.posts) == 1
        r.codes = [400]
        refused = send_webhook(spec, {"alerts": []}, sleep=lambda s: None)
        assert not refused.ok and refused.attempts == 1 and refused.status == 400
    finally:
        r.close()


def test_no_alert_on_missing_evidence(workspace: Workspace) -> None:
    train_cancer(workspace)
    x = cancer().drop(columns=["target"]).sample(200, random_state=2)
    log_rows(workspace, "cancer", x, NOW - timedelta(hours=2))  # no labels, same distribution
    monitor = {"alerts": [{"when": "metric", "metric": "roc_auc", "below": 0.9}]}
    result = check_model(workspace, "cancer", monitor, window="1d", now=NOW)
    assert result.outcome.alerts == []
    assert result.outcome.skipped and "labelled" in result.outcome.skipped[0]
    assert result.raised is None
    empty = check_model(workspace, "cancer", monitor, window="1h", now=NOW)  # no traffic
    assert any("holds no predictions" in p for p in empty.problems)
    assert empty.outcome.alerts == []


@pytest.mark.parametrize(
    ("alerts", "match"),
    [
        ([{"when": "drfit"}], r"monitor.alerts\[0\].when must be one of"),
        ([{"when": "drift", "featurs": 2}], "unknown key 'featurs'"),
        ([{"when": "metric", "metric": "auc", "below": 0.7}], "unknown metric 'auc'"),
        ([{"when": "metric", "metric": "roc_auc"}], "exactly one of below: or above:"),
        ([{"when": "latency_p99_ms"}], r"monitor.alerts\[0\].above must be"),
        ({"when": "drift"}, "monitor.alerts must be a list"),
    ],
)
def test_bad_rules_are_config_errors_naming_the_field(alerts: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_alerts({"alerts": alerts})


def test_bad_webhook_and_rule_names() -> None:
    with pytest.raises(ConfigError, match=r"monitor\.webhook\.url must be an http"):
        parse_alerts({"webhook": {"url": "ftp://x"}})
    config = parse_alerts({"alerts": [{"when": "drift", "share": 0.5}], "webhook": "http://h/"})
    assert config == AlertConfig((AlertRule("drift", share=0.5),), WebhookSpec("http://h/"))
    assert config.rules[0].name == "drift>=0.5"


def test_a_metric_the_model_has_not_is_a_config_error(decayed: Workspace) -> None:
    monitor = {"alerts": [{"when": "metric", "metric": "rmse", "above": 1.0}]}
    with pytest.raises(ConfigError, match="unknown classification metric 'rmse'"):
        check_model(decayed, "cancer", monitor, window="1d", now=NOW)


def test_serving_stats_reads_the_servers_own_metrics_text() -> None:
    """The request and error counts of one model from loopml's /metrics text. It used to need
    prometheus_client, which loopml does not install, so the call raised ModuleNotFoundError."""
    from loopml.monitor.alerts import serving_stats
    from loopml.serve.metrics import Metrics

    metrics = Metrics()
    metrics.requests.inc(("cancer", "1", "v1", "200"), 7)
    metrics.requests.inc(("cancer", "2", "v2", "400"), 3)
    metrics.requests.inc(('other "x"', "1", "v1", "200"), 50)
    metrics.errors.inc(("cancer", "2", "v2", "bad_input"), 3)
    metrics.errors.inc(('other "x"', "1", "v1", "bad_input"), 9)
    text = metrics.render()
    stats = serving_stats(text, "cancer")
    assert (stats.requests, stats.errors) == (10, 3)
    other = serving_stats(text, 'other "x"')
    assert (other.requests, other.errors) == (50, 9)
    assert serving_stats(text, "nobody").requests == 0
