"""Writes stamped by the proxy, on both backends: the middleware that reads ``X-Banyan-Stamp``.

On an unsafe request (POST, PUT, PATCH, DELETE) carrying a stamp, the middleware verifies it with
:func:`banyan.stamps.read_stamp` under the backend's JWT secret, for this request's method, target
(path and query as received) and key (``Idempotency-Key``, else ``X-Request-Id``). A stamp that
verifies runs the handler at the stamp's time (:func:`banyan.backends.common.clock.frozen_at`),
and :func:`stamp_of` hands it to authentication: a ``mirror`` stamp names the user the request
acts for (:func:`mirror_user`). A stamp that does not verify is answered ``400 invalid_stamp``
before the handler runs — never trusted and never silently dropped, so a proxy with the wrong
secret or a skewed clock is seen at its first write rather than in a later ``banyan data
verify``. Safe requests (GET, HEAD, OPTIONS, WebSocket upgrades) ignore the header: they write
nothing the proxy stamps.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from banyan import stamps
from banyan.backends.common import clock, tokens
from banyan.backends.common.errors import ApiError
from banyan.errors import MalformedStamp, StampError
from banyan.logs import get_logger

log = get_logger("backend.stamps")

STAMP_KEY: web.RequestKey[stamps.Stamp] = web.RequestKey("banyan_stamp", stamps.Stamp)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class InvalidStamp(ApiError):
    status, code = 400, "invalid_stamp"


def read_request_stamp(request: web.Request) -> stamps.Stamp | None:
    """The request's verified stamp, None without one; :class:`InvalidStamp` when it fails."""
    if request.method not in stamps.UNSAFE_METHODS:
        return None
    found = request.headers.getall(stamps.HEADER, [])
    if not found:
        return None
    try:
        if len(found) > 1:
            raise MalformedStamp("a request carries one stamp")
        return stamps.read_stamp(
            found[0],
            secret=tokens.secret(),
            method=request.method,
            target=request.raw_path,
            key=stamps.binding_key(request.headers),
            now_ms=clock.wall_ms(),
        )
    except StampError as exc:
        log.warning(
            "stamp_refused",
            reason=exc.reason,
            method=request.method,
            path=request.path,
            request_id=request.headers.get(stamps.REQUEST_ID),
        )
        raise InvalidStamp(f"{stamps.HEADER} is {exc.reason}: {exc}") from None


@web.middleware
async def stamp_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Run a stamped write at its stamp's time (see the module docstring)."""
    stamp = read_request_stamp(request)
    if stamp is None:
        return await handler(request)
    request[STAMP_KEY] = stamp
    with clock.frozen_at(stamp.ms, stamp.seed):
        return await handler(request)


def stamp_of(request: web.Request) -> stamps.Stamp | None:
    """The stamp the middleware verified for this request, if any."""
    return request.get(STAMP_KEY)


def mirror_user(request: web.Request) -> str | None:
    """The user a verified ``mirror`` stamp acts for, else None."""
    stamp = stamp_of(request)
    return stamp.user if stamp is not None and stamp.mirror else None
