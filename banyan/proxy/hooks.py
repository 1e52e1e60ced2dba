"""The shadow's interface: what the proxy asks of its parity side, and nothing more.

The request path, the WebSocket path, the guard rollback and the admin handlers all speak to the
shadow through :class:`ShadowHook` (implemented by :class:`banyan.proxy.shadow.Shadow`); none of
them looks for an attribute with ``getattr``. The shadow is optional: ``None`` where the proxy
has no parity side. In the other direction the shadow sees the proxy as a :class:`ShadowHost`
(the :class:`~banyan.proxy.state.ProxyState` is one): the few parts a copy or a tap uses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from banyan.proxy.fence import WriteFence
from banyan.proxy.flags import Feature, FlagSet
from banyan.proxy.forward import Exchange
from banyan.proxy.routing import Decision
from banyan.proxy.websocket import FrameTap

if TYPE_CHECKING:
    import aiohttp

    from banyan.parity.store import ParityRecorder
    from banyan.proxy.breaker import ShadowBreaker
    from banyan.proxy.gaps import IdleGaps
    from banyan.proxy.guard_feed import GuardFeed
    from banyan.proxy.guards import GuardBoard
    from banyan.proxy.limits import Limits
    from banyan.proxy.metrics import ProxyMetrics
    from banyan.proxy.shadow.send import CopySender
    from banyan.proxy.stamping import Stamper
    from banyan.proxy.write_mirror import WriteMirror


class ShadowHost(Protocol):
    """What the shadow uses of the proxy that runs it (handed to :meth:`ShadowHook.start`)."""

    @property
    def flags(self) -> FlagSet: ...  # the backends' URLs and timeouts in force

    @property
    def limits(self) -> Limits: ...  # header limits, for the copies' own pools

    @property
    def metrics(self) -> ProxyMetrics: ...

    @property
    def guards(self) -> GuardBoard: ...  # comparisons feed the feature's guards

    @property
    def fence(self) -> WriteFence: ...  # a caller's writes in flight, per backend

    @property
    def gaps(self) -> IdleGaps: ...  # copies wait while users' requests run

    @property
    def stamper(self) -> Stamper: ...  # a copy's write carries the primary's stamp

    @property
    def ws_session(self) -> aiohttp.ClientSession | None: ...  # the candidate's sockets

    @property
    def guard_feed(self) -> GuardFeed: ...  # judges a guard a comparison fed

    @property
    def write_mirror(self) -> WriteMirror: ...  # a write the candidate could not take, queued


class ShadowHook(Protocol):
    """Parity's entry points (see ``banyan/proxy/shadow/``)."""

    reads: WriteFence  # read copies on their way to a candidate: a mirrored write waits for them
    recorder: ParityRecorder  # the parity store behind the console's QA panel
    breaker: ShadowBreaker  # candidates not copied to for now (the status shows them)
    sender: CopySender  # sends the copies (the status shows how many are on their way)

    # -- the request path ------------------------------------------------------------------------

    def wants(
        self, feature: Feature, decision: Decision, method: str, request_id: str, path: str
    ) -> bool: ...

    def reserve(self, feature: Feature, decision: Decision, request: web.Request) -> None: ...

    def submit(
        self,
        feature: Feature,
        decision: Decision,
        request: web.Request,
        exchange: Exchange,
    ) -> bool: ...

    def websocket_tap(
        self,
        feature: Feature,
        decision: Decision,
        request: web.Request,
        headers: Any,
        fallback: Callable[[], FrameTap | None] | None = None,
    ) -> FrameTap | None: ...

    def record_rollback(self, breach: Mapping[str, Any]) -> None: ...

    # -- the admin surface -----------------------------------------------------------------------

    def learned_noise(self, feature: str | None = None) -> list[dict[str, Any]]: ...

    async def forget_noise(self, path: str, feature: str | None = None) -> int: ...

    async def reset(self, feature: str | None = None) -> int: ...

    async def report(self, request: web.Request, *, html: bool) -> web.Response: ...

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self, state: ShadowHost) -> None: ...

    async def stop(self) -> None: ...
