"""Serving the console (``banyan/console/dist``) at ``/_proxy/ui/``, and the old parity page's
address.

``/_proxy/ui`` redirects to ``/_proxy/ui/``; the page is revalidated on every load, assets have
content-hashed names and are cached for a year; both go gzipped to clients that accept it, with a
content security policy allowing nothing but the proxy itself. The files hold no data: every
panel reads the admin JSON API, whose access rules (:mod:`banyan.proxy.admin_access`) apply, so
the page itself is served to anyone. ``/_proxy/parity`` (the long HTML report the console replaces)
redirects to the console's parity panel.
"""

from __future__ import annotations

from aiohttp import web

from banyan.console import DIST
from banyan.logs import get_logger
from banyan.proxy.forward import error_response
from banyan.proxy.headers import mark, request_id_of
from banyan.webapp import Asset, load_assets

log = get_logger("proxy.console")

PREFIX = "/_proxy/ui/"
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


def _respond(request: web.Request, asset: Asset, cache_control: str) -> web.Response:
    headers = {
        "Cache-Control": cache_control,
        "ETag": asset.etag,
        "Vary": "Accept-Encoding",
        "Content-Security-Policy": CSP,
        "X-Content-Type-Options": "nosniff",
    }
    if asset.etag in request.headers.get("If-None-Match", ""):
        response = web.Response(status=304, headers=headers)
    else:
        body = asset.body
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            body = asset.gzipped
            headers["Content-Encoding"] = "gzip"
        response = web.Response(body=body, headers={**headers, "Content-Type": asset.media_type})
    mark(response.headers, "_proxy", "proxy", request_id_of(request))
    return response


def _missing(request: web.Request, message: str) -> web.Response:
    response = error_response(404, "not_found", message)
    mark(response.headers, "_proxy", "proxy", request_id_of(request))
    return response


def _redirect(request: web.Request, location: str) -> web.Response:
    response = web.Response(status=302, headers={"Location": location})
    mark(response.headers, "_proxy", "proxy", request_id_of(request))
    return response


class Console:
    """The console's files, read once; its methods are the handlers."""

    def __init__(self, assets: dict[str, Asset]) -> None:
        self.assets = assets

    async def index(self, request: web.Request) -> web.Response:
        found = self.assets.get("index.html")
        if found is None:
            return _missing(request, "the console is not built")
        return _respond(request, found, "no-cache")

    async def asset(self, request: web.Request) -> web.Response:
        found = self.assets.get("assets/" + request.match_info["name"])
        if found is None:
            return _missing(request, "no such console file")
        return _respond(request, found, "public, max-age=31536000, immutable")

    async def bare(self, request: web.Request) -> web.Response:
        return _redirect(request, PREFIX)

    async def old_parity_page(self, request: web.Request) -> web.Response:
        return _redirect(request, PREFIX + "#/parity")


def add_routes(app: web.Application) -> None:
    """Serve the console on ``app`` (without a build: a logged warning and a 404 JSON page)."""
    try:
        assets = load_assets(DIST)
    except FileNotFoundError:
        log.warning("console_missing", dist=str(DIST))
        assets = {}
    console = Console(assets)
    app.router.add_get("/_proxy/ui", console.bare)
    app.router.add_get(PREFIX, console.index)
    app.router.add_get(PREFIX + "assets/{name}", console.asset)
    app.router.add_get("/_proxy/parity", console.old_parity_page)
