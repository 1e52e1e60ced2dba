"""Capacity of the replicated stack (issue 18): wrk through HAProxy in front of N proxy replicas.

For each N in ``--proxies`` a fresh stack (:class:`banyan.replicas.ReplicaStack`: HAProxy, N
proxies on one read-only flag file, one control store and one PostgreSQL mirror queue, two
replicas of each backend on PostgreSQL and Redis, the model server; every database a temporary
one of its own), one user and one session, then:

- idle (``--idle`` s): PostgreSQL transactions per second in the stack's own databases — what N
  idle replicas cost the database (the control store's version poll, the mirror queue's rounds);
- load: ``wrk -t2 -cC -dD`` through HAProxy, ``GET /api/sessions/{id}`` with the user's token:
  req/s, p50, p99, CPU microseconds per request of the proxies (all replicas together), HAProxy
  and the backends, and PostgreSQL transactions per request;
- with ``--shadow``, the same load once more after ``PUT /_proxy/flags/sessions`` (through one
  replica, the control store) put the sessions in shadow mode: every read also goes to new.

    .venv/bin/python -m bench.replicas [--proxies 1,2,3] [--duration 10] [--connections 32]
                                       [--idle 5] [--shadow]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg

from banyan.control.db import dsn
from banyan.pg import postgres_available, postgres_url, temp_database
from banyan.replicas import ReplicaStack
from banyan.serving import install_uvloop
from bench.common import markdown_table
from bench.wrk import cpu_seconds, parse

FLAGS = """\
version: 1
backends:
  legacy: {legacy}
  new: {new}
features:
  auth:
    routes: ["/api/auth/**"]
    mode: legacy
    writes: skip
  sessions:
    routes: ["/api/sessions/**"]
    mode: legacy
default: legacy
"""


@dataclass
class Row:
    proxies: int
    traffic: str
    rps: float
    p50: float
    p99: float
    errors: int
    proxy_us: float
    haproxy_us: float
    backends_us: float
    pg_per_request: float
    pg_idle_proxies: float
    pg_idle_backends: float


async def transactions(databases: list[str]) -> int:
    conn = await asyncpg.connect(dsn(postgres_url()))
    try:
        value = await conn.fetchval(
            """SELECT coalesce(sum(xact_commit + xact_rollback), 0) FROM pg_stat_database
               WHERE datname = ANY($1::text[])""",
            databases,
        )
        return int(value)
    finally:
        await conn.close()


def family(pid: int) -> list[int]:
    """``pid`` and its descendants (the workers of ``banyan proxy --workers N``)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


def cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        for member in family(pid):
            try:
                total += cpu_seconds(member)
            except OSError:  # ended meanwhile
                continue
    return total


async def wrk(url: str, token: str, connections: int, duration: float) -> str:
    process = await asyncio.create_subprocess_exec(
        "wrk",
        "--latency",
        "-t2",
        f"-c{connections}",
        f"-d{duration:g}s",
        "-H",
        f"Authorization: Bearer {token}",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    text = out.decode()
    if process.returncode != 0:
        raise RuntimeError(f"wrk against {url} failed:\n{text}")
    return text


def errors(text: str) -> int:
    """Non-2xx answers and socket errors (timeouts included) that wrk reported."""
    found = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    count = int(found.group(1)) if found else 0
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    return count + (sum(int(x) for x in sockets.groups()) if sockets else 0)


async def measure(
    stack: ReplicaStack, databases: list[str], args: argparse.Namespace, traffic: str, url: str
) -> tuple[str, dict[str, float]]:
    assert stack.haproxy is not None
    groups = {
        "proxies": [stack.children[p].process.pid for p in stack.proxies],
        "haproxy": [stack.haproxy.pid],
        "backends": [
            stack.children[b].process.pid for b in ("legacy-1", "legacy-2", "new-1", "new-2")
        ],
    }
    before = {name: cpu(pids) for name, pids in groups.items()}
    xacts = await transactions(databases)
    text = await wrk(url, args.token, args.connections, args.duration)
    figures = {name: cpu(pids) - before[name] for name, pids in groups.items()}
    await asyncio.sleep(1.0)  # PostgreSQL's statistics are flushed within a second
    figures["pg"] = await transactions(databases) - xacts
    return text, figures


async def one_stack(proxies: int, args: argparse.Namespace) -> list[Row]:
    """A fresh stack of ``proxies`` replicas on temporary databases, measured idle then under
    load (unshadowed, and shadowed with ``--shadow``); torn down whatever happens."""
    async with (
        temp_database("bench_legacy") as legacy,
        temp_database("bench_new") as new,
        temp_database("bench_mirror") as mirror,
        temp_database("bench_control") as control,
    ):
        databases = [u.rsplit("/", 1)[1].split("?")[0] for u in (legacy, new, mirror, control)]
        env = {
            "BANYAN_ADMIN_TOKEN": "bench-admin",
            "BANYAN_REDIS_PREFIX": f"bench-{secrets.token_hex(4)}",
            "BANYAN_MIRROR_DB": mirror,
        }
        with tempfile.TemporaryDirectory(prefix="banyan-replicas-") as tmp:
            stack = ReplicaStack(
                Path(tmp),
                env=env,
                legacy_db=legacy,
                new_db=new,
                redis="redis://127.0.0.1:6379/0",
                control_db=control,
                flags=FLAGS,
                proxies=proxies,
            )
            try:
                base = await stack.up()
                return await measure_stack(stack, base, databases, proxies, args)
            finally:
                await stack.down()


async def measure_stack(
    stack: ReplicaStack, base: str, databases: list[str], proxies: int, args: argparse.Namespace
) -> list[Row]:
    """One user and session, the idle transaction rates, then one row per kind of traffic."""
    args.token, url = await user_session(base)
    await asyncio.sleep(1.0)
    idle = await idle_rates(databases, args.idle)
    rows: list[Row] = []
    for traffic in ["unshadowed"] + (["shadowed"] if args.shadow else []):
        if traffic == "shadowed":
            await shadow_sessions(stack)
        text, figures = await measure(stack, databases, args, traffic, url)
        run = parse(text)
        n = max(1, run.requests)
        rows.append(
            Row(
                proxies,
                traffic,
                round(run.rps),
                round(run.p50, 2),
                round(run.p99, 2),
                errors(text),
                round(figures["proxies"] / n * 1e6),
                round(figures["haproxy"] / n * 1e6),
                round(figures["backends"] / n * 1e6),
                round(figures["pg"] / n, 2),
                round(idle[0], 1),
                round(idle[1], 1),
            )
        )
    return rows


async def user_session(base: str) -> tuple[str, str]:
    """A new user's token and the URL of a session of theirs."""
    async with aiohttp.ClientSession() as http:
        body = {"email": f"b{secrets.token_hex(4)}@x.org", "password": "pass-1234"}
        async with http.post(base + "/api/auth/register", json={**body, "name": "B"}) as r:
            token = (await r.json())["token"]
        auth = {"Authorization": f"Bearer {token}"}
        async with http.post(base + "/api/sessions", json={"title": "b"}, headers=auth) as r:
            return token, f"{base}/api/sessions/{(await r.json())['id']}"


async def idle_rates(databases: list[str], idle: float) -> tuple[float, float]:
    """PostgreSQL transactions per second while nothing is asked: (mirror and control store,
    the backends')."""
    ours, theirs = databases[2:], databases[:2]  # (mirror, control), backends'
    idle_from = await transactions(ours), await transactions(theirs)
    began = time.monotonic()
    await asyncio.sleep(idle)
    await asyncio.sleep(1.0)
    took = time.monotonic() - began
    return (
        (await transactions(ours) - idle_from[0]) / took,
        (await transactions(theirs) - idle_from[1]) / took,
    )


async def shadow_sessions(stack: ReplicaStack) -> None:
    """Sessions in shadow mode, through one replica (the control store tells the others)."""
    async with aiohttp.ClientSession() as http:
        async with http.put(
            stack.url("proxy-1") + "/_proxy/flags/sessions",
            json={"mode": "shadow", "primary": "legacy"},
            headers={"Authorization": "Bearer bench-admin"},
        ) as r:
            assert r.status == 200, await r.text()
    await asyncio.sleep(1.0)


async def main_async(args: argparse.Namespace) -> int:
    if shutil.which("haproxy") is None or shutil.which("wrk") is None:
        print("needs haproxy and wrk (apt-get install -y haproxy wrk)", file=sys.stderr)
        return 2
    if not await postgres_available():
        print("needs PostgreSQL at 127.0.0.1:5432", file=sys.stderr)
        return 2
    rows: list[Row] = []
    for count in args.proxies:
        rows += await one_stack(count, args)
    headers = [
        "proxies",
        "traffic",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "proxies CPU µs/req",
        "HAProxy µs/req",
        "backends µs/req",
        "PG xact/req",
        "PG xact/s idle: proxies' (control, mirror)",
        "backends'",
    ]
    print(
        f"\n### wrk -t2 -c{args.connections} -d{args.duration:g}s through HAProxy, "
        "GET /api/sessions/{id}\n"
    )
    print(markdown_table(headers, [list(vars(r).values()) for r in rows]))
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--proxies", type=lambda t: [int(x) for x in t.split(",")], default=[1, 2, 3]
    )
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--idle", type=float, default=5.0)
    parser.add_argument("--shadow", action="store_true", help="also measure shadowed reads")
    install_uvloop()
    sys.exit(asyncio.run(main_async(parser.parse_args())))


if __name__ == "__main__":
    main()
