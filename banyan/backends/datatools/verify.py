"""``banyan data verify``: compare the legacy and new stores record by record.

For every table pair both stores are scanned in primary-key order side by side (a merge join, one
batch of each in memory), and each record's values are reduced to a checksum. The report gives the
row counts and one line per difference: a record only in legacy, only in new, or in both with
different values (naming the columns that differ).

What each store keeps for itself is not compared, each for a stated reason: whiteboard rooms are
compared as documents (:mod:`.whiteboard`), analytics as hourly counts, not rollup rows, and
without the events' ``rolled`` flags (:mod:`.analytics`). Everything else — times included — is
compared exactly: with every write stamped by the proxy both stores hold the same values
(docs/data.md, "What verify guarantees").
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection

from banyan.backends.datatools import analytics
from banyan.backends.datatools.differences import Difference
from banyan.backends.datatools.stores import (
    TablePair,
    count,
    open_engine,
    pair_tables,
    reflect,
    row_digest,
    scan,
)
from banyan.backends.datatools.whiteboard import UPDATES, compare_rooms, updates_table


@dataclass(slots=True)
class TableReport:
    table: str
    legacy_rows: int
    new_rows: int
    matched: int = 0
    differences: list[Difference] = field(default_factory=list)
    difference_count: int = 0


Rows = AsyncIterator[tuple[Any, ...]]


async def _rows(
    conn: AsyncConnection, pair: TablePair, side: Literal["source", "target"], batch: int
) -> Rows:
    table = pair.source if side == "source" else pair.target
    async for rows in scan(conn, table, pair.key, pair.columns, batch=batch):
        for row in rows:
            yield row


async def _next(rows: Rows) -> tuple[Any, ...] | None:
    try:
        return await anext(rows)
    except StopAsyncIteration:
        return None


def _before(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """Key order as the databases sort it (text keys compare as Python strings do)."""
    return a < b


async def merge_compare(
    report: TableReport,
    left_rows: Rows,
    right_rows: Rows,
    *,
    width: int,
    columns: tuple[str, ...],
    max_listed: int | None,
) -> TableReport:
    """Walk two key-ordered row streams side by side and record how they differ. Rows hold
    ``columns`` (the first ``width`` are the key)."""

    def add(diff: Difference) -> None:
        report.difference_count += 1
        if max_listed is None or len(report.differences) < max_listed:
            report.differences.append(diff)

    left, right = await _next(left_rows), await _next(right_rows)
    while left is not None or right is not None:
        if right is None or (left is not None and _before(left[:width], right[:width])):
            assert left is not None
            add(Difference(report.table, left[:width], "missing_in_new"))
            left = await _next(left_rows)
        elif left is None or _before(right[:width], left[:width]):
            add(Difference(report.table, right[:width], "only_in_new"))
            right = await _next(right_rows)
        else:
            if row_digest(left) == row_digest(right):
                report.matched += 1
            else:
                changed = tuple(c for c, x, y in zip(columns, left, right, strict=True) if x != y)
                add(Difference(report.table, left[:width], "differs", changed))
            left, right = await _next(left_rows), await _next(right_rows)
    return report


async def verify_table(
    legacy: AsyncConnection,
    new: AsyncConnection,
    pair: TablePair,
    *,
    batch: int = 1000,
    max_listed: int | None = None,
) -> TableReport:
    report = TableReport(
        pair.label, await count(legacy, pair.source), await count(new, pair.target)
    )
    compared = analytics.data_columns(pair)
    columns = compared.columns
    return await merge_compare(
        report,
        _rows(legacy, compared, "source", batch),
        _rows(new, compared, "target", batch),
        width=len(pair.key),
        columns=columns,
        max_listed=max_listed,
    )


async def _counted(rows: Rows, seen: list[int], side: int) -> Rows:
    async for row in rows:
        seen[side] += 1
        yield row


async def _verify_counts(
    legacy: AsyncConnection,
    new: AsyncConnection,
    tables: tuple[dict[str, Table], dict[str, Table]],
    max_listed: int | None,
) -> TableReport:
    """Analytics as hourly counts (:mod:`.analytics`); the row counts are the counted hours."""
    left, right = tables
    seen = [0, 0]
    report = TableReport(analytics.COUNTS_LABEL, 0, 0)
    await merge_compare(
        report,
        _counted(
            analytics.counts(legacy, left[analytics.ROLLUPS], left[analytics.EVENTS]), seen, 0
        ),
        _counted(analytics.counts(new, right[analytics.ROLLUPS], right[analytics.EVENTS]), seen, 1),
        width=len(analytics.KEY),
        columns=(*analytics.KEY, "count"),
        max_listed=max_listed,
    )
    report.legacy_rows, report.new_rows = seen
    return report


async def _verify_rooms(
    legacy: AsyncConnection, new: AsyncConnection, left: Table, right: Table, max_listed: int | None
) -> TableReport:
    legacy_rooms, new_rooms, diffs = await compare_rooms(legacy, new, left, right)
    report = TableReport(f"{UPDATES} (rooms)", legacy_rooms, new_rooms)
    report.difference_count = len(diffs)
    report.differences = diffs if max_listed is None else diffs[:max_listed]
    report.matched = legacy_rooms - sum(1 for d in diffs if d.kind != "only_in_new")
    return report


async def verify(
    legacy_url: str, new_url: str, *, batch: int = 1000, max_listed: int | None = None
) -> list[TableReport]:
    """Compare every table pair of the two stores."""
    legacy_engine, new_engine = open_engine(legacy_url), open_engine(new_url)
    try:
        async with legacy_engine.connect() as lconn, new_engine.connect() as nconn:
            legacy_meta, new_meta = await reflect(lconn), await reflect(nconn)
            both = dict(legacy_meta.tables), dict(new_meta.tables)
            counted = analytics.has_counts(both[0]) and analytics.has_counts(both[1])
            reports = [
                await verify_table(lconn, nconn, pair, batch=batch, max_listed=max_listed)
                for pair in pair_tables(legacy_meta, new_meta)
                if not (counted and pair.source.name == analytics.ROLLUPS)
            ]
            if counted:
                reports.append(await _verify_counts(lconn, nconn, both, max_listed))
            rooms = updates_table(legacy_meta), updates_table(new_meta)
            if rooms[0] is not None and rooms[1] is not None:
                reports.append(await _verify_rooms(lconn, nconn, rooms[0], rooms[1], max_listed))
            return reports
    finally:
        await legacy_engine.dispose()
        await new_engine.dispose()
