"""Real-time figures through the proxy, once per backend.

1. Tutor: ``--sessions`` (50) concurrent tutor WebSockets each ask ``--turns`` questions; the
   first-token latency (ask sent -> first ``token`` frame) p50/p99, with a zero-delay model.
2. Whiteboard: ``--editors`` (50) y-websocket clients in one room; each edit's fan-out latency
   (edit sent -> seen by every other editor) p50/p99.
3. Idle sockets: ``--idle`` (1000) idle tutor WebSockets held open through one proxy process; the
   proxy's resident memory growth per connection.

    .venv/bin/python -m bench.realtime [--sessions 50] [--editors 50] [--idle 1000]
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
from banyan.processes import running_stack
from bench.common import markdown_table, percentile

FEATURES = """\
features:
  everything:
    routes: ["/api/**", "/ws/**"]
    mode: {mode}
"""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


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


async def idle_memory(
    http: aiohttp.ClientSession, base: str, pid: int, count: int
) -> tuple[int, float]:
    token, headers = await new_user(http, base)
    async with http.post(base + "/api/sessions", json={"title": "idle"}, headers=headers) as r:
        sid = (await r.json())["id"]
    before = rss_kib(pid)
    url = f"{base.replace('http', 'ws', 1)}/ws/tutor/{sid}?token={token}"
    sockets = []
    for start in range(0, count, 100):
        batch = await asyncio.gather(
            *(http.ws_connect(url) for _ in range(min(100, count - start)))
        )
        sockets.extend(batch)
    await asyncio.sleep(1.0)
    after = rss_kib(pid)
    held = sum(1 for ws in sockets if not ws.closed)
    await asyncio.gather(*(ws.close() for ws in sockets))
    return held, (after - before) / max(held, 1)


async def run_mode(mode: str, args: argparse.Namespace) -> list[object]:
    with tempfile.TemporaryDirectory(prefix="banyan-rt-") as tmp:
        async with running_stack(Path(tmp), features=FEATURES.format(mode=mode)) as stack:
            base = stack.url("proxy")
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector) as http:
                tutor = await tutor_latencies(http, base, args.sessions, args.turns)
                board = await whiteboard_fanout(http, base, args.editors, args.rounds)
                held, per_conn = await idle_memory(
                    http, base, stack.children["proxy"].process.pid, args.idle
                )
    return [
        mode,
        round(percentile(tutor, 0.5), 2),
        round(percentile(tutor, 0.99), 2),
        round(percentile(board, 0.5), 2),
        round(percentile(board, 0.99), 2),
        held,
        round(per_conn, 1),
    ]


async def main_async(args: argparse.Namespace) -> None:
    rows = [await run_mode(mode, args) for mode in ("legacy", "new")]
    print(
        markdown_table(
            [
                "backend",
                "tutor first token p50 ms",
                "p99 ms",
                f"whiteboard fan-out to {args.editors - 1} p50 ms",
                "p99 ms",
                "idle sockets held",
                "proxy KiB per socket",
            ],
            rows,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--editors", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--idle", type=int, default=1000)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
