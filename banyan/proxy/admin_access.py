"""Who may call the admin surface, how its answers look, and how its route tables register.

Access: with ``BANYAN_ADMIN_TOKEN`` set, every admin call needs ``Authorization: Bearer <token>``;
without it, only loopback clients may read, and writes are refused (a write always needs a token).

Every admin module (:mod:`banyan.proxy.admin`, :mod:`banyan.proxy.parity_admin`,
:mod:`banyan.proxy.mirror_admin`) is a set of module-level handlers and a table of
:class:`Route`; :func:`register` puts a table on the application, each handler behind the access
rules. A handler names the parts of the proxy it uses as keyword-only parameters, each called as
the :class:`~banyan.proxy.state.ProxyState` attribute it is given at each call
(``async def explain(request, *, store: FlagStore)``), so its signature is the whole of what it
depends on; a page that reads many parts (the status) takes ``state``, the whole. A name the
state does not have is refused when the table is registered, before the first request.
"""

from __future__ import annotations

import hmac
import inspect
import ipaddress
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, fields
from functools import cached_property
from typing import Any

from aiohttp import web

from banyan.proxy.forward import error_response
from banyan.proxy.headers import mark, request_id_of
from banyan.proxy.settings import SETTINGS
from banyan.proxy.state import ProxyState

Handler = Callable[..., Awaitable[web.StreamResponse]]  # (request, *, <part>: ..., ...)
Endpoint = Callable[[web.Request], Awaitable[web.StreamResponse]]

WHOLE = "state"  # the part name a handler takes the whole state by


def _part_names() -> frozenset[str]:
    """What a handler may name: the state's public fields and the parts it builds."""
    built = {n for n, v in vars(ProxyState).items() if isinstance(v, property | cached_property)}
    names = {f.name for f in fields(ProxyState)} | built
    return frozenset(n for n in names if not n.startswith("_"))


_PARTS = _part_names()


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
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


def parts_of(handler: Handler) -> tuple[str, ...]:
    """The parts of the proxy ``handler`` is given: its keyword-only parameters' names;
    :class:`TypeError` for a name that is no part of the state."""
    names = tuple(
        parameter.name
        for parameter in inspect.signature(handler).parameters.values()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    )
    for name in names:
        if name != WHOLE and name not in _PARTS:
            raise TypeError(f"{handler.__qualname__}: the proxy's state has no part {name!r}")
    return names


def guarded(handler: Handler, key: web.AppKey[ProxyState], *, write: bool) -> Endpoint:
    """``handler`` behind the access rules, given the parts it names of the state stored under
    ``key`` (read at each call)."""
    parts = parts_of(handler)

    async def inner(request: web.Request) -> web.StreamResponse:
        refusal = authorize(request, write=write)
        if refusal is not None:
            mark(refusal.headers, "_proxy", "proxy", request_id_of(request))
            return refusal
        state = request.app[key]
        given = {name: state if name == WHOLE else getattr(state, name) for name in parts}
        return await handler(request, **given)

    return inner


def register(app: web.Application, key: web.AppKey[ProxyState], routes: Iterable[Route]) -> None:
    for route in routes:
        app.router.add_route(
            route.method, route.path, guarded(route.handler, key, write=route.write)
        )
