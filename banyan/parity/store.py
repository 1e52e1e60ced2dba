"""The parity store: bounded counters, a few example diffs each, latency histograms, noise.

SQLAlchemy async; a SQLite file by default, PostgreSQL by URL. The store never grows with traffic
(:mod:`banyan.parity.tables`): a million comparisons are a few thousand rows, so reports stay fast.
It owns the writes (records aggregated in memory by :mod:`banyan.parity.batch`, written in one
transaction by :mod:`banyan.parity.flush`), the cap on paths per endpoint, and the reads; the
report is built from its rows by :mod:`banyan.parity.summary`, and records reach it through the
:class:`~banyan.parity.recorder.ParityRecorder` (re-exported here, as are the tables). Everything
stored has been redacted (``banyan/parity/redact.py``).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import defaultdict
from typing import Any

from sqlalchemy import and_, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from banyan.engines import make_engine
from banyan.parity.batch import Batch
from banyan.parity.flush import flush
from banyan.parity.location import sqlite_file
from banyan.parity.models import ParityItem
from banyan.parity.recorder import ParityRecorder
from banyan.parity.summary import (
    add_skips_and_rollbacks,
    build_report,
    example_of,
    report_rows,
)
from banyan.parity.tables import (
    HOUR,
    OTHER_PATH,
    PATHS_PER_ENDPOINT,
    ROLLBACKS_KEPT,
    TABLES,
    bucket_bound,
    bucket_of,
    counters,
    examples,
    fields,
    latency,
    metadata,
    noise,
    percentile_from_buckets,
    rollbacks,
    skips,
)

# Items aggregated between two yields to the event loop while a batch is written.
AGGREGATE_CHUNK = 50

# the advisory lock under which a PostgreSQL store's tables are created (any fixed 64-bit number)
DDL_LOCK = int.from_bytes(hashlib.sha256(b"banyan parity ddl").digest()[:8], "big", signed=True)


class ParityStore:
    def __init__(
        self, url: str, *, examples_per_path: int = 5, paths_per_endpoint: int = PATHS_PER_ENDPOINT
    ) -> None:
        self.url = url
        self.examples_per_path = examples_per_path
        self.paths_per_endpoint = paths_per_endpoint
        self._paths: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.engine: AsyncEngine = make_engine(url)  # SQLite: WAL and a busy timeout

    async def open(self) -> None:
        database = sqlite_file(self.url)
        if database is not None:
            database.parent.mkdir(parents=True, exist_ok=True)
        async with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":  # replicas starting together: one creates
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": DDL_LOCK})
            await conn.run_sync(metadata.create_all)
            known = select(fields.c.feature, fields.c.endpoint, fields.c.path).distinct()
            for feature, endpoint, path in (await conn.execute(known)).all():
                self._paths[(feature, endpoint)].add(path)

    def _path_of(self, feature: str, endpoint: str, pattern: str) -> str:
        """``pattern``, or ``other`` once the endpoint has ``paths_per_endpoint`` differing paths
        (an object keyed by names no heuristic takes for ids must not grow the store)."""
        known = self._paths[(feature, endpoint)]
        if pattern in known:
            return pattern
        if len(known) >= self.paths_per_endpoint:
            return OTHER_PATH
        known.add(pattern)
        return pattern

    async def close(self) -> None:
        await self.engine.dispose()

    async def write(self, items: list[ParityItem]) -> None:
        """Aggregate ``items`` (:mod:`banyan.parity.batch`), then write them in one transaction
        (:mod:`banyan.parity.flush`)."""
        batch = Batch()
        for n, item in enumerate(items):
            if n and not n % AGGREGATE_CHUNK:
                await asyncio.sleep(0)  # let requests in between: this runs on the proxy's loop
            batch.add(item, self._path_of)
        await flush(self.engine, batch, self.examples_per_path)

    async def reset(self, feature: str | None = None) -> int:
        """Delete everything stored (of ``feature``): rows deleted."""
        deleted = 0
        async with self.engine.begin() as conn:
            for table in TABLES:
                statement = table.delete()
                if feature:
                    statement = statement.where(table.c.feature == feature)
                deleted += int((await conn.execute(statement)).rowcount or 0)
        return deleted

    async def endpoints(self) -> list[tuple[str, str]]:
        """Every (feature, endpoint) with counters: the endpoints that keep their own rows."""
        query = select(counters.c.feature, counters.c.endpoint).distinct()
        async with self.engine.connect() as conn:
            return [(f, e) for f, e in (await conn.execute(query)).all()]

    async def noise_counts(self, feature: str | None = None) -> list[tuple[str, str, str, int]]:
        """Every noise count: (feature, endpoint, path, count), learned or not yet."""
        query = select(noise.c.feature, noise.c.endpoint, noise.c.path, noise.c.count)
        if feature is not None:
            query = query.where(noise.c.feature == feature)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(noise.c.feature, noise.c.endpoint))).all()
        return [(f, e, p, int(n)) for f, e, p, n in rows]

    async def forget_noise(self, path: str, feature: str | None = None) -> int:
        """Forget the noise path ``path`` (of ``feature``, or of every feature): the rows
        deleted."""
        where = [noise.c.path == path] + ([noise.c.feature == feature] if feature else [])
        async with self.engine.begin() as conn:
            result = await conn.execute(noise.delete().where(and_(*where)))
        return int(result.rowcount or 0)

    async def example(self, example_id: int) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (
                (await conn.execute(select(examples).where(examples.c.id == example_id)))
                .mappings()
                .first()
            )
        return example_of(dict(row)) if row else None

    async def summary(
        self, *, feature: str | None = None, since: float | None = None
    ) -> dict[str, Any]:
        """The report data (schema ``banyan.parity/v1``), from counters only."""
        async with self.engine.connect() as conn:
            rows = await report_rows(conn, feature, since)
        data = build_report(rows.counts, rows.fields, rows.latency, rows.examples, rows.noise)
        add_skips_and_rollbacks(data, rows.skips, rows.rollbacks)
        return data


__all__ = [
    "HOUR",
    "OTHER_PATH",
    "PATHS_PER_ENDPOINT",
    "ROLLBACKS_KEPT",
    "TABLES",
    "ParityRecorder",
    "ParityStore",
    "add_skips_and_rollbacks",
    "bucket_bound",
    "bucket_of",
    "build_report",
    "counters",
    "examples",
    "fields",
    "latency",
    "metadata",
    "noise",
    "percentile_from_buckets",
    "rollbacks",
    "skips",
]
