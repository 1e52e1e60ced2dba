"""What one shadowed request leaves behind for the parity store."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from banyan.parity.compare import Comparison, Response


@dataclass(slots=True)
class ComparisonRecord:
    feature: str
    endpoint: str
    method: str
    path: str
    request_headers: Mapping[str, str]
    request_body: bytes | None
    primary_backend: str
    candidate_backend: str
    primary: Response
    candidate: Response
    comparison: Comparison
    redact: tuple[str, ...] = ()
    at: float = field(default_factory=time.time)


@dataclass(slots=True)
class NoiseRecord:
    feature: str
    endpoint: str
    patterns: list[str]


@dataclass(slots=True)
class SkipRecord:
    feature: str
    endpoint: str
    reason: str  # body_too_large | candidate_timeout | queue_full ...


@dataclass(slots=True)
class RollbackRecord:
    """A guard rolled a feature back: shown on the feature's report."""

    feature: str
    rule: str
    observed: float
    limit: float
    samples: int
    message: str
    at: float = field(default_factory=time.time)


ParityItem = ComparisonRecord | NoiseRecord | SkipRecord | RollbackRecord
