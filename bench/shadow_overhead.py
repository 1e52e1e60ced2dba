"""What shadowing costs the user: the same load with the feature on ``legacy`` and on ``shadow``.

In one run, with a primary that answers in ~1 ms and three candidates — healthy (same speed), 10x
slower, and hanging (cut at the shadow timeout) — the primary's p50/p99 as the client sees it is
measured at a fixed rate with the feature unshadowed and shadowed (100% sampling). Every run starts
with a 2 s warm-up after its flag change, and the runs are repeated in ``--rounds`` rounds whose
median is printed: on a shared machine one 10 s p99 moves by a third from run to run. Then
``--memory-requests`` (100,000) shadowed requests are sent with the hanging candidate and the
proxy's resident memory is printed every 20%: it must stay flat.

    .venv/bin/python -m bench.shadow_overhead [--rate 400] [--duration 10] [--rounds 3]
        [--memory-requests 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from banyan.processes import PYTHON_CLI, start, stop_all
from banyan.testing import free_port
from bench.common import markdown_table, percentile
from bench.proxy_overhead import latency
from bench.realtime import rss_kib

FLAGS = """\
version: 1
backends:
  legacy: {legacy}
  new: {new}
features:
  sessions:
    routes: ["/api/**"]
    mode: {mode}
    parity: {{sample: 100, noise_sample: 0, shadow_timeout: 1}}
default: legacy
"""


async def set_mode(flags: Path, legacy: str, new: str, mode: str, proxy: str) -> None:
    flags.write_text(FLAGS.format(legacy=legacy, new=new, mode=mode))
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            async with session.get(proxy + "/_proxy/status") as response:
                status = await response.json()
            if status["features"]["sessions"]["mode"] == mode and status["flags"]["digest"]:
                backend_url = status["backends"].get("new", {}).get("url")
                if backend_url == new:
                    return
            await asyncio.sleep(0.05)
    raise RuntimeError("the proxy did not pick up the flag change")


def median_of(pairs: list[tuple[float, float]]) -> tuple[float, float]:
    """The median p50 and the median p99 of a run's rounds."""
    return statistics.median(p for p, _ in pairs), statistics.median(p for _, p in pairs)


async def flood(url: str, count: int, concurrency: int = 64) -> None:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        queue = iter(range(count))

        async def worker() -> None:
            for _ in queue:
                async with session.get(url + "/api/sessions/1") as response:
                    await response.read()

        await asyncio.gather(*(worker() for _ in range(concurrency)))


async def main_async(args: argparse.Namespace) -> None:
    py = sys.executable
    children = []
    with tempfile.TemporaryDirectory(prefix="banyan-shadow-") as tmp:
        try:
            primary = await start(
                "primary", [py, "-m", "bench.tiny_upstream", str(free_port()), "--delay-ms", "1"]
            )
            healthy = await start(
                "healthy", [py, "-m", "bench.tiny_upstream", str(free_port()), "--delay-ms", "1"]
            )
            slow = await start(
                "slow", [py, "-m", "bench.tiny_upstream", str(free_port()), "--delay-ms", "10"]
            )
            hanging = await start(
                "hanging", [py, "-m", "bench.tiny_upstream", str(free_port()), "--hang"]
            )
            children += [primary, healthy, slow, hanging]
            flags = Path(tmp) / "flags.yaml"
            flags.write_text(FLAGS.format(legacy=primary.url, new=healthy.url, mode="legacy"))
            proxy = await start(
                "proxy",
                [*PYTHON_CLI, "proxy", "--flags", str(flags), "--port", "0", "--no-access-log"],
                env={"BANYAN_PARITY_DB": f"sqlite+aiosqlite:///{Path(tmp) / 'parity.db'}"},
            )
            children.append(proxy)
            runs = [("legacy (no shadow)", "legacy", healthy)] + [
                (f"shadow, {name} candidate", "shadow", candidate)
                for name, candidate in (
                    ("healthy", healthy),
                    ("10x slower", slow),
                    ("hanging", hanging),
                )
            ]
            figures: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in runs}
            for _ in range(args.rounds):  # rounds of every run, so drift over time hits them alike
                for name, mode, candidate in runs:
                    await set_mode(flags, primary.url, candidate.url, mode, proxy.url)
                    await latency(proxy.url, args.rate, 2)  # warm up: connections, first copies
                    samples = await latency(proxy.url, args.rate, args.duration)
                    figures[name].append((percentile(samples, 0.5), percentile(samples, 0.99)))
            rows = []
            base50, base99 = median_of(figures[runs[0][0]])
            for name, _, _ in runs:
                p50, p99 = median_of(figures[name])
                versus = name != runs[0][0]
                rows.append([name, round(p50, 3), round(p99, 3),
                             f"{(p50 / base50 - 1) * 100:+.1f}%" if versus else "—",
                             f"{(p99 / base99 - 1) * 100:+.1f}%" if versus else "—"])  # fmt: skip
            print(f"median of {args.rounds} rounds of {args.duration:g} s at {args.rate:g} req/s")
            for name, _, _ in runs:
                each = ", ".join(f"{p50:.2f}/{p99:.2f}" for p50, p99 in figures[name])
                print(f"  {name}: p50/p99 ms by round: {each}")
            print(
                markdown_table(
                    ["run", "primary p50 ms", "p99 ms", "p50 vs legacy", "p99 vs legacy"], rows
                )
            )
            print()
            await set_mode(flags, primary.url, hanging.url, "shadow", proxy.url)
            pid = proxy.process.pid
            step = args.memory_requests // 5
            readings = [rss_kib(pid)]
            started = time.monotonic()
            for _ in range(5):
                await flood(proxy.url, step)
                readings.append(rss_kib(pid))
            elapsed = time.monotonic() - started
            print(
                f"{args.memory_requests:,} shadowed requests with a hanging candidate in {elapsed:.0f} s"
            )
            print(
                "proxy RSS (MiB) at 0/20/40/60/80/100%: "
                + " ".join(f"{r / 1024:.1f}" for r in readings)
            )
        finally:
            await stop_all(children)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=400.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--memory-requests", type=int, default=100_000)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
