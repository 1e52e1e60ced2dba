"""The least proxy that could do the job: a bare aiohttp + uvloop forwarder, for comparison.

python -m bench.bare_forwarder UPSTREAM_URL PORT
"""

from __future__ import annotations

import sys

import aiohttp
import uvloop
from aiohttp import web

from banyan.serving import BACKLOG


async def make_app(upstream: str) -> web.Application:
    app = web.Application()
    session: dict[str, aiohttp.ClientSession] = {}

    async def start(_: web.Application) -> None:
        session["s"] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), auto_decompress=False
        )

    async def forward(request: web.Request) -> web.StreamResponse:
        async with session["s"].request(
            request.method,
            upstream + request.raw_path,
            headers=request.headers,
            data=request.content if request.body_exists else None,
        ) as answer:
            response = web.StreamResponse(status=answer.status, headers=answer.headers)
            await response.prepare(request)
            async for chunk in answer.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    app.on_startup.append(start)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


if __name__ == "__main__":
    uvloop.install()
    print(f"banyan bare listening on http://127.0.0.1:{sys.argv[2]}", flush=True)
    web.run_app(
        make_app(sys.argv[1]),
        host="127.0.0.1",
        port=int(sys.argv[2]),
        print=None,
        access_log=None,
        backlog=BACKLOG,  # the proxy's, so a burst of connections meets the same queue
    )
