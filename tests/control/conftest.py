"""Fixtures for the control store tests: a schema of its own on the test PostgreSQL per test.

Every test gets ``control_db`` (the server's URL) with ``$BANYAN_CONTROL_SCHEMA`` set to a fresh
schema, dropped afterwards, so helpers running in parallel never see each other's overrides. The
tests skip loudly when the server does not answer.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from banyan.control.db import dsn
from banyan.pg import postgres_available, postgres_url


@pytest.fixture
async def control_db(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    if not await postgres_available():
        pytest.skip(
            "CONTROL STORE TESTS SKIPPED — no PostgreSQL at 127.0.0.1:5432 (or $BANYAN_TEST_PG)"
        )
    schema = f"ctl_{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("BANYAN_CONTROL_SCHEMA", schema)
    url = postgres_url()
    try:
        yield url
    finally:
        conn = await asyncpg.connect(dsn(url))
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()
