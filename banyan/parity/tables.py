"""The parity store's tables and what their columns mean: hourly counters, latency buckets.

Counters per (feature, endpoint, hour), per (feature, endpoint, path, kind, hour) and per
(feature, backend, latency bucket, hour); a few example diffs per (feature, endpoint, path);
learned noise, skipped comparisons and guard rollbacks. Latencies are kept as buckets of ~5%
(:func:`bucket_of`), from which percentiles are read back (:func:`percentile_from_buckets`).
"""

from __future__ import annotations

import math

from sqlalchemy import BigInteger, Column, Float, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()
HOUR = 3600

counters = Table(
    "parity_counters",
    metadata,
    Column("feature", String(200), primary_key=True),
    Column("endpoint", String(500), primary_key=True),
    Column("hour", BigInteger, primary_key=True),
    Column("compared", BigInteger, nullable=False, default=0),
    Column("matched", BigInteger, nullable=False, default=0),
    Column("mismatched", BigInteger, nullable=False, default=0),
    Column("errors", BigInteger, nullable=False, default=0),
    Column("skipped", BigInteger, nullable=False, default=0),
)
fields = Table(
    "parity_fields",
    metadata,
    Column("feature", String(200), primary_key=True),
    Column("endpoint", String(500), primary_key=True),
    Column("path", String(500), primary_key=True),
    Column("kind", String(20), primary_key=True),
    Column("hour", BigInteger, primary_key=True),
    Column("count", BigInteger, nullable=False, default=0),
)
latency = Table(
    "parity_latency",
    metadata,
    Column("feature", String(200), primary_key=True),
    Column("backend", String(20), primary_key=True),
    Column("bucket", Integer, primary_key=True),
    Column("hour", BigInteger, primary_key=True),
    Column("count", BigInteger, nullable=False, default=0),
)
examples = Table(
    "parity_examples",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("feature", String(200), nullable=False),
    Column("endpoint", String(500), nullable=False),
    Column("path", String(500), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("at", Float, nullable=False),
    Column("method", String(10), nullable=False),
    Column("url", Text, nullable=False),
    Column("request", Text, nullable=False),
    Column("primary_backend", String(20), nullable=False),
    Column("candidate_backend", String(20), nullable=False),
    Column("primary_answer", Text, nullable=False),
    Column("candidate_answer", Text, nullable=False),
    Column("differences", Text, nullable=False),
    Index("ix_parity_examples_lookup", "feature", "endpoint", "path"),
)
# Learned noise per feature and endpoint (``parity_noise``, keyed by endpoint alone, is left
# unread: noise learned before it was per feature is learned again).
noise = Table(
    "parity_noise_learned",
    metadata,
    Column("feature", String(200), primary_key=True),
    Column("endpoint", String(500), primary_key=True),
    Column("path", String(500), primary_key=True),
    Column("count", BigInteger, nullable=False, default=0),
)

skips = Table(
    "parity_skips",
    metadata,
    Column("feature", String(200), primary_key=True),
    Column("endpoint", String(500), primary_key=True),
    Column("reason", String(100), primary_key=True),
    Column("hour", BigInteger, primary_key=True),
    Column("count", BigInteger, nullable=False, default=0),
)
rollbacks = Table(
    "parity_rollbacks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("feature", String(200), nullable=False),
    Column("at", Float, nullable=False),
    Column("rule", String(100), nullable=False),
    Column("observed", Float, nullable=False),
    Column("limit", Float, nullable=False),
    Column("samples", BigInteger, nullable=False),
    Column("message", Text, nullable=False),
    Index("ix_parity_rollbacks_feature", "feature", "at"),
)
ROLLBACKS_KEPT = 100  # per feature, the newest
PATHS_PER_ENDPOINT = 100  # distinct differing paths counted per endpoint; the rest as OTHER_PATH
OTHER_PATH = "other"
TABLES = (counters, fields, latency, examples, noise, skips, rollbacks)

# Latency buckets: bucket b holds latencies in (GROWTH**(b-1), GROWTH**b] ms; ~5% resolution.
GROWTH = 1.05


def bucket_of(ms: float) -> int:
    return math.ceil(math.log(max(ms, 0.01), GROWTH))


def bucket_bound(bucket: int) -> float:
    return GROWTH**bucket


def percentile_from_buckets(buckets: dict[int, int], q: float) -> float | None:
    total = sum(buckets.values())
    if not total:
        return None
    rank, seen = q * total, 0
    for bucket in sorted(buckets):
        seen += buckets[bucket]
        if seen >= rank:
            return round(bucket_bound(bucket), 3)
    return round(bucket_bound(max(buckets)), 3)
