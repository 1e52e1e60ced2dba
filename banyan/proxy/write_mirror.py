"""Observer of each finished write: re-applied to the other store through the mirror queue.

An HTTP write that succeeded (:meth:`WriteMirror.enqueue`), and what a tutor or whiteboard socket
writes (:meth:`WriteMirror.socket_tap`), reach the other store durably (:mod:`banyan.proxy.mirror`).
Each joins its user's line (:mod:`banyan.proxy.mirror_order`) after that user's shadow copies
still on their way to the same store, so it never changes what an earlier copy reads; the user's
next request to that store waits for it (:mod:`banyan.proxy.fence`). Depends on the queue, the
fence, the line and the shadow's read fence — not on the rest of the proxy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

from banyan.application import plugged
from banyan.proxy.board_mirror import BoardMirrorTap
from banyan.proxy.fence import WriteFence
from banyan.proxy.flags import Feature, FlagSet
from banyan.proxy.forward import Exchange
from banyan.proxy.http_path import mirror_target
from banyan.proxy.mirror import MirrorQueue
from banyan.proxy.mirror_order import SubmitOrder
from banyan.proxy.routing import Decision, user_from_authorization
from banyan.proxy.stamping import Stamper
from banyan.proxy.turn_mirror import TurnMirrorTap, credentials, tutor_session


class WriteMirror:
    def __init__(
        self,
        *,
        mirror: MirrorQueue | None,
        fence: WriteFence,
        order: SubmitOrder,
        reads: WriteFence | None,
        stamper: Stamper,
    ) -> None:
        self.mirror = mirror
        self.fence = fence
        self.order = order
        self.reads = reads  # the shadow's read copies in flight, when a shadow runs
        self.stamper = stamper

    def copies_in_flight(
        self, target: str, user: str | None, ip: str
    ) -> list[asyncio.Future[None]]:
        """The user's shadow copies on their way to ``target``, reads included: a write joining
        the mirror queue waits for them, so it never changes what an earlier copy reads (a
        logout must not reach the candidate before the read copy made with its token)."""
        copies = self.fence.copies(target, user, ip)
        if self.reads is not None:
            copies += self.reads.pending(target, user, ip)
        return copies

    def enqueue(
        self,
        feature: Feature,
        exchange: Exchange,
        headers: Any,
        target: str,
        user: str | None,
        ip: str,
    ) -> None:
        """Re-apply a successful HTTP write to ``target``'s store, in the order the requests
        arrived (a failed copy's write comes back late)."""
        mirror = self.mirror
        if mirror is None or exchange.request_capture is None:
            return
        body = exchange.request_capture.value()
        if body is None:
            mirror.skipped_too_large += 1
            return
        copies = self.copies_in_flight(target, user, ip)
        write = {
            "feature": feature.name,
            "target": target,
            "method": exchange.method,
            "path_qs": exchange.path_qs,
            "headers": dict(headers),
            "body": body,
            "idempotency_key": headers.get("Idempotency-Key", ""),
            "release": self.fence.hold(target, user, ip, queued=True),
            "stamp": exchange.stamp,  # delivered, however late, at the write's own time
        }
        # A registration carries no token: it joins the line of the user it creates, so that
        # user's first writes (made with the token it answered) are stored after it, whatever
        # it waits for (the copies from its address: an anonymous page read in flight).
        registers = None if user else plugged().registered_user(exchange.path_qs, body)
        lane = (target, user or registers or f"ip:{ip}")
        self.order.submit(lane, exchange.started, copies, lambda: mirror.submit(**write))

    def socket_tap(
        self,
        request: web.Request,
        feature: Feature,
        decision: Decision,
        headers: Any,
        *,
        flags: FlagSet,
        session: aiohttp.ClientSession | None,
    ) -> TurnMirrorTap | BoardMirrorTap | None:
        """With ``writes: mirror``, what a tutor or whiteboard socket writes reaches the other
        store: finished turns as message appends, a room's document as Yjs updates."""
        if self.mirror is None or feature.writes == "skip":
            return None
        target = mirror_target(feature, decision, decision.backend)
        if target is None:
            return None
        authorization = credentials(request.headers, request.query)
        user = user_from_authorization(authorization, None)
        ip = request.remote or ""
        fence = self.fence
        socket = plugged().socket(request.path)
        if socket is not None and socket.kind == "document" and session is not None:
            url = flags.backends[target].url + request.raw_path

            async def ready() -> bool:
                return await fence.wait(fence.pending(target, user, ip))

            return BoardMirrorTap(session, url, headers, feature=feature.name, ready=ready)
        session_id = tutor_session(request.path)
        if session_id is None or authorization is None:
            return None
        return TurnMirrorTap(
            feature=feature.name,
            target=target,
            session_id=session_id,
            authorization=authorization,
            submit=self._turns_in_order(self.mirror, target, user, ip),
            hold=lambda: fence.hold(target, user, ip, queued=True),
            stamper=self.stamper,
        )

    def _turns_in_order(
        self, mirror: MirrorQueue, target: str, user: str | None, ip: str
    ) -> Callable[..., None]:
        lane = (target, user or f"ip:{ip}")

        def submit_in_order(*, arrived: float, **write: Any) -> None:
            # a turn joins the user's line like an HTTP write: after the user's copies still in
            # flight to that store (the session it belongs to may be one of them), in its place
            # (``arrived``) when it is written late
            copies = self.copies_in_flight(target, user, ip)
            self.order.submit(lane, arrived, copies, lambda: mirror.submit(**write))

        return submit_in_order
