"""Tests for the small shared contract modules: passwords, ids, clock, pagination."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from banyan.backends.common import clock, ids, pagination, passwords
from banyan.backends.common.errors import ValidationError


def test_password_hash_verifies_only_the_right_password() -> None:
    stored = passwords.hash_password("correct horse")
    assert stored.startswith("scrypt$")
    assert passwords.verify_password("correct horse", stored)
    assert not passwords.verify_password("wrong horse", stored)
    assert passwords.hash_password("x") != passwords.hash_password("x")  # salted


@pytest.mark.parametrize("stored", ["", "md5$1$2$3$aa$bb", "scrypt$x$8$1$aa$bb", "scrypt$1$2"])
def test_malformed_stored_hashes_never_verify(stored: str) -> None:
    assert not passwords.verify_password("pw", stored)


def test_user_ids_depend_on_normalised_email_only() -> None:
    assert ids.user_id_for("Ann@Example.com ") == ids.user_id_for("ann@example.com")
    assert ids.user_id_for("a@x.io") != ids.user_id_for("b@x.io")
    assert ids.is_uuid(ids.user_id_for("a@x.io"))


def test_derived_ids_are_stable_and_documented() -> None:
    expected = str(uuid.uuid5(ids.NAMESPACE, "folder:u1:key-1"))
    assert ids.new_id("folder", "u1", "key-1") == expected
    assert ids.new_id("session", "u1", "key-1") != expected
    assert ids.new_id("folder", "u1", None) != ids.new_id("folder", "u1", None)
    assert not ids.is_uuid("nope")
    assert not ids.is_uuid(str(uuid.uuid4()).upper())


def test_clock_renders_milliseconds_in_utc() -> None:
    assert clock.iso(0) == "1970-01-01T00:00:00.000Z"
    assert clock.iso(1_700_000_000_123) == "2023-11-14T22:13:20.123Z"
    assert clock.iso(None) is None
    for ms in (-1, 1, 999, 951_782_400_000, 4_102_444_799_999, 1_763_900_000_123):
        expected = datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        assert clock.iso(ms) == expected + f"{ms % 1000:03d}Z"
    assert clock.parse_iso("2023-11-14T22:13:20.123Z") == 1_700_000_000_123
    assert clock.parse_iso("2023-11-14T22:13:20") == 1_700_000_000_000
    assert clock.now_ms() > 1_700_000_000_000


def test_cursor_round_trip_and_rejection() -> None:
    item = "0b8c9a1e-4b1a-4d8e-9a35-62616e79616e"
    text = pagination.encode_cursor(123, item)
    assert "=" not in text
    assert pagination.decode_cursor(text) == pagination.Cursor(123, item)
    for bad in ["!!!", pagination.encode_cursor(1, "")[:-1] + "A", "YWJj"]:
        with pytest.raises(ValidationError, match="cursor: is invalid"):
            pagination.decode_cursor(bad)


def test_page_from_query_limits() -> None:
    assert pagination.page_from_query({}) == pagination.Page(50, None)
    item = "0b8c9a1e-4b1a-4d8e-9a35-62616e79616e"
    page = pagination.page_from_query({"limit": "5", "cursor": pagination.encode_cursor(9, item)})
    assert page.limit == 5 and page.after == pagination.Cursor(9, item)
    for bad in ["0", "201", "x"]:
        with pytest.raises(ValidationError, match="limit: must be between 1 and 200"):
            pagination.page_from_query({"limit": bad})
