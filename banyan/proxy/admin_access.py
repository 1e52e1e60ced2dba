"""Who may call the admin surface, how its answers look, and how its route tables register.

Access: with ``BANYAN_ADMIN_TOKEN`` set, every admin call needs ``Authorization: Bearer <token>``;
without it, only loopback clients may read, and writes are refused (a write always needs a token).

Every admin module (:mod:`banyan.proxy.admin`, :mod:`banyan.proxy.parity_admin`,
:mod:`banyan.proxy.mirror_admin`) is a set of module-level handlers and a table of
:class:`Route`; :func:`register` puts a table on the application, each route behind the access
rules. A handler takes the parts of the proxy it uses as ordinary parameters
(``async def explain(request, store: FlagStore)``); each route of the table holds an
:data:`Adapter` written beside it that hands the handler those parts of the
:class:`~banyan.proxy.state.ProxyState`
(``lambda request, state: explain(request, state.store)``), so the table shows what each endpoint
is given and mypy checks each part against the handler's parameter. The state is read at each
call: a part replaced after start is the one used. A page that reads many parts (the status)
takes the whole state, and says so.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from banyan.proxy.forward import error_response
from banyan.proxy.headers import mark, request_id_of
from banyan.proxy.settings import SETTINGS
from banyan.proxy.state import ProxyState

Adapter = Callable[[web.Request, ProxyState], Awaitable[web.StreamResponse]]
"""A route's call: the handler given the parts of the state it uses, read at each call."""
Endpoint = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    call: Adapter  # e.g. lambda request, state: explain(request, state.store)
    write: bool = False  # an admin write: always needs the token


def _is_loopback(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


def authorize(request: web.Request, *, write: bool) -> web.Response | None:
    """None when allowed, else the refusal to send."""
    settings = request.config_dict.get(SETTINGS)  # read once, at start
    token = settings.admin_token if settings is not None else None
    if token:
        given = request.headers.get("Authorization", "")
        if given.startswith("Bearer ") and hmac.compare_digest(given[7:].strip(), token):
            return None
        return error_response(
            401, "unauthorized", "admin calls need 'Authorization: Bearer <BANYAN_ADMIN_TOKEN>'"
        )
    if write:
        return error_response(403, "forbidden", "set BANYAN_ADMIN_TOKEN to enable admin writes")
    if not _is_loopback(request.remote):
        return error_response(
            403, "forbidden", "admin is loopback-only while BANYAN_ADMIN_TOKEN is unset"
        )
    return None


def reply(request: web.Request, body: Any, status: int = 200) -> web.Response:
    """A JSON answer marked as the proxy's own."""
    response = web.json_response(body, status=status, dumps=lambda v: json.dumps(v, default=str))
    mark(response.headers, "_proxy", "proxy", request_id_of(request))
    return response


def error(request: web.Request, status: int, code: str, message: str) -> web.Response:
    """A JSON error answer: ``{"error": {"code", "message"}}``."""
    return reply(request, {"error": {"code": code, "message": message}}, status)


def guarded(call: Adapter, key: web.AppKey[ProxyState], *, write: bool) -> Endpoint:
    """``call`` behind the access rules, given the state stored under ``key`` (read at each
    call)."""

    async def inner(request: web.Request) -> web.StreamResponse:
        refusal = authorize(request, write=write)
        if refusal is not None:
            mark(refusal.headers, "_proxy", "proxy", request_id_of(request))
            return refusal
        return await call(request, request.app[key])

    return inner


def register(app: web.Application, key: web.AppKey[ProxyState], routes: Iterable[Route]) -> None:
    for route in routes:
        app.router.add_route(route.method, route.path, guarded(route.call, key, write=route.write))
