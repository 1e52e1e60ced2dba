"""What a write stamp costs: ``make_stamp`` (the proxy, per forwarded write and per copy) and
``read_stamp`` (a backend, per stamped write), against the HMAC-SHA256 they are built on.

python -m bench.stamps

Prints microseconds per call, best of 5 rounds of 20,000 calls.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable

from banyan import stamps

SECRET = "s" * 64
USER = "0b5e7c2a-6a51-5c34-9e0e-3f1d2b3c4d5e"
TARGET = "/api/sessions/9cbf3a41-3fef-5a5c-96fa-520ed6c5bc38/messages"
KEY = "3f0c2b1d9e8a4c7b6a5d4e3f2a1b0c9d"
NOW = 1_764_000_000_000


def per_call_us(call: Callable[[], object], rounds: int = 5, calls: int = 20_000) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            call()
        best = min(best, time.perf_counter() - started)
    return best / calls * 1e6


def main() -> None:
    header = stamps.make_stamp(
        secret=SECRET, method="POST", target=TARGET, key=KEY, ms=NOW, mirror=True, user=USER
    )
    message = (TARGET + KEY).encode()
    cases: dict[str, Callable[[], object]] = {
        "hmac.digest (sha256) alone": lambda: hmac.digest(SECRET.encode(), message, "sha256"),
        "make_stamp (mirror)": lambda: stamps.make_stamp(
            secret=SECRET, method="POST", target=TARGET, key=KEY, ms=NOW, mirror=True, user=USER
        ),
        "read_stamp (mirror)": lambda: stamps.read_stamp(
            header, secret=SECRET, method="POST", target=TARGET, key=KEY, now_ms=NOW
        ),
    }
    print(f"{'call':<30} {'us/call':>8}")
    for name, call in cases.items():
        print(f"{name:<30} {per_call_us(call):>8.2f}")


if __name__ == "__main__":
    main()
