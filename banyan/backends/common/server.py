"""What both backend servers share around their app: the request log middleware and the command
line (``banyan legacy|new --host H --port P --db URL [--redis URL] [--dev]``; ``--redis``, default
``BANYAN_REDIS_URL``, lets several replicas of the backend share whiteboards, tutor notices and
live queries — :mod:`banyan.backends.common.fanout`). Without ``BANYAN_JWT_SECRET`` a backend
exits with code 2 and one line naming it, unless ``--dev`` (or ``BANYAN_DEV=1``) makes it a
development run with a random secret (:mod:`banyan.backends.common.tokens`)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from banyan.backends.common import tokens
from banyan.logs import configure as configure_logs
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
    parser.add_argument(
        "--dev",
        action="store_true",
        default=False,
        help="development run: sign tokens with a random secret when BANYAN_JWT_SECRET is unset"
        " (also BANYAN_DEV=1)",
    )
    args = parser.parse_args(argv)
    try:
        tokens.require_secret(dev=args.dev)
    except tokens.MissingSecret as exc:
        print(f"banyan {service}: {exc}", file=sys.stderr, flush=True)
        return 2
    if not os.environ.get(tokens.SECRET_ENV):
        configure_logs()
        get_logger(service).warning(
            "development run: tokens are signed with a random secret that ends with this process;"
            " set BANYAN_JWT_SECRET to share one with the other backend"
        )
    create_app = importlib.import_module(f"banyan.backends.{service}.app").create_app
    run(service, lambda: create_app(args.db, redis_url=args.redis), args.host, args.port)
    return 0
