"""Progress reporting for long data jobs: rows done/total, rate and ETA on stderr.

On a TTY the bar redraws one line in place; otherwise it prints plain lines, at most one per
``min_interval`` seconds, so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


def format_eta(seconds: float | None) -> str:
    """Render an ETA as H:MM:SS, or '?' when unknown."""
    if seconds is None or seconds < 0:
        return "?"
    whole = int(seconds + 0.5)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class Progress:
    """Counts rows for one table and renders a bar or plain lines to a stream."""

    def __init__(
        self,
        label: str,
        total: int,
        *,
        stream: TextIO | None = None,
        width: int = 30,
        min_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.total = max(total, 0)
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.min_interval = min_interval
        self.clock = clock
        self.started = clock()
        self._last_emit: float | None = None
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty()) if callable(isatty) else False

    def rate(self) -> float:
        """Rows per second since the start."""
        elapsed = self.clock() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def eta(self) -> float | None:
        """Seconds left at the current rate, or None when unknown."""
        rate = self.rate()
        if rate <= 0:
            return None
        return max(self.total - self.done, 0) / rate

    def render(self) -> str:
        """The current status as one line (no newline)."""
        share = self.done / self.total if self.total else 1.0
        share = min(share, 1.0)
        filled = int(share * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        return (
            f"{self.label} [{bar}] {self.done}/{self.total} "
            f"{share * 100:5.1f}% {self.rate():.0f} rows/s eta {format_eta(self.eta())}"
        )

    def advance(self, rows: int) -> None:
        """Record ``rows`` more rows done and emit when due."""
        self.done += rows
        now = self.clock()
        if self.tty or self._last_emit is None or now - self._last_emit >= self.min_interval:
            self._emit()
            self._last_emit = now

    def finish(self) -> None:
        """Emit the final state and end the line."""
        if self.tty:
            self.stream.write("\r" + self.render() + "\n")
        else:
            self.stream.write(self.render() + "\n")
        self.stream.flush()

    def _emit(self) -> None:
        if self.tty:
            self.stream.write("\r" + self.render())
        else:
            self.stream.write(self.render() + "\n")
        self.stream.flush()
