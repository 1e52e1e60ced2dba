"""What both backend servers share around their app: the request log middleware and the command
line (``banyan legacy|new --host H --port P --db URL [--redis URL]``; ``--redis``, default
``BANYAN_REDIS_URL``, lets several replicas of the backend share whiteboards, tutor notices and
live queries — :mod:`banyan.backends.common.fanout`)."""

from __future__ import annotations

import argparse
import importlib
import os
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from banyan.logs import get_logger
from banyan.serving import run

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def request_log(service: str) -> Middleware:
    """One debug line per request: method, path, status, duration and the proxy's request id."""
    log = get_logger(service)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        response = await handler(request)
        log.debug(
            "request",
            method=request.method,
            path=request.path,
            status=response.status,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
            request_id=request.headers.get("X-Request-Id"),
        )
        return response

    return middleware


def backend_main(service: str, default_port: int, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog=f"banyan {service}", description=f"Run the {service} AI Tutor backend."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port)
    parser.add_argument("--db", default=f"sqlite+aiosqlite:///{service}.db")
    parser.add_argument(
        "--redis",
        default=os.environ.get("BANYAN_REDIS_URL") or None,
        help="Redis URL shared by the replicas of this backend (default $BANYAN_REDIS_URL)",
    )
    args = parser.parse_args(argv)
    create_app = importlib.import_module(f"banyan.backends.{service}.app").create_app
    run(service, lambda: create_app(args.db, redis_url=args.redis), args.host, args.port)
    return 0
