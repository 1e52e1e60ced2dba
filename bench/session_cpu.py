"""CPU cost per session operation, per process: the figure that contention cannot distort.

Latency on a shared 2-core machine depends on everything else running; CPU seconds a server spends
per request do not. This starts the stack (real processes, SQLite stores), signs ``--users`` users
up, then runs each operation ``--requests`` times with ``--concurrency`` requests in flight, first
with every feature on ``legacy``, then on ``new`` (the flag file is edited between the two, as an
engineer would). For each operation it reads the CPU time (user + system, from ``/proc``) that the
backend and the proxy spent and divides by the request count; it also prints the wall-clock p50 for
orientation only.

    .venv/bin/python -m bench.session_cpu [--requests 600] [--concurrency 8] [--direct]

``--direct`` sends the load straight to the backends (no proxy column).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from banyan.processes import RunningStack, flags_text, running_stack
from bench.common import markdown_table, percentile

FEATURES = """\
features:
  everything:
    routes: ["/api/**", "/ws/**"]
    mode: {mode}
"""
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


class User:
    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers
        self.sessions: list[str] = []


async def sign_up(session: aiohttp.ClientSession, base: str, index: int) -> User:
    email = f"cpu-{index}-{random.randrange(1 << 30)}@example.com"
    body = {"email": email, "password": "bench-pass-1", "name": f"U{index}"}
    async with session.post(base + "/api/auth/register", json=body) as r:
        assert r.status == 201, await r.text()
        token = (await r.json())["token"]
    return User({"Authorization": f"Bearer {token}"})


Op = Callable[[aiohttp.ClientSession, str, User], Awaitable[None]]


async def request(
    session: aiohttp.ClientSession, method: str, url: str, user: User, json: Any = None
) -> Any:
    async with session.request(method, url, json=json, headers=user.headers) as r:
        if r.status >= 400:
            raise RuntimeError(f"{method} {url}: {r.status} {await r.text()}")
        return await r.json() if r.status != 204 else None


async def op_create(session: aiohttp.ClientSession, base: str, user: User) -> None:
    body = await request(session, "POST", base + "/api/sessions", user, {"title": "Bench"})
    user.sessions.append(body["id"])


async def op_list(session: aiohttp.ClientSession, base: str, user: User) -> None:
    await request(session, "GET", base + "/api/sessions?limit=20", user)


async def op_get(session: aiohttp.ClientSession, base: str, user: User) -> None:
    await request(session, "GET", f"{base}/api/sessions/{random.choice(user.sessions)}", user)


async def op_update(session: aiohttp.ClientSession, base: str, user: User) -> None:
    sid = random.choice(user.sessions)
    await request(session, "PATCH", f"{base}/api/sessions/{sid}", user, {"title": "Renamed"})


async def op_append(session: aiohttp.ClientSession, base: str, user: User) -> None:
    sid = random.choice(user.sessions)
    body = {"role": "user", "content": "How do fractions work?"}
    await request(session, "POST", f"{base}/api/sessions/{sid}/messages", user, body)


async def op_delete(session: aiohttp.ClientSession, base: str, user: User) -> None:
    if len(user.sessions) > 1:
        await request(session, "DELETE", f"{base}/api/sessions/{user.sessions.pop(0)}", user)


async def op_me(session: aiohttp.ClientSession, base: str, user: User) -> None:
    await request(session, "GET", base + "/api/auth/me", user)


OPS: list[tuple[str, Op]] = [
    ("create", op_create),
    ("list", op_list),
    ("get", op_get),
    ("update", op_update),
    ("append_message", op_append),
    ("delete", op_delete),
    ("me", op_me),
]


async def run_op(
    session: aiohttp.ClientSession,
    base: str,
    users: list[User],
    op: Op,
    requests: int,
    concurrency: int,
    pids: dict[str, int],
) -> tuple[dict[str, float], float]:
    """Run ``op`` ``requests`` times; CPU ms per request per process, and the wall p50."""
    turn = itertools.cycle(users)
    left = requests
    samples: list[float] = []

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            started = time.perf_counter()
            await op(session, base, next(turn))
            samples.append((time.perf_counter() - started) * 1000)

    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    before["client"] = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    after = {name: cpu_seconds(pid) for name, pid in pids.items()}
    after["client"] = time.process_time()
    cost = {name: (after[name] - before[name]) * 1000 / requests for name in before}
    return cost, percentile(samples, 0.5)


async def switch(stack: RunningStack, mode: str) -> None:
    """Route everything to ``mode`` and wait until the proxy answers from it."""
    text = flags_text(stack.url("legacy"), stack.url("new"), FEATURES.format(mode=mode))
    stack.flags_path.write_text(text)
    async with aiohttp.ClientSession() as session:
        for _ in range(100):
            async with session.get(stack.url("proxy") + "/api/auth/me") as r:
                if r.headers.get("X-Banyan-Backend") == mode:
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"the proxy did not switch to {mode}")


async def measure(stack: RunningStack, mode: str, args: argparse.Namespace) -> list[list[Any]]:
    direct = args.direct
    base = stack.url(mode) if direct else stack.url("proxy")
    if not direct:
        await switch(stack, mode)
    pids = {"backend": stack.children[mode].process.pid}
    if not direct:
        pids["proxy"] = stack.children["proxy"].process.pid
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    rows: list[list[Any]] = []
    async with aiohttp.ClientSession(connector=connector) as session:
        users = await asyncio.gather(*(sign_up(session, base, i) for i in range(args.users)))
        for user in users:  # everybody owns a few sessions before reads start
            for _ in range(3):
                await op_create(session, base, user)
        for name, op in OPS:
            cost, p50 = await run_op(
                session, base, users, op, args.requests, args.concurrency, pids
            )
            row = [mode, name, cost["backend"]]
            if not direct:
                row.append(cost["proxy"])
            rows.append([*row, cost["client"], p50])
    return rows


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="banyan-cpu-") as tmp:
        features = FEATURES.format(mode="legacy")
        proxy_args = ["--no-access-log", "--no-parity"]
        async with running_stack(Path(tmp), features=features, proxy_args=proxy_args) as stack:
            rows = []
            for mode in args.modes.split(","):
                rows += await measure(stack, mode, args)
    headers = ["backend", "operation", "backend CPU ms/req"]
    if not args.direct:
        headers.append("proxy CPU ms/req")
    headers += ["client CPU ms/req", "wall p50 ms"]
    print(markdown_table(headers, rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--modes", default="legacy,new")
    parser.add_argument("--direct", action="store_true", help="skip the proxy")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
