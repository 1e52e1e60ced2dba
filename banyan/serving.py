"""Running an aiohttp application as a Banyan server process.

Owns the event-loop policy (uvloop when installed), binding (port 0 allowed, the bound address is
printed on stdout as ``banyan <name> listening on http://HOST:PORT``), ``reuse_port`` for multi-
worker setups, the soft open-files limit raised to the hard one at start, the client read
timeouts of every connection (:mod:`banyan.client_timeouts`), the started heap frozen out of the
garbage collector's way, and graceful shutdown on SIGINT/SIGTERM that lets in-flight requests
drain.

Also :func:`serve`, an application on a loopback port for the length of a block (the contract
suite's, the benches' and the tests' servers).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import resource
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from banyan import descriptors
from banyan.client_timeouts import ClientTimeouts, GuardedAppRunner
from banyan.logs import get_logger

AppFactory = Callable[[], Awaitable[web.Application]] | Callable[[], web.Application]
# An application that needs its own server settings (the proxy: parser limits, request bodies
# left encoded) names the runner to serve it with (a GuardedAppRunner subclass, which takes the
# client ``timeouts``); others get GuardedAppRunner itself.
RUNNER: web.AppKey[Callable[..., web.AppRunner]] = web.AppKey("banyan_runner")
# Connections the kernel completes before the event loop accepts them. aiohttp's 128 overflowed
# when 200 clients connected at once to a busy process: the kernel dropped the extra handshakes,
# the clients resent them a second later, and a proxy's 2 s connect timeout became 504s. The
# kernel caps it at net.core.somaxconn (4096 on current Linux).
BACKLOG = 2048


def install_uvloop() -> None:
    """Use uvloop for the process when it is available (it is a declared dependency)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - non-POSIX platforms
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def start_site(
    app: web.Application,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    reuse_port: bool = False,
    shutdown_timeout: float = 10.0,
    timeouts: ClientTimeouts | None = None,
) -> tuple[web.AppRunner, str]:
    """Start ``app`` on ``host:port`` and return the runner and its base URL (port 0 resolved)."""
    make_runner = app.get(RUNNER, GuardedAppRunner)
    runner = make_runner(
        app,
        timeouts=timeouts if timeouts is not None else ClientTimeouts.from_env(os.environ),
        handle_signals=False,
        access_log=None,
        shutdown_timeout=shutdown_timeout,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None, backlog=BACKLOG)
    await site.start()
    server = site._server
    assert server is not None
    sockets = getattr(server, "sockets", None) or []
    bound_port = sockets[0].getsockname()[1] if sockets else port
    shown_host = f"[{host}]" if ":" in host else host
    return runner, f"http://{shown_host}:{bound_port}"


@contextlib.asynccontextmanager
async def serve(
    app: web.Application, host: str = "127.0.0.1", *, timeouts: ClientTimeouts | None = None
) -> AsyncIterator[str]:
    """Serve ``app`` inside the running event loop on ``host``, port 0, for the length of the
    block; yield its base URL. What the contract suite, the benches and the tests start their
    servers with (real sockets, one process)."""
    runner, url = await start_site(app, host, 0, shutdown_timeout=2.0, timeouts=timeouts)
    try:
        yield url
    finally:
        await runner.cleanup()


def raise_descriptor_limit() -> None:
    """Lift the soft limit on open files to the hard one, and say so: every socket is one."""
    before, now = descriptors.raise_limit()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    get_logger("server").info(
        "descriptor_limit_raised" if now > before else "descriptor_limit",
        soft_before=before,
        soft=now,
        hard=hard,
    )


def settle_heap() -> None:
    """Move everything alive after startup (modules, routes, engines) out of the collector's way.

    A full collection walks every tracked object; a started server holds a few hundred thousand
    that live as long as the process, and walking them stalled every request in flight for tens
    of milliseconds. Frozen objects are never examined again, so later collections walk only
    what requests create."""
    gc.collect()
    gc.freeze()


async def serve_forever(
    name: str,
    factory: AppFactory,
    host: str,
    port: int,
    *,
    reuse_port: bool = False,
    shutdown_timeout: float = 10.0,
    timeouts: ClientTimeouts | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM, then drain in-flight requests and run cleanup hooks."""
    made = factory()
    app = await made if asyncio.iscoroutine(made) else made
    assert isinstance(app, web.Application)
    runner, url = await start_site(
        app,
        host,
        port,
        reuse_port=reuse_port,
        shutdown_timeout=shutdown_timeout,
        timeouts=timeouts,
    )
    settle_heap()
    print(f"banyan {name} listening on {url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        print(f"banyan {name} shutting down", file=sys.stderr, flush=True)
        await runner.cleanup()


def run(
    name: str,
    factory: AppFactory,
    host: str,
    port: int,
    *,
    reuse_port: bool = False,
    shutdown_timeout: float = 10.0,
    timeouts: ClientTimeouts | None = None,
    log_level: str | None = None,
) -> None:
    """Blocking entry point used by the command line."""
    from banyan import logs

    logs.configure(log_level)
    raise_descriptor_limit()
    install_uvloop()
    asyncio.run(
        serve_forever(
            name,
            factory,
            host,
            port,
            reuse_port=reuse_port,
            shutdown_timeout=shutdown_timeout,
            timeouts=timeouts,
        )
    )
