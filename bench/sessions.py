"""Session operations under load, through the proxy, once per backend.

100 concurrent users (``--users``) each register and log in (measured apart: password hashing is
deliberately slow), then loop for ``--duration`` seconds over a realistic mix, pausing
``--think-ms`` (1 s on average) between steps as people do: list sessions, create one, update one,
append a message, read one back, and delete their oldest session once they hold more than one.
The stack runs as real processes on loopback (SQLite stores); the same run is made with every
feature on ``legacy`` and then on ``new``. Prints p50/p99 per operation, throughput, failures and
the CPU time the backend and the proxy spent per request, as markdown tables. The load comes from
this process (uvloop, like the servers), apart from the servers it measures.

    .venv/bin/python -m bench.sessions [--users 100] [--duration 60]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from banyan.processes import running_stack
from banyan.serving import install_uvloop
from bench.common import Timings, markdown_table
from bench.session_cpu import cpu_seconds

FEATURES = """\
features:
  everything:
    routes: ["/api/**", "/ws/**"]
    mode: {mode}
"""


async def sign_up(
    session: aiohttp.ClientSession, base: str, index: int, timings: Timings
) -> dict[str, str]:
    email = f"bench-{index}-{random.randrange(1 << 30)}@example.com"
    body = {"email": email, "password": "bench-pass-1", "name": f"U{index}"}
    with timings.measure("register"):
        async with session.post(base + "/api/auth/register", json=body) as r:
            assert r.status == 201, await r.text()
    with timings.measure("login"):
        async with session.post(
            base + "/api/auth/login", json={"email": email, "password": "bench-pass-1"}
        ) as r:
            token = (await r.json())["token"]
    return {"Authorization": f"Bearer {token}"}


async def call(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    headers: dict[str, str],
    timings: Timings,
    name: str,
    json: Any = None,
) -> Any:
    with timings.measure(name):
        async with session.request(method, url, json=json, headers=headers) as r:
            if r.status >= 400:
                raise RuntimeError(f"{name}: {r.status} {await r.text()}")
            return await r.json() if r.status != 204 else None


async def user_loop(
    session: aiohttp.ClientSession,
    base: str,
    headers: dict[str, str],
    index: int,
    deadline: float,
    timings: Timings,
    think: float,
) -> None:
    mine: list[str] = []
    rng = random.Random(index)

    async def step(method: str, url: str, name: str, json: Any = None) -> Any:
        """One request, then the pause of a person reading the answer."""
        try:
            return await call(session, method, url, headers, timings, name, json)
        finally:
            await asyncio.sleep(rng.uniform(0.5, 1.5) * think)

    await asyncio.sleep(rng.uniform(0, think))  # users do not all start in the same millisecond
    while time.monotonic() < deadline:
        try:
            await step("GET", base + "/api/sessions?limit=20", "list")
            created = await step("POST", base + "/api/sessions", "create", {"title": "Bench"})
            mine.append(created["id"])
            sid = rng.choice(mine)
            await step("PATCH", f"{base}/api/sessions/{sid}", "update", {"title": "Renamed"})
            message = {"role": "user", "content": "How do fractions work?"}
            await step("POST", f"{base}/api/sessions/{sid}/messages", "append_message", message)
            await step("GET", f"{base}/api/sessions/{sid}", "get")
            if len(mine) > 1:
                await step("DELETE", f"{base}/api/sessions/{mine.pop(0)}", "delete")
        except (aiohttp.ClientError, RuntimeError):
            await asyncio.sleep(0.05)


async def run_mode(
    mode: str, users: int, duration: float, think: float
) -> tuple[Timings, Timings, float, int, dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="banyan-bench-") as tmp:
        async with running_stack(
            Path(tmp),
            features=FEATURES.format(mode=mode),
            proxy_args=["--no-access-log", "--no-parity"],
        ) as stack:
            base = stack.url("proxy")
            connector = aiohttp.TCPConnector(limit=users)
            async with aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=60)
            ) as session:
                setup = Timings()
                headers = await asyncio.gather(
                    *(sign_up(session, base, i, setup) for i in range(users))
                )
                timings = Timings()
                pids = {name: stack.children[name].process.pid for name in (mode, "proxy")}
                cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
                started = time.monotonic()
                deadline = started + duration
                await asyncio.gather(
                    *(
                        user_loop(session, base, h, i, deadline, timings, think)
                        for i, h in enumerate(headers)
                    )
                )
                elapsed = time.monotonic() - started
                cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
    ops = sum(len(v) for v in timings.samples.values())
    per_request = {name: 1000 * spent / max(ops, 1) for name, spent in cpu.items()}
    return setup, timings, ops / elapsed, sum(timings.failures.values()), per_request


async def main_async(args: argparse.Namespace) -> None:
    summary = []
    for mode in args.backends.split(","):
        setup, timings, throughput, failures, cpu = await run_mode(
            mode, args.users, args.duration, args.think_ms / 1000
        )
        print(f"\n### {mode} ({args.users} users, {args.duration:g}s)\n")
        rows = timings.rows() + setup.rows()
        print(markdown_table(["operation", "count", "p50 ms", "p99 ms", "failures"], rows))
        summary.append((mode, round(throughput, 1), failures, cpu[mode], cpu["proxy"]))
    print("\n### throughput\n")
    headers = ["backend", "ops/s", "failures", "backend CPU ms/op", "proxy CPU ms/op"]
    print(markdown_table(headers, summary))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--backends", default="legacy,new", help="in this order")
    parser.add_argument(
        "--think-ms",
        type=float,
        default=1000.0,
        help="mean pause between a user's steps (0: closed loop)",
    )
    install_uvloop()
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
