"""Flag flips: edit-to-effect latency and client errors under load.

A real proxy process runs in front of two small upstreams. For ``--flips`` (100) times the flag
file is edited through the same path as ``banyan flags set`` (comment-preserving, atomic), and a
prober measures how long until ``X-Banyan-Backend`` shows the new choice. Meanwhile ``--workers``
(32) clients send requests continuously; every non-2xx answer or transport error counts as a client
error. Prints p50/p99 edit-to-effect latency and the error count.

    .venv/bin/python -m bench.flip [--flips 100] [--workers 32]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from banyan.processes import PYTHON_CLI, start, stop
from banyan.proxy.flag_edit import set_mode
from banyan.serving import serve
from bench.common import markdown_table, percentile

FLAGS = """\
version: 1
backends:
  legacy: {legacy}
  new: {new}
features:
  items:
    routes: ["/api/**"]
    mode: legacy
default: legacy
"""


def upstream(name: str) -> web.Application:
    app = web.Application()

    async def handle(_: web.Request) -> web.Response:
        return web.json_response({"served_by": name})

    app.router.add_get("/{tail:.*}", handle)
    return app


async def load(
    session: aiohttp.ClientSession, url: str, stop_at: float, counts: dict[str, int]
) -> None:
    while time.monotonic() < stop_at:
        try:
            async with session.get(url) as response:
                await response.read()
                counts["ok" if response.status < 400 else "errors"] += 1
        except aiohttp.ClientError:
            counts["errors"] += 1


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="banyan-flip-") as tmp:
        flags = Path(tmp) / "flags.yaml"
        async with serve(upstream("legacy")) as legacy, serve(upstream("new")) as new:
            flags.write_text(FLAGS.format(legacy=legacy, new=new))
            proxy = await start(
                "proxy",
                [*PYTHON_CLI, "proxy", "--flags", str(flags), "--port", "0", "--no-access-log"],
            )
            url = proxy.url + "/api/items"
            latencies: list[float] = []
            counts = {"ok": 0, "errors": 0}
            try:
                async with aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=0)
                ) as session:
                    stop_at = time.monotonic() + 3600
                    workers = [
                        asyncio.create_task(load(session, url, stop_at, counts))
                        for _ in range(args.workers)
                    ]
                    mode = "legacy"
                    for _ in range(args.flips):
                        mode = "new" if mode == "legacy" else "legacy"
                        started = time.perf_counter()
                        await asyncio.to_thread(set_mode, flags, "items", mode)
                        while True:
                            async with session.get(url) as response:
                                if response.headers.get("X-Banyan-Backend") == mode:
                                    break
                            await asyncio.sleep(0.002)
                        latencies.append((time.perf_counter() - started) * 1000)
                    for worker in workers:
                        worker.cancel()
                    await asyncio.gather(*workers, return_exceptions=True)
            finally:
                await stop(proxy.process)
    print(
        markdown_table(
            [
                "flips",
                "edit-to-effect p50 ms",
                "p99 ms",
                "max ms",
                "requests under load",
                "client errors",
            ],
            [
                [
                    len(latencies),
                    round(percentile(latencies, 0.5), 1),
                    round(percentile(latencies, 0.99), 1),
                    round(max(latencies), 1),
                    counts["ok"] + counts["errors"],
                    counts["errors"],
                ]
            ],
        )
    )


def main() -> None:
    from banyan import logs

    logs.configure("warning")  # the edits below would otherwise log one line each
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--flips", type=int, default=100)
    parser.add_argument("--workers", type=int, default=32)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
