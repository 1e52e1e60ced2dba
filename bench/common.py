"""Shared bits of the benchmarks: percentiles, a timing recorder and markdown tables."""

from __future__ import annotations

import gc
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank; 0.0 for no samples."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))
    return ordered[index]


@contextmanager
def quiet_collector() -> Iterator[None]:
    """Keep the garbage collector of the measuring process still while it measures.

    The load generator is the instrument, not the system under test: a full collection in it
    (tens of milliseconds once its heap has grown) would be counted as latency of whatever requests
    were in flight. Its heap is frozen, collection paused for the measurement, then resumed."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


class Timings:
    """Latency samples in milliseconds per operation name, plus failures."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = defaultdict(list)
        self.failures: dict[str, int] = defaultdict(int)

    @contextmanager
    def measure(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        except Exception:
            self.failures[name] += 1
            raise
        self.samples[name].append((time.perf_counter() - started) * 1000)

    def rows(self) -> list[tuple[str, int, float, float, int]]:
        names = sorted(set(self.samples) | set(self.failures))
        return [
            (
                name,
                len(self.samples[name]),
                percentile(self.samples[name], 0.5),
                percentile(self.samples[name], 0.99),
                self.failures[name],
            )
            for name in names
        ]


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(value: object) -> str:
        return f"{value:.2f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def balanced_orders(count: int) -> list[list[int]]:
    """Orders in which to take ``count`` runs, one order per round, such that over all of them
    (``count`` orders when it is even, twice that when odd) every run takes every place equally
    often and follows every other run equally often (a Williams design).

    Rounds that always take their runs in one order charge whatever the earlier runs leave behind
    (a recorder still writing, a warmer cache, the host's drift within a round) to the later ones;
    taken in these orders, such effects fall on every run alike."""
    first = [0]
    low, high = 1, count - 1
    while low <= high:  # 0, 1, n-1, 2, n-2, ...
        first.append(low)
        low += 1
        if low <= high:
            first.append(high)
            high -= 1
    orders = [[(run + shift) % count for run in first] for shift in range(count)]
    if count % 2:
        orders += [order[::-1] for order in orders]
    return orders
