"""The HTTP path of a proxied request, after routing: forward it, relay the answer, then feed
metrics, the guard, the access log, the shadow comparison and the write mirror.

The request is forwarded as the client sent it (:func:`banyan.proxy.headers.outbound_of`) over
the proxy's upstream pools (:mod:`banyan.proxy.upstream`). A request the client itself broke (over
a limit, body cut short) gets a 4xx and counts against no backend; a backend that cannot answer
gets a 502/504 naming it (the detail goes to the log), or, for a safe bodiless request whose new
backend is unreachable, legacy's answer (``X-Banyan-Fallback: 1``).
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

from aiohttp import web

from banyan.errors import ConnectError, RequestFault, RequestOverLimit, UpstreamError
from banyan.logs import HotEvent, get_logger
from banyan.parity.redact import redact_url
from banyan.proxy.flags import BackendSpec, Feature
from banyan.proxy.forward import (
    Exchange,
    fault_response,
    gateway_error,
    relay,
    request_body,
)
from banyan.proxy.headers import Outbound, mark, outbound_of
from banyan.proxy.limits import describe
from banyan.proxy.routing import Decision
from banyan.proxy.upstream import Body, Connection, Pool, send

if TYPE_CHECKING:
    from banyan.proxy.app import ProxyState

log = get_logger("proxy")
_access_line = HotEvent(
    "proxy",
    "request",
    (
        "request_id",
        "feature",
        "backend",
        "method",
        "path",
        "status",
        "duration_ms",
        "error",
        "fallback",
    ),
)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def forward_http(
    state: ProxyState,
    request: web.Request,
    request_id: str,
    decision: Decision,
    feature: Feature | None,
    backend: BackendSpec,
    user: str | None,
) -> web.StreamResponse:
    method = request.method
    exchange = Exchange(decision.feature, decision.backend, method, request.path_qs, request_id)
    try:
        outbound = exchange.outbound = _outbound(state, request, request_id)
    except RequestFault as fault:
        return _refuse(state, exchange, fault)
    mirror_write, shadowing = _plan(state, request, decision, feature, exchange, outbound, user)
    capture_limit = (
        feature.parity.max_body_bytes
        if feature is not None and (shadowing or mirror_write)
        else None
    )
    try:
        body, exchange.request_capture = request_body(request, capture_limit)
        pool, conn = await _open(state, backend, outbound, body, exchange)
    except RequestFault as fault:
        return _refuse(state, exchange, fault)
    except UpstreamError as exc:
        opened = await _fallback(state, request, decision, feature, exchange, exc)
        if opened is None:
            return _failed(state, exchange, feature, exc)
        pool, conn = opened
        backend = state.flags.backends["legacy"]
        exchange.backend, exchange.fallback = "legacy", True
        state.metrics.fallbacks.inc(decision.feature)
    if mirror_write and not shadowing and 200 <= conn.status < 300 and feature is not None:
        await _announce_intent(state, feature, decision, exchange.backend, user)
    response = await relay(
        request,
        pool,
        conn,
        exchange,
        read_timeout=backend.read_timeout,
        capture_limit=capture_limit if shadowing else None,
        fallback=exchange.fallback,
    )
    if exchange.error != "request":  # a body the client broke is not the backend's failure
        state.exchange_metrics.observe(exchange)
        state.guard_feed.observe(exchange, feature)
    access(state, exchange, exchange.status)
    if feature is not None and exchange.error is None and (shadowing or mirror_write):
        _hand_on(state, request, decision, feature, exchange, shadowing, mirror_write, user)
    return response


def _plan(
    state: ProxyState,
    request: web.Request,
    decision: Decision,
    feature: Feature | None,
    exchange: Exchange,
    outbound: Outbound,
    user: str | None,
) -> tuple[bool, bool]:
    """(mirror_write, shadowing) for this request; a mirrored POST gets an ``Idempotency-Key``,
    a write its stamp, and a shadowed request its place in the caller's line."""
    method = request.method
    mirror_write = feature is not None and feature.writes != "skip" and method not in SAFE_METHODS
    key = request.headers.get("Idempotency-Key")
    if mirror_write and method == "POST" and key is None:
        key = uuid.uuid4().hex
        outbound.add("Idempotency-Key", key)
    key_of_write = exchange.request_id if key is None else key
    exchange.stamp = state.stamper.take(method, key_of_write, user)
    shadowing = (
        feature is not None
        and state.shadow is not None
        and state.shadow.wants(feature, decision, method, exchange.request_id, request.path)
    )
    if shadowing and feature is not None and state.shadow is not None:
        # the copy's place in the caller's line to the candidate is taken now, before the answer
        # lets the caller send more (a WebSocket frame can arrive before this handler resumes)
        state.shadow.reserve(feature, decision, request)
    return mirror_write, shadowing


async def _announce_intent(
    state: ProxyState, feature: Feature, decision: Decision, backend: str, user: str | None
) -> None:
    """Replicas sharing the mirror queue hold this user before the answer lets them go on."""
    target = mirror_target(feature, decision, backend)
    if target is not None and state.mirror is not None:
        await state.mirror.announce_intent(target, user)


def _hand_on(
    state: ProxyState,
    request: web.Request,
    decision: Decision,
    feature: Feature,
    exchange: Exchange,
    shadowing: bool,
    mirror_write: bool,
    user: str | None,
) -> None:
    """After the answer: the shadow compares it, or a successful write goes to the mirror."""
    assert exchange.outbound is not None
    compared = False
    if shadowing and state.shadow is not None and not exchange.fallback:
        compared = state.shadow.submit(feature, decision, request, exchange)
    target = mirror_target(feature, decision, exchange.backend)
    if mirror_write and target is not None and 200 <= exchange.status < 300 and not compared:
        headers = exchange.outbound.mapping()
        state.write_mirror.enqueue(feature, exchange, headers, target, user, request.remote or "")


def _outbound(state: ProxyState, request: web.Request, request_id: str) -> Outbound:
    limit = state.limits.max_target_bytes
    if len(request.raw_path) > limit:
        raise RequestOverLimit(
            414,
            "request_target_too_long",
            f"the request target is over {describe('max_target_bytes', limit)}",
        )
    return outbound_of(request, request_id, state.limits)


async def _open(
    state: ProxyState,
    backend: BackendSpec,
    outbound: Outbound,
    body: Body | None,
    exchange: Exchange,
) -> tuple[Pool, Connection]:
    """Send ``outbound`` to ``backend`` (a write with its ``primary`` stamp) and wait for the
    answer's head."""
    assert state.upstreams is not None
    pool = state.upstreams.pool(backend.url)
    target = pool.origin.target(outbound.target)
    stamp = state.stamper.line(exchange.stamp, target, mirror=False)
    head = outbound.head(pool.origin, backend.host, stamp)
    conn = await send(
        pool,
        outbound.method,
        head,
        body,
        connect_timeout=backend.connect_timeout,
        read_timeout=backend.read_timeout,
    )
    return pool, conn


def _refuse(state: ProxyState, exchange: Exchange, fault: RequestFault) -> web.Response:
    """The request itself cannot be forwarded: a 4xx, counted against no backend."""
    exchange.error = "request"
    response = fault_response(fault)
    response.force_close()  # what is left of a broken request cannot be read as the next one
    mark(response.headers, exchange.feature, exchange.backend, exchange.request_id)
    access(state, exchange, fault.status)
    return response


def _failed(
    state: ProxyState, exchange: Exchange, feature: Feature | None, exc: UpstreamError
) -> web.Response:
    """The backend could not answer: 502/504 naming the backend; the detail goes to the log."""
    exchange.error = exc.kind
    exchange.head_latency = time.perf_counter() - exchange.started
    log.warning(
        "upstream_failed",
        request_id=exchange.request_id,
        feature=exchange.feature,
        backend=exchange.backend,
        kind=exc.kind,
        detail=exc.detail,
    )
    state.exchange_metrics.observe(exchange)
    state.guard_feed.observe(exchange, feature)
    response = gateway_error(exc, exchange.backend)
    mark(response.headers, exchange.feature, exchange.backend, exchange.request_id)
    access(state, exchange, response.status)
    return response


def mirror_target(feature: Feature, decision: Decision, served_by: str) -> str | None:
    """Where a successful write of a ``writes: mirror`` or ``always`` feature is re-applied: the
    other store, in every mode — ``legacy`` included, so "mirror, then backfill, then verify"
    keeps the new store complete before any traffic moves, and a flip either way finds every
    record. In shadow the other store is the candidate (a compared write's copy is sent there by
    the shadow; the queue takes the rest). With ``writes: skip``, nowhere."""
    if feature.writes == "skip":
        return None
    if feature.mode == "shadow" and decision.shadow is not None:
        return decision.shadow
    return "new" if served_by == "legacy" else "legacy"


async def _fallback(
    state: ProxyState,
    request: web.Request,
    decision: Decision,
    feature: Feature | None,
    exchange: Exchange,
    exc: UpstreamError,
) -> tuple[Pool, Connection] | None:
    """A safe, bodiless request whose chosen new backend is unreachable goes to legacy."""
    if (
        feature is None
        or not feature.fallback
        or decision.backend != "new"
        or not isinstance(exc, ConnectError)
        or request.method not in SAFE_METHODS
        or request.body_exists
    ):
        return None
    try:
        assert exchange.outbound is not None
        return await _open(state, state.flags.backends["legacy"], exchange.outbound, None, exchange)
    except UpstreamError:
        return None


def access(state: ProxyState, exchange: Exchange, status: int) -> None:
    """The access log's line for ``exchange`` (unless the proxy runs without one)."""
    if state.access_log:
        _access_line.emit(
            exchange.request_id,
            exchange.feature,
            exchange.backend,
            exchange.method,
            _shown_path(exchange.path_qs),
            status,
            round((time.perf_counter() - exchange.started) * 1000, 3),
            exchange.error,
            exchange.fallback or None,
        )


_shown: dict[str, str] = {}  # paths already redacted for the access log (most repeat)


def _shown_path(path_qs: str) -> str:
    shown = _shown.get(path_qs)
    if shown is None:
        shown = redact_url(path_qs)
        if len(path_qs) <= 256:
            if len(_shown) >= 4096:
                _shown.clear()
            _shown[path_qs] = shown
    return shown
