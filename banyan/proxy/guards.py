"""Automatic rollback guards: sliding windows of the new backend's health per feature.

For each feature with a ``guards:`` block the proxy feeds every answered request (backend, whether
it failed, latency) and every parity comparison (match or not) into a :class:`FeatureGuard`. A
guard judges only full evidence: the error rate once ``min_samples`` requests went to new, the
mismatch rate once as many comparisons were made, the latency ratio once both backends have that
many samples (ratio of the new backend's median latency to legacy's). The first rule breached
yields a :class:`Breach`; the proxy then rolls the feature back to legacy (flag file, audit log,
metrics, log). A guard is reset whenever the feature's flags change, and it never re-promotes.

A request "fails" for a guard when the backend could not answer (connection error, timeout) or
answered with a 5xx status.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass

from banyan.proxy.flags import GuardConfig

MIN_SAMPLES = 20


@dataclass(frozen=True, slots=True)
class Breach:
    feature: str
    rule: str  # max_error_rate | max_mismatch_rate | max_latency_ratio
    observed: float
    limit: float
    samples: int

    @property
    def message(self) -> str:
        return (
            f"guard {self.rule} breached for {self.feature}: observed {self.observed:.4g} "
            f"> limit {self.limit:g} over {self.samples} samples"
        )


class FeatureGuard:
    def __init__(
        self, feature: str, config: GuardConfig, *, min_samples: int = MIN_SAMPLES
    ) -> None:
        self.feature = feature
        self.config = config
        self.min_samples = max(1, min(min_samples, config.window))
        size = config.window
        self._new_failed: deque[bool] = deque(maxlen=size)
        self._mismatch: deque[bool] = deque(maxlen=size)
        self._latency: dict[str, deque[float]] = {
            "legacy": deque(maxlen=size),
            "new": deque(maxlen=size),
        }
        self.tripped: Breach | None = None

    @property
    def enabled(self) -> bool:
        c = self.config
        return any(
            x is not None for x in (c.max_error_rate, c.max_mismatch_rate, c.max_latency_ratio)
        )

    def observe_request(self, backend: str, failed: bool, latency_ms: float) -> None:
        if backend == "new":
            self._new_failed.append(failed)
        if not failed and backend in self._latency:
            self._latency[backend].append(latency_ms)

    def observe_parity(self, mismatch: bool) -> None:
        self._mismatch.append(mismatch)

    def rates(self) -> dict[str, float | int | None]:
        """Current figures (for status pages), whether or not they are judged yet."""
        legacy, new = self._latency["legacy"], self._latency["new"]
        return {
            "error_rate": _rate(self._new_failed),
            "mismatch_rate": _rate(self._mismatch),
            "latency_ratio": _ratio(new, legacy),
            "new_samples": len(self._new_failed),
            "parity_samples": len(self._mismatch),
        }

    def evaluate(self) -> Breach | None:
        """The first breached rule with enough samples, or None. Remembers the first breach."""
        if self.tripped is not None:
            return None
        breach = self._check()
        if breach is not None:
            self.tripped = breach
        return breach

    def _check(self) -> Breach | None:
        c = self.config
        if c.max_error_rate is not None and len(self._new_failed) >= self.min_samples:
            rate = _rate(self._new_failed) or 0.0
            if rate > c.max_error_rate:
                return Breach(
                    self.feature, "max_error_rate", rate, c.max_error_rate, len(self._new_failed)
                )
        if c.max_mismatch_rate is not None and len(self._mismatch) >= self.min_samples:
            rate = _rate(self._mismatch) or 0.0
            if rate > c.max_mismatch_rate:
                return Breach(
                    self.feature,
                    "max_mismatch_rate",
                    rate,
                    c.max_mismatch_rate,
                    len(self._mismatch),
                )
        legacy, new = self._latency["legacy"], self._latency["new"]
        if (
            c.max_latency_ratio is not None
            and len(legacy) >= self.min_samples
            and len(new) >= self.min_samples
        ):
            ratio = _ratio(new, legacy) or 0.0
            if ratio > c.max_latency_ratio:
                return Breach(
                    self.feature, "max_latency_ratio", ratio, c.max_latency_ratio, len(new)
                )
        return None


def _rate(window: deque[bool]) -> float | None:
    return sum(window) / len(window) if window else None


def _ratio(new: deque[float], legacy: deque[float]) -> float | None:
    if not new or not legacy:
        return None
    base = statistics.median(legacy)
    return statistics.median(new) / base if base > 0 else None


class GuardBoard:
    """One guard per guarded feature, rebuilt when that feature's flags change."""

    def __init__(self, *, min_samples: int = MIN_SAMPLES) -> None:
        self.min_samples = min_samples
        self._guards: dict[str, FeatureGuard] = {}
        self._configs: dict[str, tuple[str, GuardConfig]] = {}

    def sync(self, features: dict[str, tuple[str, GuardConfig]]) -> None:
        """``features`` maps name -> (mode fingerprint, guard config); changed ones are reset."""
        for name, (fingerprint, config) in features.items():
            if self._configs.get(name) != (fingerprint, config):
                self._configs[name] = (fingerprint, config)
                guard = FeatureGuard(name, config, min_samples=self.min_samples)
                if guard.enabled:
                    self._guards[name] = guard
                else:
                    self._guards.pop(name, None)
        for name in list(self._guards):
            if name not in features:
                del self._guards[name]
                self._configs.pop(name, None)

    def get(self, feature: str) -> FeatureGuard | None:
        return self._guards.get(feature)

    def all(self) -> dict[str, FeatureGuard]:
        return dict(self._guards)
