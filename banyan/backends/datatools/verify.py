"""``banyan data verify``: compare the legacy and new stores record by record.

For every table pair both stores are scanned in primary-key order side by side (a merge join, one
batch of each in memory), and each record's values are reduced to a checksum. The report gives the
row counts and one line per difference: a record only in legacy, only in new, or in both with
different values (naming the columns that differ).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection

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


async def _rows(
    conn: AsyncConnection, pair: TablePair, side: Literal["source", "target"], batch: int
) -> AsyncIterator[tuple[Any, ...]]:
    table = pair.source if side == "source" else pair.target
    async for rows in scan(conn, table, pair.key, pair.columns, batch=batch):
        for row in rows:
            yield row


async def _next(rows: AsyncIterator[tuple[Any, ...]]) -> tuple[Any, ...] | None:
    try:
        return await anext(rows)
    except StopAsyncIteration:
        return None


def _changed_columns(pair: TablePair, a: Sequence[Any], b: Sequence[Any]) -> tuple[str, ...]:
    return tuple(c for c, x, y in zip(pair.columns, a, b, strict=True) if x != y)


def _before(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """Key order as the databases sort it (text keys compare as Python strings do)."""
    return a < b


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
    width = len(pair.key)

    def add(diff: Difference) -> None:
        report.difference_count += 1
        if max_listed is None or len(report.differences) < max_listed:
            report.differences.append(diff)

    left_rows, right_rows = _rows(legacy, pair, "source", batch), _rows(new, pair, "target", batch)
    left, right = await _next(left_rows), await _next(right_rows)
    while left is not None or right is not None:
        if right is None or (left is not None and _before(left[:width], right[:width])):
            assert left is not None
            add(Difference(pair.label, left[:width], "missing_in_new"))
            left = await _next(left_rows)
        elif left is None or _before(right[:width], left[:width]):
            add(Difference(pair.label, right[:width], "only_in_new"))
            right = await _next(right_rows)
        else:
            if row_digest(left) == row_digest(right):
                report.matched += 1
            else:
                add(
                    Difference(
                        pair.label, left[:width], "differs", _changed_columns(pair, left, right)
                    )
                )
            left, right = await _next(left_rows), await _next(right_rows)
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
            reports = [
                await verify_table(lconn, nconn, pair, batch=batch, max_listed=max_listed)
                for pair in pair_tables(legacy_meta, new_meta)
            ]
            rooms = updates_table(legacy_meta), updates_table(new_meta)
            if rooms[0] is not None and rooms[1] is not None:
                reports.append(await _verify_rooms(lconn, nconn, rooms[0], rooms[1], max_listed))
            return reports
    finally:
        await legacy_engine.dispose()
        await new_engine.dispose()
