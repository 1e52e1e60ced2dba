"""Issue 15's hostile flag files under a real ``banyan proxy`` process (banyan/proxy/flags/store.py
and source.py at work): while each is in place the proxy keeps answering ``/healthz``, stays under
300 MB resident, rejects it with ``file:line`` in ``/_proxy/status`` (or applies the valid
10,000-feature file) and takes a good file again afterwards.

No timing is asserted: ``/healthz`` must answer within a generous hang timeout (10 s), and the
latencies are recorded as test properties; ``bench/flag_reload.py`` prints them against the
100 ms target."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from banyan.processes import PYTHON_CLI, start, stop
from banyan.proxy.flag_faults import CASES, Case, flags_text, run_case, write_atomically
from banyan.serving import serve

RSS_LIMIT_KB = 300 * 1024


@pytest.fixture
async def upstream() -> AsyncIterator[str]:
    app = web.Application()

    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"path": request.path})

    app.router.add_get("/{tail:.*}", answer)
    async with serve(app) as url:
        yield url


async def until_flags(
    http: httpx.AsyncClient, done: Callable[[dict[str, Any]], bool], timeout: float = 60.0
) -> dict[str, Any]:
    """The ``flags`` part of ``/_proxy/status`` once ``done(flags)`` holds (a deadline only)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        flags = (await http.get("/_proxy/status")).json()["flags"]
        if done(flags):
            return dict(flags)
        assert loop.time() < deadline, f"flag status never changed: {flags}"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_hostile_flag_file_under_a_running_proxy(
    tmp_path: Path, upstream: str, case: Case, record_property: object
) -> None:
    path = tmp_path / "flags.yaml"
    path.write_text(flags_text(upstream, upstream))
    argv = [*PYTHON_CLI, "proxy", "--flags", str(path), "--port", "0", "--no-access-log"]
    proxy = await start("proxy", argv)
    try:
        outcome = await run_case(case, path, proxy.url, proxy.process.pid, upstream, upstream)
        samples = sorted(outcome.healthz_ms)
        record_property("healthz_max_ms", round(samples[-1], 1))  # type: ignore[operator]
        record_property("peak_rss_mb", round(outcome.peak_kb / 1024, 1))  # type: ignore[operator]
        assert set(outcome.statuses) == {200} and len(samples) >= 5
        assert outcome.peak_kb < RSS_LIMIT_KB, f"peak RSS {outcome.peak_kb} KiB"
        flags = outcome.flags
        if case.applies:
            assert flags["reloads"] == 1 and flags["last_error"] is None
        else:
            assert flags["rejected"] == 1 and flags["reloads"] == 0
            assert re.match(rf"{re.escape(str(path))}:\d+: ", flags["last_error"])
            assert case.expect in flags["last_error"]
        async with httpx.AsyncClient(base_url=proxy.url, timeout=10) as http:
            routed = await http.get("/api/f9999/x" if case.applies else "/api/x")
            assert routed.status_code == 200
            if case.applies:
                assert routed.headers["X-Banyan-Feature"] == "f9999"
            if path.is_symlink() or not path.is_file():
                path.unlink()
            write_atomically(path, flags_text(upstream, upstream).replace("/api/**", "/v2/**"))
            settled = await until_flags(
                http,
                lambda f: f["last_error"] is None and f["reloads"] == (2 if case.applies else 1),
            )
            assert settled["rejected"] == (0 if case.applies else 1)
            assert (await http.get("/v2/x")).headers["X-Banyan-Feature"] == "api"
    finally:
        await stop(proxy.process)
