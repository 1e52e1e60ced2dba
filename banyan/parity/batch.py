"""A batch of parity records aggregated in memory, before the store writes it in one go.

Counters, field counts, latency buckets, noise and skips are summed per key (the store adds them
to its rows, :mod:`banyan.parity.flush`); rollbacks and examples are listed. An example keeps the
request and both answers redacted (``banyan/parity/redact.py``) and its differences shortened, so
nothing unredacted or unbounded reaches the store.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from banyan.parity.models import ComparisonRecord, NoiseRecord, ParityItem, RollbackRecord
from banyan.parity.redact import redact_body, redact_difference, redact_headers, redact_url
from banyan.parity.tables import HOUR, bucket_of

# (feature, endpoint, pattern) -> the path counted: the pattern, or ``other`` past the cap
PathOf = Callable[[str, str, str], str]

DIFFERENCES_PER_EXAMPLE = 50


@dataclass
class Batch:
    counters: dict[tuple[str, str, int], dict[str, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int))
    )
    fields: dict[tuple[str, str, str, str, int], int] = field(
        default_factory=lambda: defaultdict(int)
    )
    latency: dict[tuple[str, str, int, int], int] = field(default_factory=lambda: defaultdict(int))
    noise: dict[tuple[str, str, str], int] = field(default_factory=lambda: defaultdict(int))
    skips: dict[tuple[str, str, str, int], int] = field(default_factory=lambda: defaultdict(int))
    rollbacks: list[dict[str, Any]] = field(default_factory=list)
    examples: list[dict[str, Any]] = field(default_factory=list)

    def add(self, item: ParityItem, path_of: PathOf) -> None:
        """Count one record of any kind (a skip is any record not named here)."""
        if isinstance(item, ComparisonRecord):
            self.add_comparison(item, path_of)
        elif isinstance(item, NoiseRecord):
            for pattern in item.patterns:
                self.noise[(item.feature, item.endpoint, pattern)] += 1
        elif isinstance(item, RollbackRecord):
            self.rollbacks.append(
                {
                    "feature": item.feature,
                    "at": item.at,
                    "rule": item.rule,
                    "observed": item.observed,
                    "limit": item.limit,
                    "samples": item.samples,
                    "message": item.message,
                }
            )
        else:
            hour = int(time.time()) // HOUR * HOUR
            self.counters[(item.feature, item.endpoint, hour)]["skipped"] += 1
            self.skips[(item.feature, item.endpoint, item.reason, hour)] += 1

    def add_comparison(self, record: ComparisonRecord, path_of: PathOf) -> None:
        """Count a comparison's outcome and both latencies; one example per differing path and
        kind."""
        hour = int(record.at) // HOUR * HOUR
        result = record.comparison
        row = self.counters[(record.feature, record.endpoint, hour)]
        row["compared"] += 1
        if result.error:
            row["errors"] += 1
        elif result.match:
            row["matched"] += 1
        else:
            row["mismatched"] += 1
        for backend, answer in (
            (record.primary_backend, record.primary),
            (record.candidate_backend, record.candidate),
        ):
            if answer.error is None:
                self.latency[(record.feature, backend, bucket_of(answer.latency_ms), hour)] += 1
        seen_paths: set[tuple[str, str]] = set()
        for difference in result.differences:
            pattern = path_of(record.feature, record.endpoint, difference.pattern)
            key = (pattern, difference.kind)
            if key in seen_paths:
                continue
            seen_paths.add(key)
            self.fields[(record.feature, record.endpoint, pattern, difference.kind, hour)] += 1
            self.examples.append(example_row(record, pattern, difference.kind))


def example_row(record: ComparisonRecord, path: str, kind: str) -> dict[str, Any]:
    """The example row of a comparison for one differing path: everything redacted."""
    return {
        "feature": record.feature,
        "endpoint": record.endpoint,
        "path": path,
        "kind": kind,
        "at": record.at,
        "method": record.method,
        "url": redact_url(record.path, record.redact),
        "request": json.dumps(
            {
                "headers": redact_headers(dict(record.request_headers), record.redact),
                "body": redact_body(record.request_body or b"", record.redact),
            }
        ),
        "primary_backend": record.primary_backend,
        "candidate_backend": record.candidate_backend,
        "primary_answer": json.dumps(_answer(record.primary, record.redact)),
        "candidate_answer": json.dumps(_answer(record.candidate, record.redact)),
        "differences": json.dumps(
            [
                _shortened(redact_difference(d.as_dict(), record.redact))
                for d in record.comparison.differences[:DIFFERENCES_PER_EXAMPLE]
            ],
            default=str,
        ),
    }


def _answer(response: Any, redact: Iterable[str]) -> dict[str, Any]:
    return {
        "status": response.status,
        "headers": redact_headers(dict(response.headers), redact),
        "body": redact_body(response.body, redact),
        "latency_ms": round(response.latency_ms, 3),
        "error": response.error,
    }


def _shortened(difference: dict[str, Any]) -> dict[str, Any]:
    return {
        **difference,
        "primary": _short(difference["primary"]),
        "candidate": _short(difference["candidate"]),
    }


def _short(value: Any, limit: int = 500) -> Any:
    text = json.dumps(value, default=str)
    return value if len(text) <= limit else text[:limit] + "…"
