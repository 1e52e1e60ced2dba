"""What Banyan costs on the request path, measured against the least proxy that could do the job.

In one run: a small fast upstream (its own process), a bare aiohttp + uvloop forwarder
(``bench/bare_forwarder.py``) and the Banyan proxy (access log off, one process), each measured
with the same load from this process:

- throughput: ``--concurrency`` (64) keep-alive clients for ``--duration`` s, as fast as they go;
- latency at a fixed moderate rate (``--rate`` requests/s for ``--duration`` s), p50 and p99.

Prints a markdown table with the ratios Banyan/bare (throughput) and Banyan - direct (added p50).

    .venv/bin/python -m bench.proxy_overhead [--duration 8] [--concurrency 64] [--rate 500]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from banyan.processes import PYTHON_CLI, start, stop_all
from banyan.testing import free_port
from bench.common import markdown_table, percentile, quiet_collector

FLAGS = """\
version: 1
backends:
  legacy: {url}
  new: {url}
features:
  sessions:
    routes: ["/api/sessions/**"]
    mode: legacy
  folders:
    routes: ["/api/folders/**"]
    mode: new
default: legacy
"""
PATH = "/api/sessions/3f1c"


async def throughput(url: str, concurrency: int, duration: float) -> float:
    count = 0
    stop_at = time.monotonic() + duration
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal count
            while time.monotonic() < stop_at:
                async with session.get(url + PATH) as response:
                    await response.read()
                    count += response.status == 200

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count / duration


async def latency(url: str, rate: float, duration: float) -> list[float]:
    with quiet_collector():
        return await _latency(url, rate, duration)


async def _latency(url: str, rate: float, duration: float) -> list[float]:
    samples: list[float] = []
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> None:
            started = time.perf_counter()
            async with session.get(url + PATH) as response:
                await response.read()
            samples.append((time.perf_counter() - started) * 1000)

        tasks = []
        begin = time.monotonic()
        for i in range(int(rate * duration)):
            delay = begin + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    return samples


async def main_async(args: argparse.Namespace) -> None:
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="banyan-overhead-") as tmp:
        upstream = await start("tiny", [py, "-m", "bench.tiny_upstream", str(free_port())])
        children = [upstream]
        try:
            bare = await start(
                "bare", [py, "-m", "bench.bare_forwarder", upstream.url, str(free_port())]
            )
            children.append(bare)
            flags = Path(tmp) / "flags.yaml"
            flags.write_text(FLAGS.format(url=upstream.url))
            banyan = await start(
                "proxy",
                [*PYTHON_CLI, "proxy", "--flags", str(flags), "--port", "0", "--no-access-log"],
            )
            children.append(banyan)
            targets = {"direct": upstream.url, "bare forwarder": bare.url, "banyan": banyan.url}
            for url in targets.values():  # warm up connections and code paths
                await throughput(url, 8, 1.0)
            rows = []
            results: dict[str, tuple[float, float, float]] = {}
            for name, url in targets.items():
                rps = await throughput(url, args.concurrency, args.duration)
                samples = await latency(url, args.rate, args.duration)
                results[name] = (rps, percentile(samples, 0.5), percentile(samples, 0.99))
                rows.append(
                    [name, round(rps), round(results[name][1], 3), round(results[name][2], 3)]
                )
        finally:
            await stop_all(children)
    print(
        markdown_table(["target", "throughput req/s", f"p50 ms @{args.rate:g}/s", "p99 ms"], rows)
    )
    banyan_rps, bare_rps = results["banyan"][0], results["bare forwarder"][0]
    print()
    print(f"banyan / bare throughput: {banyan_rps / bare_rps:.2%}")
    print(f"banyan added p50 vs direct: {results['banyan'][1] - results['direct'][1]:.3f} ms")
    print(f"bare added p50 vs direct: {results['bare forwarder'][1] - results['direct'][1]:.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rate", type=float, default=500.0)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
