"""The shadow breaker: stop copying requests to a candidate that only times out or refuses.

A hanging candidate costs the proxy a connection, a timer and a task for every copy until the
shadow timeout cuts it, and a refusing one a connection attempt per copy — work on the users' event
loop that buys no comparison. After ``threshold`` copies in a row that failed that way (timed out,
connection refused or reset), the breaker for that backend opens: copies are skipped (recorded as
``candidate_failing``) for ``cooldown`` seconds. Then one copy is let through as a probe; if it gets
an answer — any answer, a 500 is a comparison too — the breaker closes, else it opens for another
cool-down. Writes skipped this way still reach the candidate through the durable mirror queue.

While a breaker rests (open, its probe not yet due) the request path asks :meth:`resting`, which
changes nothing, and skips the copy before it costs anything (no place in line, no body kept);
:meth:`allows`, which takes the probe, is asked only of copies that are about to leave.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Circuit:
    failures: int = 0  # failed copies in a row
    open_until: float | None = None  # set while open
    probing: bool = False  # a probe copy is on its way (until ``open_until``)
    opened: int = 0  # how many times it opened


class ShadowBreaker:
    def __init__(
        self,
        *,
        threshold: int = 20,
        cooldown: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.clock = clock
        self._circuits: dict[str, _Circuit] = {}

    def resting(self, backend: str) -> bool:
        """Whether ``backend``'s breaker is open and its probe not yet due (nothing changes)."""
        circuit = self._circuits.get(backend)
        return (
            circuit is not None
            and circuit.open_until is not None
            and self.clock() < circuit.open_until
        )

    def allows(self, backend: str) -> bool:
        """Whether a copy may go to ``backend`` now (the probe after a cool-down counts)."""
        circuit = self._circuits.get(backend)
        if circuit is None or circuit.open_until is None:
            return True
        now = self.clock()
        if now < circuit.open_until:
            return False
        circuit.probing = True
        circuit.open_until = now + self.cooldown  # a probe that never reports is replaced then
        return True

    def observe(self, backend: str, *, failed: bool) -> None:
        """The outcome of a copy that was let through."""
        circuit = self._circuits.setdefault(backend, _Circuit())
        if not failed:
            circuit.failures, circuit.open_until, circuit.probing = 0, None, False
            return
        circuit.failures += 1
        tripped = circuit.failures >= self.threshold and circuit.open_until is None
        if circuit.probing or tripped:
            circuit.open_until = self.clock() + self.cooldown
            circuit.opened += 1
        circuit.probing = False

    def status(self) -> dict[str, dict[str, object]]:
        """Per candidate: open or closed, failures in a row, times opened (``/_proxy/status``)."""
        now = self.clock()
        return {
            backend: {
                "state": "closed"
                if circuit.open_until is None
                else "probing"
                if circuit.probing or now >= circuit.open_until
                else "open",
                "failures_in_a_row": circuit.failures,
                "opened": circuit.opened,
            }
            for backend, circuit in sorted(self._circuits.items())
        }
