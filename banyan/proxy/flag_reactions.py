"""What one proxy does when its flags change: metrics, guards, mirror backends, audit, sockets.

:class:`FlagReactions` is subscribed to the :class:`~banyan.proxy.flags.FlagStore` and runs on
the event loop. A reload nobody here made is audited as coming from the file, in a worker thread
(a reload may change thousands of features), each after the ones before it; an edit this proxy
made was audited when it was made (:mod:`banyan.proxy.edits`). A feature that moved with
``websocket: reconnect`` has its open sockets closed with 1012.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from banyan.control.plane import ControlPlane
from banyan.logs import get_logger
from banyan.proxy.audit import AuditLog
from banyan.proxy.edits import EditJournal
from banyan.proxy.flags import FlagSet, GuardConfig
from banyan.proxy.guards import GuardBoard
from banyan.proxy.metrics import ProxyMetrics
from banyan.proxy.mirror import MirrorQueue
from banyan.proxy.websocket import BridgeRegistry

log = get_logger("proxy")

Spawn = Callable[[Awaitable[Any]], None]
_NO_GUARDS = GuardConfig()


def sync_guards(guards: GuardBoard, flags: FlagSet) -> None:
    """One guard per guarded feature of ``flags``: a feature without a rule never has a guard,
    and a file of 10,000 features must not cost 10,000 guard rebuilds on the loop."""
    guards.sync(
        {
            f.name: (f"{f.mode}:{f.percent}:{f.primary}", f.guards)
            for f in flags.features
            if f.guards != _NO_GUARDS
        }
    )


class FlagReactions:
    """The proxy's side of a flag change; :meth:`on_flags` is the store's subscriber."""

    def __init__(
        self,
        *,
        metrics: ProxyMetrics,
        guards: GuardBoard,
        bridges: BridgeRegistry,
        edits: EditJournal,
        spawn: Spawn,
        audit: AuditLog | None,
        control: ControlPlane | None,
        mirror: MirrorQueue | None,
    ) -> None:
        self.metrics = metrics
        self.guards = guards
        self.bridges = bridges
        self.edits = edits
        self.spawn = spawn
        self.audit = audit
        self.control = control
        self.mirror = mirror
        self._audit_writes: asyncio.Future[None] | None = None

    def on_flags(self, old: FlagSet, new: FlagSet) -> None:
        self.metrics.flag_reloads.inc()
        self.metrics.flags_info.values.clear()
        self.metrics.flags_info.set(new.digest, value=1)
        sync_guards(self.guards, new)
        if self.mirror is not None:
            self.mirror.set_backends({n: b.url for n, b in new.backends.items()})
        made_here = self.edits.made_here(new.digest)
        if self.control is not None:
            self.spawn(self.control.audit_reload(old, new))
        elif self.audit is not None and not made_here:
            self._audit_reload(self.audit, old, new)
        for feature in new.features:  # no settings diff: one reload may hold 10,000 features
            before = old.feature(feature.name) if feature.websocket == "reconnect" else None
            if before is not None and before.mode != feature.mode:
                name = feature.name
                self.spawn(self.bridges.close_feature(name, 1012, "feature moved; reconnect"))

    def _audit_reload(self, audit: AuditLog, old: FlagSet, new: FlagSet) -> None:
        """Audit a reload in a worker thread (thousands of changed features must not hold the
        loop), after the reloads before it; :meth:`audit_settled` waits for them."""
        previous = self._audit_writes

        def record() -> None:
            if audit.last_digest() != new.digest:  # the CLI or another replica audited it
                audit.record_reload(old, new, source="file")

        async def write() -> None:
            if previous is not None:
                await asyncio.wait([previous])
            try:
                await asyncio.to_thread(record)
            except Exception:  # the reload stands; only its audit line is missing
                log.exception("audit_write_failed", digest=new.digest)

        self._audit_writes = asyncio.ensure_future(write())
        self.spawn(self._audit_writes)

    async def audit_settled(self) -> None:
        """Wait until every reload seen so far is in the audit log."""
        if self._audit_writes is not None:
            await asyncio.wait([self._audit_writes])
