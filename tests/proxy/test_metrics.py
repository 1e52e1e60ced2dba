"""Tests for banyan/proxy/metrics.py: the Prometheus text format."""

from __future__ import annotations

import pytest

from banyan.proxy.metrics import ProxyMetrics, Registry


def test_counters_gauges_and_histograms_render() -> None:
    registry = Registry()
    requests = registry.counter("t_requests_total", "Requests", ("path",))
    requests.inc('/a"b\\c\n')
    requests.inc('/a"b\\c\n', amount=2)
    gauge = registry.gauge("t_open", "Open")
    gauge.inc()
    gauge.inc()
    gauge.dec()
    histogram = registry.histogram("t_seconds", "Latency", ("op",))
    for value in (0.0005, 0.02, 0.02, 99.0):
        histogram.observe("get", value=value)
    text = registry.render()
    assert "# HELP t_requests_total Requests\n# TYPE t_requests_total counter\n" in text
    assert 't_requests_total{path="/a\\"b\\\\c\\n"} 3' in text
    assert "t_open 1" in text
    assert 't_seconds_bucket{op="get",le="0.001"} 1' in text
    assert 't_seconds_bucket{op="get",le="0.025"} 3' in text
    assert 't_seconds_bucket{op="get",le="10"} 3' in text
    assert 't_seconds_bucket{op="get",le="+Inf"} 4' in text
    assert 't_seconds_sum{op="get"} 99.0405' in text
    assert 't_seconds_count{op="get"} 4' in text
    assert histogram.count("get") == 4 and histogram.count("put") == 0
    with pytest.raises(ValueError, match="twice"):
        registry.counter("t_open", "again")


def test_proxy_families_exist() -> None:
    metrics = ProxyMetrics()
    metrics.requests.inc("f", "legacy", "200")
    text = metrics.render()
    for family in (
        "banyan_requests_total",
        "banyan_request_duration_seconds",
        "banyan_open_websockets",
        "banyan_shadow_comparisons_total",
        "banyan_flags_info",
        "banyan_rollbacks_total",
        "banyan_backend_up",
    ):
        assert f"# TYPE {family} " in text
