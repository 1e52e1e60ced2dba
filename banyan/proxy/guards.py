"""Automatic rollback guards: sliding windows of the new backend's health per feature.

For each feature with a ``guards:`` block the proxy feeds every answered request (backend, whether
it failed, latency) and every parity comparison (match or not) into a :class:`FeatureGuard`. A
guard judges only full evidence: the error rate once ``min_samples`` requests went to new, the
mismatch rate once as many comparisons were made, the latency ratio (of the new backend's median
latency to legacy's) once both backends have half a window of samples, at least that many. The
first rule breached yields a :class:`Breach`; the proxy then rolls the feature back to legacy
(flag file, audit log, metrics, log). A guard is reset whenever the feature's flags change, and
it never re-promotes.

A request "fails" for a guard when the backend could not answer (connection error, timeout) or
answered with a 5xx status.

``max_status_shift`` is the share of new's answers in a refusal class (401, 403, 404, other 4xx)
that legacy does not give for the same kind of request. Two sources feed it: shadow comparisons,
where both answers to one request are known (:meth:`FeatureGuard.observe_pair`: new refused what
legacy answered below 400), and, in canary, per-endpoint status-class rates of each side (the
excess of new's rate of each refusal class over legacy's on the same endpoint, weighted by new's
answers there). A request legacy refuses too (malformed, unauthenticated) or that legacy could not
serve is never evidence against new; requests the proxy refused itself never reach a guard.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass
from typing import Any

from banyan.proxy.flags import GuardConfig

MIN_SAMPLES = 20
MAX_ENDPOINTS = 256  # per side: endpoints past this many are not tracked for the status shift
REFUSALS = ("401", "403", "404", "4xx")


def status_class(status: int) -> str:
    """``401``, ``403``, ``404``, or the hundreds (``2xx``, ``4xx``, ``5xx``...)."""
    if status in (401, 403, 404):
        return str(status)
    return f"{status // 100}xx"


@dataclass(frozen=True, slots=True)
class Breach:
    feature: str
    rule: str  # max_error_rate | max_mismatch_rate | max_status_shift | max_latency_ratio
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
        # a median is judged over half a window at least: medians of 20 millisecond answers
        # swing by half on a busy machine, and a guard that trips on that rolls back for nothing
        self.latency_samples = max(self.min_samples, config.window // 2)
        size = config.window
        self._new_failed: deque[bool] = deque(maxlen=size)
        self._mismatch: deque[bool] = deque(maxlen=size)
        self._latency: dict[str, deque[float]] = {
            "legacy": deque(maxlen=size),
            "new": deque(maxlen=size),
        }
        self._shifted: deque[bool] = deque(maxlen=size)  # shadow pairs legacy answered < 400
        self._classes: dict[str, dict[str, deque[str]]] = {"legacy": {}, "new": {}}
        self.tripped: Breach | None = None

    @property
    def enabled(self) -> bool:
        c = self.config
        return any(
            x is not None
            for x in (
                c.max_error_rate,
                c.max_mismatch_rate,
                c.max_latency_ratio,
                c.max_status_shift,
            )
        )

    def observe_request(
        self,
        backend: str,
        failed: bool,
        latency_ms: float,
        *,
        endpoint: str | None = None,
        status: int = 0,
    ) -> None:
        if backend == "new":
            self._new_failed.append(failed)
        if not failed and backend in self._latency:
            self._latency[backend].append(latency_ms)
        if endpoint is not None and status and backend in self._classes:
            side = self._classes[backend]
            window = side.get(endpoint)
            if window is None:
                if len(side) >= MAX_ENDPOINTS:
                    return
                window = side[endpoint] = deque(maxlen=self.config.window)
            window.append(status_class(status))

    def observe_pair(self, legacy_status: int, new_status: int) -> None:
        """Both answers to one shadowed request (0: that side gave none). Only a request legacy
        served (below 400) and new answered at all is evidence."""
        if not 0 < legacy_status < 400 or not new_status:
            return
        self._shifted.append(400 <= new_status < 500)

    def observe_parity(self, mismatch: bool) -> None:
        self._mismatch.append(mismatch)

    def observe_comparison(self, outcome: str) -> None:
        """One shadow comparison's outcome (``match | mismatch | error``). An error (the
        candidate timed out or refused) is no verdict on parity: it never enters the mismatch
        window, so ``max_mismatch_rate`` cannot trip on a candidate that is merely down."""
        if outcome != "error":
            self._mismatch.append(outcome == "mismatch")

    def rates(self) -> dict[str, float | int | None]:
        """Current figures (for status pages), whether or not they are judged yet."""
        legacy, new = self._latency["legacy"], self._latency["new"]
        return {
            "error_rate": _rate(self._new_failed),
            "mismatch_rate": _rate(self._mismatch),
            "latency_ratio": _ratio(new, legacy),
            "status_shift": self.status_shift()[0],
            "new_samples": len(self._new_failed),
            "parity_samples": len(self._mismatch),
        }

    def latency_medians(self) -> dict[str, float | None]:
        """Each side's median answer time in milliseconds (None: no answer yet): what a latency
        ratio was made of, so whoever reads a breach sees whether it is 2 ms against 6 ms or
        200 ms against 600 ms."""
        medians = {side: _median(values) for side, values in self._latency.items()}
        return {side: None if m is None else round(m, 3) for side, m in medians.items()}

    def status_shift(self) -> tuple[float | None, int]:
        """(shift, samples) judged from whichever source has more evidence: shadow pairs, or the
        canary estimate over endpoints both sides answered."""
        pairs = (_rate(self._shifted), len(self._shifted))
        canary = self._canary_shift()
        return canary if canary[1] > pairs[1] else pairs

    def _canary_shift(self) -> tuple[float | None, int]:
        legacy = self._classes["legacy"]
        shifted, counted = 0.0, 0
        for endpoint, new in self._classes["new"].items():
            base = legacy.get(endpoint)
            if not base or not new:
                continue
            new_counts, base_counts = _counts(new), _counts(base)
            excess = sum(
                max(0.0, new_counts[k] / len(new) - base_counts[k] / len(base)) for k in REFUSALS
            )
            shifted += excess * len(new)
            counted += len(new)
        return (shifted / counted if counted else None), counted

    def export(self) -> dict[str, Any]:
        """The window's evidence as plain data: what a shared store sums across replicas."""
        return {
            "new_failed": [int(x) for x in self._new_failed],
            "mismatch": [int(x) for x in self._mismatch],
            "latency": {side: list(values) for side, values in self._latency.items()},
            "shifted": [int(x) for x in self._shifted],
            "classes": {
                side: {endpoint: list(w) for endpoint, w in windows.items()}
                for side, windows in self._classes.items()
            },
        }

    @classmethod
    def combined(
        cls,
        feature: str,
        config: GuardConfig,
        exports: list[dict[str, Any]],
        *,
        min_samples: int = MIN_SAMPLES,
    ) -> FeatureGuard:
        """One guard holding all of ``exports``' evidence (replicas' windows side by side, none
        cut to ``window``), judged by the same rules as a single replica's."""
        guard = cls(feature, config, min_samples=min_samples)
        guard.absorb(exports)
        return guard

    def absorb(self, exports: list[dict[str, Any]]) -> None:
        """Replace this window's evidence with all of ``exports``' (see :meth:`combined`)."""
        self._new_failed = deque(bool(x) for e in exports for x in e.get("new_failed", ()))
        self._mismatch = deque(bool(x) for e in exports for x in e.get("mismatch", ()))
        self._shifted = deque(bool(x) for e in exports for x in e.get("shifted", ()))
        for side in ("legacy", "new"):
            self._latency[side] = deque(
                float(x) for e in exports for x in e.get("latency", {}).get(side, ())
            )
            merged: dict[str, deque[str]] = {}
            for e in exports:
                for endpoint, kinds in e.get("classes", {}).get(side, {}).items():
                    merged.setdefault(endpoint, deque()).extend(str(k) for k in kinds)
            self._classes[side] = merged

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
        if c.max_status_shift is not None:
            shift, samples = self.status_shift()
            if shift is not None and samples >= self.min_samples and shift > c.max_status_shift:
                return Breach(self.feature, "max_status_shift", shift, c.max_status_shift, samples)
        legacy, new = self._latency["legacy"], self._latency["new"]
        if (
            c.max_latency_ratio is not None
            and len(legacy) >= self.latency_samples
            and len(new) >= self.latency_samples
        ):
            ratio = _ratio(new, legacy) or 0.0
            if ratio > c.max_latency_ratio:
                return Breach(
                    self.feature, "max_latency_ratio", ratio, c.max_latency_ratio, len(new)
                )
        return None


def _rate(window: deque[bool]) -> float | None:
    return sum(window) / len(window) if window else None


def _counts(window: deque[str]) -> dict[str, int]:
    counts = dict.fromkeys(REFUSALS, 0)
    for kind in window:
        if kind in counts:
            counts[kind] += 1
    return counts


def _median(values: deque[float]) -> float | None:
    return statistics.median(values) if values else None


def _ratio(new: deque[float], legacy: deque[float]) -> float | None:
    top, base = _median(new), _median(legacy)
    if top is None or base is None:
        return None
    return top / base if base > 0 else None


class GuardBoard:
    """One guard per guarded feature, rebuilt when that feature's flags change; plus windows
    :meth:`attach`-ed by others (a rollout's analysis of its step), fed the same evidence but
    judged by whoever attached them and kept across flag changes."""

    def __init__(self, *, min_samples: int = MIN_SAMPLES) -> None:
        self.min_samples = min_samples
        self._guards: dict[str, FeatureGuard] = {}
        self._configs: dict[str, tuple[str, GuardConfig]] = {}
        self._attached: dict[str, list[FeatureGuard]] = {}

    def attach(self, guard: FeatureGuard) -> None:
        self._attached.setdefault(guard.feature, []).append(guard)

    def detach(self, guard: FeatureGuard) -> None:
        attached = self._attached.get(guard.feature, [])
        if guard in attached:
            attached.remove(guard)
        if not attached:
            self._attached.pop(guard.feature, None)

    def observers(self, feature: str) -> list[FeatureGuard]:
        """Every window ``feature``'s evidence goes to: its guard, then attached ones."""
        guard = self._guards.get(feature)
        attached = self._attached.get(feature, [])
        return attached if guard is None else [guard, *attached]

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
