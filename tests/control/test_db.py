"""Tests for banyan/control/db.py: URLs, schema names, channels, lock keys, the tables."""

from __future__ import annotations

import asyncpg
import pytest

from banyan.control import db


def test_dsn_accepts_postgres_urls_and_drops_the_driver() -> None:
    assert db.dsn("postgresql://u:p@h:5432/d") == "postgresql://u:p@h:5432/d"
    assert db.dsn("postgresql+asyncpg://u@h/d?x=1") == "postgresql://u@h/d?x=1"
    assert db.dsn("postgres://h/d") == "postgresql://h/d"
    with pytest.raises(db.ControlError, match="PostgreSQL"):
        db.dsn("sqlite+aiosqlite:///x.db")
    with pytest.raises(db.ControlError):
        db.dsn("not a url")


def test_schema_names_and_channels() -> None:
    assert db.check_schema("banyan_control") == "banyan_control"
    for bad in ("Upper", "a-b", 'x"; drop', "", "1abc"):
        with pytest.raises(db.ControlError):
            db.check_schema(bad)
    assert db.channel("s1") == "s1_changes"
    assert len(db.channel("a" * 80)) == 63


def test_lock_keys_are_stable_signed_64_bit_and_distinct() -> None:
    key = db.lock_key("s", "feature", "api")
    assert key == db.lock_key("s", "feature", "api")
    assert -(2**63) <= key < 2**63
    assert key != db.lock_key("s", "feature", "apj")
    assert db.lock_key("a", "bc") != db.lock_key("ab", "c")


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BANYAN_CONTROL_DB", raising=False)
    monkeypatch.delenv("BANYAN_CONTROL_SCHEMA", raising=False)
    assert db.control_db_from_env() is None
    assert db.schema_from_env() == db.DEFAULT_SCHEMA
    monkeypatch.setenv("BANYAN_CONTROL_DB", "postgresql://h/d")
    monkeypatch.setenv("BANYAN_CONTROL_SCHEMA", "other")
    assert db.control_db_from_env() == "postgresql://h/d"
    assert db.schema_from_env() == "other"


@pytest.mark.postgres
async def test_tables_are_created_once_by_replicas_starting_together(control_db: str) -> None:
    import asyncio

    schema = db.schema_from_env()
    conns = [await asyncpg.connect(db.dsn(control_db)) for _ in range(3)]
    try:
        await asyncio.gather(*(db.create_tables(c, schema) for c in conns))
        tables = await conns[0].fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
        )
        version = await conns[0].fetchval(f'SELECT version FROM "{schema}".state')
    finally:
        for conn in conns:
            await conn.close()
    assert {r["table_name"] for r in tables} == {
        "state",
        "overrides",
        "kv",
        "audit",
        "guard_counts",
    }
    assert version == 0
