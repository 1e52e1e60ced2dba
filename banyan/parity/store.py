"""The parity store: bounded counters, a few example diffs each, latency histograms, noise.

SQLAlchemy async; a SQLite file by default, PostgreSQL by URL. The store never grows with traffic
(:mod:`banyan.parity.tables`): a million comparisons are a few thousand rows, so reports stay fast.
It owns the writes (a batch of records aggregated in memory, one transaction) and the reads; the
report is built from its rows by :mod:`banyan.parity.summary`, and records reach it through the
:class:`~banyan.parity.recorder.ParityRecorder` (re-exported here, as are the tables). Everything
stored has been redacted (``banyan/parity/redact.py``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, and_, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from banyan.backends.common.engines import make_engine
from banyan.parity.location import sqlite_file
from banyan.parity.models import (
    ComparisonRecord,
    NoiseRecord,
    ParityItem,
    RollbackRecord,
)
from banyan.parity.recorder import ParityRecorder
from banyan.parity.redact import redact_body, redact_difference, redact_headers, redact_url
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

_UPSERTS: dict[tuple[str, str, tuple[str, ...], tuple[str, ...]], Any] = {}


def _upsert(engine: AsyncEngine, table: Table, keys: list[str], add: list[str]) -> Any:
    """``INSERT ... ON CONFLICT (keys) DO UPDATE SET c = c + excluded.c`` for each ``add`` column,
    to execute with a list of rows. One statement object per dialect, table and columns, so
    SQLAlchemy compiles it once: compiling a fresh multi-row statement on every flush held the
    proxy's event loop for milliseconds, which users saw as latency."""
    cache_key = (engine.dialect.name, table.name, tuple(keys), tuple(add))
    statement = _UPSERTS.get(cache_key)
    if statement is None:
        if engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            inserting = pg_insert(table)
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            inserting = sqlite_insert(table)  # type: ignore[assignment]
        statement = _UPSERTS[cache_key] = inserting.on_conflict_do_update(
            index_elements=keys,
            set_={column: table.c[column] + inserting.excluded[column] for column in add},
        )
    return statement


@dataclass
class _Batch:
    counters: dict[tuple[str, str, int], dict[str, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int))
    )
    fields: dict[tuple[str, str, str, str, int], int] = field(
        default_factory=lambda: defaultdict(int)
    )
    latency: dict[tuple[str, str, int, int], int] = field(default_factory=lambda: defaultdict(int))
    noise: dict[tuple[str, str, str], int] = field(default_factory=lambda: defaultdict(int))
    skips: dict[tuple[str, str, str, int], int] = field(default_factory=lambda: defaultdict(int))
    rollbacks: list[dict[str, Any]] = field(default_factory=list)
    examples: list[dict[str, Any]] = field(default_factory=list)


def _answer(response: Any, redact: Iterable[str]) -> dict[str, Any]:
    return {
        "status": response.status,
        "headers": redact_headers(dict(response.headers), redact),
        "body": redact_body(response.body, redact),
        "latency_ms": round(response.latency_ms, 3),
        "error": response.error,
    }


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
        batch = _Batch()
        for n, item in enumerate(items):
            if n and not n % AGGREGATE_CHUNK:
                await asyncio.sleep(0)  # let requests in between: this runs on the proxy's loop
            if isinstance(item, ComparisonRecord):
                self._add_comparison(batch, item)
            elif isinstance(item, NoiseRecord):
                for pattern in item.patterns:
                    batch.noise[(item.feature, item.endpoint, pattern)] += 1
            elif isinstance(item, RollbackRecord):
                batch.rollbacks.append(
                    {
                        "feature": item.feature,
                        "at": item.at,
                        "rule": item.rule,
                        "observed": item.observed,
                        "limit": item.limit,
                        "samples": item.samples,
                        "message": item.message,
                    }
                )
            else:
                hour = int(time.time()) // HOUR * HOUR
                batch.counters[(item.feature, item.endpoint, hour)]["skipped"] += 1
                batch.skips[(item.feature, item.endpoint, item.reason, hour)] += 1
        await self._flush(batch)

    def _add_comparison(self, batch: _Batch, record: ComparisonRecord) -> None:
        hour = int(record.at) // HOUR * HOUR
        result = record.comparison
        row = batch.counters[(record.feature, record.endpoint, hour)]
        row["compared"] += 1
        if result.error:
            row["errors"] += 1
        elif result.match:
            row["matched"] += 1
        else:
            row["mismatched"] += 1
        for backend, answer in (
            (record.primary_backend, record.primary),
            (record.candidate_backend, record.candidate),
        ):
            if answer.error is None:
                batch.latency[(record.feature, backend, bucket_of(answer.latency_ms), hour)] += 1
        seen_paths: set[tuple[str, str]] = set()
        for difference in result.differences:
            pattern = self._path_of(record.feature, record.endpoint, difference.pattern)
            key = (pattern, difference.kind)
            if key in seen_paths:
                continue
            seen_paths.add(key)
            batch.fields[(record.feature, record.endpoint, pattern, difference.kind, hour)] += 1
            batch.examples.append(
                {
                    "feature": record.feature,
                    "endpoint": record.endpoint,
                    "path": pattern,
                    "kind": difference.kind,
                    "at": record.at,
                    "method": record.method,
                    "url": redact_url(record.path, record.redact),
                    "request": json.dumps(
                        {
                            "headers": redact_headers(dict(record.request_headers), record.redact),
                            "body": redact_body(record.request_body or b"", record.redact),
                        }
                    ),
                    "primary_backend": record.primary_backend,
                    "candidate_backend": record.candidate_backend,
                    "primary_answer": json.dumps(_answer(record.primary, record.redact)),
                    "candidate_answer": json.dumps(_answer(record.candidate, record.redact)),
                    "differences": json.dumps(
                        [
                            _shortened(redact_difference(d.as_dict(), record.redact))
                            for d in result.differences[:50]
                        ],
                        default=str,
                    ),
                }
            )

    async def _flush(self, batch: _Batch) -> None:
        engine = self.engine
        async with engine.begin() as conn:
            if batch.counters:
                rows = [
                    {
                        "feature": f,
                        "endpoint": e,
                        "hour": h,
                        **{
                            c: v.get(c, 0)
                            for c in ("compared", "matched", "mismatched", "errors", "skipped")
                        },
                    }
                    for (f, e, h), v in batch.counters.items()
                ]
                await conn.execute(
                    _upsert(
                        engine,
                        counters,
                        ["feature", "endpoint", "hour"],
                        ["compared", "matched", "mismatched", "errors", "skipped"],
                    ),
                    rows,
                )
            if batch.fields:
                rows = [
                    {"feature": f, "endpoint": e, "path": p, "kind": k, "hour": h, "count": n}
                    for (f, e, p, k, h), n in batch.fields.items()
                ]
                await conn.execute(
                    _upsert(
                        engine, fields, ["feature", "endpoint", "path", "kind", "hour"], ["count"]
                    ),
                    rows,
                )
            if batch.latency:
                rows = [
                    {"feature": f, "backend": b, "bucket": k, "hour": h, "count": n}
                    for (f, b, k, h), n in batch.latency.items()
                ]
                await conn.execute(
                    _upsert(engine, latency, ["feature", "backend", "bucket", "hour"], ["count"]),
                    rows,
                )
            if batch.noise:
                rows = [
                    {"feature": f, "endpoint": e, "path": p, "count": n}
                    for (f, e, p), n in batch.noise.items()
                ]
                await conn.execute(
                    _upsert(engine, noise, ["feature", "endpoint", "path"], ["count"]), rows
                )
            if batch.skips:
                rows = [
                    {"feature": f, "endpoint": e, "reason": r, "hour": h, "count": n}
                    for (f, e, r, h), n in batch.skips.items()
                ]
                await conn.execute(
                    _upsert(engine, skips, ["feature", "endpoint", "reason", "hour"], ["count"]),
                    rows,
                )
            if batch.rollbacks:
                await conn.execute(rollbacks.insert(), batch.rollbacks)
                for name in {r["feature"] for r in batch.rollbacks}:
                    await conn.execute(_older_than_kept(rollbacks, [rollbacks.c.feature == name]))
            if batch.examples:
                await self._rotate_examples(conn, batch.examples)

    async def _rotate_examples(self, conn: Any, batch: list[dict[str, Any]]) -> None:
        """Keep the newest ``examples_per_path`` examples of each differing path: the batch's
        newest are inserted, the oldest beyond the limit deleted, so the examples follow what
        the backends do now rather than what they did first."""
        newest: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
        for example in batch:
            newest[(example["feature"], example["endpoint"], example["path"])].append(example)
        keep = [x for group in newest.values() for x in group[-self.examples_per_path :]]
        await conn.execute(examples.insert(), keep)
        for feature, endpoint, path in newest:
            where = [
                examples.c.feature == feature,
                examples.c.endpoint == endpoint,
                examples.c.path == path,
            ]
            await conn.execute(_older_than_kept(examples, where, self.examples_per_path))

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


def _older_than_kept(table: Table, where: list[Any], kept: int = ROLLBACKS_KEPT) -> Any:
    """``DELETE`` of ``table``'s rows matching ``where`` but the newest ``kept`` (by id)."""
    newest = select(table.c.id).where(*where).order_by(table.c.id.desc()).limit(kept)
    return table.delete().where(*where, table.c.id.not_in(newest.scalar_subquery()))


def _shortened(difference: dict[str, Any]) -> dict[str, Any]:
    return {
        **difference,
        "primary": _short(difference["primary"]),
        "candidate": _short(difference["candidate"]),
    }


def _short(value: Any, limit: int = 500) -> Any:
    text = json.dumps(value, default=str)
    return value if len(text) <= limit else text[:limit] + "…"


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
