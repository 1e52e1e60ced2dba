"""A small fast upstream for the benchmarks: a fixed small JSON answer, optionally slow or hanging.

python -m bench.tiny_upstream PORT [--delay-ms N] [--hang]
"""

from __future__ import annotations

import argparse
import asyncio

import uvloop
from aiohttp import web

from banyan.serving import BACKLOG, settle_heap

BODY = b'{"id":"3f1c","title":"Fractions","folder_id":null,"message_count":4}'


def make_app(delay_ms: float = 0.0, hang: bool = False) -> web.Application:
    async def answer(_: web.Request) -> web.Response:
        if hang:
            await asyncio.sleep(3600)
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        return web.Response(body=BODY, content_type="application/json")

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/healthz", health)
    app.router.add_route("*", "/{tail:.*}", answer)
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--hang", action="store_true")
    args = parser.parse_args()
    uvloop.install()
    app = make_app(args.delay_ms, args.hang)
    settle_heap()  # as every Banyan server does once started (banyan/serving.py)
    print(f"banyan tiny listening on http://127.0.0.1:{args.port}", flush=True)
    web.run_app(
        app,
        host="127.0.0.1",
        port=args.port,
        print=None,
        access_log=None,
        backlog=BACKLOG,
    )
