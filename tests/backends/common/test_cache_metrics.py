"""Tests of banyan/backends/common/cache_metrics.py: the cache's Prometheus families."""

from __future__ import annotations

from banyan.backends.common import cache_metrics


def test_families_with_help_type_and_backend_label() -> None:
    lines = cache_metrics.lines("new", 3, 4, 5)
    assert "# TYPE banyan_cache_hits_total counter" in lines
    assert 'banyan_cache_hits_total{backend="new"} 3' in lines
    assert 'banyan_cache_misses_total{backend="new"} 4' in lines
    assert "# TYPE banyan_cache_entries gauge" in lines
    assert 'banyan_cache_entries{backend="new"} 5' in lines
