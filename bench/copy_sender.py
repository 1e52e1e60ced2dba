"""Whether the copy sender's helper process earns its keep: copies sent in-process against a helper.

Two proxies in front of the same primary and candidates, one sending shadow copies on its own
event loop (``BANYAN_SHADOW_SENDER=inline``), one handing them to its helper process
(``BANYAN_SHADOW_SENDER=process``), measured side by side in one run as
:mod:`bench.shadow_overhead` measures (``wrk`` paced at a fixed rate, 100% of requests shadowed,
rounds in balanced orders, the median of the rounds' p50 and p99): each proxy unshadowed, and
shadowing a healthy and a 10x slower candidate. Printed against the in-process proxy's
unshadowed run, with the CPU time per request of the proxy, of its helper and of the candidate.

    .venv/bin/python -m bench.copy_sender [--rate 400] [--duration 6] [--rounds 6]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from banyan.ports import free_port
from banyan.processes import PYTHON_CLI, Child, start, stop_all
from bench.common import balanced_orders, markdown_table
from bench.shadow_overhead import FLAGS, Run, helper_pid, set_mode
from bench.wrk import cpu_seconds, paced, wrk_or_exit

SENDERS = ("inline", "process")


async def _proxy(tmp: Path, sender: str, primary: Child, candidate: Child) -> tuple[Path, Child]:
    flags = tmp / f"flags-{sender}.yaml"
    flags.write_text(FLAGS.format(legacy=primary.url, new=candidate.url, mode="legacy"))
    proxy = await start(
        f"proxy ({sender})",
        [*PYTHON_CLI, "proxy", "--flags", str(flags), "--port", "0", "--no-access-log"],
        env={
            "BANYAN_PARITY_DB": f"sqlite+aiosqlite:///{tmp / f'parity-{sender}.db'}",
            "BANYAN_SHADOW_SENDER": sender,
        },
    )
    return flags, proxy


async def main_async(args: argparse.Namespace) -> None:
    wrk_or_exit()
    children: list[Child] = []
    upstream = [sys.executable, "-m", "bench.tiny_upstream"]
    with tempfile.TemporaryDirectory(prefix="banyan-sender-") as name:
        tmp = Path(name)
        try:
            primary = await start("primary", [*upstream, str(free_port()), "--delay-ms", "1"])
            healthy = await start("healthy", [*upstream, str(free_port()), "--delay-ms", "1"])
            slow = await start("slow", [*upstream, str(free_port()), "--delay-ms", "10"])
            children += [primary, healthy, slow]
            proxies = {}
            for sender in SENDERS:
                proxies[sender] = await _proxy(tmp, sender, primary, healthy)
                children.append(proxies[sender][1])
            runs = [(f"{sender}, no shadow", sender, "legacy", healthy) for sender in SENDERS]
            runs += [
                (f"{sender}, {label} candidate", sender, "shadow", candidate)
                for label, candidate in (("healthy", healthy), ("10x slower", slow))
                for sender in SENDERS
            ]
            figures = await _measure(args, tmp, primary, proxies, runs)
            _report(args, runs, figures)
        finally:
            await stop_all(children)


Measured = tuple[str, str, str, Child]  # (run name, sender, mode, candidate)


async def _measure(
    args: argparse.Namespace,
    tmp: Path,
    primary: Child,
    proxies: dict[str, tuple[Path, Child]],
    runs: list[Measured],
) -> dict[str, Run]:
    figures = {name: Run() for name, *_ in runs}
    orders = balanced_orders(len(runs))
    for round_ in range(args.rounds):
        for index in orders[round_ % len(orders)]:
            name, sender, mode, candidate = runs[index]
            flags, proxy = proxies[sender]
            await set_mode(flags, primary.url, candidate.url, mode, proxy.url)
            await paced(proxy.url, args.rate, args.connections, 2, tmp)  # warm up
            pids = {
                "proxy": proxy.process.pid,
                "helper": await helper_pid(proxy.url),
                "candidate": candidate.process.pid,
            }
            before = {process: cpu_seconds(pid) for process, pid in pids.items()}
            run = await paced(proxy.url, args.rate, args.connections, args.duration, tmp)
            await asyncio.sleep(1.2)  # the last copies are answered
            spent = {process: cpu_seconds(pid) - before[process] for process, pid in pids.items()}
            spent["proxy"] -= spent["helper"]  # the helper is the proxy's child: its own column
            figures[name].add(run, spent)
            await set_mode(flags, primary.url, candidate.url, "legacy", proxy.url)  # quiet
        print(f"round {round_ + 1} of {args.rounds} done", file=sys.stderr)
    return figures


def _report(args: argparse.Namespace, runs: list[Measured], figures: dict[str, Run]) -> None:
    base50, base99 = figures[runs[0][0]].medians()
    rows = []
    for name, *_ in runs:
        run = figures[name]
        p50, p99 = run.medians()
        rows.append([name, round(p50, 3), round(p99, 3),
                     f"{(p50 / base50 - 1) * 100:+.1f}%", f"{(p99 / base99 - 1) * 100:+.1f}%",
                     round(run.per_request_us("proxy")), round(run.per_request_us("helper")),
                     round(run.per_request_us("candidate"))])  # fmt: skip
    rounds = f"median of {args.rounds} rounds of {args.duration:g} s"
    print(f"{rounds}, wrk paced at {args.rate:g} req/s")
    for name, *_ in runs:
        each = ", ".join(f"{p50:.2f}/{p99:.2f}" for p50, p99 in figures[name].rounds)
        print(f"  {name}: p50/p99 ms by round: {each}")
    headers = ["run", "p50 ms", "p99 ms", f"p50 vs {runs[0][0]}", "p99 vs it"]
    headers += ["proxy CPU µs/req", "helper CPU µs/req", "candidate CPU µs/req"]
    print(markdown_table(headers, rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=400.0)
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--connections", type=int, default=8, help="wrk's, paced")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
