"""How fast the parity report renders over a million stored comparisons.

Fills a fresh store (SQLite by default, ``--db`` for PostgreSQL) with the counters one million
comparisons leave — spread over 12 features, 20 endpoints each, 48 hours, with differing fields,
latency buckets and the bounded examples — by bulk insert, then times ``summary()`` and the HTML
rendering.

    .venv/bin/python -m bench.parity_report [--comparisons 1000000] [--db URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from pathlib import Path

from banyan.parity.report import render_html
from banyan.parity.store import HOUR, ParityStore, counters, examples, fields, latency

FEATURES, ENDPOINTS, HOURS = 12, 20, 48


async def fill(store: ParityStore, total: int) -> None:
    rng = random.Random(7)
    now_hour = int(time.time()) // HOUR * HOUR
    per_cell = max(1, -(-total // (FEATURES * ENDPOINTS * HOURS)))
    count_rows, field_rows, latency_rows, example_rows = [], [], [], []
    for f in range(FEATURES):
        for e in range(ENDPOINTS):
            endpoint = f"GET /api/f{f}/e{e}/*"
            for h in range(HOURS):
                hour = now_hour - h * HOUR
                mismatched = rng.randrange(0, per_cell // 10 + 1)
                count_rows.append(
                    {"feature": f"feature{f}", "endpoint": endpoint, "hour": hour, "compared": per_cell,
                     "matched": per_cell - mismatched, "mismatched": mismatched, "errors": 0, "skipped": 0}
                )  # fmt: skip
                for p in range(3):
                    field_rows.append(
                        {"feature": f"feature{f}", "endpoint": endpoint, "path": f"$.items[*].field{p}",
                         "kind": "changed", "hour": hour, "count": mismatched}
                    )  # fmt: skip
            for p in range(3):
                for k in range(5):
                    example_rows.append(
                        {"feature": f"feature{f}", "endpoint": endpoint, "path": f"$.items[*].field{p}",
                         "kind": "changed", "at": time.time(), "method": "GET", "url": f"/api/f{f}/e{e}/{k}",
                         "request": json.dumps({"headers": {}, "body": ""}), "primary_backend": "legacy",
                         "candidate_backend": "new",
                         "primary_answer": json.dumps({"status": 200, "headers": {}, "body": '{"a":1}', "latency_ms": 3, "error": None}),
                         "candidate_answer": json.dumps({"status": 200, "headers": {}, "body": '{"a":2}', "latency_ms": 4, "error": None}),
                         "differences": json.dumps([{"path": f"$.items[0].field{p}", "kind": "changed", "primary": 1, "candidate": 2}])}
                    )  # fmt: skip
        for backend in ("legacy", "new"):
            for h in range(HOURS):
                for bucket in range(20, 90):
                    latency_rows.append(
                        {"feature": f"feature{f}", "backend": backend, "bucket": bucket,
                         "hour": now_hour - h * HOUR, "count": rng.randrange(1, 50)}
                    )  # fmt: skip
    async with store.engine.begin() as conn:
        for table, rows in (
            (counters, count_rows),
            (fields, field_rows),
            (latency, latency_rows),
            (examples, example_rows),
        ):
            for start in range(0, len(rows), 5000):
                await conn.execute(table.insert(), rows[start : start + 5000])
    print(f"stored: {per_cell * FEATURES * ENDPOINTS * HOURS:,} comparisons as "
          f"{len(count_rows) + len(field_rows) + len(latency_rows) + len(example_rows):,} rows")  # fmt: skip


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="banyan-parity-") as tmp:
        store = ParityStore(args.db or f"sqlite+aiosqlite:///{Path(tmp) / 'parity.db'}")
        await store.open()
        await fill(store, args.comparisons)
        started = time.perf_counter()
        data = await store.summary()
        summary_s = time.perf_counter() - started
        started = time.perf_counter()
        page = render_html(data)
        render_s = time.perf_counter() - started
        await store.close()
    compared = sum(f["compared"] for f in data["features"])
    print(f"report over {compared:,} comparisons: summary {summary_s * 1000:.0f} ms, "
          f"HTML {render_s * 1000:.0f} ms ({len(page) / 1024:.0f} KiB), total {(summary_s + render_s):.2f} s")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--comparisons", type=int, default=1_000_000)
    parser.add_argument("--db")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
