"""``Idempotency-Key`` handling both backends share: reading the header and fingerprinting bodies.

A key is 1..200 characters; anything else is ``400 validation_error``. The fingerprint of a
creating call is the SHA-256 of its validated body as canonical JSON (sorted keys, no spaces): a
replay with the same key must carry the same fingerprint, or it is ``409 idempotency_conflict``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from banyan.backends.common import ids
from banyan.backends.common.errors import Conflict, ValidationError
from banyan.backends.common.ids import MAX_KEY_LENGTH

HEADER = "Idempotency-Key"
REPLAYED = {"Idempotent-Replayed": "true"}


def key_from(headers: Mapping[str, str]) -> str | None:
    key = headers.get(HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isprintable():
        raise ValidationError(f"{HEADER}: must be 1 to {MAX_KEY_LENGTH} printable characters")
    return key


def fingerprint(fields: Mapping[str, Any]) -> str:
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def check_replay(stored_fingerprint: str | None, fields: Mapping[str, Any]) -> None:
    """Raise 409 when a resource created under this key was created from another body."""
    if stored_fingerprint != fingerprint(fields):
        raise Conflict(
            "this Idempotency-Key was used with a different request body",
            code="idempotency_conflict",
        )


def turn_message(
    user_id: str, session_id: str, seq: int, role: str, content: str
) -> tuple[str, str]:
    """The id and fingerprint of a tutor turn's message stored without a key: exactly what
    appending it with ``Idempotency-Key: ids.turn_key(session_id, seq)`` stores."""
    key = ids.turn_key(session_id, seq)
    return ids.derived_id("message", user_id, key), fingerprint({"role": role, "content": content})
