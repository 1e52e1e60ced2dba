"""Session operations under load, through the proxy, once per backend.

100 concurrent users (``--users``) each register and log in (measured apart: password hashing is
deliberately slow), then loop for ``--duration`` seconds over a realistic mix, pausing
``--think-ms`` (1 s on average) between steps as people do: list sessions, create one, update it, append a message, read it back and now
and then delete one. The stack runs as real processes on loopback (SQLite stores); the same run is
made with every feature on ``legacy`` and then on ``new``. Prints p50/p99 per operation, throughput
and failures as markdown tables.

    .venv/bin/python -m bench.sessions [--users 100] [--duration 20]
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
from bench.common import Timings, markdown_table

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
    await asyncio.sleep(rng.uniform(0, think))  # users do not all start in the same millisecond
    while time.monotonic() < deadline:
        try:
            await call(session, "GET", base + "/api/sessions?limit=20", headers, timings, "list")
            created = await call(
                session,
                "POST",
                base + "/api/sessions",
                headers,
                timings,
                "create",
                {"title": "Bench session"},
            )
            mine.append(created["id"])
            sid = rng.choice(mine)
            await call(
                session,
                "PATCH",
                f"{base}/api/sessions/{sid}",
                headers,
                timings,
                "update",
                {"title": "Renamed"},
            )
            await call(
                session,
                "POST",
                f"{base}/api/sessions/{sid}/messages",
                headers,
                timings,
                "append_message",
                {"role": "user", "content": "How do fractions work?"},
            )
            await call(session, "GET", f"{base}/api/sessions/{sid}", headers, timings, "get")
            if len(mine) > 5:
                await call(
                    session,
                    "DELETE",
                    f"{base}/api/sessions/{mine.pop(0)}",
                    headers,
                    timings,
                    "delete",
                )
        except (aiohttp.ClientError, RuntimeError):
            await asyncio.sleep(0.05)
        await asyncio.sleep(rng.uniform(0.5, 1.5) * think)  # a person reads before the next step


async def run_mode(
    mode: str, users: int, duration: float, think: float
) -> tuple[Timings, Timings, float, int]:
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
                started = time.monotonic()
                deadline = started + duration
                await asyncio.gather(
                    *(
                        user_loop(session, base, h, i, deadline, timings, think)
                        for i, h in enumerate(headers)
                    )
                )
                elapsed = time.monotonic() - started
    ops = sum(len(v) for v in timings.samples.values())
    return setup, timings, ops / elapsed, sum(timings.failures.values())


async def main_async(args: argparse.Namespace) -> None:
    summary = []
    for mode in ("legacy", "new"):
        setup, timings, throughput, failures = await run_mode(
            mode, args.users, args.duration, args.think_ms / 1000
        )
        print(f"\n### {mode} ({args.users} users, {args.duration:g}s)\n")
        rows = timings.rows() + setup.rows()
        print(markdown_table(["operation", "count", "p50 ms", "p99 ms", "failures"], rows))
        summary.append((mode, round(throughput, 1), failures))
    print("\n### throughput\n")
    print(markdown_table(["backend", "ops/s", "failures"], summary))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument(
        "--think-ms",
        type=float,
        default=1000.0,
        help="mean pause between a user's steps (0: closed loop)",
    )
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
