"""How Banyan opens a SQL store (the backends' stores, the parity store, the mirror queue): the
SQLAlchemy async engine and the SQLite writer gate.

SQLite (``sqlite+aiosqlite://``) gets WAL, ``synchronous=NORMAL`` and a busy timeout, and a leaner
aiosqlite adapter: aiosqlite runs each connection on its own thread and SQLAlchemy's stock adapter
makes four trips to it per statement (open a cursor, execute, fetch, close). Each trip is a
thread wake-up and an event-loop wake-up, and on a busy machine each can wait for a CPU. Here a
statement is one trip — the worker thread opens a cursor, executes, fetches every row and closes
it — and returning a connection to the pool costs no trip when no transaction is open.

SQLite allows one writer at a time; a second one sleeps in SQLite's busy handler (1, 2, 5, ... up
to 100 ms at a time) until the lock is free, long after it was released. :class:`WriteGate` queues
a process's write transactions in asyncio instead, so each starts the moment the previous one
commits. On a server database (PostgreSQL) the gate is open and the pool is sized for concurrency.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import aiosqlite
from sqlalchemy import event
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_

BUSY_TIMEOUT_MS = 30_000


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def make_engine(url: str) -> AsyncEngine:
    """An async engine for ``url``; SQLite files get the pragmas and the one-trip adapter."""
    if not is_sqlite(url):
        return create_async_engine(url, pool_size=20, max_overflow=20)
    options: dict[str, Any] = {"connect_args": {"timeout": BUSY_TIMEOUT_MS / 1000}}
    if url.startswith("sqlite+aiosqlite"):
        options["module"] = OneTripDBAPI(aiosqlite, sqlite3)
    engine = create_async_engine(url, **options)
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(connection: Any, _record: object) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.close()


class WriteGate:
    """One write transaction at a time per process on SQLite; no gate on a server database."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._lock = asyncio.Lock() if engine.dialect.name == "sqlite" else None

    @contextlib.asynccontextmanager
    async def __call__(self) -> AsyncIterator[None]:
        if self._lock is None:
            yield
            return
        async with self._lock:
            yield


# -- the one-trip aiosqlite adapter -----------------------------------------------------------


def _run(
    raw: sqlite3.Connection, operation: str, parameters: Any, many: bool
) -> tuple[Any, list[Any] | None, int, int | None, bool]:
    """On the connection's thread: the whole statement, from cursor to closed cursor."""
    cursor = raw.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else None
        return description, rows, cursor.rowcount, cursor.lastrowid, raw.in_transaction
    finally:
        cursor.close()


class OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """A buffered cursor whose statement is a single trip to aiosqlite's thread."""

    __slots__ = ("_arraysize", "_description", "_lastrowid", "_rowcount")

    _adapt_connection: OneTripConnection

    def __init__(self, adapt_connection: OneTripConnection) -> None:
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None
        self._arraysize = 1

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int:
        return self._lastrowid  # type: ignore[return-value]

    @property
    def arraysize(self) -> int:
        return self._arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._arraysize = value

    async def _async_soft_close(self) -> None:
        return None  # nothing is open on the worker thread between trips

    def close(self) -> None:
        self._rows.clear()

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        return self._trip(operation, parameters, many=False)

    def executemany(self, operation: Any, seq_of_parameters: Any) -> Any:
        return self._trip(operation, seq_of_parameters, many=True)

    def _trip(self, operation: Any, parameters: Any, *, many: bool) -> None:
        connection = self._connection
        try:
            result = await_(
                connection._execute(_run, connection._conn, operation, parameters, many)
            )
        except Exception as error:
            # pysqlite may have begun a transaction before the statement failed (a failed first
            # INSERT still holds the write lock): make sure the rollback is not skipped
            self._adapt_connection._in_transaction = True
            self._adapt_connection._handle_exception(error)
        description, rows, self._rowcount, self._lastrowid, in_transaction = result
        self._description = description
        self._rows = collections.deque(rows) if rows else collections.deque()
        self._adapt_connection._in_transaction = in_transaction


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    """aiosqlite's adapted connection with one-trip cursors; knows whether a transaction is open."""

    __slots__ = ("_in_transaction",)
    _cursor_cls = OneTripCursor  # type: ignore[assignment]

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        self._in_transaction = False

    def rollback(self) -> None:
        if self._in_transaction:  # a read-only use has nothing to roll back
            super().rollback()
            self._in_transaction = False

    def commit(self) -> None:
        if self._in_transaction:
            super().commit()
            self._in_transaction = False


class OneTripDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """The DB-API module SQLAlchemy sees: aiosqlite, wrapped in :class:`OneTripConnection`."""

    def connect(self, *arg: Any, **kw: Any) -> OneTripConnection:
        adapted = super().connect(*arg, **kw)
        return OneTripConnection(self, adapted._connection)
