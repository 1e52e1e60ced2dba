"""A load-generator process for ``bench/realtime.py``: opens and holds idle WebSockets.

    python -m bench.socket_holder URL COUNT [--batch 100]

Opens ``COUNT`` WebSockets to ``URL`` (``--batch`` at a time), reading each so pings are answered,
then prints one line ``opened N refused R failed F`` and holds them. A line ``close`` on stdin (or
its end) makes it print ``held H`` (how many were still open) and close them all. Several of these
run beside the bench so that the sockets' client side never shares a core-bound event loop with
the measurements.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import sys

import aiohttp

from banyan.serving import install_uvloop


async def _drain(ws: aiohttp.ClientWebSocketResponse) -> None:
    with contextlib.suppress(Exception):
        async for _ in ws:  # answers pings (autoping) and notices a close
            pass


async def _open(
    session: aiohttp.ClientSession, url: str, counts: dict[str, int]
) -> aiohttp.ClientWebSocketResponse | None:
    try:
        return await session.ws_connect(url, heartbeat=None)
    except aiohttp.WSServerHandshakeError as exc:
        counts["refused" if exc.status == 503 else "failed"] += 1
    except (aiohttp.ClientError, OSError, TimeoutError):
        counts["failed"] += 1
    return None


async def hold(url: str, count: int, batch: int) -> None:
    counts = {"refused": 0, "failed": 0}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        sockets: list[aiohttp.ClientWebSocketResponse] = []
        for start in range(0, count, batch):
            opened = await asyncio.gather(
                *(_open(session, url, counts) for _ in range(min(batch, count - start)))
            )
            sockets += [ws for ws in opened if ws is not None]
        readers = [asyncio.ensure_future(_drain(ws)) for ws in sockets]
        print(
            f"opened {len(sockets)} refused {counts['refused']} failed {counts['failed']}",
            flush=True,
        )
        await asyncio.to_thread(sys.stdin.readline)
        print(f"held {sum(1 for ws in sockets if not ws.closed)}", flush=True)
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("count", type=int)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    install_uvloop()
    asyncio.run(hold(args.url, args.count, args.batch))


if __name__ == "__main__":
    main()
