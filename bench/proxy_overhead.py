"""What Banyan costs on the request path, measured with ``wrk`` against the least proxy that could
do the job.

In one run, side by side: a small fast upstream (its own process), a bare aiohttp + uvloop
forwarder of twenty lines (``bench/bare_forwarder.py``) and ``banyan proxy`` with its defaults
(access log on, metrics, flags, parity available), each measured by the same ``wrk``:

- throughput: ``wrk -t1 -c32`` for ``--duration`` s, as fast as it goes;
- latency at a fixed rate of half the bare forwarder's throughput, over ``--rate-connections``
  (8) connections paced by a Lua script (:func:`bench.wrk.paced`).

Prints a markdown table, the ratio banyan/bare (throughput) and the p50 each proxy adds over a
direct call, and the CPU each target's process spent per request during the throughput runs
(from ``/proc``: what decides throughput on a machine with cores to spare, and a figure other load
on a shared machine hardly moves). Needs ``wrk`` on PATH (``apt-get install -y wrk``).

    .venv/bin/python -m bench.proxy_overhead [--duration 10] [--rounds 1] [--workers 1]

``--workers N`` also measures ``banyan proxy --workers N`` (N processes sharing the port) beside
the one-worker proxy, its CPU per request summed over the workers.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from banyan.ports import free_port
from banyan.processes import PYTHON_CLI, Child, start, stop_all
from bench.common import markdown_table
from bench.wrk import Run, cpu_seconds, paced, wrk, wrk_or_exit

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


async def throughput(url: str, duration: float, pid: int | None = None) -> Run:
    before = cpu_seconds(pid) if pid else 0.0
    run = await wrk(url, "-t1", "-c32", f"-d{duration:g}s")
    if pid and run.requests:
        run.cpu_us = (cpu_seconds(pid) - before) / run.requests * 1e6
    return run


async def _start_targets(
    args: argparse.Namespace, tmp: Path, children: list[Child]
) -> tuple[dict[str, str], dict[str, int]]:
    """Start the upstream, the bare forwarder and banyan (and banyan with ``--workers N``);
    every process started joins ``children``. Returns each target's URL and process id."""
    py = sys.executable
    upstream = await start("tiny", [py, "-m", "bench.tiny_upstream", str(free_port())])
    children.append(upstream)
    bare = await start("bare", [py, "-m", "bench.bare_forwarder", upstream.url, str(free_port())])
    children.append(bare)
    flags = tmp / "flags.yaml"
    flags.write_text(FLAGS.format(url=upstream.url))
    proxy = [*PYTHON_CLI, "proxy", "--flags", str(flags), "--port", "0", *args.proxy_args]
    started = {"direct": upstream, "bare forwarder": bare}
    started["banyan"] = await start("proxy", proxy)
    children.append(started["banyan"])
    if args.workers > 1:
        workers = await start("proxy", [*proxy, "--workers", str(args.workers)])
        children.append(workers)
        started[f"banyan, {args.workers} workers"] = workers
    return (
        {name: child.url for name, child in started.items()},
        {name: child.process.pid for name, child in started.items()},
    )


async def main_async(args: argparse.Namespace) -> None:
    wrk_or_exit()
    with tempfile.TemporaryDirectory(prefix="banyan-overhead-") as tmp:
        children: list[Child] = []
        try:
            targets, pids = await _start_targets(args, Path(tmp), children)
            for url in targets.values():  # warm up connections and code paths
                await throughput(url, 2)
            runs: dict[str, list[Run]] = {name: [] for name in targets}
            for _ in range(args.rounds):  # rounds take turns, so drift hits every target alike
                for name, url in targets.items():
                    runs[name].append(await throughput(url, args.duration, pids[name]))
            bare_rps = _median([r.rps for r in runs["bare forwarder"]])
            rate = args.rate or bare_rps / 2
            latency = {
                name: await paced(url, rate, args.rate_connections, args.duration, Path(tmp))
                for name, url in targets.items()
            }
        finally:
            await stop_all(children)
    report(runs, latency, rate)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def report(runs: dict[str, list[Run]], latency: dict[str, Run], rate: float) -> None:
    rows = []
    for name, measured in runs.items():
        rps = _median([r.rps for r in measured])
        cpu_us = round(_median([r.cpu_us for r in measured]))
        paced_run = latency[name]
        rows.append([name, round(rps), cpu_us, paced_run.p50, paced_run.p99, round(paced_run.rps)])
    headers = [
        "target",
        "throughput req/s (wrk -t1 -c32)",
        "process CPU µs/req",
        f"p50 ms @{rate:.0f}/s",
        "p99 ms",
        "paced req/s",
    ]
    print(markdown_table(headers, rows))
    banyan = _median([r.rps for r in runs["banyan"]])
    bare = _median([r.rps for r in runs["bare forwarder"]])
    cpu = {name: _median([r.cpu_us for r in measured]) for name, measured in runs.items()}
    direct_p50 = latency["direct"].p50
    print()
    print(f"banyan / bare throughput: {banyan / bare:.1%}")
    print(f"bare / banyan CPU per request: {cpu['bare forwarder'] / cpu['banyan']:.1%}")
    print(f"banyan added p50 vs direct: {latency['banyan'].p50 - direct_p50:.3f} ms")
    print(f"bare added p50 vs direct: {latency['bare forwarder'].p50 - direct_p50:.3f} ms")
    for name in runs:
        if name.startswith("banyan, "):  # --workers N beside one worker
            scaled = _median([r.rps for r in runs[name]])
            print(f"{name} / one worker throughput: {scaled / banyan:.1%}")
            print(f"{name} / bare throughput: {scaled / bare:.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=1, help="throughput rounds, median shown")
    parser.add_argument("--rate", type=float, default=0.0, help="default: half the bare's rps")
    parser.add_argument("--rate-connections", type=int, default=8)
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="also measure banyan proxy --workers N (CPU summed over the workers)",
    )
    parser.add_argument(
        "--proxy-args",
        nargs="*",
        default=[],
        help="extra banyan proxy options, e.g. --no-access-log",
    )
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
