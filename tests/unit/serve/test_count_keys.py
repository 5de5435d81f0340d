"""The answered-request metrics of the hot path (``ModelServer._count_ok``): the label
tuples it caches per (model, version, endpoint) must count exactly what ``_count`` does."""

from __future__ import annotations

from time import perf_counter

from loopml.serve import create_app
from loopml.workspace import Workspace


def test_answered_requests_count_per_model_version_and_endpoint(workspace: Workspace) -> None:
    server = create_app(workspace, reload_interval=0, log_predictions=False).state.server
    m = server.metrics
    t0 = perf_counter()
    for _ in range(3):
        server._count_ok("a", "1", "v1_predict", t0)
    server._count_ok("a", "2", "v1_predict", t0)
    server._count_ok("a", "1", "v2_infer", t0)
    server._count_ok("b", "1", "v1_predict", t0)
    server._count("a", "1", "v1_predict", 200, t0)  # the general path adds to the same series
    assert m.requests.value(("a", "1", "v1_predict", "200")) == 4
    assert m.requests.value(("a", "2", "v1_predict", "200")) == 1
    assert m.requests.value(("a", "1", "v2_infer", "200")) == 1
    assert m.requests.value(("b", "1", "v1_predict", "200")) == 1
    assert m.latency.counts(("a", "1", "v1_predict"))[float("inf")] == 4
    assert m.latency.counts(("a", "1", "v2_infer"))[float("inf")] == 1
    assert m.errors.value(("a", "1", "v1_predict", "200")) == 0


def test_the_cache_of_label_tuples_is_bounded_and_still_counts(workspace: Workspace) -> None:
    server = create_app(workspace, reload_interval=0, log_predictions=False).state.server
    t0 = perf_counter()
    for i in range(5000):  # names come from requests: the cache must not grow without bound
        server._count_ok(f"m{i}", "1", "v1_predict", t0)
    server._count_ok("m0", "1", "v1_predict", t0)
    assert len(server._ok_keys) <= 4096
    assert server.metrics.requests.value(("m0", "1", "v1_predict", "200")) == 2
    assert server.metrics.requests.value(("m4999", "1", "v1_predict", "200")) == 1
