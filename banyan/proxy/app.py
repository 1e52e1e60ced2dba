"""The proxy application: factory, lifecycle and the request path.

For every request: a request id, one routing decision from the router of the flag version in force
when the request arrived (so a flip never changes the backend of a request in flight), then either
the WebSocket bridge or a streamed HTTP exchange. After the answer is streamed, the exchange feeds
metrics, the feature's guard, the access log (one line), the shadow comparison and the write
mirror — none of which the client waits for.

Lifecycle: on startup the HTTP client session (one pooled keep-alive connector), the WebSocket
session (a connector of its own without a pool limit: a socket holds its connection for its whole
life, so sharing a limit with HTTP would let idle sockets starve every request), the flag watcher,
the health probe and the mirror queue start; on shutdown open WebSockets are closed with 1001 and
in-flight HTTP requests drain (the runner's shutdown timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import yarl
from aiohttp import web

from banyan.logs import get_logger
from banyan.parity.redact import redact_url
from banyan.proxy import admin
from banyan.proxy.admission import Admission, AdmissionLimits, admitted
from banyan.proxy.audit import AuditLog, default_path, diff_flagsets
from banyan.proxy.board_mirror import WHITEBOARD_PREFIX, BoardMirrorTap
from banyan.proxy.fence import WriteFence
from banyan.proxy.flag_edit import EDIT_LISTENERS, rollback
from banyan.proxy.flags import BackendSpec, Feature, FlagSet, FlagStore
from banyan.proxy.forward import (
    Exchange,
    UpstreamError,
    gateway_error,
    open_upstream,
    relay,
    request_body,
    timeout_of,
)
from banyan.proxy.gaps import IdleGaps
from banyan.proxy.guards import Breach, GuardBoard
from banyan.proxy.headers import FALLBACK, mark, request_id_of, upstream_headers
from banyan.proxy.health import HealthProbe
from banyan.proxy.metrics import ProxyMetrics
from banyan.proxy.mirror import MirrorQueue
from banyan.proxy.routing import Decision, user_from_authorization
from banyan.proxy.tunnel import Tunnel, open_tunnel, run_tunnel
from banyan.proxy.turn_mirror import TurnMirrorTap, credentials, tutor_session
from banyan.proxy.websocket import Bridge, BridgeRegistry, FrameTap, open_bridge, run_bridge

log = get_logger("proxy")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
STATE: web.AppKey[ProxyState] = web.AppKey("banyan_proxy_state")


class ShadowHook(Protocol):
    """Parity's entry points on the request path (see ``banyan/proxy/shadow.py``)."""

    def wants(self, feature: Feature, decision: Decision, method: str, request_id: str) -> bool: ...

    def reserve(self, feature: Feature, decision: Decision, request: web.Request) -> None: ...

    def submit(
        self,
        feature: Feature,
        decision: Decision,
        request: web.Request,
        exchange: Exchange,
        headers: Any,
    ) -> bool: ...

    def websocket_tap(
        self,
        feature: Feature,
        decision: Decision,
        request: web.Request,
        headers: Any,
        fallback: Callable[[], FrameTap | None] | None = None,
    ) -> FrameTap | None: ...

    async def start(self, state: ProxyState) -> None: ...

    async def stop(self) -> None: ...


@dataclass
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
    gaps: IdleGaps = field(default_factory=IdleGaps)
    audit: AuditLog | None = None
    mirror: MirrorQueue | None = None
    shadow: ShadowHook | None = None
    session: aiohttp.ClientSession | None = None
    ws_session: aiohttp.ClientSession | None = None  # upstream WebSockets only (own connector)
    health: HealthProbe | None = None
    requests: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    breaches: list[dict[str, Any]] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    _edit_digests: set[str] = field(default_factory=set)
    _refusal_logged: dict[str, float] = field(default_factory=dict)
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    @property
    def flags(self) -> FlagSet:
        return self.store.current

    def spawn(self, coro: Any) -> None:
        """Run ``coro`` detached from the request, keeping a reference until it ends."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- reactions to flag changes ---------------------------------------------------------------

    def on_flags(self, old: FlagSet, new: FlagSet) -> None:
        self.metrics.flag_reloads.inc()
        self.metrics.flags_info.values.clear()
        self.metrics.flags_info.set(new.digest, value=1)
        self._sync_guards(new)
        if self.mirror is not None:
            self.mirror.set_backends({n: b.url for n, b in new.backends.items()})
        if (
            self.audit is not None
            and new.digest not in self._edit_digests
            and self.audit.last_digest() != new.digest  # the CLI or another replica audited it
        ):
            self.audit.record_reload(old, new, source="file")
        self._edit_digests.discard(new.digest)
        for name, before, after in diff_flagsets(old, new):
            feature = new.feature(name)
            if feature is None or before is None or after is None:
                continue
            if feature.websocket == "reconnect" and before.get("mode") != after.get("mode"):
                self.spawn(self.bridges.close_feature(name, 1012, "feature moved; reconnect"))

    def on_edit(self, change: dict[str, Any]) -> None:
        """An edit made by this process (CLI in-process, admin API, guard): audit it once."""
        self._edit_digests.add(change["digest"])
        if self.audit is not None:
            self.audit.append(
                source=change.get("source", "cli"),
                feature=change["feature"],
                before=change.get("before"),
                after=change.get("after"),
                digest=change["digest"],
                reason=change.get("reason"),
            )

    def _sync_guards(self, flags: FlagSet) -> None:
        self.guards.sync(
            {f.name: (f"{f.mode}:{f.percent}:{f.primary}", f.guards) for f in flags.features}
        )

    def on_refusal(self, limit: str) -> None:
        """A request or socket refused at a limit: count it; log the first of each burst."""
        self.metrics.refused.inc(limit)
        now = time.monotonic()
        if now - self._refusal_logged.get(limit, float("-inf")) >= 10.0:
            self._refusal_logged[limit] = now
            log.warning(
                "limit_reached",
                limit=limit,
                websockets=self.admission.websockets,
                requests=self.admission.requests,
                limits=asdict(self.admission.limits),
            )

    # -- after each exchange ---------------------------------------------------------------------

    def enqueue_mirror(
        self,
        feature: Feature,
        exchange: Exchange,
        headers: Any,
        target: str,
        user: str | None,
        ip: str,
    ) -> None:
        """Re-apply a successful write to the other store, durably; the user's next request to
        that store (and their next copy to it) waits for it (:mod:`banyan.proxy.fence`)."""
        if self.mirror is None or exchange.request_capture is None:
            return
        body = exchange.request_capture.value()
        if body is None:
            self.mirror.skipped_too_large += 1
            return
        self.mirror.submit(
            feature=feature.name,
            target=target,
            method=exchange.method,
            path_qs=exchange.path_qs,
            headers=dict(headers),
            body=body,
            idempotency_key=headers.get("Idempotency-Key", ""),
            release=self.fence.hold(target, user, ip),
        )

    def observe(self, exchange: Exchange, feature: Feature | None) -> None:
        status = str(exchange.status or (504 if exchange.error == "timeout" else 502))
        self.metrics.requests.inc(exchange.feature, exchange.backend, status)
        self.metrics.latency.observe(
            exchange.feature, exchange.backend, value=exchange.head_latency
        )
        self.requests[(exchange.feature, exchange.backend)] += 1
        if exchange.error in ("connect", "timeout", "closed"):
            self.metrics.upstream_errors.inc(exchange.feature, exchange.backend, exchange.error)
        if feature is not None:
            guard = self.guards.get(feature.name)
            if guard is not None:
                guard.observe_request(
                    exchange.backend, exchange.failed, exchange.head_latency * 1000
                )
                self.check_guard(feature.name)

    def check_guard(self, feature: str) -> None:
        guard = self.guards.get(feature)
        if guard is None:
            return
        breach = guard.evaluate()
        if breach is not None:
            self.spawn(self.roll_back(breach))

    async def roll_back(self, breach: Breach) -> None:
        """A guard tripped: put the feature on legacy in the file, audit, count, log."""
        current = self.flags.feature(breach.feature)
        if current is None or current.mode == "legacy":
            return
        details = asdict(breach)
        log.error("guard_rollback", **details)
        self.metrics.rollbacks.inc(breach.feature, breach.rule)
        self.breaches.append({"at": time.time(), **details, "message": breach.message})
        _GUARD_REASON[0] = breach.message
        try:
            await asyncio.to_thread(rollback, self.flags_path, breach.feature, source="guard")
        except Exception:
            log.exception("guard_rollback_failed", feature=breach.feature)
        finally:
            _GUARD_REASON[0] = None
        self.store.reload_now()


_GUARD_REASON: list[str | None] = [None]


def _edit_listener(state: ProxyState) -> Any:
    def listener(change: dict[str, Any]) -> None:
        if change.get("source") == "guard" and _GUARD_REASON[0]:
            change = {**change, "reason": _GUARD_REASON[0]}
        state.on_edit(change)

    return listener


# -- the request path ------------------------------------------------------------------------------


def _is_upgrade(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


def _decide(
    state: ProxyState, request: web.Request, request_id: str
) -> tuple[Decision, FlagSet, str | None]:
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
    decision, flags, user = _decide(state, request, request_id)
    feature = flags.feature(decision.feature) if decision.feature != "-" else None
    backend = flags.backends[decision.backend]
    pending = state.fence.pending(decision.backend, user, request.remote or "")
    if pending:  # this user's writes are still on their way to that backend: let them land first
        await state.fence.wait(pending)
    if _is_upgrade(request):
        return await _websocket(state, request, decision, feature, backend.url, request_id)
    state.gaps.enter()  # background work (shadow copies) waits while users' requests run
    try:
        return await _http(state, request, request_id, decision, feature, backend, user)
    finally:
        state.gaps.leave()


async def _http(
    state: ProxyState,
    request: web.Request,
    request_id: str,
    decision: Decision,
    feature: Feature | None,
    backend: BackendSpec,
    user: str | None,
) -> web.StreamResponse:
    assert state.session is not None
    method = request.method
    headers = upstream_headers(request, request_id)
    mirror_write = feature is not None and feature.writes != "skip" and method not in SAFE_METHODS
    if mirror_write and method == "POST" and "Idempotency-Key" not in headers:
        headers["Idempotency-Key"] = uuid.uuid4().hex
    shadowing = (
        feature is not None
        and state.shadow is not None
        and state.shadow.wants(feature, decision, method, request_id)
    )
    if shadowing and feature is not None and state.shadow is not None:
        # the copy's place in the caller's line to the candidate is taken now, before the answer
        # lets the caller send more (a WebSocket frame can arrive before this handler resumes)
        state.shadow.reserve(feature, decision, request)
    capture_limit = (
        feature.parity.max_body_bytes
        if feature is not None and (shadowing or mirror_write)
        else None
    )
    body, request_capture = request_body(request, capture_limit)
    exchange = Exchange(decision.feature, decision.backend, method, request.path_qs, request_id)
    exchange.request_capture = request_capture
    try:
        upstream = await open_upstream(
            state.session,
            method,
            yarl.URL(backend.url + request.raw_path, encoded=True),
            headers,
            body,
            timeout_of(backend),
        )
    except UpstreamError as exc:
        fallback = await _fallback(state, request, decision, feature, headers, exc)
        if fallback is None:
            exchange.error = exc.kind
            exchange.head_latency = time.perf_counter() - exchange.started
            state.observe(exchange, feature)
            refusal = gateway_error(exc, decision.backend)
            mark(refusal.headers, decision.feature, decision.backend, request_id)
            _access(state, exchange, refusal.status)
            return refusal
        upstream, exchange.backend, exchange.fallback = fallback, "legacy", True
        state.metrics.fallbacks.inc(decision.feature)
    response = await relay(
        request,
        upstream,
        exchange,
        capture_limit=capture_limit if shadowing else None,
        extra_headers={FALLBACK: "1"} if exchange.fallback else None,
    )
    state.observe(exchange, feature)
    _access(state, exchange, exchange.status)
    if feature is not None and exchange.error is None:
        compared = False
        if shadowing and state.shadow is not None and not exchange.fallback:
            compared = state.shadow.submit(feature, decision, request, exchange, headers)
        target = mirror_target(feature, decision, exchange.backend)
        if mirror_write and target is not None and 200 <= exchange.status < 300 and not compared:
            state.enqueue_mirror(feature, exchange, headers, target, user, request.remote or "")
    return response


def mirror_target(feature: Feature, decision: Decision, served_by: str) -> str | None:
    """Where a successful write of a ``writes: mirror`` feature is re-applied, if anywhere: on
    new, to legacy; in a canary, to the side that did not serve it (so moving the percent either
    way finds every record); in shadow, to the candidate when the write was not compared. With
    ``writes: always`` (revocations: a logout must hold on both sides), to the other side in every
    mode, legacy included."""
    if feature.writes == "always":
        return "new" if served_by == "legacy" else "legacy"
    if feature.mode == "new" and served_by == "new":
        return "legacy"
    if feature.mode == "canary":
        return "new" if served_by == "legacy" else "legacy"
    if feature.mode == "shadow":
        return decision.shadow
    return None


async def _fallback(
    state: ProxyState,
    request: web.Request,
    decision: Decision,
    feature: Feature | None,
    headers: Any,
    exc: UpstreamError,
) -> aiohttp.ClientResponse | None:
    """A safe, bodiless request whose chosen new backend is unreachable goes to legacy."""
    if (
        feature is None
        or not feature.fallback
        or decision.backend != "new"
        or exc.kind != "connect"
        or request.method not in SAFE_METHODS
        or request.body_exists
    ):
        return None
    legacy = state.flags.backends["legacy"]
    assert state.session is not None
    try:
        return await open_upstream(
            state.session,
            request.method,
            yarl.URL(legacy.url + request.raw_path, encoded=True),
            headers,
            None,
            timeout_of(legacy),
        )
    except UpstreamError:
        return None


def _access(state: ProxyState, exchange: Exchange, status: int) -> None:
    if state.access_log:
        log.info(
            "request",
            request_id=exchange.request_id,
            feature=exchange.feature,
            backend=exchange.backend,
            method=exchange.method,
            path=redact_url(exchange.path_qs),
            status=status,
            duration_ms=round((time.perf_counter() - exchange.started) * 1000, 3),
            error=exchange.error,
            fallback=exchange.fallback or None,
        )


async def _websocket(
    state: ProxyState,
    request: web.Request,
    decision: Decision,
    feature: Feature | None,
    base_url: str,
    request_id: str,
) -> web.StreamResponse:
    """Open the upstream socket, answer the client, then carry frames until either side ends: as
    a byte tunnel when nothing reads the frames (:mod:`banyan.proxy.tunnel`), else as a frame
    bridge feeding a shadow or mirror tap (:mod:`banyan.proxy.websocket`)."""
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
        exchange.error = (
            "connect" if response.status == 502 else ("timeout" if response.status == 504 else None)
        )
        state.observe(exchange, feature)
        _access(state, exchange, response.status)
        return response
    state.observe(exchange, feature)
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
        _access(state, exchange, 101)
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
    tap: FrameTap | None = None
    if feature is not None and state.shadow is not None and decision.mode == "shadow":
        shadowed = feature

        def fallback() -> FrameTap | None:  # the candidate could not be reached: write through
            return _mirror_tap(state, request, shadowed, decision, headers)

        tap = state.shadow.websocket_tap(feature, decision, request, headers, fallback)
    if tap is None and feature is not None:  # a socket not compared still writes through
        tap = _mirror_tap(state, request, feature, decision, headers)
    return tap


def _mirror_tap(
    state: ProxyState,
    request: web.Request,
    feature: Feature,
    decision: Decision,
    headers: Any,
) -> TurnMirrorTap | BoardMirrorTap | None:
    """With ``writes: mirror``, what a tutor or whiteboard socket writes reaches the other store:
    finished turns as message appends, a room's document as Yjs updates."""
    if state.mirror is None or feature.writes == "skip":
        return None
    target = mirror_target(feature, decision, decision.backend)
    if target is None:
        return None
    authorization = credentials(request.headers, request.query)
    user = user_from_authorization(authorization, None)
    ip = request.remote or ""
    if request.path.startswith(WHITEBOARD_PREFIX) and state.ws_session is not None:
        url = state.flags.backends[target].url + request.raw_path

        async def ready() -> bool:
            return await state.fence.wait(state.fence.pending(target, user, ip))

        return BoardMirrorTap(state.ws_session, url, headers, feature=feature.name, ready=ready)
    session_id = tutor_session(request.path)
    if session_id is None or authorization is None:
        return None
    return TurnMirrorTap(
        feature=feature.name,
        target=target,
        session_id=session_id,
        authorization=authorization,
        submit=state.mirror.submit,
        hold=lambda: state.fence.hold(target, user, ip),
    )


# -- lifecycle -------------------------------------------------------------------------------------


async def _healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "service": "proxy"})


async def _readyz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    ready = state.session is not None and not state.session.closed
    return web.json_response(
        {"status": "ready" if ready else "starting"}, status=200 if ready else 503
    )


async def _startup(app: web.Application) -> None:
    state = app[STATE]
    connector = aiohttp.TCPConnector(
        limit=1000, limit_per_host=0, keepalive_timeout=30, ttl_dns_cache=300
    )
    state.session = aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
        skip_auto_headers=("User-Agent",),
    )
    state.ws_session = websocket_session()
    state.store.subscribe(state.on_flags)
    state.metrics.flags_info.set(state.flags.digest, value=1)
    state._sync_guards(state.flags)
    listener = _edit_listener(state)
    app[_LISTENER] = listener
    EDIT_LISTENERS.append(listener)
    await state.store.start()
    state.health = HealthProbe(
        state.session,
        lambda: {n: b.url for n, b in state.flags.backends.items()},
        interval=state.health_interval,
        on_result=lambda name, up: state.metrics.backend_up.set(name, value=1 if up else 0),
    )
    state.health.start()
    if state.mirror is not None:
        await state.mirror.start(state.session, {n: b.url for n, b in state.flags.backends.items()})
    if state.shadow is not None:
        await state.shadow.start(state)


async def _shutdown(app: web.Application) -> None:
    await app[STATE].bridges.close_all()


async def _cleanup(app: web.Application) -> None:
    state = app[STATE]
    listener = app.get(_LISTENER)
    if listener in EDIT_LISTENERS:
        EDIT_LISTENERS.remove(listener)
    for task in list(state._tasks):
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
    if state.shadow is not None:
        await state.shadow.stop()
    if state.health is not None:
        await state.health.stop()
    if state.mirror is not None:
        await state.mirror.stop()
    await state.store.stop()
    if state.session is not None:
        await state.session.close()
    if state.ws_session is not None:
        await state.ws_session.close()


def websocket_session() -> aiohttp.ClientSession:
    """The client session for upstream WebSockets: its connector has no connection limit (the
    proxy's socket limit bounds them, :mod:`banyan.proxy.admission`) and shares none with HTTP."""
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=300)
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
        skip_auto_headers=("User-Agent",),
    )


_LISTENER: web.AppKey[Any] = web.AppKey("banyan_edit_listener")


def mirror_url(flags_path: Path) -> str:
    return (
        os.environ.get("BANYAN_MIRROR_DB")
        or f"sqlite+aiosqlite:///{flags_path.parent / 'mirror.db'}"
    )


def create_app(
    flags_path: str | Path,
    *,
    access_log: bool = True,
    health_interval: float = 2.0,
    shadow: ShadowHook | None = None,
    mirror: MirrorQueue | None = None,
    poll_interval: float | None = None,
    admission: AdmissionLimits | None = None,
) -> web.Application:
    """The proxy for the flag file at ``flags_path`` (which must be valid right now)."""
    path = Path(flags_path).resolve()
    store = (
        FlagStore(path) if poll_interval is None else FlagStore(path, poll_interval=poll_interval)
    )
    state = ProxyState(
        flags_path=path,
        store=store,
        access_log=access_log,
        health_interval=health_interval,
        audit=AuditLog(default_path(path)),
        mirror=mirror if mirror is not None else MirrorQueue(mirror_url(path)),
        shadow=shadow,
        admission=Admission(admission if admission is not None else AdmissionLimits.from_env()),
    )
    app = web.Application(client_max_size=1024**4)
    app[STATE] = state
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    admin.add_admin_routes(app, STATE)
    app.router.add_route("*", "/{tail:.*}", admitted(state.admission, handle, state.on_refusal))
    app.on_startup.append(_startup)
    app.on_shutdown.append(_shutdown)
    app.on_cleanup.append(_cleanup)
    return app
