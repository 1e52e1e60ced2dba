"""Whiteboard rooms in the data tools: moved and compared as documents, not as rows.

``whiteboard_updates`` is an append-only log of Yjs updates per room, numbered by each store's own
autoincrement and compacted now and then, so the same document has different rows in the two
stores. Rooms are therefore merged, as the CRDT allows: backfill reads a room's updates from both
stores, and appends to the new store the one update holding what it lacks (nothing when it lacks
nothing, so a rerun writes nothing). Verify compares each room's document as JSON. A room that a
running new backend holds in memory picks the appended update up when it is next loaded (a room
leaves memory shortly after its last client), so backfill rooms before the feature takes traffic.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from pycrdt import Doc
from sqlalchemy import MetaData, Table, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from banyan.backends.common.whiteboard.snapshot import doc_to_json
from banyan.backends.datatools.differences import Difference

UPDATES = "whiteboard_updates"


def updates_table(metadata: MetaData) -> Table | None:
    return metadata.tables.get(UPDATES)


async def room_docs(conn: AsyncConnection, table: Table) -> dict[str, Doc]:
    """Every room of a store as one document (its updates applied in order)."""
    updates: dict[str, list[bytes]] = defaultdict(list)
    rows = await conn.stream(select(table.c.room, table.c.data).order_by(table.c.room, table.c.id))
    async for room, data in rows:
        updates[room].append(bytes(data))
    docs: dict[str, Doc] = {}
    for room, items in updates.items():
        doc: Doc = Doc()
        for update in items:
            doc.apply_update(update)
        docs[room] = doc
    return docs


def _fingerprint(doc: Doc) -> tuple[bytes, Any]:
    return doc.get_state(), doc_to_json(doc)


async def merge_rooms(
    source: AsyncConnection, target: AsyncConnection, source_table: Table, target_table: Table
) -> tuple[int, int]:
    """Append to the target what each source room holds and the target's lacks.

    Returns (rooms read, rooms that received an update)."""
    legacy, new = await room_docs(source, source_table), await room_docs(target, target_table)
    changed = 0
    for room, doc in sorted(legacy.items()):
        mine = new.get(room)
        if mine is None:
            await target.execute(insert(target_table).values(room=room, data=doc.get_update()))
            changed += 1
            continue
        before = _fingerprint(mine)
        missing = doc.get_update(mine.get_state())
        mine.apply_update(missing)
        if _fingerprint(mine) != before:
            await target.execute(insert(target_table).values(room=room, data=missing))
            changed += 1
    return len(legacy), changed


async def compare_rooms(
    legacy: AsyncConnection, new: AsyncConnection, legacy_table: Table, new_table: Table
) -> tuple[int, int, list[Difference]]:
    """(rooms in legacy, rooms in new, differences) with rooms compared as JSON documents."""
    left, right = await room_docs(legacy, legacy_table), await room_docs(new, new_table)
    diffs: list[Difference] = []
    for room in sorted(left.keys() | right.keys()):
        if room not in right:
            diffs.append(Difference(UPDATES, (room,), "missing_in_new"))
        elif room not in left:
            diffs.append(Difference(UPDATES, (room,), "only_in_new"))
        else:
            a, b = doc_to_json(left[room]), doc_to_json(right[room])
            if a != b:
                roots = tuple(sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k)))
                diffs.append(Difference(UPDATES, (room,), "differs", roots))
    return len(left), len(right), diffs
