"""The control store's SQL writes, each on a connection inside the caller's transaction.

:class:`~banyan.control.store.ControlStore` decides what to write and holds the locks; these
functions are the statements: bump the store's version and ``NOTIFY`` every replica, upsert an
override or a key/value entry, append an audit entry. Table names come qualified by schema
(``"schema".name``).
"""

from __future__ import annotations

import json
import time
from typing import Any

import asyncpg

from banyan.control.state import Entry, Override


async def bump(conn: asyncpg.Connection, state: str, channel: str) -> int:
    """The store's version plus one, announced on ``channel`` (delivered at commit)."""
    version = await conn.fetchval(f"UPDATE {state} SET version = version + 1 RETURNING version")
    await conn.execute("SELECT pg_notify($1, $2)", channel, str(version))
    return int(version)


async def upsert_override(conn: asyncpg.Connection, table: str, override: Override) -> None:
    await conn.execute(
        f"""INSERT INTO {table}
            (feature, changes, source, actor, reason, set_at, version)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            ON CONFLICT (feature) DO UPDATE SET changes = EXCLUDED.changes,
            source = EXCLUDED.source, actor = EXCLUDED.actor, reason = EXCLUDED.reason,
            set_at = EXCLUDED.set_at, version = EXCLUDED.version""",
        override.feature,
        json.dumps(override.changes),
        override.source,
        override.actor,
        override.reason,
        override.set_at,
        override.version,
    )


async def upsert_entry(conn: asyncpg.Connection, table: str, entry: Entry) -> None:
    await conn.execute(
        f"""INSERT INTO {table} (key, value, source, actor, set_at, version)
            VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value,
            source = EXCLUDED.source, actor = EXCLUDED.actor, set_at = EXCLUDED.set_at,
            version = EXCLUDED.version""",
        entry.key,
        json.dumps(entry.value),
        entry.source,
        entry.actor,
        entry.set_at,
        entry.version,
    )


async def insert_audit(
    conn: asyncpg.Connection,
    table: str,
    *,
    actor: str,
    source: str,
    feature: str,
    before: Any,
    after: Any,
    digest: str | None,
    reason: str | None,
    event: str | None = None,
) -> bool:
    """Append one audit entry; with ``event`` set, only the first entry of that event is kept.
    True when written."""
    inserted = await conn.fetchval(
        f"""INSERT INTO {table}
            (at, source, actor, feature, before, after, digest, reason, event)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
            ON CONFLICT (event) DO NOTHING RETURNING id""",
        time.time(),
        source,
        actor,
        feature,
        json.dumps(before, default=str),
        json.dumps(after, default=str),
        digest,
        reason,
        event,
    )
    return inserted is not None
