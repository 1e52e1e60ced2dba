"""Reading the parity store a piece at a time, as the console's QA panel does.

:func:`series` gives the hourly counters (a match rate over time per feature and endpoint);
:func:`mismatches` lists stored mismatched requests one row each, newest first, filtered by
feature, endpoint, differing path and time. The store keeps one example row per differing path of
a comparison (:meth:`~banyan.parity.store.ParityStore.write`), so rows of the same comparison
(same feature, time, method and URL) are folded into one, carrying every path that differed;
any of its rows (:meth:`ParityStore.example`) holds the whole comparison's differences.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from banyan.parity.store import HOUR, ParityStore, counters, examples

MAX_LIMIT = 200


def _where_counters(
    feature: str | None, endpoint: str | None, since: float | None, until: float | None
) -> list[Any]:
    where: list[Any] = []
    if feature:
        where.append(counters.c.feature == feature)
    if endpoint:
        where.append(counters.c.endpoint == endpoint)
    if since is not None:
        where.append(counters.c.hour >= int(since) // HOUR * HOUR)
    if until is not None:
        where.append(counters.c.hour <= until)
    return where


async def series(
    store: ParityStore,
    *,
    feature: str | None = None,
    endpoint: str | None = None,
    since: float | None = None,
    until: float | None = None,
) -> list[dict[str, Any]]:
    """Hourly counters, oldest first: ``{feature, endpoint, hour, compared, matched, mismatched,
    errors, match_rate}`` (the rate over answered comparisons; None when none were)."""
    where = _where_counters(feature, endpoint, since, until)
    query = select(
        counters.c.feature,
        counters.c.endpoint,
        counters.c.hour,
        counters.c.compared,
        counters.c.matched,
        counters.c.mismatched,
        counters.c.errors,
    ).order_by(counters.c.hour, counters.c.feature, counters.c.endpoint)
    if where:
        query = query.where(and_(*where))
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    out = []
    for name, path, hour, compared, matched, mismatched, errors in rows:
        answered = int(matched or 0) + int(mismatched or 0)
        out.append(
            {
                "feature": name,
                "endpoint": path,
                "hour": int(hour),
                "compared": int(compared or 0),
                "matched": int(matched or 0),
                "mismatched": int(mismatched or 0),
                "errors": int(errors or 0),
                "match_rate": round(int(matched or 0) / answered, 6) if answered else None,
            }
        )
    return out


async def mismatches(
    store: ParityStore,
    *,
    feature: str | None = None,
    endpoint: str | None = None,
    path: str | None = None,
    since: float | None = None,
    until: float | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Stored mismatched requests, newest first, one per comparison: ``{id, feature, endpoint,
    at, method, url, paths}`` where ``paths`` lists every differing path (as counted) and ``id``
    is the first example row of that comparison. ``path`` keeps comparisons where it differed."""
    query = _comparisons(feature, endpoint, path, since, until, limit)
    async with store.engine.connect() as conn:
        groups = (await conn.execute(query)).all()
        found = []
        for first, name, where_, at, method, url in groups:
            found.append(
                {
                    "id": int(first),
                    "feature": name,
                    "endpoint": where_,
                    "at": float(at),
                    "method": method,
                    "url": url,
                    "paths": await _differing_paths(conn, name, at, method, url),
                }
            )
    return found


def _comparisons(
    feature: str | None,
    endpoint: str | None,
    path: str | None,
    since: float | None,
    until: float | None,
    limit: int,
) -> Any:
    """The newest comparisons with examples (one group of example rows each), filtered."""
    where: list[Any] = []
    if feature:
        where.append(examples.c.feature == feature)
    if endpoint:
        where.append(examples.c.endpoint == endpoint)
    if since is not None:
        where.append(examples.c.at >= since)
    if until is not None:
        where.append(examples.c.at <= until)
    query = select(
        func.min(examples.c.id),
        examples.c.feature,
        examples.c.endpoint,
        examples.c.at,
        examples.c.method,
        examples.c.url,
    ).group_by(
        examples.c.feature, examples.c.endpoint, examples.c.at, examples.c.method, examples.c.url
    )
    if path:
        hit = select(examples.c.at).where(examples.c.path == path)
        where.append(examples.c.at.in_(hit))
    if where:
        query = query.where(and_(*where))
    return query.order_by(examples.c.at.desc()).limit(max(1, min(limit, MAX_LIMIT)))


async def _differing_paths(
    conn: AsyncConnection, feature: str, at: float, method: str, url: str
) -> list[dict[str, str]]:
    """Every (path, kind) one comparison differed at, in the order they were stored."""
    kinds = (
        await conn.execute(
            select(examples.c.path, examples.c.kind)
            .where(
                and_(
                    examples.c.feature == feature,
                    examples.c.at == at,
                    examples.c.url == url,
                    examples.c.method == method,
                )
            )
            .order_by(examples.c.id)
        )
    ).all()
    return [{"path": p, "kind": k} for p, k in kinds]
