"""When a registration of an e-mail that already has an account is a replay, on both backends.

A registration repeats the one that created the account — and answers 201 with
``Idempotent-Replayed: true`` instead of ``409 email_taken`` — when it is that very registration
delivered again (the same name, the same stamped creation time and therefore the same salted hash:
a retried mirror delivery), or when it carries the ``Idempotency-Key`` that created the account and
the right password (docs/api.md, "Auth").
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from banyan.backends.common import idempotency, passwords


async def repeats(
    existing: Mapping[Any, Any],
    *,
    name: str,
    password: str,
    key: str | None,
    hashed: str,
    created_ms: int,
) -> bool:
    """Whether this registration (``hashed`` with the salt of ``created_ms``) is a replay of the
    one that created ``existing`` (the stored user row)."""
    stored = (existing["name"], existing["created_ms"], existing["password_hash"])
    if stored == (name, created_ms, hashed):
        return True
    return (
        key is not None
        and existing["idem_key_hash"] == idempotency.key_hash(key)
        and await asyncio.to_thread(passwords.verify_password, password, existing["password_hash"])
    )
