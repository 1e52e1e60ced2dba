"""The request path: decide, forward, observe.

For every request: a request id; a CORS preflight answered at the edge; one routing decision
from the router of the flag version in force when the request arrived (so a flip never changes
the backend of a request in flight, :mod:`banyan.proxy.routing`); a wait for the caller's writes
still on their way to that backend (:mod:`banyan.proxy.fence`), and, for a write, for the caller's
shadowed reads on their way to it (a logout served by new must not revoke the token an earlier
read's copy to new still carries); then the WebSocket path
(:mod:`banyan.proxy.ws_path`) or the HTTP path (:mod:`banyan.proxy.http_path`). Once the answer
is out, the finished exchange feeds its observers — metrics, the feature's guard, the access
log, the shadow comparison, the write mirror — none of which the client waits for.
"""

from __future__ import annotations

from aiohttp import web

from banyan.proxy.cors import is_preflight, preflight
from banyan.proxy.flags import FlagSet
from banyan.proxy.forward import error_response
from banyan.proxy.headers import mark, request_id_of
from banyan.proxy.http_path import SAFE_METHODS, forward_http
from banyan.proxy.routing import NOT_ROUTED, Decision, user_from_authorization
from banyan.proxy.state import STATE, ProxyState
from banyan.proxy.ws_path import forward_websocket


def decide(
    state: ProxyState, request: web.Request, request_id: str
) -> tuple[Decision, FlagSet, str | None]:
    """Where ``request`` goes, under which flags, for which user."""
    router = state.store.router
    user = user_from_authorization(request.headers.get("Authorization"), request.query.get("token"))
    decision = router.decide(
        request.path,
        user=user,
        headers=request.headers,
        cookies=request.cookies,
        client_ip=request.remote or "",
        request_id=request_id,
    )
    return decision, router.flags, user


async def handle(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    assert state.session is not None
    request_id = request_id_of(request)
    cors = state.flags.cors
    if cors is not None and is_preflight(request):  # answered at the edge, never forwarded
        answer = preflight(cors, request)
        mark(answer.headers, "-", "proxy", request_id)
        return answer
    decision, flags, user = decide(state, request, request_id)
    if decision is NOT_ROUTED:  # a backend's operator-only path (/metrics): never sent on
        refusal = error_response(404, "not_found", decision.reason)
        mark(refusal.headers, decision.feature, decision.backend, request_id)
        return refusal
    feature = flags.feature(decision.feature) if decision.feature != "-" else None
    backend = flags.backends[decision.backend]
    pending = state.fence.pending(decision.backend, user, request.remote or "")
    if state.shadow is not None and request.method not in SAFE_METHODS:  # nor overtake its reads
        pending += state.shadow.reads.pending(decision.backend, user, request.remote or "")
    if pending:  # this user's writes are still on their way to that backend: let them land first
        await state.fence.wait(pending)
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return await forward_websocket(state, request, decision, feature, backend.url, request_id)
    state.gaps.enter()  # background work (shadow copies) waits while users' requests run
    try:
        return await forward_http(state, request, request_id, decision, feature, backend, user)
    finally:
        state.gaps.leave()
