"""The WebSocket path of a proxied request, after routing: open, carry, observe.

The upstream socket is opened and the client answered; then frames flow until either side ends,
as a byte tunnel when nothing reads them (:mod:`banyan.proxy.tunnel`), else as a frame bridge
feeding one tap (:mod:`banyan.proxy.websocket`): the shadow's comparison of the socket on the
candidate, or the write mirror's copy of what the socket writes (:mod:`banyan.proxy.write_mirror`).
The handshake is observed like an HTTP exchange; the access line is written when the socket ends.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from banyan.proxy.flags import Feature
from banyan.proxy.forward import Exchange
from banyan.proxy.headers import upstream_headers
from banyan.proxy.http_path import access, mirror_target
from banyan.proxy.routing import Decision
from banyan.proxy.state import ProxyState
from banyan.proxy.tunnel import Tunnel, open_tunnel, run_tunnel
from banyan.proxy.websocket import Bridge, FrameTap, open_bridge, run_bridge

_HANDSHAKE_FAILURES = {502: "connect", 504: "timeout"}  # the upstream's socket never opened


async def forward_websocket(
    state: ProxyState,
    request: web.Request,
    decision: Decision,
    feature: Feature | None,
    base_url: str,
    request_id: str,
) -> web.StreamResponse:
    assert state.ws_session is not None
    headers = upstream_headers(request, request_id, websocket=True)
    started = time.perf_counter()
    url = base_url + request.raw_path
    names = {"feature": decision.feature, "backend": decision.backend, "request_id": request_id}
    timeout = state.flags.backends[decision.backend].read_timeout  # for the upstream's 101
    link: Bridge | Tunnel | None
    if _reads_frames(state, feature, decision):
        response, link = await open_bridge(
            request, state.ws_session, url, headers, timeout=timeout, **names
        )
    else:
        response, link = await open_tunnel(
            request, state.ws_session, url, headers, timeout=timeout, **names
        )
    exchange = Exchange(decision.feature, decision.backend, "GET", request.path_qs, request_id)
    exchange.status = response.status
    exchange.head_latency = time.perf_counter() - started
    if link is None:
        exchange.error = _HANDSHAKE_FAILURES.get(response.status)
    state.exchange_metrics.observe(exchange)  # the handshake, as an HTTP exchange would be
    state.guard_feed.observe(exchange, feature)
    if link is None:
        access(state, exchange, response.status)
        return response
    gauge = state.metrics.open_websockets
    gauge.inc(decision.feature, decision.backend)
    try:
        if isinstance(link, Tunnel):
            del headers  # nothing reads it while the socket is open
            await run_tunnel(link, state.bridges)
        else:
            tap = _frame_tap(state, request, feature, decision, headers)
            await run_bridge(link, state.bridges, tap=tap)
    finally:
        gauge.dec(decision.feature, decision.backend)
        access(state, exchange, 101)
    return response


def _reads_frames(state: ProxyState, feature: Feature | None, decision: Decision) -> bool:
    """Whether a socket's frames may be wanted: shadowed, or written through to the other store."""
    if feature is None:
        return False
    if state.shadow is not None and decision.mode == "shadow":
        return True
    return (
        state.mirror is not None
        and feature.writes != "skip"
        and mirror_target(feature, decision, decision.backend) is not None
    )


def _frame_tap(
    state: ProxyState,
    request: web.Request,
    feature: Feature | None,
    decision: Decision,
    headers: Any,
) -> FrameTap | None:
    if feature is None:
        return None

    def mirror_tap() -> FrameTap | None:  # also the shadow's fallback: the candidate is away
        return state.write_mirror.socket_tap(
            request, feature, decision, headers, flags=state.flags, session=state.ws_session
        )

    tap: FrameTap | None = None
    if state.shadow is not None and decision.mode == "shadow":
        tap = state.shadow.websocket_tap(feature, decision, request, headers, mirror_tap)
    if tap is None:  # a socket not compared still writes through
        tap = mirror_tap()
    return tap
