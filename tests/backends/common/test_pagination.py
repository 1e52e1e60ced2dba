"""Cursor pagination: a cursor is anchored on the item it names, whatever time it carries."""

from __future__ import annotations

import base64

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, select

from banyan.backends.common.errors import ValidationError
from banyan.backends.common.pagination import (
    Cursor,
    decode_cursor,
    encode_cursor,
    newest_first_after,
    page_from_query,
)

rows = Table(
    "items",
    MetaData(),
    Column("id", String, primary_key=True),
    Column("user_id", String),
    Column("created_ms", Integer),
)


def page_after(cursor: Cursor) -> list[str]:
    engine = create_engine("sqlite://")
    rows.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            rows.insert(),
            [  # this store stamped each item 100 ms later than the store that made the cursor
                {"id": "a", "user_id": "u", "created_ms": 1100},
                {"id": "b", "user_id": "u", "created_ms": 1105},
                {"id": "c", "user_id": "u", "created_ms": 1110},
                {"id": "x", "user_id": "other", "created_ms": 1000},
            ],
        )
        query = (
            select(rows.c.id)
            .where(rows.c.user_id == "u", newest_first_after(rows, cursor, "u"))
            .order_by(rows.c.created_ms.desc(), rows.c.id.desc())
        )
        return list(conn.execute(query).scalars())


def test_a_cursor_continues_after_this_stores_copy_of_its_item() -> None:
    # the other store's cursor names "c" at its own time 1010: here "c" is at 1110
    assert page_after(Cursor(1010, "c")) == ["b", "a"]
    # an item this store does not hold (or another user's): the cursor's time is used
    assert page_after(Cursor(1106, "gone")) == ["b", "a"]
    assert page_after(Cursor(1106, "x")) == ["b", "a"]


ITEM = "0b8c9a1e-4b1a-4d8e-9a35-62616e79616e"


def raw_cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        raw_cursor(f"{2**63}:{ITEM}"),  # beyond what the stores hold: once a 500
        raw_cursor(f"{'9' * 5000}:{ITEM}"),
        raw_cursor(f"-1:{ITEM}"),
        raw_cursor(f"+1:{ITEM}"),
        raw_cursor(f"01:{ITEM}"),
        raw_cursor(f"1 :{ITEM}"),
        raw_cursor(f"\u0661:{ITEM}"),
        raw_cursor(f"1:{ITEM.upper()}"),
        raw_cursor(f"1:{ITEM}x"),
        raw_cursor(f"1:{ITEM}\n"),
        raw_cursor("1:abc"),
        raw_cursor("1"),
        encode_cursor(1, ITEM) + "=",
        encode_cursor(1, ITEM) + "$",
        "é",
        "",
    ],
)
def test_a_cursor_must_name_a_valid_position(cursor: str) -> None:
    with pytest.raises(ValidationError, match="cursor: is invalid"):
        decode_cursor(cursor)


def test_the_largest_position_still_decodes() -> None:
    assert decode_cursor(encode_cursor(2**63 - 1, ITEM)) == Cursor(2**63 - 1, ITEM)
    assert decode_cursor(encode_cursor(0, ITEM)) == Cursor(0, ITEM)


def test_bad_cursors_and_limits_are_refused() -> None:
    for bad in (
        {"cursor": "%%%"},
        {"cursor": encode_cursor(1, "")},
        {"limit": "0"},
        {"limit": "x"},
    ):
        with pytest.raises(ValidationError):
            page_from_query(bad)
    assert page_from_query({}).limit == 50
