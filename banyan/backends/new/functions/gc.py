"""The collector, a cron-scheduled mutation: expired sessions (with their messages and contexts)
and revocations past their token's expiry are deleted."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select

from banyan.backends.common.clock import now_ms
from banyan.backends.new.functions.sessions import delete_session_rows
from banyan.backends.new.runtime.context import MutationCtx
from banyan.backends.new.runtime.registry import mutation
from banyan.backends.new.runtime.schema import revoked_tokens, sessions


@mutation("gc.collect")
async def collect(ctx: MutationCtx, args: dict[str, Any]) -> dict[str, int]:
    now = now_ms()
    expired = list(
        (
            await ctx.read(
                select(sessions.c.id, sessions.c.user_id).where(sessions.c.expires_ms <= now)
            )
        ).all()
    )
    await delete_session_rows(ctx, [row[0] for row in expired])
    ctx.notify_users |= {row[1] for row in expired}
    gone = await ctx.write(delete(revoked_tokens).where(revoked_tokens.c.exp_ms <= now))
    return {"sessions": len(expired), "revoked_tokens": int(gone.rowcount or 0)}
