"""Serving the AI Tutor web app (``banyan/webapp/dist``) from a backend: ``GET /`` and
``GET /assets/{name}``, registered by both backends with one call to :func:`add_routes`.

``index.html`` is revalidated on every load (``no-cache`` with an ETag), so a new build is picked up
at once; assets have content-hashed names and are cached for a year (``immutable``). Both are sent
gzipped to clients that accept it. Only files the build lists are served: any other name is the
contract's ``404 not_found``. Without a build (``dist/`` missing) the routes are not added and
``/`` stays a 404, as before the app existed.
"""

from __future__ import annotations

from aiohttp import web

from banyan.backends.common.errors import NotFound
from banyan.logs import get_logger
from banyan.webapp import DIST, Asset, load_assets

log = get_logger("webapp")

INDEX = "index.html"
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"


def _respond(request: web.Request, asset: Asset, cache_control: str) -> web.Response:
    headers = {"Cache-Control": cache_control, "ETag": asset.etag, "Vary": "Accept-Encoding"}
    if asset.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    body = asset.body
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        body = asset.gzipped
        headers["Content-Encoding"] = "gzip"
    return web.Response(body=body, headers={**headers, "Content-Type": asset.media_type})


def add_routes(app: web.Application) -> None:
    """Serve the built web app at ``/`` on ``app`` (a no-op, logged, when there is no build)."""
    try:
        assets = load_assets(DIST)
    except FileNotFoundError:
        log.warning("webapp_missing", dist=str(DIST))
        return

    async def index(request: web.Request) -> web.Response:
        return _respond(request, assets[INDEX], REVALIDATE)

    async def asset(request: web.Request) -> web.Response:
        found = assets.get("assets/" + request.match_info["name"])
        if found is None:
            raise NotFound("no such asset")
        return _respond(request, found, IMMUTABLE)

    app.router.add_get("/", index)
    app.router.add_get("/assets/{name}", asset)
