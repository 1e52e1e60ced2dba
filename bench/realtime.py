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
from pathlib import Path

import aiohttp
from pycrdt import Doc, Map

from banyan.backends.common.whiteboard.client import WhiteboardClient
from banyan.processes import RunningStack, flags_text, running_stack
from banyan.serving import install_uvloop
from bench.common import markdown_table, percentile
from bench.held_sockets import HeldSockets, held_sockets, report

FEATURES = """\
features:
  sockets:
    routes: ["/ws/tutor/**"]
    mode: {sockets}
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


async def new_session(http: aiohttp.ClientSession, base: str) -> tuple[str, dict[str, str], str]:
    """A new user and a study session of theirs at ``base``: (token, auth headers, session id)."""
    token, headers = await new_user(http, base)
    async with http.post(base + "/api/sessions", json={"title": "idle"}, headers=headers) as r:
        return token, headers, (await r.json())["id"]


async def sockets_both_places(
    http: aiohttp.ClientSession, stack: RunningStack, mode: str, args: argparse.Namespace
) -> dict[str, HeldSockets]:
    """The held sockets twice: on the backend the reads go to (``same``), then — after a flag
    flip of the ``sockets`` feature — on the other one (``other``), so the reads' backend holds
    none and what they show is the proxy's."""
    base, pid = stack.url("proxy"), stack.children["proxy"].process.pid
    token, headers, sid = await new_session(http, base)
    ws = base.replace("http", "ws", 1)
    held = {}
    same_url = f"{ws}/ws/tutor/{sid}?token={token}"
    held["same"] = await held_sockets(
        http, base, stack.url(mode), pid, args, (headers, sid), same_url
    )
    other = "new" if mode == "legacy" else "legacy"
    other_token, _, other_sid = await new_session(http, stack.url(other))
    features = FEATURES.format(mode=mode, sockets=other)
    stack.flags_path.write_text(flags_text(stack.url("legacy"), stack.url("new"), features))
    await asyncio.sleep(2.0)  # the proxy applies a changed flag file within a second
    other_url = f"{ws}/ws/tutor/{other_sid}?token={other_token}"
    held["other"] = await held_sockets(
        http, base, stack.url(mode), pid, args, (headers, sid), other_url, quiet_first=False
    )
    return held


async def run_mode(
    mode: str, args: argparse.Namespace
) -> tuple[list[object], dict[str, HeldSockets]]:
    tutor: list[float] = []
    board: list[float] = []
    held: dict[str, HeldSockets] = {}
    with tempfile.TemporaryDirectory(prefix="banyan-rt-") as tmp:
        features = FEATURES.format(mode=mode, sockets=mode)
        async with running_stack(Path(tmp), features=features) as stack:
            base = stack.url("proxy")
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector) as http:
                if "tutor" in args.parts:
                    tutor = await tutor_latencies(http, base, args.sessions, args.turns)
                if "whiteboard" in args.parts:
                    board = await whiteboard_fanout(http, base, args.editors, args.rounds)
                if "sockets" in args.parts:
                    held = await sockets_both_places(http, stack, mode, args)
    realtime = [mode, *(round(percentile(x, q), 2) for x in (tutor, board) for q in (0.5, 0.99))]
    return realtime, held


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
        print(report([(mode, held) for mode, (_, held) in rows], args))


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
