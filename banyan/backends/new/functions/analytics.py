"""Analytics as functions: batched ingest, cached summaries, the hourly rollup.

- ``analytics.ingest`` (action): validates the batch at the time it arrives, then stores it with
  the mutation ``analytics.store``; a keyed batch already stored (even by a concurrent request
  that won the race) is answered from ``analytics.batch`` without storing anything.
- ``analytics.summary`` (action): the hour-aligned range, then the cached query
  ``analytics.range`` keyed by user and range. That query depends only on the invalidation key
  ``analytics:<user>`` (not the bare tables), which ``analytics.store`` writes: a user's ingest
  drops that user's summaries only, and the rollup — which never changes a summary, it only moves
  counts from events to rollups — drops none.
- ``analytics.rollup`` (action; a periodic job on the queue of :mod:`banyan.backends.new.functions.jobs`):
  ``analytics.rollupPass`` mutations until the backlog is folded, then ``analytics.prune`` of
  rolled events past their retention.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from banyan.backends.common import analytics, idempotency
from banyan.backends.common import analytics_tables as at
from banyan.backends.common import validate as v
from banyan.backends.common.clock import now_ms
from banyan.backends.new.functions import jobs
from banyan.backends.new.functions.common import CALLER, KEY, OPTIONAL_KEY, anything
from banyan.backends.new.runtime.context import ActionCtx, MutationCtx, QueryCtx
from banyan.backends.new.runtime.http import Reply
from banyan.backends.new.runtime.registry import action, mutation, query
from banyan.backends.new.runtime.schema import analytics as tables

INSERT_CHUNK = 100


def scope(user_id: str) -> str:
    """The cache invalidation key of one user's analytics."""
    return f"analytics:{user_id}"


def _accepted(size: int, replayed: bool) -> Reply:
    return Reply({"accepted": size}, 202, dict(idempotency.REPLAYED) if replayed else {})


@query("analytics.batch", {"id": v.string(), "user_id": v.string(), "body": anything()})
async def find_batch(ctx: QueryCtx, args: dict[str, Any]) -> int | None:
    """The size of the batch stored under ``id``, after checking it was sent with this body."""
    b = tables.batches
    row = (await ctx.read(select(b).where(b.c.id == args["id"]))).mappings().first()
    if row is None or row["user_id"] != args["user_id"]:
        return None
    idempotency.check_replay(row["idem_hash"], args["body"])
    return int(row["size"])


@mutation(
    "analytics.store",
    {"id": v.string(), "user_id": v.string(), "keyed": anything(), "body": anything()},
)
async def store(ctx: MutationCtx, args: dict[str, Any]) -> int:
    user_id, batch, now = args["user_id"], args["id"], now_ms()
    events = analytics.parse_batch(args["body"], now)
    if args["keyed"]:
        await ctx.write(
            insert(tables.batches).values(
                id=batch,
                user_id=user_id,
                size=len(events),
                idem_hash=idempotency.fingerprint(args["body"]),
                created_ms=now,
            )
        )
    rows = at.event_rows(user_id, batch, events, now)
    for start in range(0, len(rows), INSERT_CHUNK):
        await ctx.write(insert(tables.events).values(rows[start : start + INSERT_CHUNK]))
    ctx.writes.add(scope(user_id))
    return len(events)


@action("analytics.ingest", {"body": anything(), **CALLER, **KEY}, optional=OPTIONAL_KEY)
async def ingest(ctx: ActionCtx, args: dict[str, Any]) -> Reply:
    user_id, key, body = args["caller"]["id"], args.get("idempotency_key"), args["body"]
    analytics.parse_batch(body, now_ms())  # a bad batch is refused before anything is looked up
    batch = at.batch_id(user_id, key)
    lookup = {"id": batch, "user_id": user_id, "body": body}
    if key is not None:
        size = await ctx.run_query("analytics.batch", lookup)
        if size is not None:
            return _accepted(size, True)
    try:
        stored = await ctx.run_mutation("analytics.store", {**lookup, "keyed": key is not None})
    except IntegrityError:
        size = await ctx.run_query("analytics.batch", lookup) if key is not None else None
        if size is None:
            raise
        return _accepted(size, True)  # the same key raced us and won
    return _accepted(stored, False)


@query(
    "analytics.range",
    {"user_id": v.string(), "from_ms": v.integer(), "to_ms": v.integer()},
    cache=True,
)
async def summary_range(ctx: QueryCtx, args: dict[str, Any]) -> dict[str, Any]:
    from_ms, to_ms = args["from_ms"], args["to_ms"]
    result = await ctx.read(at.summary_statement(tables, args["user_id"], from_ms, to_ms))
    rows = at.summary_rows(result)
    ctx.reads.clear()
    ctx.reads.add(scope(args["user_id"]))
    return analytics.summary_body(from_ms, to_ms, rows)


@action("analytics.summary", {"query": anything(), **CALLER, **KEY}, optional=OPTIONAL_KEY)
async def summary(ctx: ActionCtx, args: dict[str, Any]) -> dict[str, Any]:
    from_ms, to_ms = analytics.parse_range(args["query"], now_ms())
    user_id = args["caller"]["id"]
    body: dict[str, Any] = await ctx.run_query(
        "analytics.range", {"user_id": user_id, "from_ms": from_ms, "to_ms": to_ms}
    )
    return body


@mutation("analytics.rollupPass")
async def rollup_pass(ctx: MutationCtx, args: dict[str, Any]) -> int:
    return await at.rollup_pass(ctx.write, tables, ctx.conn.dialect.name, now_ms())


@mutation("analytics.prune")
async def prune(ctx: MutationCtx, args: dict[str, Any]) -> int:
    return await at.prune_pass(ctx.write, tables, now_ms())


@action("analytics.rollup")
async def rollup(ctx: ActionCtx, args: dict[str, Any]) -> dict[str, int]:
    folded = 0
    while True:
        done: int = await ctx.run_mutation("analytics.rollupPass", {})
        folded += done
        if done < at.ROLLUP_BATCH:
            break
    pruned: int = await ctx.run_mutation("analytics.prune", {})
    return {"rolled": folded, "pruned": pruned}


jobs.periodic("analytics.rollup")
