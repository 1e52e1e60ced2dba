"""What Banyan costs on the request path, measured with ``wrk`` against the least proxy that could
do the job.

In one run, side by side: a small fast upstream (its own process), a bare aiohttp + uvloop
forwarder of twenty lines (``bench/bare_forwarder.py``) and ``banyan proxy`` with its defaults
(access log on, metrics, flags, parity available), each measured by the same ``wrk``:

- throughput: ``wrk -t1 -c32`` for ``--duration`` s, as fast as it goes;
- latency at a fixed rate of half the bare forwarder's throughput: Debian's ``wrk`` has no
  ``-R`` (that is wrk2), so a Lua script makes each of ``--rate-connections`` (8) connections
  pause ``connections / rate`` seconds before each request (wrk's ``delay()`` hook): that paces
  the whole run at the rate, and wrk's latency distribution counts each request's own time only.

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
import contextlib
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from banyan.ports import free_port
from banyan.processes import PYTHON_CLI, Child, start, stop_all
from bench.common import markdown_table

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
PACED = """\
local pause_ms = {pause_ms}
function delay()
  return pause_ms
end
"""
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


@dataclass
class Run:
    rps: float
    p50: float  # ms
    p99: float  # ms
    requests: int = 0
    cpu_us: float = 0.0  # the target process's CPU per request, microseconds


def _stat(pid: int) -> list[str]:
    """The fields of ``/proc/PID/stat`` after the command name (``state`` first)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of process ``pid`` so far, and of its live children (the
    worker processes of ``banyan proxy --workers N``)."""
    fields = _stat(pid)
    total = int(fields[11]) + int(fields[12])
    for child in _children(pid):
        with contextlib.suppress(OSError):
            child_fields = _stat(child)
            total += int(child_fields[11]) + int(child_fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int(_stat(int(entry.name))[1]) == pid:
                    found.append(int(entry.name))
    return found


def wrk_or_exit() -> str:
    found = shutil.which("wrk")
    if found is None:
        sys.exit("bench.proxy_overhead needs wrk: apt-get install -y wrk (Debian), then run again")
    return found


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def parse(output: str) -> Run:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    count = re.search(r"(\d+) requests in", output)
    assert p50 is not None and p99 is not None and count is not None, output
    return Run(rps, _ms(p50.group(1)), _ms(p99.group(1)), int(count.group(1)))


async def wrk(url: str, *args: str) -> Run:
    process = await asyncio.create_subprocess_exec(
        wrk_or_exit(),
        "--latency",
        *args,
        url + PATH,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    text = out.decode()
    if process.returncode != 0 or "Non-2xx" in text or "Socket errors" in text:
        raise RuntimeError(f"wrk against {url} failed or saw errors:\n{text}")
    return parse(text)


async def throughput(url: str, duration: float, pid: int | None = None) -> Run:
    before = cpu_seconds(pid) if pid else 0.0
    run = await wrk(url, "-t1", "-c32", f"-d{duration:g}s")
    if pid and run.requests:
        run.cpu_us = (cpu_seconds(pid) - before) / run.requests * 1e6
    return run


async def paced(url: str, rate: float, connections: int, duration: float, tmp: Path) -> Run:
    script = tmp / f"paced-{rate:.0f}.lua"
    script.write_text(PACED.format(pause_ms=max(1, round(connections * 1000 / rate))))
    return await wrk(url, "-t1", f"-c{connections}", f"-d{duration:g}s", "-s", str(script))


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
