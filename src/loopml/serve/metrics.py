"""Server metrics in the Prometheus text exposition format (version 0.0.4).

A few counters and histograms, thread-safe (the prediction log's writer thread updates its
counters), written out by :meth:`Metrics.render` for ``GET /metrics``. No dependency on
prometheus_client: the format is a handful of lines per series.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

Labels = tuple[str, ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _format_labels(names: Iterable[str], values: Iterable[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _format_number(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


class Counter:
    """A monotonically increasing number per label set."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, labelnames: Labels = ()) -> None:
        self.name = name
        self.help = help_text
        self.labelnames = labelnames
        self._values: dict[Labels, float] = {}
        self._lock = threading.Lock()

    def inc(self, labels: Labels = (), amount: float = 1.0) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, labels: Labels = ()) -> float:
        with self._lock:
            return self._values.get(labels, 0.0)

    def samples(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        if not items and not self.labelnames:
            items = [((), 0.0)]  # an unlabelled counter exists from the start
        return [
            f"{self.name}{_format_labels(self.labelnames, k)} {_format_number(v)}" for k, v in items
        ]


class Gauge:
    """A value read at scrape time from a callback returning ``{labels: value}``."""

    kind = "gauge"

    def __init__(
        self,
        name: str,
        help_text: str,
        labelnames: Labels,
        read: Callable[[], dict[Labels, float]],
    ) -> None:
        self.name = name
        self.help = help_text
        self.labelnames = labelnames
        self._read = read

    def samples(self) -> list[str]:
        return [
            f"{self.name}{_format_labels(self.labelnames, k)} {_format_number(v)}"
            for k, v in sorted(self._read().items())
        ]


class Histogram:
    """Counts of observations in cumulative buckets, with their sum and count."""

    kind = "histogram"

    def __init__(
        self, name: str, help_text: str, labelnames: Labels, buckets: Iterable[float]
    ) -> None:
        self.name = name
        self.help = help_text
        self.labelnames = labelnames
        self.buckets = tuple(sorted(buckets))
        # per label set: [count in each bucket (non-cumulative) + overflow, sum]
        self._data: dict[Labels, tuple[list[int], list[float]]] = {}
        self._lock = threading.Lock()

    def observe(self, labels: Labels, value: float) -> None:
        index = bisect_left(self.buckets, value)
        with self._lock:
            entry = self._data.get(labels)
            if entry is None:
                entry = ([0] * (len(self.buckets) + 1), [0.0])
                self._data[labels] = entry
            entry[0][index] += 1
            entry[1][0] += value

    def counts(self, labels: Labels) -> dict[float, int]:
        """Cumulative count per upper bound (``inf`` last), for tests and reports."""
        with self._lock:
            entry = self._data.get(labels)
            raw = list(entry[0]) if entry else [0] * (len(self.buckets) + 1)
        out: dict[float, int] = {}
        total = 0
        for bound, n in zip((*self.buckets, float("inf")), raw, strict=True):
            total += n
            out[bound] = total
        return out

    def samples(self) -> list[str]:
        with self._lock:
            items = sorted((k, (list(v[0]), v[1][0])) for k, v in self._data.items())
        lines = []
        for labels, (raw, total_sum) in items:
            cumulative = 0
            for bound, n in zip((*self.buckets, float("inf")), raw, strict=True):
                cumulative += n
                le = "+Inf" if bound == float("inf") else _format_number(bound)
                lbl = _format_labels(self.labelnames, labels, f'le="{le}"')
                lines.append(f"{self.name}_bucket{lbl} {cumulative}")
            plain = _format_labels(self.labelnames, labels)
            lines.append(f"{self.name}_sum{plain} {_format_number(total_sum)}")
            lines.append(f"{self.name}_count{plain} {cumulative}")
        return lines


class Metrics:
    """Every metric the server exports."""

    def __init__(self) -> None:
        self.requests = Counter(
            "loopml_requests_total",
            "Requests answered, by model, version, endpoint and HTTP status.",
            ("model", "version", "endpoint", "status"),
        )
        self.latency = Histogram(
            "loopml_request_duration_seconds",
            "Time from receiving a request to having its answer, by model, version and endpoint.",
            ("model", "version", "endpoint"),
            LATENCY_BUCKETS,
        )
        self.batch_rows = Histogram(
            "loopml_batch_size",
            "Rows predicted in one model call (micro-batching across concurrent requests).",
            ("model",),
            BATCH_BUCKETS,
        )
        self.batch_requests = Histogram(
            "loopml_batch_requests",
            "Requests served by one model call.",
            ("model",),
            BATCH_BUCKETS,
        )
        self.errors = Counter(
            "loopml_request_errors_total",
            "Requests answered with an error, by model, version, endpoint and error code.",
            ("model", "version", "endpoint", "code"),
        )
        self.rejected = Counter(
            "loopml_requests_rejected_total",
            "Requests refused with 503 because the model's queue was full (admission control).",
            ("model", "version"),
        )
        self.log_written = Counter(
            "loopml_prediction_log_rows_written_total",
            "Prediction log rows written to the lake.",
        )
        self.log_dropped = Counter(
            "loopml_prediction_log_rows_dropped_total",
            "Prediction log rows dropped because the buffer was full or the server stopped.",
        )
        self.log_errors = Counter(
            "loopml_prediction_log_write_errors_total",
            "Failed attempts to write a prediction log part (retried on the next flush).",
        )
        self.reloads = Counter(
            "loopml_model_reloads_total",
            "Hot reloads of a served model, by result: swapped, refused (the new version "
            "failed to load or warm up; the old one keeps serving) or failed (the registry "
            "could not be read).",
            ("model", "result"),
        )
        self._gauges: list[Gauge] = []

    def add_gauge(
        self,
        name: str,
        help_text: str,
        labelnames: Labels,
        read: Callable[[], dict[Labels, float]],
    ) -> None:
        self._gauges.append(Gauge(name, help_text, labelnames, read))

    def render(self) -> str:
        """The whole exposition, one ``# HELP``/``# TYPE`` header per metric."""
        out: list[str] = []
        metrics: list[Counter | Histogram | Gauge] = [
            self.requests,
            self.latency,
            self.batch_rows,
            self.batch_requests,
            self.errors,
            self.rejected,
            self.log_written,
            self.log_dropped,
            self.log_errors,
            self.reloads,
            *self._gauges,
        ]
        for metric in metrics:
            out.append(f"# HELP {metric.name} {metric.help}")
            out.append(f"# TYPE {metric.name} {metric.kind}")
            out.extend(metric.samples())
        return "\n".join(out) + "\n"


def parse_exposition(text: str) -> dict[str, float]:
    """``{'name{labels}': value}`` for every sample line; for tests and quick checks."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        samples[key] = float(value)
    return samples
