"""What one proxy process takes on: open WebSockets, HTTP requests in flight, file descriptors.

Every proxied request passes the :class:`Admission` gate first (an aiohttp middleware). Past a
limit it is refused at once with ``503``, a ``Retry-After`` and a JSON error — never left to wait
for a connection, a descriptor or a slot that may not come:

- ``max_websockets`` (``too_many_websockets``): WebSockets open through this process, counted
  from the upgrade request to the bridge's end.
- ``max_requests`` (``overloaded``): HTTP requests in flight, counted until their answer is
  streamed.
- descriptors (``out_of_descriptors``): a socket needs two more (its upstream, and a mirror or
  shadow socket), a request one; the gate keeps ``fd_reserve`` of the soft ``RLIMIT_NOFILE`` free
  so that ``accept()`` itself never fails (when it does, the loop stops accepting and clients
  hang).

The proxy's own paths (``/_proxy/*``, ``/healthz``, ``/readyz``) are never counted or refused (the
gate wraps only the proxied route): operators see an overloaded proxy instead of losing it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

from banyan import descriptors
from banyan.env import whole
from banyan.logs import get_logger

log = get_logger("proxy")

MAX_WEBSOCKETS_ENV = "BANYAN_MAX_WEBSOCKETS"
MAX_REQUESTS_ENV = "BANYAN_MAX_REQUESTS"
DESCRIPTORS_PER_SOCKET = 2  # the upstream socket, and a mirror or shadow socket beside it
DESCRIPTORS_PER_REQUEST = 1  # an upstream connection, when the pool has none idle
COUNT_FRESH_FOR = 0.05  # seconds a descriptor count is reused (admissions since are added)
RETRY_AFTER = {"websockets": 5, "requests": 1, "descriptors": 5}
LIMIT_HEADER = "X-Banyan-Limit"


@dataclass(frozen=True)
class AdmissionLimits:
    max_websockets: int = 10_000
    max_requests: int = 4_096
    fd_reserve: int = 64

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> AdmissionLimits:
        """Defaults, each overridden by its variable when set in ``environ``."""
        return cls(
            max_websockets=whole(environ, MAX_WEBSOCKETS_ENV, cls.max_websockets),
            max_requests=whole(environ, MAX_REQUESTS_ENV, cls.max_requests),
        )


class DescriptorGauge:
    """Open descriptors, counted at most every ``COUNT_FRESH_FOR`` s (or every second where
    counting means listing ``/proc/self/fd``); what was admitted since is added, so a burst of
    admissions between two counts cannot overshoot the limit."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.fresh_for = COUNT_FRESH_FOR if descriptors.count_is_cheap() else 1.0
        self.limit = descriptors.soft_limit()  # read again with every count
        self._counted = 0
        self._counted_at = float("-inf")
        self._since = 0

    def in_use(self) -> int:
        now = self.clock()
        if now - self._counted_at >= self.fresh_for:
            self._counted, self._counted_at, self._since = descriptors.open_count(), now, 0
            self.limit = descriptors.soft_limit()
        return self._counted + self._since

    def taken(self, count: int) -> None:
        self._since += count


class Admission:
    """The gate: counts what is open and refuses what would go past a limit."""

    def __init__(self, limits: AdmissionLimits, gauge: DescriptorGauge | None = None) -> None:
        self.limits = limits
        self.gauge = gauge or DescriptorGauge()
        self.websockets = 0
        self.requests = 0

    def refusal(self, websocket: bool) -> str | None:
        """Which limit a new socket (or request) would go past, if any."""
        if websocket and self.websockets >= self.limits.max_websockets:
            return "websockets"
        if not websocket and self.requests >= self.limits.max_requests:
            return "requests"
        need = DESCRIPTORS_PER_SOCKET if websocket else DESCRIPTORS_PER_REQUEST
        if self.gauge.in_use() + need + self.limits.fd_reserve > self.gauge.limit:
            return "descriptors"
        self.gauge.taken(need)
        return None

    def enter(self, websocket: bool) -> None:
        if websocket:
            self.websockets += 1
        else:
            self.requests += 1

    def leave(self, websocket: bool) -> None:
        if websocket:
            self.websockets -= 1
        else:
            self.requests -= 1


_MESSAGES = {
    "websockets": ("too_many_websockets", "this proxy process holds its maximum of {n} WebSockets"),
    "requests": ("overloaded", "this proxy process has its maximum of {n} requests in flight"),
    "descriptors": ("out_of_descriptors", "this proxy process is short of file descriptors"),
}


def refused(limit: str, limits: AdmissionLimits) -> web.Response:
    code, message = _MESSAGES[limit]
    n = limits.max_websockets if limit == "websockets" else limits.max_requests
    return web.json_response(
        {"error": {"code": code, "message": message.format(n=n) + "; retry later"}},
        status=503,
        headers={"Retry-After": str(RETRY_AFTER[limit]), LIMIT_HEADER: limit},
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def admitted(admission: Admission, handler: Handler, on_refusal: Callable[[str], None]) -> Handler:
    """``handler`` behind the gate. A wrapper of the proxied route rather than a middleware: an
    aiohttp middleware costs every request two more coroutine frames (its own and the one aiohttp
    adds when any middleware is present), which an open WebSocket keeps for its whole life."""

    async def admit(request: web.Request) -> web.StreamResponse:
        websocket = request.headers.get("Upgrade", "").lower() == "websocket"
        limit = admission.refusal(websocket)
        if limit is not None:
            on_refusal(limit)
            return refused(limit, admission.limits)
        admission.enter(websocket)
        try:
            return await handler(request)
        finally:
            admission.leave(websocket)

    return admit
