"""The ``/ws/live`` protocol both backends serve: subscribe to a query, get its result pushed
whenever a write changes it (docs/api.md, "Live queries").

A backend gives the hub a ``run`` function (query name, args, user id -> the JSON value the
matching HTTP ``GET`` returns) and the tables each query reads. After a committed write it calls
:meth:`LiveHub.changed` with the user and the tables written; every subscription of that user
reading one of them is re-run and pushed if its value changed. Other users' writes never reach a
subscription.

Shared through a fan-out bus (:meth:`LiveHub.share`), ``changed`` is also published on the user's
channel, which each replica subscribes to while that user has a connection there; a replica that
hears it re-runs its own subscriptions (after ``on_remote``, e.g. dropping cached reads of those
tables). After a bus outage every subscription is re-run once, since notices may have been lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from banyan.backends.common import jsonbody
from banyan.backends.common.errors import ApiError
from banyan.backends.common.fanout import Bus, Message

RunQuery = Callable[[str, dict[str, Any], str], Awaitable[Any]]
MAX_SUBSCRIPTIONS = 64


@dataclass
class Subscription:
    id: str
    query: str
    args: dict[str, Any]
    last: str | None = None


@dataclass(eq=False)
class Connection:
    user_id: str
    ws: web.WebSocketResponse
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class LiveHub:
    def __init__(self, run: RunQuery, reads: Mapping[str, frozenset[str]]) -> None:
        self.run = run
        self.reads = dict(reads)
        self._by_user: dict[str, set[Connection]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.bus: Bus | None = None
        self.on_remote: Callable[[set[str]], object] | None = None

    def share(self, bus: Bus, on_remote: Callable[[set[str]], object] | None = None) -> None:
        """Publish every change for the other replicas on ``bus`` and follow theirs;
        ``on_remote(tables)`` runs before re-running for another replica's write."""
        self.bus = bus
        self.on_remote = on_remote
        bus.on_resync(self._refresh_all)

    def _channel(self, user_id: str) -> str:
        assert self.bus is not None
        return self.bus.channel("live", user_id)

    def _heard(self, user_id: str, message: Message) -> None:
        try:
            tables = json.loads(message.body)
        except ValueError:
            return
        if message.kind != "changed" or not isinstance(tables, list):
            return
        written = {t for t in tables if isinstance(t, str)}
        if self.on_remote is not None:
            self.on_remote(written)
        self._rerun(user_id, written)

    def _refresh_all(self) -> None:
        if self.on_remote is not None:
            self.on_remote(set().union(*self.reads.values()))
        for user_id in list(self._by_user):
            self._rerun(user_id, None)

    def connections(self, user_id: str | None = None) -> int:
        if user_id is not None:
            return len(self._by_user.get(user_id, ()))
        return sum(len(c) for c in self._by_user.values())

    def changed(self, user_id: str, tables: set[str]) -> None:
        """Re-run (in the background) the user's subscriptions that read any of ``tables``."""
        if self.bus is not None:
            self.bus.publish(self._channel(user_id), "changed", json.dumps(sorted(tables)).encode())
        self._rerun(user_id, tables)

    def _rerun(self, user_id: str, tables: set[str] | None) -> None:
        """Re-run the user's subscriptions reading ``tables`` (all of them for None)."""
        for conn in list(self._by_user.get(user_id, ())):
            due = [
                s
                for s in conn.subscriptions.values()
                if tables is None or self.reads.get(s.query, frozenset()) & tables
            ]
            if due:
                task = asyncio.ensure_future(self._refresh(conn, due))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _refresh(self, conn: Connection, subscriptions: list[Subscription]) -> None:
        async with conn.lock:
            for sub in subscriptions:
                if conn.subscriptions.get(sub.id) is not sub:
                    continue  # unsubscribed meanwhile
                await self._push(conn, sub, only_if_changed=True)

    async def _push(self, conn: Connection, sub: Subscription, *, only_if_changed: bool) -> None:
        try:
            value = await self.run(sub.query, sub.args, conn.user_id)
        except ApiError as exc:
            await _send(
                conn.ws, {"type": "error", "id": sub.id, "code": exc.code, "message": exc.message}
            )
            conn.subscriptions.pop(sub.id, None)
            return
        encoded = json.dumps(value, sort_keys=True)
        if only_if_changed and encoded == sub.last:
            return
        sub.last = encoded
        await _send(conn.ws, {"type": "result", "id": sub.id, "value": value})

    async def serve(self, request: web.Request, user_id: str) -> web.WebSocketResponse:
        """Serve an authenticated ``/ws/live`` connection until it closes."""
        ws = web.WebSocketResponse(heartbeat=20, max_msg_size=64 * 1024)
        await ws.prepare(request)
        conn = Connection(user_id, ws)
        first = user_id not in self._by_user
        self._by_user.setdefault(user_id, set()).add(conn)
        if first and self.bus is not None:
            await self.bus.subscribe(
                self._channel(user_id), lambda message: self._heard(user_id, message)
            )
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    if message.type == WSMsgType.ERROR:
                        break
                    await _send(ws, _error(None, "validation_error", "frames must be JSON text"))
                    continue
                await self._handle(conn, message.data)
        finally:
            peers = self._by_user.get(user_id)
            if peers is not None:
                peers.discard(conn)
                if not peers:
                    del self._by_user[user_id]
                    if self.bus is not None:
                        await self.bus.unsubscribe(self._channel(user_id))
        return ws

    async def _handle(self, conn: Connection, raw: str) -> None:
        try:
            frame = jsonbody.loads(raw, subject="frame", root="frame")
        except ApiError as exc:
            await _send(conn.ws, _error(None, exc.code, exc.message))
            return
        if not isinstance(frame, dict):
            await _send(conn.ws, _error(None, "validation_error", "frame: must be a JSON object"))
            return
        kind, sub_id = frame.get("type"), frame.get("id")
        if kind == "ping":
            await _send(conn.ws, {"type": "pong"})
            return
        if kind == "unsubscribe":
            conn.subscriptions.pop(str(sub_id), None)
            return
        if kind != "subscribe":
            await _send(
                conn.ws,
                _error(sub_id, "unknown_type", "type: must be one of subscribe, unsubscribe, ping"),
            )
            return
        query, args = frame.get("query"), frame.get("args", {})
        if not isinstance(sub_id, str) or not 1 <= len(sub_id) <= 100:
            await _send(
                conn.ws,
                _error(None, "validation_error", "id: must be a string of 1 to 100 characters"),
            )
            return
        if query not in self.reads:
            await _send(
                conn.ws,
                _error(
                    sub_id,
                    "unknown_query",
                    "query: must be one of " + ", ".join(sorted(self.reads)),
                ),
            )
            return
        if not isinstance(args, dict):
            await _send(conn.ws, _error(sub_id, "validation_error", "args: must be an object"))
            return
        if len(conn.subscriptions) >= MAX_SUBSCRIPTIONS and sub_id not in conn.subscriptions:
            await _send(
                conn.ws, _error(sub_id, "too_many_subscriptions", f"at most {MAX_SUBSCRIPTIONS}")
            )
            return
        sub = Subscription(sub_id, str(query), args)
        async with conn.lock:
            conn.subscriptions[sub_id] = sub
            await self._push(conn, sub, only_if_changed=False)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for conns in list(self._by_user.values()):
            for conn in list(conns):
                await conn.ws.close(code=1001, message=b"server shutting down")


def _error(sub_id: Any, code: str, message: str) -> dict[str, Any]:
    return {
        "type": "error",
        "id": sub_id if isinstance(sub_id, str) else None,
        "code": code,
        "message": message,
    }


async def _send(ws: web.WebSocketResponse, frame: dict[str, Any]) -> None:
    if not ws.closed:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.send_json(frame)
