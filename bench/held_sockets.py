"""Many idle WebSockets through one proxy process, for ``bench/realtime.py``.

Socket-holder processes (``bench/socket_holder.py``) open ``--idle`` tutor sockets through the
proxy and hold them; meanwhile this process measures the proxy's resident memory growth per socket,
its open descriptors, and the latency of HTTP requests (``GET /api/sessions/{id}``, open loop at a
fixed rate) through the proxy and, at the same moments, straight to the backend: before the sockets
opened and while they are open. The direct figures show what the machine and the backend do on
their own, so the proxy's share is the difference.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from banyan.processes import stop
from bench.common import markdown_table, percentile, quiet_collector


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_descriptors(pid: int) -> int:
    try:
        return os.stat(f"/proc/{pid}/fd").st_size or len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


@dataclass
class Latencies:
    """Answered requests' latencies (ms) and the failures by kind (status or error)."""

    answered: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)

    def figures(self) -> list[object]:
        p50, p99 = percentile(self.answered, 0.5), percentile(self.answered, 0.99)
        return [round(p50, 2), round(p99, 2), sum(self.failures.values())]


async def http_latencies(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str], count: int, rate: float
) -> Latencies:
    """``count`` GETs of ``url`` sent at ``rate`` per second whatever the answers' pace."""
    result = Latencies()

    async def one() -> None:
        started = time.perf_counter()
        try:
            async with http.get(url, headers=headers) as response:
                await response.read()
                status = str(response.status)
        except (aiohttp.ClientError, OSError) as exc:
            status = type(exc).__name__
        if status == "200":
            result.answered.append((time.perf_counter() - started) * 1000)
        else:
            result.failures[status] += 1

    loop = asyncio.get_running_loop()
    begin = loop.time()
    tasks = []
    with quiet_collector():
        for i in range(count):
            await asyncio.sleep(max(0.0, begin + i / rate - loop.time()))
            tasks.append(asyncio.ensure_future(one()))
        await asyncio.gather(*tasks)
    return result


async def start_holders(url: str, count: int, processes: int) -> list[asyncio.subprocess.Process]:
    """Socket-holder processes sharing ``count`` sockets to ``url``."""
    shares = [count // processes + (1 if i < count % processes else 0) for i in range(processes)]
    return [
        await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "bench.socket_holder", url, str(share)),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for share in shares
        if share
    ]


async def holders_say(holders: list[asyncio.subprocess.Process], word: str) -> list[list[str]]:
    """Each holder's next line, which must start with ``word``, split."""
    lines = []
    for holder in holders:
        assert holder.stdout is not None
        line = (await asyncio.wait_for(holder.stdout.readline(), 600)).decode().split()
        if not line or line[0] != word:
            raise RuntimeError(f"socket holder said {line!r}")
        lines.append(line)
    return lines


@dataclass
class HeldSockets:
    opened: int = 0
    refused: int = 0
    failed: int = 0
    held: int = 0
    descriptors: int = 0
    kib_per_socket: float = 0.0
    idle_cpu: dict[str, float] = field(default_factory=dict)  # share of a core without requests
    latency: dict[str, Latencies] = field(default_factory=dict)  # "quiet|busy proxy|direct"
    cpu_us_per_request: dict[str, float] = field(default_factory=dict)  # by phase, idle removed


async def both_ways(
    http: aiohttp.ClientSession,
    urls: dict[str, str],
    headers: dict[str, str],
    args: argparse.Namespace,
    phase: str,
    into: HeldSockets,
    pid: int,
) -> None:
    """Latencies through the proxy and straight to the backend, measured at the same time, and
    the proxy's CPU time per request meanwhile (less what it spends idle, measured first)."""
    cpu_before, started = cpu_seconds(pid), time.perf_counter()
    await asyncio.sleep(5.0)
    idle = into.idle_cpu[phase] = (cpu_seconds(pid) - cpu_before) / (time.perf_counter() - started)
    count, rate = args.http_requests, args.http_rate
    cpu_before, started = cpu_seconds(pid), time.perf_counter()
    results = await asyncio.gather(
        *(http_latencies(http, url, headers, count, rate) for url in urls.values())
    )
    spent = cpu_seconds(pid) - cpu_before - idle * (time.perf_counter() - started)
    into.cpu_us_per_request[phase] = spent / count * 1e6
    for target, result in zip(urls, results, strict=True):
        into.latency[f"{phase} {target}"] = result


async def held_sockets(
    http: aiohttp.ClientSession,
    base: str,
    backend: str,
    pid: int,
    args: argparse.Namespace,
    reads: tuple[dict[str, str], str],
    socket_url: str,
    *,
    quiet_first: bool = True,
) -> HeldSockets:
    """``args.idle`` idle sockets to ``socket_url`` held through the proxy at ``base`` (process
    ``pid``) by ``args.holders`` processes, while a session (auth headers, id) is read through the
    proxy and straight from ``backend`` — first with no socket open when ``quiet_first``."""
    headers, sid = reads
    urls = {"proxy": f"{base}/api/sessions/{sid}", "direct": f"{backend}/api/sessions/{sid}"}
    out = HeldSockets()
    await http_latencies(http, urls["proxy"], headers, 200, args.http_rate)  # warm up
    if quiet_first:
        await both_ways(http, urls, headers, args, "quiet", out, pid)
    await asyncio.sleep(1.0)
    before = rss_kib(pid)
    holders = await start_holders(socket_url, args.idle, args.holders)
    try:
        opened = await holders_say(holders, "opened")
        await asyncio.sleep(2.0)
        after = rss_kib(pid)
        out.descriptors = open_descriptors(pid)
        await both_ways(http, urls, headers, args, "busy", out, pid)
        for holder in holders:
            assert holder.stdin is not None
            holder.stdin.write(b"close\n")
            await holder.stdin.drain()
        out.held = sum(int(line[1]) for line in await holders_say(holders, "held"))
    finally:
        for holder in holders:
            await stop(holder, terminate=False, timeout=30)
    out.opened = sum(int(line[1]) for line in opened)
    out.refused = sum(int(line[3]) for line in opened)
    out.failed = sum(int(line[5]) for line in opened)
    out.kib_per_socket = (after - before) / max(out.opened, 1)
    return out


PLACES = {"same": "the reads' backend", "other": "the other backend"}


def report(rows: list[tuple[str, dict[str, HeldSockets]]], args: argparse.Namespace) -> str:
    """Two markdown tables (the sockets; the reads' latency) and the failures, by backend."""
    sockets, reads = [], []
    failures: Counter[str] = Counter()
    for mode, places in rows:
        for place, held in places.items():
            busy, quiet = held.idle_cpu.get("busy", 0.0), held.idle_cpu.get("quiet")
            idle = f"{busy:.1%}" + ("" if quiet is None else f" (none open: {quiet:.1%})")
            counts = (held.opened, held.refused, held.failed, held.held, held.descriptors)
            # the second 5,000 reuse the memory the first left to the process: growth ~0
            growth = round(held.kib_per_socket, 2) if place == "same" else "(reused)"
            sockets.append([mode, PLACES[place], *counts, growth, idle])
            for phase, open_ in (("quiet", 0), ("busy", held.opened)):
                if f"{phase} proxy" not in held.latency:
                    continue
                figures = [held.latency[f"{phase} {target}"].figures() for target in TARGETS]
                cpu = round(held.cpu_us_per_request.get(phase, 0.0))
                where = PLACES[place] if open_ else "—"
                reads.append([mode, open_, where, *(x for f in figures for x in f), cpu])
            for result in held.latency.values():
                failures.update(result.failures)
    return "\n\n".join(
        [
            markdown_table(SOCKET_COLUMNS, sockets),
            markdown_table(READ_COLUMNS, reads),
            f"{args.http_requests} reads per cell at {args.http_rate:g}/s each way; "
            f"failures: {dict(failures) or 'none'}",
        ]
    )


TARGETS = ("proxy", "direct")
SOCKET_COLUMNS = [
    "reads' backend",
    "sockets held on",
    "opened",
    "refused",
    "failed",
    "still open at the end",
    "proxy descriptors",
    "proxy KiB per socket",
    "proxy CPU holding them, no requests",
]
READ_COLUMNS = [
    "reads' backend",
    "sockets open",
    "held on",
    "via proxy p50 ms",
    "p99 ms",
    "failed",
    "direct p50 ms",
    "p99 ms",
    "failed",
    "proxy CPU µs per read (idle CPU removed)",
]
