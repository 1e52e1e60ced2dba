"""A small fast upstream for the overhead benchmark: a fixed small JSON answer.

python -m bench.tiny_upstream PORT
"""

from __future__ import annotations

import sys

import uvloop
from aiohttp import web

BODY = b'{"id":"3f1c","title":"Fractions","folder_id":null,"message_count":4}'


async def answer(_: web.Request) -> web.Response:
    return web.Response(body=BODY, content_type="application/json")


if __name__ == "__main__":
    uvloop.install()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    print(f"banyan tiny listening on http://127.0.0.1:{sys.argv[1]}", flush=True)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
