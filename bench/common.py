"""Shared bits of the benchmarks: percentiles, a timing recorder and markdown tables."""

from __future__ import annotations

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
