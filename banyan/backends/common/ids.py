"""Identifiers of the contract, derived the same way on both backends.

- A user's id is ``uuid5(NAMESPACE, "user:" + lower(email))``: the same email is the same user on
  both stores, so a mirrored registration creates identical records.
- A resource created with an ``Idempotency-Key`` gets ``uuid5(NAMESPACE,
  f"{kind}:{user_id}:{key}")``; a repeat of the key finds that id again, and the other backend
  derives the very same id.
- Without a key, ids are random ``uuid4``. Ids are rendered as lower-case 36-character UUID
  strings.
- A tutor turn without a key (every turn over ``/ws/tutor``) stores each message as if it had been
  appended with the key :func:`turn_key` of its session and ``seq``: the other store derives the
  same ids from the turn mirrored as two appends with those keys, or from running the same turn.
"""

from __future__ import annotations

import uuid

NAMESPACE = uuid.UUID("6f0b7c1e-4b1a-5d8e-9a35-62616e79616e")  # fixed forever: part of the contract
MAX_KEY_LENGTH = 200


def user_id_for(email: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "user:" + email.strip().lower()))


def derived_id(kind: str, user_id: str, key: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{kind}:{user_id}:{key}"))


def turn_key(session_id: str, seq: int) -> str:
    """The ``Idempotency-Key`` a tutor turn's message at ``seq`` is stored under (and mirrored
    with): ``tutor:<session id>:<seq>``."""
    return f"tutor:{session_id}:{seq}"


def new_id(kind: str, user_id: str, idempotency_key: str | None) -> str:
    """The id for a new ``kind`` resource: derived when a key is given, random otherwise."""
    if idempotency_key:
        return derived_id(kind, user_id, idempotency_key)
    return str(uuid.uuid4())


def is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except (ValueError, AttributeError, TypeError):
        return False
