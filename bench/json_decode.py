"""What the contract's JSON rules cost per body: ``jsonbody.loads`` against a bare ``json.loads``.

python -m bench.json_decode

Bodies: a typical session create, an analytics batch of 500 events, a 64 KiB context, a 1 MiB
text, and the hostile ones issue 15 found (100,000 ``[``, a wide 1 MiB of ``[]``, 200,000 escaped
quotes). Prints microseconds per decode (best of 5 rounds); a refused body counts its refusal.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

from banyan.backends.common import jsonbody
from banyan.backends.common.errors import ApiError

EVENT = {"name": "page.view", "at": "2026-11-23T07:00:00.000Z", "properties": {"page": "home"}}
BODIES: dict[str, bytes] = {
    "session create": json.dumps({"title": "Fractions", "folder_id": None}).encode(),
    "analytics 500 events": json.dumps({"events": [EVENT] * 500}).encode(),
    "context 64 KiB": json.dumps({"context": {f"k{i}": "v" * 50 for i in range(1200)}}).encode(),
    "text 1 MiB": json.dumps({"text": "x" * (2**20 - 20)}).encode(),
    "100,000 [": b"[" * 100_000,
    "1 MiB of []": b"[" + b"[]," * 349_000 + b"[]]",
    "200,000 escaped quotes": b'["' + b'\\"' * 200_000 + b'"]',
}


def per_call_us(decode: Callable[[bytes], Any], body: bytes, rounds: int = 5) -> float:
    best = float("inf")
    repeat = max(1, 200_000 // max(len(body), 1))
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(repeat):
            with contextlib.suppress(ApiError, ValueError, RecursionError):
                decode(body)
        best = min(best, (time.perf_counter() - started) / repeat)
    return best * 1e6


def main() -> None:
    print(f"{'body':<24} {'bytes':>9} {'json.loads us':>14} {'jsonbody us':>12}")
    for name, body in BODIES.items():
        bare = per_call_us(json.loads, body)
        ours = per_call_us(jsonbody.loads, body)
        print(f"{name:<24} {len(body):>9} {bare:>14.1f} {ours:>12.1f}")


if __name__ == "__main__":
    main()
