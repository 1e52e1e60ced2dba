"""The read cache's counters as Prometheus text, named the same on both backends.

``banyan_cache_hits_total``, ``banyan_cache_misses_total`` (counters) and ``banyan_cache_entries``
(gauge), labelled with the backend; each backend adds these lines to its ``/metrics`` with a
collector (:func:`banyan.backends.common.metrics.add_collector`).
"""

from __future__ import annotations

from banyan.backends.common.metrics import family


def lines(backend: str, hits: int, misses: int, entries: int) -> list[str]:
    label = {"backend": backend}
    return [
        *family(
            "banyan_cache_hits_total",
            "counter",
            "Reads answered from the TTL cache.",
            [(label, hits)],
        ),
        *family(
            "banyan_cache_misses_total",
            "counter",
            "Reads the TTL cache could not answer.",
            [(label, misses)],
        ),
        *family("banyan_cache_entries", "gauge", "Entries in the TTL cache.", [(label, entries)]),
    ]
