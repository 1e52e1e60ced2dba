"""Observer of each finished exchange: the Prometheus counters and the status page's counts.

Depends on the metrics registry and one dict of counts, nothing else; called once per exchange
(HTTP or a WebSocket's handshake) after the answer went out.
"""

from __future__ import annotations

from banyan.errors import UpstreamTimeout
from banyan.proxy.forward import UPSTREAM_FAILURES, Exchange
from banyan.proxy.metrics import ProxyMetrics

Counts = dict[tuple[str, str], int]  # (feature, backend) -> requests answered


class ExchangeMetrics:
    def __init__(self, metrics: ProxyMetrics, counts: Counts) -> None:
        self.metrics = metrics
        self.counts = counts

    def observe(self, exchange: Exchange) -> None:
        metrics = self.metrics
        status = str(exchange.status or (504 if exchange.error == UpstreamTimeout.kind else 502))
        metrics.requests.inc(exchange.feature, exchange.backend, status)
        metrics.latency.observe(exchange.feature, exchange.backend, value=exchange.head_latency)
        self.counts[(exchange.feature, exchange.backend)] += 1
        if exchange.error in UPSTREAM_FAILURES:
            metrics.upstream_errors.inc(exchange.feature, exchange.backend, exchange.error)
