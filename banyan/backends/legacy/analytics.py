"""Analytics on the legacy backend: batched ingest, cached summaries, the hourly rollup.

``POST /api/analytics/events`` validates the whole batch (``banyan.backends.common.analytics``) and
stores
it in one transaction (a keyed batch also records its fingerprint, so a replay stores nothing);
it then invalidates that user's cached summaries. ``GET /api/analytics/summary`` reads rollups
plus unrolled events in one statement, through the TTL cache keyed by user and range.
:func:`rollup` is the periodic job ``analytics.rollup`` (on the app's job queue): it folds raw
events into hourly counts and drops rolled events past their retention.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import MetaData, insert, select
from sqlalchemy.exc import IntegrityError

from banyan.backends.common import analytics, idempotency
from banyan.backends.common import analytics_tables as at
from banyan.backends.common.clock import now_ms
from banyan.backends.common.jobs import ClaimedJob
from banyan.backends.common.validate import read_json
from banyan.backends.legacy import cache, jobs
from banyan.backends.legacy.auth import authenticate
from banyan.backends.legacy.cache import cache_of
from banyan.backends.legacy.state import LegacyState, state

TABLES = at.define_tables(MetaData())  # migration 4


def cache_tag(user_id: str) -> str:
    return f"analytics:{user_id}"


async def _replayed(st: LegacyState, batch: str, user_id: str, body: Any) -> int | None:
    """The size of the batch already stored under this id, after checking the body matches."""
    b = TABLES.batches
    async with st.db.session() as db:
        found = (await db.execute(select(b).where(b.c.id == batch))).mappings().first()
    if found is None or found["user_id"] != user_id:
        return None
    idempotency.check_replay(found["idem_hash"], body)
    return int(found["size"])


async def ingest(request: web.Request) -> web.Response:
    user, _ = await authenticate(request)
    key = idempotency.key_from(request.headers)
    body = await read_json(request)
    now = now_ms()
    events = analytics.parse_batch(body, now)
    st = state(request)
    batch = at.batch_id(user.id, key)
    if key is not None:
        size = await _replayed(st, batch, user.id, body)
        if size is not None:
            return web.json_response({"accepted": size}, status=202, headers=idempotency.REPLAYED)
    try:
        async with st.db.session() as db:
            if key is not None:
                await db.execute(
                    insert(TABLES.batches).values(
                        id=batch,
                        user_id=user.id,
                        size=len(events),
                        idem_hash=idempotency.fingerprint(body),
                        created_ms=now,
                    )
                )
            await db.execute(insert(TABLES.events), at.event_rows(user.id, batch, events, now))
            await db.commit()
    except IntegrityError:
        # the same key raced us and won: answer as its replay
        size = await _replayed(st, batch, user.id, body) if key is not None else None
        if size is None:
            raise
        return web.json_response({"accepted": size}, status=202, headers=idempotency.REPLAYED)
    cache_of(st).invalidate(cache_tag(user.id))
    return web.json_response({"accepted": len(events)}, status=202)


async def query_summary(st: LegacyState, user_id: str, from_ms: int, to_ms: int) -> dict[str, Any]:
    async with st.db.session() as db:
        result = await db.execute(at.summary_statement(TABLES, user_id, from_ms, to_ms))
        rows = at.summary_rows(result)
    return analytics.summary_body(from_ms, to_ms, rows)


async def summary(request: web.Request) -> web.Response:
    user, _ = await authenticate(request)
    from_ms, to_ms = analytics.parse_range(request.query, now_ms())
    st = state(request)
    body = await cache_of(st).get_or_load(
        f"analytics.summary:{user.id}:{from_ms}:{to_ms}",
        [cache_tag(user.id)],
        lambda: query_summary(st, user.id, from_ms, to_ms),
    )
    return web.json_response(body)


@jobs.periodic("analytics.rollup")
async def rollup_job(st: LegacyState, _job: ClaimedJob) -> dict[str, int]:
    return await rollup(st)


async def rollup(st: LegacyState) -> dict[str, int]:
    """The scheduled rollup: fold every unrolled event (a transaction per pass), then prune."""
    dialect = st.db.engine.dialect.name
    folded = 0
    while True:
        async with st.db.session() as db:
            done = await at.rollup_pass(db.execute, TABLES, dialect, now_ms())
            await db.commit()
        folded += done
        if done < at.ROLLUP_BATCH:
            break
    async with st.db.session() as db:
        pruned = await at.prune_pass(db.execute, TABLES, now_ms())
        await db.commit()
    return {"rolled": folded, "pruned": pruned}


def add_routes(app: web.Application) -> None:
    cache.install(app)
    app.router.add_post("/api/analytics/events", ingest)
    app.router.add_get("/api/analytics/summary", summary)
