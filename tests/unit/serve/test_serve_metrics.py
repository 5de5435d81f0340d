"""The Prometheus text exposition written by hand."""

from __future__ import annotations

import threading

from loopml.serve.metrics import Counter, Histogram, Metrics, parse_exposition


def test_counter_and_label_escaping() -> None:
    c = Counter("t_total", "help text", ("model", "status"))
    c.inc(("a", "200"))
    c.inc(("a", "200"), 2)
    c.inc(('we"ird\\na\nme', "500"))
    lines = c.samples()
    assert 't_total{model="a",status="200"} 3' in lines
    assert 't_total{model="we\\"ird\\\\na\\nme",status="500"} 1' in lines


def test_histogram_is_cumulative_with_sum_and_count() -> None:
    h = Histogram("lat", "latency", ("m",), (0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 3.0):
        h.observe(("x",), v)
    samples = parse_exposition("\n".join(h.samples()))
    assert samples['lat_bucket{m="x",le="0.1"}'] == 2  # le is inclusive
    assert samples['lat_bucket{m="x",le="1"}'] == 3
    assert samples['lat_bucket{m="x",le="+Inf"}'] == 4
    assert samples['lat_count{m="x"}'] == 4
    assert abs(samples['lat_sum{m="x"}'] - 3.65) < 1e-12
    assert h.counts(("x",))[float("inf")] == 4


def test_render_has_help_and_type_for_every_metric_and_is_thread_safe() -> None:
    m = Metrics()
    m.add_gauge("g", "a gauge", (), lambda: {(): 7.0})

    def work() -> None:
        for _ in range(2000):
            m.requests.inc(("a", "1", "v1_predict", "200"))
            m.batch_rows.observe(("a",), 3)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    text = m.render()
    samples = parse_exposition(text)
    assert (
        samples['loopml_requests_total{model="a",version="1",endpoint="v1_predict",status="200"}']
        == 8000
    )
    assert samples['loopml_batch_size_count{model="a"}'] == 8000
    assert samples['loopml_batch_size_bucket{model="a",le="2"}'] == 0
    assert samples['loopml_batch_size_bucket{model="a",le="4"}'] == 8000
    assert samples["g"] == 7
    for line in text.splitlines():
        if line.startswith("# TYPE"):
            assert line.split()[3] in {"counter", "gauge", "histogram"}
    names = [ln.split()[2] for ln in text.splitlines() if ln.startswith("# HELP")]
    assert len(names) == len(set(names))
