"""A clock tests move by hand, for components that take their clock as a callable."""

from __future__ import annotations


class ManualClock:
    """A clock that reads ``now`` and moves only when a test moves it (``clock.now += 5``)."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
