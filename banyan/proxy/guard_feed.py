"""Observer of each finished exchange: the feature's guard windows, and their judgement.

Depends on the :class:`~banyan.proxy.guards.GuardBoard` and one callback for a breach (the
rollback, :mod:`banyan.proxy.rollback`). With a control store the windows are judged on every
replica's evidence there (:mod:`banyan.control.guards`), so ``on_breach`` is None and a breach is
never judged locally.
"""

from __future__ import annotations

from collections.abc import Callable

from banyan.parity.noise import endpoint_key
from banyan.proxy.flags import Feature
from banyan.proxy.forward import Exchange
from banyan.proxy.guards import Breach, GuardBoard


class GuardFeed:
    def __init__(self, guards: GuardBoard, on_breach: Callable[[Breach], None] | None) -> None:
        self.guards = guards
        self.on_breach = on_breach

    def observe(self, exchange: Exchange, feature: Feature | None) -> None:
        """Count a finished exchange in its feature's guards, then judge them."""
        if feature is None:
            return
        observers = self.guards.observers(feature.name)
        if not observers:
            return
        endpoint = endpoint_key(exchange.method, exchange.path_qs)
        for guard in observers:
            guard.observe_request(
                exchange.backend,
                exchange.failed,
                exchange.head_latency * 1000,
                endpoint=endpoint,
                status=exchange.status,
            )
        self.check(feature.name)

    def check(self, feature: str) -> None:
        """Judge ``feature``'s guard now (after a request or a shadow comparison fed it)."""
        guard = self.guards.get(feature)
        if guard is None or self.on_breach is None:
            return
        breach = guard.evaluate()
        if breach is not None:
            self.on_breach(breach)
