"""The proxy application: factory, lifecycle and the request path.

For every request: a request id, one routing decision from the router of the flag version in force
when the request arrived (so a flip never changes the backend of a request in flight), then either
the WebSocket bridge or a streamed HTTP exchange (:mod:`banyan.proxy.http_path`). After the
answer is streamed, the exchange feeds metrics, the feature's guard, the access log (one line),
the shadow comparison and the write mirror — none of which the client waits for.

Lifecycle: on startup the upstream pools (HTTP forwarding, :mod:`banyan.proxy.upstream`), the
shared aiohttp client session (health probes, the mirror queue), the WebSocket session (a
connector of its own without a pool limit: a socket holds its connection for its whole life, so
sharing a limit would let idle sockets starve everything else), the flag watcher, the health
probe and the mirror queue start; on shutdown open WebSockets are closed with 1001 and in-flight
HTTP requests drain (the runner's shutdown timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from aiohttp import web

from banyan.control.mirror import shared_queue
from banyan.control.plane import ControlPlane
from banyan.logs import get_logger
from banyan.parity.noise import endpoint_key
from banyan.proxy import admin
from banyan.proxy.admission import Admission, AdmissionLimits, admitted
from banyan.proxy.audit import AuditLog, default_path
from banyan.proxy.board_mirror import WHITEBOARD_PREFIX, BoardMirrorTap
from banyan.proxy.cors import is_preflight, preflight, response_hook
from banyan.proxy.fence import WriteFence
from banyan.proxy.flag_edit import EDIT_LISTENERS, rollback
from banyan.proxy.flags import Feature, FlagSet, FlagStore, GuardConfig
from banyan.proxy.forward import (
    UPSTREAM_FAILURES,
    Exchange,
    error_response,
)
from banyan.proxy.front import ProxyRunner
from banyan.proxy.gaps import IdleGaps
from banyan.proxy.guards import Breach, GuardBoard
from banyan.proxy.headers import mark, request_id_of, upstream_headers
from banyan.proxy.health import HealthProbe
from banyan.proxy.http_path import access as _access
from banyan.proxy.http_path import forward_http, mirror_target
from banyan.proxy.limits import Limits
from banyan.proxy.metrics import ProxyMetrics
from banyan.proxy.mirror import MirrorQueue
from banyan.proxy.mirror_order import SubmitOrder
from banyan.proxy.routing import NOT_ROUTED, Decision, user_from_authorization
from banyan.proxy.stamping import Stamper
from banyan.proxy.tunnel import Tunnel, open_tunnel, run_tunnel
from banyan.proxy.turn_mirror import TurnMirrorTap, credentials, tutor_session
from banyan.proxy.upstream import Upstreams
from banyan.proxy.websocket import Bridge, BridgeRegistry, FrameTap, open_bridge, run_bridge
from banyan.rollout import admin as rollout_admin
from banyan.serving import RUNNER

log = get_logger("proxy")

STATE: web.AppKey[ProxyState] = web.AppKey("banyan_proxy_state")


class ShadowHook(Protocol):
    """Parity's entry points on the request path (see ``banyan/proxy/shadow/``)."""

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
    mirror_order: SubmitOrder = field(default_factory=SubmitOrder)  # one line per user, in order
    gaps: IdleGaps = field(default_factory=IdleGaps)
    audit: AuditLog | None = None
    control: ControlPlane | None = None  # --control-db: runtime changes shared by replicas
    mirror: MirrorQueue | None = None
    shadow: ShadowHook | None = None
    session: aiohttp.ClientSession | None = None  # health probes, the mirror queue
    ws_session: aiohttp.ClientSession | None = None  # upstream WebSockets only (own connector)
    limits: Limits = field(default_factory=Limits)
    stamper: Stamper = field(default_factory=Stamper.from_env)  # writes' times (X-Banyan-Stamp)
    upstreams: Upstreams | None = None  # HTTP forwarding: one pool per backend
    health: HealthProbe | None = None
    requests: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    breaches: list[dict[str, Any]] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    _edit_digests: set[str] = field(default_factory=set)
    _refusal_logged: dict[str, float] = field(default_factory=dict)
    _audit_writes: asyncio.Future[None] | None = None
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
        if self.control is not None:
            self.spawn(self.control.audit_reload(old, new))
        elif self.audit is not None and new.digest not in self._edit_digests:
            self._audit_reload(self.audit, old, new)
        self._edit_digests.discard(new.digest)
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
        self._tasks.add(self._audit_writes)
        self._audit_writes.add_done_callback(self._tasks.discard)

    async def audit_settled(self) -> None:
        """Wait until every reload seen so far is in the audit log."""
        if self._audit_writes is not None:
            await asyncio.wait([self._audit_writes])

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
        # only guarded features: a feature without a rule never has a guard, and a file of
        # 10,000 features must not cost 10,000 guard rebuilds on the loop
        self.guards.sync(
            {
                f.name: (f"{f.mode}:{f.percent}:{f.primary}", f.guards)
                for f in flags.features
                if f.guards != _NO_GUARDS
            }
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

    def copies_in_flight(
        self, target: str, user: str | None, ip: str
    ) -> list[asyncio.Future[None]]:
        """The user's shadow copies on their way to ``target``, reads included: a write joining
        the mirror queue waits for them, so it never changes what an earlier copy reads (a
        logout must not reach the candidate before the read copy made with its token)."""
        copies = self.fence.copies(target, user, ip)
        reads = getattr(self.shadow, "reads", None)
        if isinstance(reads, WriteFence):
            copies += reads.pending(target, user, ip)
        return copies

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
        that store (and their next copy to it) waits for it (:mod:`banyan.proxy.fence`). It joins
        the queue after the user's copies still in flight there (:mod:`banyan.proxy.mirror_order`).
        """
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
        lane = (target, user or f"ip:{ip}")
        # in the order the requests arrived (a failed copy's write comes back late)
        self.mirror_order.submit(lane, exchange.started, copies, lambda: mirror.submit(**write))

    def observe(self, exchange: Exchange, feature: Feature | None) -> None:
        status = str(exchange.status or (504 if exchange.error == "timeout" else 502))
        self.metrics.requests.inc(exchange.feature, exchange.backend, status)
        self.metrics.latency.observe(
            exchange.feature, exchange.backend, value=exchange.head_latency
        )
        self.requests[(exchange.feature, exchange.backend)] += 1
        if exchange.error in UPSTREAM_FAILURES:
            self.metrics.upstream_errors.inc(exchange.feature, exchange.backend, exchange.error)
        if feature is not None:
            observers = self.guards.observers(feature.name)
            if observers:
                endpoint = endpoint_key(exchange.method, exchange.path_qs)
                for guard in observers:
                    guard.observe_request(
                        exchange.backend,
                        exchange.failed,
                        exchange.head_latency * 1000,
                        endpoint=endpoint,
                        status=exchange.status,
                    )
                self.check_guard(feature.name)

    def check_guard(self, feature: str) -> None:
        guard = self.guards.get(feature)
        if guard is None or self.control is not None:  # shared: judged on all replicas' windows
            return
        breach = guard.evaluate()
        if breach is not None:
            self.spawn(self.roll_back(breach))

    async def roll_back(self, breach: Breach) -> None:
        """A guard tripped: put the feature on legacy (in the file, or as an override in the
        control store), audit, count, log."""
        current = self.flags.feature(breach.feature)
        if current is None or current.mode == "legacy":
            return
        details = asdict(breach)
        if self.control is not None:  # one decision across replicas, the file never written
            try:
                decided = await self.control.roll_back(breach.feature, breach.message)
            except Exception:
                log.exception("guard_rollback_failed", feature=breach.feature)
                return
            if not decided:  # another replica (or an operator) already put it on legacy
                log.info("guard_rollback_decided_elsewhere", **details)
                return
        log.error("guard_rollback", **details)
        self.metrics.rollbacks.inc(breach.feature, breach.rule)
        self.breaches.append({"at": time.time(), **details, "message": breach.message})
        on_report = getattr(self.shadow, "record_rollback", None)  # the parity report shows it
        if on_report is not None:
            on_report({**details, "message": breach.message})
        if self.control is not None:
            return
        _GUARD_REASON[0] = breach.message
        try:
            await asyncio.to_thread(rollback, self.flags_path, breach.feature, source="guard")
        except Exception:
            log.exception("guard_rollback_failed", feature=breach.feature)
        finally:
            _GUARD_REASON[0] = None
        await self.store.reload()


_GUARD_REASON: list[str | None] = [None]
_NO_GUARDS = GuardConfig()


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
    cors = state.flags.cors
    if cors is not None and is_preflight(request):  # answered at the edge, never forwarded
        answer = preflight(cors, request)
        mark(answer.headers, "-", "proxy", request_id)
        return answer
    decision, flags, user = _decide(state, request, request_id)
    if decision is NOT_ROUTED:  # a backend's operator-only path (/metrics): never sent on
        refusal = error_response(404, "not_found", decision.reason)
        mark(refusal.headers, decision.feature, decision.backend, request_id)
        return refusal
    feature = flags.feature(decision.feature) if decision.feature != "-" else None
    backend = flags.backends[decision.backend]
    pending = state.fence.pending(decision.backend, user, request.remote or "")
    if pending:  # this user's writes are still on their way to that backend: let them land first
        await state.fence.wait(pending)
    if _is_upgrade(request):
        return await _websocket(state, request, decision, feature, backend.url, request_id)
    state.gaps.enter()  # background work (shadow copies) waits while users' requests run
    try:
        return await forward_http(state, request, request_id, decision, feature, backend, user)
    finally:
        state.gaps.leave()


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
    mirror, lane = state.mirror, (target, user or f"ip:{ip}")

    def submit_in_order(**write: Any) -> None:
        # a turn joins the user's line like an HTTP write: after the user's copies still in
        # flight to that store (the session it belongs to may be one of them)
        copies = state.copies_in_flight(target, user, ip)
        arrived = time.perf_counter()
        state.mirror_order.submit(lane, arrived, copies, lambda: mirror.submit(**write))

    return TurnMirrorTap(
        feature=feature.name,
        target=target,
        session_id=session_id,
        authorization=authorization,
        submit=submit_in_order,
        hold=lambda: state.fence.hold(target, user, ip, queued=True),
        stamper=state.stamper,
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
    state.upstreams = Upstreams(state.limits)
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
    if state.control is not None:
        await state.control.start(state.store)
        state.control.share_guards(state)
    await state.store.start()
    state.health = HealthProbe(
        state.session,
        lambda: {n: b.url for n, b in state.flags.backends.items()},
        interval=state.health_interval,
        on_result=lambda name, up: state.metrics.backend_up.set(name, value=1 if up else 0),
    )
    state.health.start()
    if state.mirror is not None:
        state.mirror.stamper = state.stamper
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
    await state.mirror_order.flush()  # writes waiting for a copy are stored before the queue stops
    if state.mirror is not None:
        await state.mirror.stop()
    await state.store.stop()
    if state.control is not None:
        await state.control.stop()
    if state.upstreams is not None:
        state.upstreams.close()
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
    limits: Limits | None = None,
    admission: AdmissionLimits | None = None,
    control_db: str | None = None,
) -> web.Application:
    """The proxy for the flag file at ``flags_path`` (which must be valid right now); header
    ``limits`` and the ``admission`` limits (open sockets, requests in flight) default to the
    environment's (:meth:`Limits.from_env`, :meth:`AdmissionLimits.from_env`). With
    ``control_db`` (a PostgreSQL URL) runtime changes live in that control store
    (:mod:`banyan.control`) and the flag file is only read."""
    path = Path(flags_path).resolve()
    store = (
        FlagStore(path) if poll_interval is None else FlagStore(path, poll_interval=poll_interval)
    )
    state = ProxyState(
        flags_path=path,
        store=store,
        access_log=access_log,
        health_interval=health_interval,
        audit=None if control_db else AuditLog(default_path(path)),
        control=ControlPlane(control_db, path) if control_db else None,
        mirror=mirror if mirror is not None else MirrorQueue(mirror_url(path)),
        shadow=shadow,
        limits=limits or Limits.from_env(),
        admission=Admission(admission if admission is not None else AdmissionLimits.from_env()),
    )
    if control_db and mirror is None:  # replicas sharing a PostgreSQL mirror queue and fence
        shared = shared_queue(mirror_url(path))
        if shared is not None:
            state.mirror, state.fence = shared
    app = web.Application(client_max_size=1024**4)
    app[STATE] = state
    runner: Callable[..., web.AppRunner] = functools.partial(ProxyRunner, limits=state.limits)
    app[RUNNER] = runner
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    rollout_admin.install(app, STATE)  # before the admin catch-all
    admin.add_admin_routes(app, STATE)
    app.router.add_route("*", "/{tail:.*}", admitted(state.admission, handle, state.on_refusal))
    app.on_response_prepare.append(response_hook(lambda: state.flags.cors))
    app.on_startup.append(_startup)
    app.on_shutdown.append(_shutdown)
    app.on_cleanup.append(_cleanup)
    return app
