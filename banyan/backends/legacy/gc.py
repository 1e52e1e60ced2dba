"""The scheduled collector of the legacy backend: expired sessions and spent revocations go.

Runs every ``gc_interval`` seconds in the app's background; one transaction per pass. Deleting an
expired session deletes its messages and context too.
"""

from __future__ import annotations

import asyncio
import contextlib

from sqlalchemy import delete, select

from banyan.backends.common.clock import now_ms
from banyan.backends.legacy.db import RevokedToken, StudySession
from banyan.backends.legacy.sessions import delete_session_rows
from banyan.backends.legacy.state import LegacyState
from banyan.logs import get_logger

log = get_logger("legacy.gc")


async def collect(st: LegacyState) -> dict[str, int]:
    """One pass; returns how many rows of each kind went."""
    now = now_ms()
    async with st.db.session() as db:
        expired = list(
            (
                await db.execute(select(StudySession.id).where(StudySession.expires_ms <= now))
            ).scalars()
        )
        await delete_session_rows(db, expired)
        tokens = await db.execute(delete(RevokedToken).where(RevokedToken.exp_ms <= now))
        await db.commit()
    counts = {"sessions": len(expired), "revoked_tokens": int(getattr(tokens, "rowcount", 0) or 0)}
    if any(counts.values()):
        log.info("gc_collected", **counts)
    return counts


async def run_forever(st: LegacyState) -> None:
    while True:
        await asyncio.sleep(st.gc_interval)
        with contextlib.suppress(Exception):
            await collect(st)
