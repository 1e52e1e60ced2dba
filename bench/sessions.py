"""Session operations under load, through the proxy, once per backend.

100 concurrent users (``--users``) each register and log in, then loop for ``--duration`` seconds
over a realistic mix: list sessions, create one, update it, append a message, read it back and now
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

import httpx

from banyan.processes import running_stack
from bench.common import Timings, markdown_table

FEATURES = """\
features:
  everything:
    routes: ["/api/**", "/ws/**"]
    mode: {mode}
"""


async def user_loop(
    client: httpx.AsyncClient, index: int, deadline: float, timings: Timings
) -> None:
    email = f"bench-{index}-{random.randrange(1 << 30)}@example.com"
    with timings.measure("register"):
        r = await client.post(
            "/api/auth/register",
            json={"email": email, "password": "bench-pass-1", "name": f"U{index}"},
        )
        r.raise_for_status()
    with timings.measure("login"):
        r = await client.post("/api/auth/login", json={"email": email, "password": "bench-pass-1"})
        r.raise_for_status()
    headers = {"Authorization": f"Bearer {r.json()['token']}"}
    mine: list[str] = []
    rng = random.Random(index)
    while time.monotonic() < deadline:
        try:
            with timings.measure("list"):
                (await client.get("/api/sessions?limit=20", headers=headers)).raise_for_status()
            with timings.measure("create"):
                r = await client.post(
                    "/api/sessions", json={"title": "Bench session"}, headers=headers
                )
                r.raise_for_status()
                mine.append(r.json()["id"])
            sid = rng.choice(mine)
            with timings.measure("update"):
                r = await client.patch(
                    f"/api/sessions/{sid}", json={"title": "Renamed"}, headers=headers
                )
                r.raise_for_status()
            with timings.measure("append_message"):
                r = await client.post(
                    f"/api/sessions/{sid}/messages",
                    json={"role": "user", "content": "How do fractions work?"},
                    headers=headers,
                )
                r.raise_for_status()
            with timings.measure("get"):
                (await client.get(f"/api/sessions/{sid}", headers=headers)).raise_for_status()
            if len(mine) > 5:
                victim = mine.pop(0)
                with timings.measure("delete"):
                    (
                        await client.delete(f"/api/sessions/{victim}", headers=headers)
                    ).raise_for_status()
        except httpx.HTTPError:
            await asyncio.sleep(0.05)


async def run_mode(mode: str, users: int, duration: float) -> tuple[Timings, float, int]:
    with tempfile.TemporaryDirectory(prefix="banyan-bench-") as tmp:
        async with running_stack(Path(tmp), features=FEATURES.format(mode=mode)) as stack:
            limits = httpx.Limits(max_connections=users, max_keepalive_connections=users)
            async with httpx.AsyncClient(
                base_url=stack.url("proxy"), limits=limits, timeout=30
            ) as client:
                timings = Timings()
                started = time.monotonic()
                deadline = started + duration
                await asyncio.gather(
                    *(user_loop(client, i, deadline, timings) for i in range(users))
                )
                elapsed = time.monotonic() - started
    ops = sum(len(v) for v in timings.samples.values())
    return timings, ops / elapsed, sum(timings.failures.values())


async def main_async(args: argparse.Namespace) -> None:
    summary = []
    for mode in ("legacy", "new"):
        timings, throughput, failures = await run_mode(mode, args.users, args.duration)
        print(f"\n### {mode} ({args.users} users, {args.duration:g}s)\n")
        print(
            markdown_table(["operation", "count", "p50 ms", "p99 ms", "failures"], timings.rows())
        )
        summary.append((mode, round(throughput, 1), failures))
    print("\n### throughput\n")
    print(markdown_table(["backend", "ops/s", "failures"], summary))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--duration", type=float, default=20.0)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
