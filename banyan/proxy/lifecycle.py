"""One proxy's life: what starts before the first request and stops after the last.

On startup the upstream pools (HTTP forwarding, :mod:`banyan.proxy.upstream`), the shared aiohttp
client session (health probes, the mirror queue), the WebSocket session (a connector of its own
without a pool limit: a socket holds its connection for its whole life, so sharing a limit would
let idle sockets starve everything else), the flag watcher, the health probe, the mirror queue
and the shadow start; on shutdown open WebSockets are closed with 1001 and in-flight HTTP
requests drain (the runner's shutdown timeout); on cleanup the rest stops in reverse order.
Also the proxy's own probes, ``/healthz`` and ``/readyz``.
"""

from __future__ import annotations

import aiohttp
from aiohttp import web

from banyan.proxy.flag_reactions import sync_guards
from banyan.proxy.health import HealthProbe
from banyan.proxy.state import STATE, ProxyState
from banyan.proxy.upstream import Upstreams


def add_probes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)


def install(app: web.Application) -> None:
    """Register the lifecycle hooks on ``app`` (its ``STATE`` set), after any part whose own
    hooks must run first (the rollout controller starts before the flag watcher)."""
    app.on_startup.append(startup)
    app.on_shutdown.append(shutdown)
    app.on_cleanup.append(cleanup)


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "service": "proxy"})


async def readyz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    ready = state.session is not None and not state.session.closed
    return web.json_response(
        {"status": "ready" if ready else "starting"}, status=200 if ready else 503
    )


def client_session() -> aiohttp.ClientSession:
    """The shared session for health probes and the mirror queue."""
    connector = aiohttp.TCPConnector(
        limit=1000, limit_per_host=0, keepalive_timeout=30, ttl_dns_cache=300
    )
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
        skip_auto_headers=("User-Agent",),
    )


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


async def startup(app: web.Application) -> None:
    state = app[STATE]
    state.upstreams = Upstreams(state.limits)
    state.session = client_session()
    state.ws_session = websocket_session()
    state.store.subscribe(state.reactions.on_flags)
    state.metrics.flags_info.set(state.flags.digest, value=1)
    sync_guards(state.guards, state.flags)
    if state.control is not None:
        await state.control.start(state.store)
        state.control.share_guards(state)
    await state.store.start()
    state.health = _health_probe(state, state.session)
    state.health.start()
    if state.mirror is not None:
        state.mirror.stamper = state.stamper
        await state.mirror.start(state.session, {n: b.url for n, b in state.flags.backends.items()})
    if state.shadow is not None:
        await state.shadow.start(state)


def _health_probe(state: ProxyState, session: aiohttp.ClientSession) -> HealthProbe:
    def backends() -> dict[str, str]:
        return {n: b.url for n, b in state.flags.backends.items()}

    def on_result(name: str, up: bool) -> None:
        state.metrics.backend_up.set(name, value=1 if up else 0)

    return HealthProbe(session, backends, interval=state.health_interval, on_result=on_result)


async def shutdown(app: web.Application) -> None:
    await app[STATE].bridges.close_all()


async def cleanup(app: web.Application) -> None:
    state = app[STATE]
    await state.drain(5.0)
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
