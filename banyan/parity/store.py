"""The parity store: bounded counters, a few example diffs each, latency histograms, noise.

SQLAlchemy async; a SQLite file by default, PostgreSQL by URL. The store never grows with traffic:
it keeps counters per (feature, endpoint, hour), per (feature, endpoint, path, kind, hour) and per
(feature, backend, latency bucket, hour), at most ``examples_per_path`` example diffs per
(feature, endpoint, path), and learned noise per (feature, endpoint, path). A million comparisons
are a few thousand rows, so reports stay fast.

:class:`ParityRecorder` takes records on the request path without blocking (a bounded queue that
drops and counts when full) and writes them in batches, aggregated in memory first, one
transaction per batch. Everything stored has been redacted (``banyan/parity/redact.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    func,
    select,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from banyan.backends.common.engines import make_engine
from banyan.logs import get_logger
from banyan.parity.location import sqlite_file
from banyan.parity.models import (
    ComparisonRecord,
    NoiseRecord,
    ParityItem,
    RollbackRecord,
)
from banyan.parity.redact import redact_body, redact_difference, redact_headers, redact_url
from banyan.tasks import cancel_and_wait

log = get_logger("banyan.parity.store")
metadata = MetaData()
HOUR = 3600

counters = Table(
    "parity_counters",
    metadata,
    Column("feature", String(200), primary_key=True),
    Column("endpoint", String(500), primary_key=True),
    Column("hour", BigInteger, primary_key=True),
    Column("compared", BigInteger, nullable=False, default=0),
    Column("matched", BigInteger, nullable=False, default=0),
    Column("mismatched", BigInteger, nullable=False, default=0),
    Column("errors", BigInteger, nullable=False, default=0),
    Column("skipped", BigInteger, nullable=False, default=0),
)
fields = Table(
    "parity_fields",
    metadata,
    Column("feature", String(200), primary_key=True),
    Column("endpoint", String(500), primary_key=True),
    Column("path", String(500), primary_key=True),
    Column("kind", String(20), primary_key=True),
    Column("hour", BigInteger, primary_key=True),
    Column("count", BigInteger, nullable=False, default=0),
)
latency = Table(
    "parity_latency",
    metadata,
    Column("feature", String(200), primary_key=True),
    Column("backend", String(20), primary_key=True),
    Column("bucket", Integer, primary_key=True),
    Column("hour", BigInteger, primary_key=True),
    Column("count", BigInteger, nullable=False, default=0),
)
examples = Table(
    "parity_examples",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("feature", String(200), nullable=False),
    Column("endpoint", String(500), nullable=False),
    Column("path", String(500), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("at", Float, nullable=False),
    Column("method", String(10), nullable=False),
    Column("url", Text, nullable=False),
    Column("request", Text, nullable=False),
    Column("primary_backend", String(20), nullable=False),
    Column("candidate_backend", String(20), nullable=False),
    Column("primary_answer", Text, nullable=False),
    Column("candidate_answer", Text, nullable=False),
    Column("differences", Text, nullable=False),
    Index("ix_parity_examples_lookup", "feature", "endpoint", "path"),
)
# Learned noise per feature and endpoint (``parity_noise``, keyed by endpoint alone, is left
# unread: noise learned before it was per feature is learned again).
noise = Table(
    "parity_noise_learned",
    metadata,
    Column("feature", String(200), primary_key=True),
    Column("endpoint", String(500), primary_key=True),
    Column("path", String(500), primary_key=True),
    Column("count", BigInteger, nullable=False, default=0),
)

skips = Table(
    "parity_skips",
    metadata,
    Column("feature", String(200), primary_key=True),
    Column("endpoint", String(500), primary_key=True),
    Column("reason", String(100), primary_key=True),
    Column("hour", BigInteger, primary_key=True),
    Column("count", BigInteger, nullable=False, default=0),
)
rollbacks = Table(
    "parity_rollbacks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("feature", String(200), nullable=False),
    Column("at", Float, nullable=False),
    Column("rule", String(100), nullable=False),
    Column("observed", Float, nullable=False),
    Column("limit", Float, nullable=False),
    Column("samples", BigInteger, nullable=False),
    Column("message", Text, nullable=False),
    Index("ix_parity_rollbacks_feature", "feature", "at"),
)
ROLLBACKS_KEPT = 100  # per feature, the newest
PATHS_PER_ENDPOINT = 100  # distinct differing paths counted per endpoint; the rest as OTHER_PATH
OTHER_PATH = "other"
TABLES = (counters, fields, latency, examples, noise, skips, rollbacks)

# Items aggregated between two yields to the event loop while a batch is written.
AGGREGATE_CHUNK = 50

# Latency buckets: bucket b holds latencies in (GROWTH**(b-1), GROWTH**b] ms; ~5% resolution.
GROWTH = 1.05


def bucket_of(ms: float) -> int:
    return math.ceil(math.log(max(ms, 0.01), GROWTH))


def bucket_bound(bucket: int) -> float:
    return GROWTH**bucket


def percentile_from_buckets(buckets: dict[int, int], q: float) -> float | None:
    total = sum(buckets.values())
    if not total:
        return None
    rank, seen = q * total, 0
    for bucket in sorted(buckets):
        seen += buckets[bucket]
        if seen >= rank:
            return round(bucket_bound(bucket), 3)
    return round(bucket_bound(max(buckets)), 3)


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
        return _example(dict(row)) if row else None

    async def summary(
        self, *, feature: str | None = None, since: float | None = None
    ) -> dict[str, Any]:
        """The report data (schema ``banyan.parity/v1``), from counters only."""
        since_hour = int(since) // HOUR * HOUR if since else 0
        async with self.engine.connect() as conn:
            where_c = [counters.c.hour >= since_hour] + (
                [counters.c.feature == feature] if feature else []
            )
            count_rows = (
                await conn.execute(
                    select(
                        counters.c.feature,
                        counters.c.endpoint,
                        func.sum(counters.c.compared),
                        func.sum(counters.c.matched),
                        func.sum(counters.c.mismatched),
                        func.sum(counters.c.errors),
                        func.sum(counters.c.skipped),
                    )
                    .where(and_(*where_c))
                    .group_by(counters.c.feature, counters.c.endpoint)
                )
            ).all()
            where_f = [fields.c.hour >= since_hour] + (
                [fields.c.feature == feature] if feature else []
            )
            field_rows = (
                await conn.execute(
                    select(
                        fields.c.feature,
                        fields.c.endpoint,
                        fields.c.path,
                        fields.c.kind,
                        func.sum(fields.c.count),
                    )
                    .where(and_(*where_f))
                    .group_by(fields.c.feature, fields.c.endpoint, fields.c.path, fields.c.kind)
                )
            ).all()
            where_l = [latency.c.hour >= since_hour] + (
                [latency.c.feature == feature] if feature else []
            )
            latency_rows = (
                await conn.execute(
                    select(
                        latency.c.feature,
                        latency.c.backend,
                        latency.c.bucket,
                        func.sum(latency.c.count),
                    )
                    .where(and_(*where_l))
                    .group_by(latency.c.feature, latency.c.backend, latency.c.bucket)
                )
            ).all()
            where_e = [examples.c.at >= (since or 0)] + (
                [examples.c.feature == feature] if feature else []
            )
            example_rows = (  # newest first
                (
                    await conn.execute(
                        select(examples).where(and_(*where_e)).order_by(examples.c.id.desc())
                    )
                )
                .mappings()
                .all()
            )
            where_s = [skips.c.hour >= since_hour] + (
                [skips.c.feature == feature] if feature else []
            )
            skip_rows = (
                await conn.execute(
                    select(skips.c.feature, skips.c.reason, func.sum(skips.c.count))
                    .where(and_(*where_s))
                    .group_by(skips.c.feature, skips.c.reason)
                )
            ).all()
            where_r = [rollbacks.c.at >= (since or 0)] + (
                [rollbacks.c.feature == feature] if feature else []
            )
            rollback_rows = (
                (
                    await conn.execute(
                        select(rollbacks).where(and_(*where_r)).order_by(rollbacks.c.id.desc())
                    )
                )
                .mappings()
                .all()
            )
            noise_rows = (
                await conn.execute(
                    select(noise.c.feature, noise.c.endpoint, noise.c.path, noise.c.count).where(
                        *([noise.c.feature == feature] if feature else [])
                    )
                )
            ).all()
        data = build_report(
            count_rows, field_rows, latency_rows, [dict(r) for r in example_rows], noise_rows
        )
        add_skips_and_rollbacks(data, skip_rows, [dict(r) for r in rollback_rows])
        return data


def add_skips_and_rollbacks(
    data: dict[str, Any], skip_rows: Iterable[Any], rollback_rows: list[dict[str, Any]]
) -> None:
    """Each feature's skips by reason and the guard rollbacks (newest first) into report
    ``data``; a feature with nothing but rollbacks gets an entry of its own."""
    by_name = {f["feature"]: f for f in data["features"]}

    def entry(name: str) -> dict[str, Any]:
        if name not in by_name:
            by_name[name] = {
                "feature": name,
                "compared": 0,
                "matched": 0,
                "mismatched": 0,
                "errors": 0,
                "skipped": 0,
                "latency": {},
                "match_rate": None,
                "mismatch_rate": None,
                "error_rate": None,
                "endpoints": [],
                "noise": [],
            }
            data["features"].append(by_name[name])
        return by_name[name]

    for feature in data["features"]:
        feature.setdefault("skip_reasons", {})
        feature.setdefault("rollbacks", [])
    for name, reason, count in skip_rows:
        entry(name).setdefault("skip_reasons", {})[reason] = int(count or 0)
    for row in rollback_rows:
        entry(row["feature"]).setdefault("rollbacks", []).append(
            {k: row[k] for k in ("at", "rule", "observed", "limit", "samples", "message")}
        )
    data["features"].sort(key=lambda f: f["feature"])


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


def _example(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "feature": row["feature"],
        "endpoint": row["endpoint"],
        "path": row["path"],
        "kind": row["kind"],
        "at": row["at"],
        "method": row["method"],
        "url": row["url"],
        "request": json.loads(row["request"]),
        "primary_backend": row["primary_backend"],
        "candidate_backend": row["candidate_backend"],
        "primary": json.loads(row["primary_answer"]),
        "candidate": json.loads(row["candidate_answer"]),
        "differences": json.loads(row["differences"]),
    }


def build_report(
    count_rows: Iterable[Any],
    field_rows: Iterable[Any],
    latency_rows: Iterable[Any],
    example_rows: list[dict[str, Any]],
    noise_rows: Iterable[Any],
    *,
    noise_threshold: int = 2,
) -> dict[str, Any]:
    features: dict[str, dict[str, Any]] = {}

    def feature_entry(name: str) -> dict[str, Any]:
        return features.setdefault(
            name,
            {
                "feature": name,
                "compared": 0,
                "matched": 0,
                "mismatched": 0,
                "errors": 0,
                "skipped": 0,
                "endpoints": {},
                "latency": {},
            },
        )

    for name, endpoint, compared, matched, mismatched, errors, skipped in count_rows:
        entry = feature_entry(name)
        endpoint_entry = entry["endpoints"].setdefault(
            endpoint, {"endpoint": endpoint, "top_fields": []}
        )
        for key, value in (
            ("compared", compared),
            ("matched", matched),
            ("mismatched", mismatched),
            ("errors", errors),
            ("skipped", skipped),
        ):
            endpoint_entry[key] = int(value or 0)
            entry[key] += int(value or 0)
    by_path: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in example_rows:
        by_path[(row["feature"], row["endpoint"], row["path"])].append(_example(row))
    for name, endpoint, path, kind, count in field_rows:
        endpoint_entry = feature_entry(name)["endpoints"].setdefault(
            endpoint, {"endpoint": endpoint, "top_fields": [], "compared": 0, "mismatched": 0}
        )
        endpoint_entry["top_fields"].append(
            {
                "path": path,
                "kind": kind,
                "count": int(count),
                "examples": [
                    e for e in by_path.get((name, endpoint, path), []) if e["kind"] == kind
                ],
            }
        )
    buckets: dict[tuple[str, str], dict[int, int]] = defaultdict(dict)
    for name, backend, bucket, count in latency_rows:
        buckets[(name, backend)][int(bucket)] = int(count)
    for (name, backend), values in buckets.items():
        feature_entry(name)["latency"][backend] = {
            "count": sum(values.values()),
            "p50": percentile_from_buckets(values, 0.50),
            "p95": percentile_from_buckets(values, 0.95),
            "p99": percentile_from_buckets(values, 0.99),
        }
    noise_by_feature: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for name, endpoint, path, count in noise_rows:
        if int(count) >= noise_threshold:
            noise_by_feature[name].append({"endpoint": endpoint, "path": path, "count": int(count)})
    out = []
    for name in sorted(features):
        entry = features[name]
        compared = entry["compared"]
        judged = compared - entry["errors"]
        endpoints = []
        for endpoint_entry in sorted(entry["endpoints"].values(), key=lambda e: e["endpoint"]):
            c = endpoint_entry.get("compared", 0)
            judged = c - endpoint_entry.get("errors", 0)
            endpoint_entry["mismatch_rate"] = (
                round(endpoint_entry.get("mismatched", 0) / judged, 6) if judged > 0 else 0.0
            )
            endpoint_entry["error_fields"] = [
                f for f in endpoint_entry["top_fields"] if f["kind"] == "error"
            ]
            endpoint_entry["top_fields"] = [
                f for f in endpoint_entry["top_fields"] if f["kind"] != "error"
            ]
            endpoint_entry["top_fields"].sort(key=lambda f: (-f["count"], f["path"]))
            endpoints.append(endpoint_entry)
        out.append(
            {
                **{k: v for k, v in entry.items() if k != "endpoints"},
                # rates over the answered comparisons: a candidate error is no verdict on parity
                "match_rate": round(entry["matched"] / judged, 6) if judged else None,
                "mismatch_rate": round(entry["mismatched"] / judged, 6) if judged else None,
                "error_rate": round(entry["errors"] / compared, 6) if compared else None,
                "endpoints": endpoints,
                "noise": sorted(
                    noise_by_feature.get(name, []), key=lambda n: (n["endpoint"], n["path"])
                ),
            }
        )
    return {"schema": "banyan.parity/v1", "generated_at": time.time(), "features": out}


class ParityRecorder:
    """Non-blocking intake on the request path; batched writes in the background.

    Results gather for ``flush_interval`` seconds (or until ``batch`` are waiting) and are then
    written ``batch`` per transaction. Each write costs the proxy's event loop a few milliseconds
    whatever its size, so writing seldom keeps users' requests from queueing behind it; a report
    calls :meth:`flush` first, so it is never stale."""

    def __init__(
        self,
        store: ParityStore,
        *,
        max_queue: int = 10_000,
        batch: int = 1000,
        flush_interval: float = 2.0,
    ) -> None:
        self.store = store
        self.queue: asyncio.Queue[ParityItem] = asyncio.Queue(max_queue)
        self.batch = batch
        self.flush_interval = flush_interval
        self.dropped = 0
        self.written = 0
        self._task: asyncio.Task[None] | None = None
        self._queued = asyncio.Event()  # something waits to be written
        self._full = asyncio.Event()  # a batch waits: write now
        self._writing = asyncio.Lock()  # items leave the queue only under it

    def record(self, item: ParityItem) -> bool:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped += 1
            return False
        if not self._queued.is_set():
            self._queued.set()
        if self.queue.qsize() >= self.batch and not self._full.is_set():
            self._full.set()
        return True

    async def start(self) -> None:
        await self.store.open()
        self._task = asyncio.create_task(self._run(), name="parity-recorder")

    async def _run(self) -> None:
        while True:
            await self._queued.wait()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), self.flush_interval)
            self._queued.clear()
            self._full.clear()
            await self.flush()

    async def _write(self, items: list[Any]) -> None:
        try:
            await self.store.write(items)
            self.written += len(items)
        except Exception:
            log.exception("parity_write_failed", items=len(items))

    async def flush(self) -> None:
        """Write everything recorded so far (including what a write in progress holds)."""
        async with self._writing:
            while not self.queue.empty():
                items: list[ParityItem] = []
                while not self.queue.empty() and len(items) < self.batch:
                    items.append(self.queue.get_nowait())
                await self._write(items)

    async def stop(self) -> None:
        async with self._writing:  # a write in progress ends first; then nothing is in hand
            await cancel_and_wait([self._task])
        await self.flush()
        await self.store.close()
