"""Cursor pagination of the contract: newest first, opaque cursors, shared encoding.

A cursor is ``base64url("<created_ms>:<id>")`` without padding and names the last item of the
previous page; the next page holds items strictly older in the order (created_ms DESC, id DESC)
(ascending for messages, which read oldest first). ``limit`` is 1..200, default 50.

The two stores give the same item their own created times (a mirrored write lands a little later),
so a cursor from one store is anchored on the item it names: :func:`newest_first_after` continues
after this store's own copy of that item when it holds one (the cursor's time is only used for an
item this store does not hold), and a page reads the same on either store.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select

from banyan.backends.common.errors import ValidationError

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_POSITION = 2**63 - 1  # the stores' integers are 64-bit
_POSITION = re.compile(
    r"(0|[1-9][0-9]{0,18}):([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
)


@dataclass(frozen=True, slots=True)
class Cursor:
    created_ms: int
    id: str


@dataclass(frozen=True, slots=True)
class Page:
    limit: int
    after: Cursor | None


def newest_first_after(table: Any, after: Cursor, user_id: str) -> ColumnElement[bool]:
    """The rows of ``table`` (``created_ms``, ``id``, ``user_id``) after ``after`` in the order
    (created_ms DESC, id DESC), anchored on this store's own time of the named item."""
    own = select(table.c.created_ms).where(table.c.id == after.id, table.c.user_id == user_id)
    anchor = func.coalesce(own.scalar_subquery(), after.created_ms)
    return or_(
        table.c.created_ms < anchor, and_(table.c.created_ms == anchor, table.c.id < after.id)
    )


def encode_cursor(created_ms: int, item_id: str) -> str:
    raw = f"{created_ms}:{item_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> Cursor:
    """The position ``text`` names, or ``400 cursor: is invalid``. Only what :func:`encode_cursor`
    writes is accepted: a sort number 0..2^63-1 in ASCII digits, a lower-case UUID, canonical
    base64url without padding (anything else would name no item, or overflow the stores)."""
    try:
        padded = text + "=" * (-len(text) % 4)
        decoded = base64.urlsafe_b64decode(padded.encode("ascii")).decode("ascii")
    except (ValueError, binascii.Error):
        raise ValidationError("cursor: is invalid") from None
    found = _POSITION.fullmatch(decoded)
    if found is None or int(found[1]) > MAX_POSITION:
        raise ValidationError("cursor: is invalid")
    cursor = Cursor(int(found[1]), found[2])
    if encode_cursor(cursor.created_ms, cursor.id) != text:
        raise ValidationError("cursor: is invalid")
    return cursor


def page_from_query(query: Mapping[str, str]) -> Page:
    raw_limit = query.get("limit")
    limit = DEFAULT_LIMIT
    if raw_limit is not None:
        try:
            limit = int(raw_limit)
        except ValueError:
            raise ValidationError(f"limit: must be between 1 and {MAX_LIMIT}") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise ValidationError(f"limit: must be between 1 and {MAX_LIMIT}")
    raw_cursor = query.get("cursor")
    return Page(limit=limit, after=decode_cursor(raw_cursor) if raw_cursor else None)
