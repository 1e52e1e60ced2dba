"""Test helpers for the fan-out bus against the real Redis (``BANYAN_TEST_REDIS``, default
``redis://127.0.0.1:6379/0``), skipped loudly when it is unreachable.

:class:`RedisFront` is an injected fault: a TCP forwarder in front of Redis that a test can cut
(open connections dropped, new ones closed at once), freeze (connections stay open but no byte
moves, like a silent network partition) and restore. The real Redis is never stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from urllib.parse import urlsplit

import pytest
from redis import asyncio as aioredis

REDIS_URL = os.environ.get("BANYAN_TEST_REDIS", "redis://127.0.0.1:6379/0")


async def redis_available(url: str = REDIS_URL) -> bool:
    client = aioredis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=1.0)
    try:
        return bool(await client.ping())
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()


async def require_redis() -> str:
    if not await redis_available():
        pytest.skip(
            f"REDIS NOT REACHABLE at {REDIS_URL} (set BANYAN_TEST_REDIS): cross-replica fan-out "
            "is NOT tested in this run"
        )
    return REDIS_URL


def unique_prefix() -> str:
    """A channel prefix of this test alone, so parallel runs never hear each other."""
    return f"test-{uuid.uuid4().hex[:12]}"


class RedisFront:
    """A cuttable TCP forwarder to Redis; ``url`` points clients at it."""

    def __init__(self, target: str = REDIS_URL) -> None:
        parts = urlsplit(target)
        self.target_host = parts.hostname or "127.0.0.1"
        self.target_port = parts.port or 6379
        self.target_path = parts.path
        self.url = ""
        self.refusing = False
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._pipes: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.accepted = 0

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"redis://127.0.0.1:{port}{self.target_path}"
        return self.url

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            _abort(writer)
            return
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            _abort(writer)
            return
        pair = (writer, up_writer)
        self._pipes.add(pair)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._copy(source, sink, pair))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _copy(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        try:
            while data := await source.read(65536):
                await self._flowing.wait()
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._pipes.discard(pair)
            for side in pair:
                _abort(side)

    def cut(self) -> None:
        """Drop every open connection and close new ones at once."""
        self.refusing = True
        for pair in list(self._pipes):
            for side in pair:
                _abort(side)
        self._pipes.clear()

    def freeze(self) -> None:
        """Keep connections open but let no byte through."""
        self._flowing.clear()

    def restore(self) -> None:
        self.refusing = False
        self._flowing.set()

    async def close(self) -> None:
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def _abort(writer: asyncio.StreamWriter) -> None:
    transport = writer.transport
    if not transport.is_closing():
        transport.abort()
