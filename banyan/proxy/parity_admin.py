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
parity side (``shadow`` hook) each answers ``404 parity_disabled``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from banyan.errors import BadQuery
from banyan.parity import browse
from banyan.parity.cli import parse_since
from banyan.parity.compare import Rules
from banyan.parity.replay import replay
from banyan.parity.store import ParityStore

if TYPE_CHECKING:
    from banyan.proxy.app import ProxyState

Guard = Callable[..., Any]
Reply = Callable[..., web.Response]


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


async def _store(state: ProxyState) -> ParityStore | None:
    recorder = getattr(state.shadow, "recorder", None)
    if recorder is None:
        return None
    await recorder.flush()  # what was compared so far is in the store
    store: ParityStore = recorder.store
    return store


def add_routes(app: web.Application, guarded: Guard, reply: Reply) -> None:
    """Register the endpoints; ``guarded(write=...)`` wraps a ``(request, state)`` handler with
    the admin access rules, ``reply(request, body, status)`` answers JSON."""

    def error(request: web.Request, status: int, code: str, message: str) -> web.Response:
        return reply(request, {"error": {"code": code, "message": message}}, status)

    def disabled(request: web.Request) -> web.Response:
        return error(request, 404, "parity_disabled", "parity is not enabled on this proxy")

    @guarded()
    async def series(request: web.Request, state: ProxyState) -> web.Response:
        store = await _store(state)
        if store is None:
            return disabled(request)
        try:
            since, until = _time(request, "since"), _time(request, "until")
        except BadQuery as exc:
            return error(request, 400, "validation_error", str(exc))
        rows = await browse.series(
            store,
            feature=request.query.get("feature") or None,
            endpoint=request.query.get("endpoint") or None,
            since=since,
            until=until,
        )
        return reply(request, {"hours": rows}, 200)

    @guarded()
    async def mismatches(request: web.Request, state: ProxyState) -> web.Response:
        store = await _store(state)
        if store is None:
            return disabled(request)
        limit = request.query.get("limit", "50")
        if not limit.isdigit() or not 1 <= int(limit) <= browse.MAX_LIMIT:
            return error(
                request, 400, "validation_error", f"limit: an integer 1..{browse.MAX_LIMIT}"
            )
        try:
            since, until = _time(request, "since"), _time(request, "until")
        except BadQuery as exc:
            return error(request, 400, "validation_error", str(exc))
        items = await browse.mismatches(
            store,
            feature=request.query.get("feature") or None,
            endpoint=request.query.get("endpoint") or None,
            path=request.query.get("path") or None,
            since=since,
            until=until,
            limit=int(limit),
        )
        return reply(request, {"items": items}, 200)

    async def _example(
        request: web.Request, state: ProxyState
    ) -> tuple[dict[str, Any] | None, web.Response | None]:
        store = await _store(state)
        if store is None:
            return None, disabled(request)
        raw = request.match_info["id"]
        if not raw.isdigit():
            return None, error(request, 400, "validation_error", "id: must be an integer")
        found = await store.example(int(raw))
        if found is None:
            return None, error(request, 404, "not_found", f"no stored example #{raw}")
        return found, None

    @guarded()
    async def example(request: web.Request, state: ProxyState) -> web.Response:
        found, refusal = await _example(request, state)
        return refusal or reply(request, found, 200)

    @guarded(write=True)
    async def replay_example(request: web.Request, state: ProxyState) -> web.Response:
        found, refusal = await _example(request, state)
        if refusal is not None or found is None:
            assert refusal is not None
            return refusal
        token = None
        if request.body_exists:
            try:
                body = await request.json()
            except ValueError:
                return error(request, 400, "invalid_json", "body is not JSON")
            if not isinstance(body, dict) or not isinstance(body.get("token", ""), str | None):
                return error(request, 400, "validation_error", "token: must be a string")
            token = body.get("token") or None
        flags = state.flags
        feature = flags.feature(found["feature"])
        rules = Rules.from_config(feature.parity) if feature else Rules()
        backends = {name: spec.url for name, spec in flags.backends.items()}
        result = await replay(found, backends, rules, token=token)
        return reply(request, result, 200)

    app.router.add_get("/_proxy/parity/series", series)
    app.router.add_get("/_proxy/parity/mismatches", mismatches)
    app.router.add_get("/_proxy/parity/examples/{id}", example)
    app.router.add_post("/_proxy/parity/examples/{id}/replay", replay_example)
