"""What shadowing costs the user: the same load with the feature on ``legacy`` and on ``shadow``.

In one run, with a primary that answers in ~1 ms and three candidates — healthy (same speed), 10x
slower, and hanging (cut at the shadow timeout) — the primary's p50/p99 as the client sees it is
measured at a fixed rate by ``wrk`` (:func:`bench.wrk.paced`) with the feature unshadowed and
shadowed (100% sampling). Every run starts with a 2 s warm-up after its flag change, and the runs
are repeated in ``--rounds`` rounds (20), taking turns so that drift over time hits them alike;
each round takes them in another order, such that every ten rounds every run takes every place
twice and follows every other run twice (:func:`bench.common.balanced_orders`). The median of a
run's per-round p50 and p99 is printed with every round's figures (on a shared machine one round's
p99 moves by a third from round to round, and one disturbed round would decide a p99 taken over all
rounds' requests at once). The unshadowed run is measured twice in each round: how far the second
copy lands from the first (an A/A comparison, where nothing changed) is the method's own noise in
that run, printed beside the shadowed runs' figures so a difference of a few percent can be read
against it. Beside latency, the CPU time per request of the proxy and of the candidate: shadowing's
cost, which depends much less on how busy the machine is. Then ``wrk -c64`` floods the proxy with
shadowed requests for ``--memory-seconds`` with the hanging candidate and the proxy's resident
memory is printed every fifth of that: it must stay flat.

    .venv/bin/python -m bench.shadow_overhead [--rate 400] [--duration 8] [--rounds 20]
        [--memory-seconds 25]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from banyan.ports import free_port
from banyan.processes import PYTHON_CLI, Child, start, stop_all
from bench.common import balanced_orders, markdown_table
from bench.held_sockets import rss_kib
from bench.wrk import Run as WrkRun
from bench.wrk import cpu_seconds, paced, wrk, wrk_or_exit

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


@dataclass
class Run:
    """One configuration's figures over all its rounds."""

    requests: int = 0
    rounds: list[tuple[float, float]] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # seconds, by process

    def add(self, run: WrkRun, cpu: dict[str, float]) -> None:
        self.requests += run.requests
        self.rounds.append((run.p50, run.p99))
        self.rates.append(run.rps)
        for name, seconds in cpu.items():
            self.cpu[name] = self.cpu.get(name, 0.0) + seconds

    def medians(self) -> tuple[float, float]:
        """The median of the rounds' p50s and of their p99s."""
        return (
            statistics.median(p50 for p50, _ in self.rounds),
            statistics.median(p99 for _, p99 in self.rounds),
        )

    def per_request_us(self, process: str) -> float:
        return self.cpu.get(process, 0.0) / max(1, self.requests) * 1e6


Target = tuple[str, str, Child]  # (run name, mode, candidate)
AGAIN = "legacy again (A/A: noise)"


async def _start(tmp: Path, children: list[Child]) -> tuple[Path, Child, Child, list[Target]]:
    """The primary, three candidates (healthy, 10x slower, hanging) and the proxy; every process
    joins ``children``. Returns the flag file, the primary, the proxy and the runs to measure."""
    py = sys.executable
    upstream = [py, "-m", "bench.tiny_upstream"]
    primary = await start("primary", [*upstream, str(free_port()), "--delay-ms", "1"])
    healthy = await start("healthy", [*upstream, str(free_port()), "--delay-ms", "1"])
    slow = await start("slow", [*upstream, str(free_port()), "--delay-ms", "10"])
    hanging = await start("hanging", [*upstream, str(free_port()), "--hang"])
    children += [primary, healthy, slow, hanging]
    flags = tmp / "flags.yaml"
    flags.write_text(FLAGS.format(legacy=primary.url, new=healthy.url, mode="legacy"))
    proxy = await start(
        "proxy",
        [*PYTHON_CLI, "proxy", "--flags", str(flags), "--port", "0", "--no-access-log"],
        env={"BANYAN_PARITY_DB": f"sqlite+aiosqlite:///{tmp / 'parity.db'}"},
    )
    children.append(proxy)
    runs: list[Target] = [("legacy (no shadow)", "legacy", healthy)] + [
        (f"shadow, {name} candidate", "shadow", candidate)
        for name, candidate in (("healthy", healthy), ("10x slower", slow), ("hanging", hanging))
    ]
    runs.append((AGAIN, "legacy", healthy))  # the A/A control: nothing changed but the time
    return flags, primary, proxy, runs


async def _measure(
    args: argparse.Namespace, tmp: Path, flags: Path, primary: Child, proxy: Child,
    runs: list[Target],
) -> dict[str, Run]:  # fmt: skip
    """Rounds of every run, each round in its own order (:func:`balanced_orders`), so drift over
    time and what one run leaves behind for the next hit every run alike."""
    figures = {name: Run() for name, _, _ in runs}
    pid = proxy.process.pid
    orders = balanced_orders(len(runs))
    for round_ in range(args.rounds):
        for index in orders[round_ % len(orders)]:
            name, mode, candidate = runs[index]
            await set_mode(flags, primary.url, candidate.url, mode, proxy.url)
            await paced(proxy.url, args.rate, args.connections, 2, tmp)  # warm up
            pids = {"proxy": pid, "candidate": candidate.process.pid}
            before = {process: cpu_seconds(each) for process, each in pids.items()}
            run = await paced(proxy.url, args.rate, args.connections, args.duration, tmp)
            await asyncio.sleep(1.2)  # the last copies are answered (or cut at 1 s)
            spent = {process: cpu_seconds(each) - before[process] for process, each in pids.items()}
            figures[name].add(run, spent)
    return figures


def _report(args: argparse.Namespace, runs: list[Target], figures: dict[str, Run]) -> None:
    base50, base99 = figures[runs[0][0]].medians()
    rows = []
    for name, _, _ in runs:
        run = figures[name]
        p50, p99 = run.medians()
        versus = name != runs[0][0]
        rows.append([name, round(p50, 3), round(p99, 3),
                     f"{(p50 / base50 - 1) * 100:+.1f}%" if versus else "—",
                     f"{(p99 / base99 - 1) * 100:+.1f}%" if versus else "—",
                     round(run.per_request_us("proxy")),
                     round(run.per_request_us("candidate"))])  # fmt: skip
    rate = statistics.median(r for run in figures.values() for r in run.rates)
    print(f"median of {args.rounds} rounds of {args.duration:g} s, wrk paced at {rate:.0f} req/s")
    for name, _, _ in runs:
        each = ", ".join(f"{p50:.2f}/{p99:.2f}" for p50, p99 in figures[name].rounds)
        print(f"  {name}: p50/p99 ms by round: {each}")
    headers = ["run", "primary p50 ms", "p99 ms", "p50 vs legacy", "p99 vs legacy"]
    headers += ["proxy CPU µs/req", "candidate CPU µs/req"]
    print(markdown_table(headers, rows))
    print()


async def _memory(
    args: argparse.Namespace, flags: Path, primary: Child, proxy: Child, hanging: Child
) -> None:
    """The proxy's RSS over ``--memory-seconds`` of shadowed requests, hanging candidate."""
    await set_mode(flags, primary.url, hanging.url, "shadow", proxy.url)
    readings = [rss_kib(proxy.process.pid)]
    sent = 0
    for _ in range(5):
        slice_seconds = max(1, round(args.memory_seconds / 5))
        sent += (await wrk(proxy.url, "-t1", "-c64", f"-d{slice_seconds}s")).requests
        readings.append(rss_kib(proxy.process.pid))
    print(f"{sent:,} shadowed requests with a hanging candidate (wrk -t1 -c64)")
    print("proxy RSS (MiB) at 0/20/40/60/80/100%: " + " ".join(f"{r / 1024:.1f}" for r in readings))


async def main_async(args: argparse.Namespace) -> None:
    wrk_or_exit()
    children: list[Child] = []
    with tempfile.TemporaryDirectory(prefix="banyan-shadow-") as tmp:
        try:
            flags, primary, proxy, runs = await _start(Path(tmp), children)
            figures = await _measure(args, Path(tmp), flags, primary, proxy, runs)
            _report(args, runs, figures)
            hanging = next(candidate for name, _, candidate in runs if "hanging" in name)
            await _memory(args, flags, primary, proxy, hanging)
        finally:
            await stop_all(children)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=400.0)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=8, help="wrk's, paced")
    parser.add_argument("--memory-seconds", type=float, default=25.0)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
