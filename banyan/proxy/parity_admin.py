"""The parity endpoints the console's QA panel reads, under ``/_proxy/parity/``.

- ``GET /_proxy/parity/series`` — hourly counters with a match rate (``feature``, ``endpoint``,
  ``since``, ``until`` filters), for the chart.
- ``GET /_proxy/parity/mismatches`` — stored mismatched requests, newest first, one per comparison
  with every path that differed (``feature``, ``endpoint``, ``path``, ``since``, ``until``,
  ``limit``).
- ``GET /_proxy/parity/examples/{id}`` — one comparison: the request, both answers, the
  differences.
- ``POST /_proxy/parity/examples/{id}/replay`` (admin write) — the request sent again to both
  backends of the flag file in force and compared with the feature's rules now; the body may give
  ``{"token": "..."}`` to send as the bearer token (stored requests hold no credentials).

``since`` and ``until`` are ``1h``/``30m``/``2d`` ago, an ISO time or epoch seconds. Without the
parity side (``shadow`` hook) each answers ``404 parity_disabled``. The handlers are registered
from :data:`ROUTES` by :mod:`banyan.proxy.admin` (access rules: :mod:`banyan.proxy.admin_access`).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from banyan.errors import BadQuery
from banyan.parity import browse
from banyan.parity.cli import parse_since
from banyan.parity.compare import Rules
from banyan.parity.replay import replay
from banyan.parity.store import ParityStore
from banyan.proxy.admin_access import Route, error, reply
from banyan.proxy.flags import FlagStore
from banyan.proxy.hooks import ShadowHook


def _time(request: web.Request, name: str) -> float | None:
    text = request.query.get(name)
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return parse_since(text)
    except ValueError as exc:
        raise BadQuery(f"{name}: use 1h, 30m, 2d, an ISO time or epoch seconds") from exc


def _window(request: web.Request) -> tuple[float | None, float | None]:
    """``since`` and ``until`` as epoch seconds; :class:`BadQuery` names a bad one."""
    return _time(request, "since"), _time(request, "until")


async def _store(shadow: ShadowHook | None) -> ParityStore | None:
    if shadow is None:
        return None
    recorder = shadow.recorder
    await recorder.flush()  # what was compared so far is in the store
    return recorder.store


def _disabled(request: web.Request) -> web.Response:
    return error(request, 404, "parity_disabled", "parity is not enabled on this proxy")


def _filter(request: web.Request, name: str) -> str | None:
    return request.query.get(name) or None


async def series(request: web.Request, shadow: ShadowHook | None) -> web.Response:
    store = await _store(shadow)
    if store is None:
        return _disabled(request)
    try:
        since, until = _window(request)
    except BadQuery as exc:
        return error(request, 400, "validation_error", str(exc))
    rows = await browse.series(
        store,
        feature=_filter(request, "feature"),
        endpoint=_filter(request, "endpoint"),
        since=since,
        until=until,
    )
    return reply(request, {"hours": rows}, 200)


async def mismatches(request: web.Request, shadow: ShadowHook | None) -> web.Response:
    store = await _store(shadow)
    if store is None:
        return _disabled(request)
    limit = request.query.get("limit", "50")
    if not limit.isdigit() or not 1 <= int(limit) <= browse.MAX_LIMIT:
        return error(request, 400, "validation_error", f"limit: an integer 1..{browse.MAX_LIMIT}")
    try:
        since, until = _window(request)
    except BadQuery as exc:
        return error(request, 400, "validation_error", str(exc))
    items = await browse.mismatches(
        store,
        feature=_filter(request, "feature"),
        endpoint=_filter(request, "endpoint"),
        path=_filter(request, "path"),
        since=since,
        until=until,
        limit=int(limit),
    )
    return reply(request, {"items": items}, 200)


async def _example(
    request: web.Request, shadow: ShadowHook | None
) -> dict[str, Any] | web.Response:
    """The stored comparison ``{id}`` names, or the refusal to send."""
    store = await _store(shadow)
    if store is None:
        return _disabled(request)
    raw = request.match_info["id"]
    if not raw.isdigit():
        return error(request, 400, "validation_error", "id: must be an integer")
    found = await store.example(int(raw))
    if found is None:
        return error(request, 404, "not_found", f"no stored example #{raw}")
    return found


async def example(request: web.Request, shadow: ShadowHook | None) -> web.Response:
    found = await _example(request, shadow)
    return found if isinstance(found, web.Response) else reply(request, found, 200)


async def _token(request: web.Request) -> str | web.Response | None:
    """The bearer token a replay may be given in its body, or the refusal to send."""
    if not request.body_exists:
        return None
    try:
        body = await request.json()
    except ValueError:
        return error(request, 400, "invalid_json", "body is not JSON")
    if not isinstance(body, dict) or not isinstance(body.get("token", ""), str | None):
        return error(request, 400, "validation_error", "token: must be a string")
    token: str | None = body.get("token") or None
    return token


async def replay_example(
    request: web.Request, shadow: ShadowHook | None, store: FlagStore
) -> web.Response:
    """The stored request sent again to both backends of the flags in force, and compared
    under its feature's rules now."""
    found = await _example(request, shadow)
    if isinstance(found, web.Response):
        return found
    token = await _token(request)
    if isinstance(token, web.Response):
        return token
    flags = store.current
    feature = flags.feature(found["feature"])
    rules = Rules.from_config(feature.parity) if feature else Rules()
    backends = {name: spec.url for name, spec in flags.backends.items()}
    result = await replay(found, backends, rules, token=token)
    return reply(request, result, 200)


ROUTES = (
    Route("GET", "/_proxy/parity/series", lambda request, state: series(request, state.shadow)),
    Route(
        "GET",
        "/_proxy/parity/mismatches",
        lambda request, state: mismatches(request, state.shadow),
    ),
    Route(
        "GET",
        "/_proxy/parity/examples/{id}",
        lambda request, state: example(request, state.shadow),
    ),
    Route(
        "POST",
        "/_proxy/parity/examples/{id}/replay",
        lambda request, state: replay_example(request, state.shadow, state.store),
        write=True,
    ),
)
