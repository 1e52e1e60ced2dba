"""Hostile flag files under a running proxy: ``/healthz`` latency and resident memory meanwhile,
and how ``banyan flags check`` grows with the number of features.

For each case of :mod:`banyan.proxy.flag_faults` (``flags.yaml`` replaced by a symlink to
``/dev/zero``, a FIFO, a valid 20 MB file, 10,000 one-route features, deeply nested YAML) a fresh
proxy process starts on a good file; the case is put in place while one client probes
``/healthz`` back to back until ``/_proxy/status`` shows the rejection (or, for the 10,000
features, the apply) and one second more. Printed per case: probes, p50/p99/max ``/healthz`` ms
(target: under 100 ms), the proxy's peak resident memory (target: under 300 MB), the time to the
effect and ``last_error``; and, for comparison, p50 / max of 2 s of probes on the good file just
before (on a busy machine the scheduler alone makes outliers). Then ``flags check`` (in this
process, ``load_flags``) on 1,000 to 20,000 features: seconds and microseconds per feature, which
stay flat when the work is linear.

    .venv/bin/python -m bench.flag_reload [--cases NAME,...] [--sizes 1000,5000,10000,20000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from aiohttp import web

from banyan.processes import PYTHON_CLI, start, stop
from banyan.proxy.flag_faults import CASES, Outcome, flags_text, many_features, run_case
from banyan.proxy.flags import load_flags
from banyan.serving import serve
from bench.common import markdown_table, percentile


def upstream() -> web.Application:
    app = web.Application()

    async def handle(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app.router.add_get("/{tail:.*}", handle)
    return app


async def one_case(name: str, workdir: Path, backend: str) -> Outcome:
    case = next(c for c in CASES if c.name == name)
    flags = workdir / "flags.yaml"
    flags.write_text(flags_text(backend, backend))
    proxy = await start(
        "proxy", [*PYTHON_CLI, "proxy", "--flags", str(flags), "--port", "0", "--no-access-log"]
    )
    try:
        pid = proxy.process.pid
        return await run_case(case, flags, proxy.url, pid, backend, backend, baseline=2.0)
    finally:
        await stop(proxy.process)
        for leftover in workdir.iterdir():
            if leftover.is_symlink() or leftover.is_file() or leftover.is_fifo():
                leftover.unlink()


def row(outcome: Outcome) -> list[object]:
    samples, quiet = outcome.healthz_ms, outcome.baseline_ms
    error = outcome.flags.get("last_error") or "(applied)"
    return [
        outcome.case,
        len(samples),
        round(percentile(samples, 0.5), 1),
        round(percentile(samples, 0.99), 1),
        round(max(samples), 1),
        f"{percentile(quiet, 0.5):.1f} / {max(quiet):.1f}",
        round(outcome.peak_kb / 1024, 1),
        round(outcome.effect_s, 2),
        error if len(error) <= 70 else error[:67] + "...",
    ]


def check_times(sizes: list[int], workdir: Path) -> list[list[object]]:
    rows: list[list[object]] = []
    for size in sizes:
        path = workdir / f"features-{size}.yaml"
        path.write_text(flags_text("http://127.0.0.1:1", "http://127.0.0.1:2", many_features(size)))
        started = time.perf_counter()
        load_flags(path)
        seconds = time.perf_counter() - started
        rows.append([size, path.stat().st_size, round(seconds, 2), round(seconds / size * 1e6, 1)])
    return rows


async def main_async(args: argparse.Namespace) -> None:
    names = [n for n in args.cases.split(",") if n]
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="banyan-flag-reload-") as tmp:
        async with serve(upstream()) as backend:
            for name in names:
                outcomes.append(await one_case(name, Path(tmp), backend))
        headers = ["case", "probes", "p50 ms", "p99 ms", "max ms", "before: p50 / max ms"]
        headers += ["peak RSS MB", "effect s"]
        print(markdown_table([*headers, "last_error"], [row(o) for o in outcomes]))
        print()
        sizes = [int(s) for s in args.sizes.split(",") if s]
        table = check_times(sizes, Path(tmp))
        print(markdown_table(["features", "bytes", "flags check s", "us per feature"], table))


def main() -> None:
    from banyan import logs

    logs.configure("warning")
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", default=",".join(c.name for c in CASES))
    parser.add_argument("--sizes", default="1000,5000,10000,20000")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
