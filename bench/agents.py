"""The AI agents and the job queue under load, through the proxy, once per backend.

The stack runs as real processes on loopback (model server, both backends on SQLite, proxy); the
same run is made with every feature on ``legacy`` and then on ``new``. Per backend:

- agent latency: ``--calls`` requests to each agent endpoint (analyze, plan, session-analysis,
  run), ``--concurrency`` at a time, p50/p99 as the client sees them through the proxy;
- job queue throughput: ``--documents`` small uploads at once; each becomes a processing job
  (extract, chunk, summarizer agent); documents per second from the first upload until the last
  one is ready, and p50/p99 of upload-to-ready.

    .venv/bin/python -m bench.agents [--calls 100] [--documents 200] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from banyan.processes import running_stack
from bench.common import Timings, markdown_table, percentile

FEATURES = """\
features:
  everything:
    routes: ["/api/**", "/ws/**"]
    mode: {mode}
"""
TOPICS = ("photosynthesis", "fractions", "plate tectonics", "enzymes", "the French revolution")


async def request(
    session: aiohttp.ClientSession, method: str, url: str, **options: Any
) -> dict[str, Any]:
    async with session.request(method, url, **options) as answer:
        body: dict[str, Any] = await answer.json()
        if answer.status >= 400:
            raise RuntimeError(f"{method} {url}: {answer.status} {body}")
        return body


async def sign_up(session: aiohttp.ClientSession, base: str) -> dict[str, str]:
    email = f"bench-agents-{random.randrange(1 << 30)}@example.com"
    body = {"email": email, "password": "bench-pass-1", "name": "Bench"}
    token = (await request(session, "POST", base + "/api/auth/register", json=body))["token"]
    return {"Authorization": f"Bearer {token}"}


async def agent_latency(
    session: aiohttp.ClientSession, base: str, auth: dict[str, str], calls: int, concurrency: int
) -> Timings:
    created = await request(
        session, "POST", base + "/api/sessions", json={"title": "Bench"}, headers=auth
    )
    for role, content in (("user", "How do fractions add?"), ("assistant", "Use a common base.")):
        await request(
            session,
            "POST",
            f"{base}/api/sessions/{created['id']}/messages",
            json={"role": role, "content": content},
            headers=auth,
        )
    timings = Timings()
    gate = asyncio.Semaphore(concurrency)

    async def one(name: str, n: int) -> None:
        topic = TOPICS[n % len(TOPICS)]
        bodies = {
            "analyze": {"text": f"Notes {n} on {topic}: key ideas and common mistakes."},
            "plan": {"goal": f"Understand {topic} ({n})", "level": "intermediate"},
            "session-analysis": {"session_id": created["id"]},
            "run": {"text": f"Notes {n} on {topic}."},
        }
        async with gate:
            with timings.measure(name):
                await request(
                    session, "POST", f"{base}/api/agents/{name}", json=bodies[name], headers=auth
                )

    for name in ("analyze", "plan", "session-analysis", "run"):
        await asyncio.gather(*(one(name, n) for n in range(calls)), return_exceptions=True)
    return timings


async def job_throughput(
    session: aiohttp.ClientSession, base: str, auth: dict[str, str], documents: int
) -> tuple[float, list[float], int]:
    started = time.perf_counter()
    uploaded: dict[str, float] = {}

    async def send(n: int) -> None:
        form = aiohttp.FormData()
        text = f"Document {n} about {TOPICS[n % len(TOPICS)]}. It has two sentences."
        form.add_field("file", text.encode(), filename=f"doc{n}.txt", content_type="text/plain")
        body = await request(session, "POST", base + "/api/documents", data=form, headers=auth)
        uploaded[body["id"]] = time.perf_counter()

    await asyncio.gather(*(send(n) for n in range(documents)))
    ready: dict[str, float] = {}
    failed = 0
    deadline = time.perf_counter() + 300
    while len(ready) + failed < len(uploaded) and time.perf_counter() < deadline:
        page = await request(session, "GET", base + "/api/documents?limit=200", headers=auth)
        for item in page["items"]:
            if item["id"] in ready or item["id"] not in uploaded:
                continue
            if item["status"] == "ready":
                ready[item["id"]] = time.perf_counter()
            elif item["status"] == "failed":
                failed += 1
        await asyncio.sleep(0.05)
    elapsed = max(ready.values(), default=time.perf_counter()) - started
    waits = [(ready[d] - uploaded[d]) * 1000 for d in ready]
    return len(ready) / elapsed, waits, failed


async def run_mode(mode: str, args: argparse.Namespace) -> tuple[Timings, float, list[float], int]:
    with tempfile.TemporaryDirectory(prefix="banyan-bench-agents-") as tmp:
        async with running_stack(
            Path(tmp),
            features=FEATURES.format(mode=mode),
            proxy_args=["--no-access-log", "--no-parity"],
        ) as stack:
            base = stack.url("proxy")
            timeout = aiohttp.ClientTimeout(total=120)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                auth = await sign_up(session, base)
                timings = await agent_latency(session, base, auth, args.calls, args.concurrency)
                rate, waits, failed = await job_throughput(session, base, auth, args.documents)
    return timings, rate, waits, failed


async def main_async(args: argparse.Namespace) -> None:
    latency_rows: list[tuple[object, ...]] = []
    queue_rows: list[tuple[object, ...]] = []
    for mode in ("legacy", "new"):
        timings, rate, waits, failed = await run_mode(mode, args)
        for name, count, p50, p99, failures in timings.rows():
            latency_rows.append((mode, name, count, p50, p99, failures))
        queue_rows.append(
            (
                mode,
                args.documents,
                round(rate, 1),
                percentile(waits, 0.5),
                percentile(waits, 0.99),
                failed,
            )
        )
    print(f"\n### agent latency through the proxy ({args.concurrency} concurrent)\n")
    headers = ["backend", "agent", "calls", "p50 ms", "p99 ms", "failures"]
    print(markdown_table(headers, latency_rows))
    print("\n### job queue (document processing jobs)\n")
    headers = ["backend", "documents", "docs/s", "upload→ready p50 ms", "p99 ms", "failed"]
    print(markdown_table(headers, queue_rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=100, help="requests per agent endpoint")
    parser.add_argument("--documents", type=int, default=200, help="uploads for the job queue")
    parser.add_argument("--concurrency", type=int, default=8)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
