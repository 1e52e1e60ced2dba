"""Where the control store lives in PostgreSQL: its URL, its schema and its tables.

Owns the translation of ``--control-db`` / ``$BANYAN_CONTROL_DB`` (a ``postgresql://`` URL, or a
SQLAlchemy ``postgresql+asyncpg://`` one) into an asyncpg DSN, the schema the tables live in
(``banyan_control`` unless ``$BANYAN_CONTROL_SCHEMA`` names another: tests and side-by-side
installations use one each), the NOTIFY channel of that schema, and the DDL. Several replicas
starting at once create the tables under one advisory lock, so none of them trips over another's
``CREATE TABLE``.
"""

from __future__ import annotations

import hashlib
import re

import asyncpg

from banyan.env import option_default
from banyan.errors import ControlError

CONTROL_DB_ENV = "BANYAN_CONTROL_DB"
CONTROL_SCHEMA_ENV = "BANYAN_CONTROL_SCHEMA"
DEFAULT_SCHEMA = "banyan_control"
_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")


def control_db_from_env() -> str | None:
    """``$BANYAN_CONTROL_DB``, or None when unset or empty."""
    return option_default(CONTROL_DB_ENV, "") or None


def schema_from_env() -> str:
    return option_default(CONTROL_SCHEMA_ENV, DEFAULT_SCHEMA)


def dsn(url: str) -> str:
    """An asyncpg DSN for ``url``: the SQLAlchemy driver suffix (``+asyncpg``, ``+psycopg``)
    dropped; anything but PostgreSQL refused."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+", 1)[0] not in {"postgresql", "postgres"}:
        raise ControlError(f"the control store is PostgreSQL: want postgresql://..., got {url!r}")
    return "postgresql://" + rest


def check_schema(schema: str) -> str:
    if not _SCHEMA.match(schema):
        raise ControlError(f"not a usable schema name: {schema!r} (lower case, digits, _)")
    return schema


def channel(schema: str) -> str:
    """The LISTEN/NOTIFY channel of one schema's store."""
    return f"{schema}_changes"[:63]


def lock_key(*parts: str) -> int:
    """A signed 64-bit advisory lock key for ``parts`` (stable across processes and hosts)."""
    digest = hashlib.sha256("\x00".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def ddl(schema: str) -> list[str]:
    s = f'"{schema}"'
    return [
        f"CREATE SCHEMA IF NOT EXISTS {s}",
        f"""CREATE TABLE IF NOT EXISTS {s}.state (
            id integer PRIMARY KEY CHECK (id = 1),
            version bigint NOT NULL)""",
        f"INSERT INTO {s}.state (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
        f"""CREATE TABLE IF NOT EXISTS {s}.overrides (
            feature text PRIMARY KEY,
            changes jsonb NOT NULL,
            source text NOT NULL,
            actor text NOT NULL,
            reason text,
            set_at double precision NOT NULL,
            version bigint NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS {s}.kv (
            key text PRIMARY KEY,
            value jsonb NOT NULL,
            source text NOT NULL,
            actor text NOT NULL,
            set_at double precision NOT NULL,
            version bigint NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS {s}.audit (
            id bigserial PRIMARY KEY,
            at double precision NOT NULL,
            source text NOT NULL,
            actor text,
            feature text NOT NULL,
            before jsonb,
            after jsonb,
            digest text,
            reason text,
            event text UNIQUE)""",
        f"""CREATE TABLE IF NOT EXISTS {s}.guard_counts (
            feature text NOT NULL,
            replica text NOT NULL,
            fingerprint text NOT NULL,
            counts jsonb NOT NULL,
            at double precision NOT NULL,
            PRIMARY KEY (feature, replica))""",
    ]


async def create_tables(conn: asyncpg.Connection, schema: str) -> None:
    """Create the schema and its tables once, whoever else is starting right now."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key("ddl", schema))
        for statement in ddl(schema):
            await conn.execute(statement)
