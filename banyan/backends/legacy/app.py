"""The legacy backend's application factory and lifecycle.

``create_app(db_url)`` builds the aiohttp app: contract error middleware, a one-line request log,
the write-stamp middleware (:mod:`banyan.backends.common.stamped`), the routes of every resource
module, ``/healthz`` and ``/readyz``, the live hub, and the collector in the background. The schema
is migrated at startup.
"""

from __future__ import annotations

import asyncio
import os

from aiohttp import web

from banyan.backends.common import fanout, tokens
from banyan.backends.common.errors import error_middleware
from banyan.backends.common.job_policy import JobSettings
from banyan.backends.common.jobs import settings_from_env as job_settings
from banyan.backends.common.server import request_log
from banyan.backends.common.stamped import stamp_middleware
from banyan.backends.common.webapp import add_routes as add_webapp_routes
from banyan.backends.legacy import (
    agents,
    analytics,
    auth,
    documents,
    folders,
    gc,
    jobs,
    live,
    metrics,
    migrations,
    quizzes,
    sessions,
    tutor,
    whiteboard,
)
from banyan.backends.legacy.db import Database
from banyan.backends.legacy.state import STATE, LegacyState
from banyan.logs import get_logger
from banyan.tasks import cancel_and_wait

log = get_logger("legacy")
DEFAULT_TTL = 30 * 24 * 3600


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "service": "legacy"})


async def readyz(request: web.Request) -> web.Response:
    ready = request.app.get(_READY, False)
    return web.json_response(
        {"status": "ready" if ready else "starting"}, status=200 if ready else 503
    )


_READY: web.AppKey[bool] = web.AppKey("legacy_ready")
_GC: web.AppKey[asyncio.Task[None]] = web.AppKey("legacy_gc")


def create_app(
    db_url: str = "sqlite+aiosqlite:///legacy.db",
    *,
    gc_interval: float | None = None,
    session_ttl: float | None = None,
    whiteboard_grace: float = 10.0,
    job_backoff: float | None = None,
    job_lease: float | None = None,
    redis_url: str | None = None,
    redis_prefix: str | None = None,
) -> web.Application:
    tokens.require_secret()  # no backend without a JWT secret (or a dev run)
    st = LegacyState(
        db=Database(db_url),
        session_ttl_ms=int(
            1000 * (session_ttl or float(os.environ.get("BANYAN_SESSION_TTL", DEFAULT_TTL)))
        ),
        gc_interval=gc_interval or float(os.environ.get("BANYAN_GC_INTERVAL", 60)),
    )
    st.live = live.make_hub(st)
    app = web.Application(
        middlewares=[error_middleware, request_log("legacy"), stamp_middleware],
        client_max_size=16 * 1024 * 1024,
    )
    app[STATE] = st
    _add_routes(app, st, whiteboard_grace, job_settings(backoff=job_backoff, lease=job_lease))
    app.on_startup.append(_startup)
    app.on_shutdown.append(_shutdown)
    bus = fanout.install(app, "legacy", redis_url, redis_prefix)  # replicas (BANYAN_REDIS_URL)
    if bus is not None:
        app[whiteboard.ROOMS].share(bus)
        st.live.share(bus)
    app.on_cleanup.append(_cleanup)
    return app


def _add_routes(
    app: web.Application, st: LegacyState, whiteboard_grace: float, settings: JobSettings
) -> None:
    """Every resource module's routes, the probes, the web app, the live socket; the job
    worker set up with ``settings``."""
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    add_webapp_routes(app)  # the AI Tutor web app at / (banyan/webapp)
    app.router.add_get("/ws/live", live.live_socket)
    for module in (auth, folders, sessions, tutor):
        module.add_routes(app)
    whiteboard.add_routes(app, grace=whiteboard_grace)
    metrics.install(app)
    jobs.install(st, settings=settings)
    for work in (jobs, agents, documents):
        work.add_routes(app)
    for extra in (quizzes, analytics):
        extra.add_routes(app)


async def _startup(app: web.Application) -> None:
    st = app[STATE]
    await migrations.migrate(st.db)
    await jobs.worker_of(st).start()
    app[_GC] = asyncio.create_task(gc.run_forever(st), name="legacy-gc")
    app[_READY] = True


async def _shutdown(app: web.Application) -> None:
    st = app[STATE]
    await jobs.worker_of(st).stop()
    if st.live is not None:
        await st.live.close()


async def _cleanup(app: web.Application) -> None:
    await cancel_and_wait([app.get(_GC)])
    await app[STATE].db.close()
