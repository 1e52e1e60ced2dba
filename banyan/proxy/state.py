"""One proxy's parts, and the observers wired from them.

:class:`ProxyState` holds what one application owns (flag store, pools, sessions, mirror queue,
guards, metrics, ...). The behaviours live in modules of their own, each built here from the few
parts it needs: the exchange observers (:mod:`banyan.proxy.exchange_metrics`,
:mod:`banyan.proxy.guard_feed`, :mod:`banyan.proxy.write_mirror`), the guard rollback
(:mod:`banyan.proxy.rollback`), the reactions to a flag change
(:mod:`banyan.proxy.flag_reactions`) and this proxy's own edits (:mod:`banyan.proxy.edits`).
Callers use those parts directly (``state.guard_feed.check(...)``,
``state.write_mirror.enqueue(...)``, ``state.rollback.roll_back(...)``, ...): the state holds
and wires them, it does not stand in for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Awaitable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from banyan.control.plane import ControlPlane
from banyan.proxy.admission import Admission, AdmissionLimits
from banyan.proxy.audit import AuditLog
from banyan.proxy.edits import EditJournal
from banyan.proxy.exchange_metrics import ExchangeMetrics
from banyan.proxy.fence import WriteFence
from banyan.proxy.flag_reactions import FlagReactions
from banyan.proxy.flags import FlagSet, FlagStore
from banyan.proxy.gaps import IdleGaps
from banyan.proxy.guard_feed import GuardFeed
from banyan.proxy.guards import Breach, GuardBoard
from banyan.proxy.health import HealthProbe
from banyan.proxy.hooks import ShadowHook
from banyan.proxy.limits import Limits
from banyan.proxy.metrics import ProxyMetrics
from banyan.proxy.mirror import MirrorQueue
from banyan.proxy.mirror_order import SubmitOrder
from banyan.proxy.refusals import Refusals
from banyan.proxy.rollback import GuardRollback
from banyan.proxy.stamping import Stamper
from banyan.proxy.upstream import Upstreams
from banyan.proxy.websocket import BridgeRegistry
from banyan.proxy.write_mirror import WriteMirror


@dataclass(eq=False)
class ProxyState:
    flags_path: Path
    store: FlagStore
    access_log: bool = True
    health_interval: float = 2.0
    admission: Admission = field(default_factory=lambda: Admission(AdmissionLimits()))
    metrics: ProxyMetrics = field(default_factory=ProxyMetrics)
    bridges: BridgeRegistry = field(default_factory=BridgeRegistry)
    guards: GuardBoard = field(default_factory=GuardBoard)
    fence: WriteFence = field(default_factory=WriteFence)
    mirror_order: SubmitOrder = field(default_factory=SubmitOrder)  # one line per user, in order
    gaps: IdleGaps = field(default_factory=IdleGaps)
    audit: AuditLog | None = None
    control: ControlPlane | None = None  # --control-db: runtime changes shared by replicas
    mirror: MirrorQueue | None = None
    shadow: ShadowHook | None = None
    session: aiohttp.ClientSession | None = None  # health probes, the mirror queue
    ws_session: aiohttp.ClientSession | None = None  # upstream WebSockets only (own connector)
    limits: Limits = field(default_factory=Limits)
    stamper: Stamper = field(default_factory=lambda: Stamper(None))  # X-Banyan-Stamp times
    upstreams: Upstreams | None = None  # HTTP forwarding: one pool per backend
    health: HealthProbe | None = None
    requests: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    breaches: list[dict[str, Any]] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    _tasks: set[asyncio.Future[Any]] = field(default_factory=set)

    @property
    def flags(self) -> FlagSet:
        return self.store.current

    def spawn(self, coro: Awaitable[Any]) -> None:
        """Run ``coro`` detached from the request, keeping a reference until it ends."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout: float) -> None:
        """Let the detached work still running end, each piece given up to ``timeout`` s."""
        for task in list(self._tasks):
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, timeout)

    # -- the parts, each built once from what it needs (after create_app set every field) --------

    @cached_property
    def edits(self) -> EditJournal:
        return EditJournal(self.audit)

    @cached_property
    def reactions(self) -> FlagReactions:
        return FlagReactions(
            metrics=self.metrics,
            guards=self.guards,
            bridges=self.bridges,
            edits=self.edits,
            spawn=self.spawn,
            audit=self.audit,
            control=self.control,
            mirror=self.mirror,
        )

    @cached_property
    def exchange_metrics(self) -> ExchangeMetrics:
        return ExchangeMetrics(self.metrics, self.requests)

    @cached_property
    def guard_feed(self) -> GuardFeed:
        shared = self.control is not None  # judged on all replicas' windows instead
        return GuardFeed(self.guards, None if shared else self.on_breach)

    @cached_property
    def rollback(self) -> GuardRollback:
        return GuardRollback(
            flags_path=self.flags_path,
            store=self.store,
            metrics=self.metrics,
            edits=self.edits,
            breaches=self.breaches,
            control=self.control,
            report=self.shadow.record_rollback if self.shadow is not None else None,
        )

    @cached_property
    def write_mirror(self) -> WriteMirror:
        return WriteMirror(
            mirror=self.mirror,
            fence=self.fence,
            order=self.mirror_order,
            reads=self.shadow.reads if self.shadow is not None else None,
            stamper=self.stamper,
        )

    @cached_property
    def on_refusal(self) -> Refusals:
        """A request or socket refused at a limit (the admission gate's callback)."""
        return Refusals(self.metrics, self.admission)

    def on_breach(self, breach: Breach) -> None:
        """A breach judged on this replica (by the guard feed, or on every replica's evidence by
        :mod:`banyan.control.guards`): the rollback, detached from whoever found it."""
        self.spawn(self.rollback.roll_back(breach))


STATE: web.AppKey[ProxyState] = web.AppKey("banyan_proxy_state")
