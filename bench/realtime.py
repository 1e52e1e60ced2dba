"""Real-time figures through the proxy, once per backend.

1. Tutor: ``--sessions`` (50) concurrent tutor WebSockets each ask ``--turns`` questions; the
   first-token latency (ask sent -> first ``token`` frame) p50/p99, with a zero-delay model.
2. Whiteboard: ``--editors`` (50) y-websocket clients in one room; each edit's fan-out latency
   (edit sent -> seen by every other editor) p50/p99.
3. Held sockets: ``--idle`` (5000) idle tutor WebSockets opened through one proxy process by
   ``--holders`` (4) socket-holder processes (``bench/socket_holder.py``): how many opened, the
   proxy's resident memory growth per socket and its open descriptors, and the latency of HTTP
   requests (``GET /api/sessions/{id}``, ``--http-requests`` at ``--http-rate`` per second, open
   loop, from this process) through the same proxy process and straight to the backend, before
   the sockets opened and while they are open (``bench/held_sockets.py``).

    .venv/bin/python -m bench.realtime [--parts tutor,whiteboard,sockets] [--idle 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import aiohttp
from pycrdt import Doc, Map

from banyan.backends.common.whiteboard.client import WhiteboardClient
from banyan.processes import running_stack
from banyan.serving import install_uvloop
from bench.common import markdown_table, percentile
from bench.held_sockets import HeldSockets, Latencies, held_sockets

FEATURES = """\
features:
  everything:
    routes: ["/api/**", "/ws/**"]
    mode: {mode}
"""


async def new_user(http: aiohttp.ClientSession, base: str) -> tuple[str, dict[str, str]]:
    email = f"rt-{uuid.uuid4().hex[:12]}@example.com"
    async with http.post(
        base + "/api/auth/register", json={"email": email, "password": "realtime-1", "name": "RT"}
    ) as r:
        token = (await r.json())["token"]
    return token, {"Authorization": f"Bearer {token}"}


async def tutor_latencies(
    http: aiohttp.ClientSession, base: str, sessions: int, turns: int
) -> list[float]:
    token, headers = await new_user(http, base)
    ws_base = base.replace("http", "ws", 1)
    latencies: list[float] = []

    async def one(i: int) -> None:
        async with http.post(base + "/api/sessions", json={"title": f"S{i}"}, headers=headers) as r:
            sid = (await r.json())["id"]
        async with http.ws_connect(f"{ws_base}/ws/tutor/{sid}?token={token}") as ws:
            for t in range(turns):
                started = time.perf_counter()
                await ws.send_json({"type": "ask", "text": f"Question {t} about topic {i}"})
                first = None
                while True:
                    frame = await ws.receive_json(timeout=30)
                    if frame["type"] == "token" and first is None:
                        first = (time.perf_counter() - started) * 1000
                    if frame["type"] in ("done", "error"):
                        break
                if first is not None:
                    latencies.append(first)

    await asyncio.gather(*(one(i) for i in range(sessions)))
    return latencies


async def whiteboard_fanout(
    http: aiohttp.ClientSession, base: str, editors: int, rounds: int
) -> list[float]:
    token, _ = await new_user(http, base)
    room = f"bench-{uuid.uuid4().hex[:8]}"
    url = f"{base.replace('http', 'ws', 1)}/ws/whiteboard/{room}?token={token}"
    clients = [WhiteboardClient() for _ in range(editors)]
    await asyncio.gather(*(c.connect(http, url) for c in clients))
    await asyncio.gather(*(c.wait_synced(30) for c in clients))
    latencies: list[float] = []
    for r in range(rounds):
        writer = clients[r % editors]
        key = f"shape-{r}"

        def change(doc: Doc, key: str = key, r: int = r) -> None:
            doc.get("shapes", type=Map)[key] = {"r": r}

        def seen(client: WhiteboardClient, key: str = key) -> bool:
            return key in client.doc.get("shapes", type=Map)

        started = time.perf_counter()
        await writer.edit(change)
        await asyncio.gather(*(c.wait_for(seen, 30) for c in clients if c is not writer))
        latencies.append((time.perf_counter() - started) * 1000)
    await asyncio.gather(*(c.close() for c in clients))
    return latencies


async def run_mode(mode: str, args: argparse.Namespace) -> tuple[list[object], HeldSockets]:
    tutor: list[float] = []
    board: list[float] = []
    held = HeldSockets()
    with tempfile.TemporaryDirectory(prefix="banyan-rt-") as tmp:
        async with running_stack(Path(tmp), features=FEATURES.format(mode=mode)) as stack:
            base = stack.url("proxy")
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector) as http:
                if "tutor" in args.parts:
                    tutor = await tutor_latencies(http, base, args.sessions, args.turns)
                if "whiteboard" in args.parts:
                    board = await whiteboard_fanout(http, base, args.editors, args.rounds)
                if "sockets" in args.parts:
                    token, headers = await new_user(http, base)
                    async with http.post(
                        base + "/api/sessions", json={"title": "idle"}, headers=headers
                    ) as r:
                        sid = (await r.json())["id"]
                    pid = stack.children["proxy"].process.pid
                    session = (token, headers, sid)
                    held = await held_sockets(http, base, stack.url(mode), pid, args, session)
    realtime = [mode, *(round(percentile(x, q), 2) for x in (tutor, board) for q in (0.5, 0.99))]
    return realtime, held


def print_held(rows: list[tuple[str, HeldSockets]], args: argparse.Namespace) -> None:
    print(
        markdown_table(
            [
                "backend",
                "sockets opened",
                "refused",
                "failed",
                "still open at the end",
                "proxy descriptors",
                "proxy KiB per socket",
                "proxy CPU holding them, no requests",
            ],
            [
                [
                    *(m, h.opened, h.refused, h.failed, h.held, h.descriptors),
                    round(h.kib_per_socket, 2),
                    idle_share(h),
                ]
                for m, h in rows
            ],
        )
    )
    print()
    latency_rows = []
    for mode, held in rows:
        for phase, label in (("quiet", "0"), ("busy", str(held.opened))):
            figures = [held.latency.get(f"{phase} {t}", Latencies()).figures() for t in TARGETS]
            cpu = round(held.cpu_us_per_request.get(phase, 0.0))
            latency_rows.append([mode, label, *(x for f in figures for x in f), cpu])
    print(
        markdown_table(
            [
                "backend",
                "sockets open",
                "via proxy p50 ms",
                "p99 ms",
                "failed",
                "direct p50 ms",
                "p99 ms",
                "failed",
                "proxy CPU µs per request (idle CPU removed)",
            ],
            latency_rows,
        )
    )
    kinds = Counter[str]()
    for _, held in rows:
        for result in held.latency.values():
            kinds.update(result.failures)
    print(
        f"\n{args.http_requests} requests per cell at {args.http_rate:g}/s; failures: {dict(kinds)}"
    )


TARGETS = ("proxy", "direct")


def idle_share(held: HeldSockets) -> str:
    """The proxy's CPU (share of a core) with the sockets open and no requests; none open."""
    busy, quiet = held.idle_cpu.get("busy", 0.0), held.idle_cpu.get("quiet", 0.0)
    return f"{busy:.1%} (none open: {quiet:.1%})"


async def main_async(args: argparse.Namespace) -> None:
    rows = [(mode, await run_mode(mode, args)) for mode in ("legacy", "new")]
    if "tutor" in args.parts or "whiteboard" in args.parts:
        print(
            markdown_table(
                [
                    "backend",
                    "tutor first token p50 ms",
                    "p99 ms",
                    f"whiteboard fan-out to {args.editors - 1} p50 ms",
                    "p99 ms",
                ],
                [realtime for _, (realtime, _) in rows],
            )
        )
        print()
    if "sockets" in args.parts:
        print_held([(mode, held) for mode, (_, held) in rows], args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--parts", default="tutor,whiteboard,sockets")
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--editors", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--idle", type=int, default=5000)
    parser.add_argument("--holders", type=int, default=4, help="socket-holder processes")
    parser.add_argument("--http-requests", type=int, default=1000)
    parser.add_argument("--http-rate", type=float, default=100.0, help="per second, per target")
    args = parser.parse_args()
    args.parts = set(args.parts.split(","))
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    install_uvloop()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
