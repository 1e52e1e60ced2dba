"""Fault knobs of the model server: server-wide rates and per-request ``X-Banyan-Fault``.

Server-wide: ``fail_rate`` (share of requests answered 500), ``malformed_rate`` (share of
JSON-mode answers that are not valid JSON), ``latency_ms`` (before the first byte),
``token_delay_ms`` (between stream chunks). Which request fails is decided from the seed and a
request counter, so a run is reproducible. Per request, the header ``X-Banyan-Fault`` takes a
comma-separated list of ``fail``, ``rate_limit``, ``slow:<ms>``, ``malformed`` and ``disconnect``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

FAULT_HEADER = "X-Banyan-Fault"
RATE_LIMIT_RETRY_AFTER_MS = 100


@dataclass(frozen=True)
class FaultSettings:
    fail_rate: float = 0.0
    malformed_rate: float = 0.0
    latency_ms: int = 0
    token_delay_ms: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("fail_rate", "malformed_rate"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {rate}")
        for name in ("latency_ms", "token_delay_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")


@dataclass(frozen=True)
class RequestFaults:
    """What goes wrong with one request."""

    fail: bool = False
    rate_limit: bool = False
    slow_ms: int = 0
    malformed: bool = False
    disconnect: bool = False
    names: tuple[str, ...] = field(default=())


def parse_fault_header(value: str | None) -> RequestFaults:
    """Read ``X-Banyan-Fault``; raise ``ValueError`` naming an unknown fault."""
    if not value or not value.strip():
        return RequestFaults()
    flags = {"fail": False, "rate_limit": False, "malformed": False, "disconnect": False}
    slow_ms = 0
    names: list[str] = []
    for raw in value.split(","):
        item = raw.strip().lower()
        if not item:
            continue
        if item.startswith("slow:"):
            try:
                slow_ms = int(item[5:])
            except ValueError:
                raise ValueError(f"slow needs milliseconds, got {item!r}") from None
            if slow_ms < 0:
                raise ValueError("slow needs a non-negative number of milliseconds")
            names.append("slow")
        elif item in flags:
            flags[item] = True
            names.append(item)
        else:
            raise ValueError(
                f"unknown fault {item!r} (use fail, rate_limit, slow:<ms>, malformed, disconnect)"
            )
    return RequestFaults(slow_ms=slow_ms, names=tuple(names), **flags)


def _roll(seed: int, counter: int, kind: str) -> float:
    block = hashlib.sha256(f"{seed}:{counter}:{kind}".encode()).digest()
    return int.from_bytes(block[:8], "big") / 2**64


class FaultPlan:
    """Decides each request's faults from the settings, the request counter and its header."""

    def __init__(self, settings: FaultSettings) -> None:
        self.settings = settings
        self.counter = 0

    def decide(self, header: str | None) -> RequestFaults:
        requested = parse_fault_header(header)
        self.counter += 1
        seed, n = self.settings.seed, self.counter
        fail = requested.fail or _roll(seed, n, "fail") < self.settings.fail_rate
        malformed = (
            requested.malformed or _roll(seed, n, "malformed") < self.settings.malformed_rate
        )
        names = list(requested.names)
        if fail and "fail" not in names:
            names.append("fail")
        if malformed and "malformed" not in names:
            names.append("malformed")
        return RequestFaults(
            fail=fail,
            rate_limit=requested.rate_limit,
            slow_ms=requested.slow_ms,
            malformed=malformed,
            disconnect=requested.disconnect,
            names=tuple(names),
        )


def malform(text: str) -> str:
    """A JSON text cut short: never valid JSON when ``text`` is an object or array."""
    return text[: max(1, (len(text) * 2) // 3)]
