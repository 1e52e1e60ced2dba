"""Prometheus metrics of the proxy: a tiny registry and the text exposition format (0.0.4).

Counters, gauges and histograms keyed by label values; the hot path does a dict lookup and an
addition. ``render()`` writes every family with ``# HELP`` and ``# TYPE`` lines.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable

LabelValues = tuple[str, ...]
DEFAULT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: tuple[str, ...], values: LabelValues, extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Metric:
    kind = "untyped"

    def __init__(self, name: str, help_: str, labels: Iterable[str] = ()) -> None:
        self.name = name
        self.help = help_
        self.label_names = tuple(labels)

    def samples(self) -> Iterable[str]:
        raise NotImplementedError

    def render(self) -> str:
        head = f"# HELP {self.name} {self.help}\n# TYPE {self.name} {self.kind}\n"
        return head + "".join(line + "\n" for line in self.samples())


class Counter(Metric):
    kind = "counter"

    def __init__(self, name: str, help_: str, labels: Iterable[str] = ()) -> None:
        super().__init__(name, help_, labels)
        self.values: dict[LabelValues, float] = {}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def get(self, *labels: str) -> float:
        return self.values.get(labels, 0.0)

    def samples(self) -> Iterable[str]:
        for labels, value in sorted(self.values.items()):
            yield f"{self.name}{_labels(self.label_names, labels)} {_number(value)}"


class Gauge(Counter):
    kind = "gauge"

    def set(self, *labels: str, value: float) -> None:
        self.values[labels] = value

    def dec(self, *labels: str, amount: float = 1.0) -> None:
        self.inc(*labels, amount=-amount)


class Histogram(Metric):
    kind = "histogram"

    def __init__(
        self,
        name: str,
        help_: str,
        labels: Iterable[str] = (),
        buckets: tuple[float, ...] = DEFAULT_BUCKETS,
    ) -> None:
        super().__init__(name, help_, labels)
        self.buckets = tuple(sorted(buckets))
        self.series: dict[LabelValues, list[float]] = {}  # bucket counts..., sum, count

    def observe(self, *labels: str, value: float) -> None:
        row = self.series.get(labels)
        if row is None:
            row = self.series[labels] = [0.0] * (len(self.buckets) + 2)
        index = bisect.bisect_left(self.buckets, value)
        if index < len(self.buckets):
            row[index] += 1
        row[-2] += value
        row[-1] += 1

    def count(self, *labels: str) -> float:
        row = self.series.get(labels)
        return row[-1] if row else 0.0

    def samples(self) -> Iterable[str]:
        for labels, row in sorted(self.series.items()):
            running = 0.0
            for bound, hits in zip(self.buckets, row, strict=False):
                running += hits
                le = _labels(self.label_names, labels, f'le="{_number(bound)}"')
                yield f"{self.name}_bucket{le} {_number(running)}"
            inf = _labels(self.label_names, labels, 'le="+Inf"')
            yield f"{self.name}_bucket{inf} {_number(row[-1])}"
            yield f"{self.name}_sum{_labels(self.label_names, labels)} {_number(row[-2])}"
            yield f"{self.name}_count{_labels(self.label_names, labels)} {_number(row[-1])}"


class Registry:
    def __init__(self) -> None:
        self.metrics: dict[str, Metric] = {}

    def add(self, metric: Metric) -> Metric:
        if metric.name in self.metrics:
            raise ValueError(f"metric {metric.name} registered twice")
        self.metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help_: str, labels: Iterable[str] = ()) -> Counter:
        metric = Counter(name, help_, labels)
        self.add(metric)
        return metric

    def gauge(self, name: str, help_: str, labels: Iterable[str] = ()) -> Gauge:
        metric = Gauge(name, help_, labels)
        self.add(metric)
        return metric

    def histogram(self, name: str, help_: str, labels: Iterable[str] = ()) -> Histogram:
        metric = Histogram(name, help_, labels)
        self.add(metric)
        return metric

    def render(self) -> str:
        return "".join(metric.render() for metric in self.metrics.values())


class ProxyMetrics:
    """The proxy's metric families (names are part of the operations contract)."""

    def __init__(self) -> None:
        r = self.registry = Registry()
        self.requests = r.counter(
            "banyan_requests_total", "Requests answered", ("feature", "backend", "status")
        )
        self.latency = r.histogram(
            "banyan_request_duration_seconds", "Time to the response head", ("feature", "backend")
        )
        self.upstream_errors = r.counter(
            "banyan_upstream_errors_total", "Upstream failures", ("feature", "backend", "kind")
        )
        self.fallbacks = r.counter(
            "banyan_fallbacks_total",
            "Safe requests served by legacy after new failed",
            ("feature",),
        )
        self.open_websockets = r.gauge(
            "banyan_open_websockets", "WebSockets bridged right now", ("feature", "backend")
        )
        self.shadow = r.counter(
            "banyan_shadow_comparisons_total", "Shadow comparisons", ("feature", "result")
        )
        self.shadow_skipped = r.counter(
            "banyan_shadow_skipped_total", "Shadow copies not made", ("feature", "reason")
        )
        self.flags_info = r.gauge("banyan_flags_info", "Flag file version in use", ("digest",))
        self.flag_reloads = r.counter("banyan_flag_reloads_total", "Flag versions applied")
        self.flag_rejected = r.counter("banyan_flag_rejected_total", "Flag versions rejected")
        self.rollbacks = r.counter(
            "banyan_rollbacks_total", "Automatic rollbacks by guards", ("feature", "rule")
        )
        self.backend_up = r.gauge("banyan_backend_up", "Backend health probe", ("backend",))
        self.mirror = r.gauge("banyan_mirror_writes", "Mirror queue entries", ("state",))
        self.refused = r.counter(
            "banyan_refused_total",
            "Requests and sockets refused with 503 at a limit of this process",
            ("limit",),
        )

    def render(self) -> str:
        return self.registry.render()
