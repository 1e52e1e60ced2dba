"""Cross-replica fan-out: a Redis pub/sub bus that N replicas of one backend share.

When ``BANYAN_REDIS_URL`` (or ``banyan legacy|new --redis URL``) is set, each backend process owns
one :class:`Bus`; unset, there is no bus at all and every feature keeps its single-process path.
The bus owns only the transport — channels, the replica id, ordering and reconnection; what a
message means belongs to its users (whiteboard rooms, tutor sessions, live subscriptions).

- Channels are ``{prefix}:{service}:{topic}:{name}`` (``prefix`` from ``BANYAN_REDIS_PREFIX``,
  default ``banyan``), so legacy and new replicas on one Redis never hear each other.
- Every message carries the sending replica's id (the format:
  :mod:`~banyan.backends.common.fanout_messages`); a replica never handles its own messages, so
  nothing echoes back in a loop.
- :meth:`Bus.publish` never waits: messages go to an outbox that one task publishes on one
  connection, so a replica's messages on a channel arrive everywhere in the order it sent them.
  While Redis is unreachable they are dropped and counted (local work goes on undisturbed).
- One subscriber connection reads every channel. It is re-established with capped exponential
  backoff after any error, or when Redis stops answering pings; then every channel is subscribed
  again and the *resync* callbacks run (once publishing works too), so each user can exchange
  state for whatever was lost while the bus was down.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from redis import asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from banyan.backends.common.fanout_messages import Handler, decode, encode, new_replica_id
from banyan.backends.common.fanout_messages import Message as Message  # its users' type too
from banyan.logs import get_logger
from banyan.tasks import cancel_and_wait

log = get_logger("fanout")

DEFAULT_PREFIX = "banyan"
_FAILURES = (RedisError, OSError, TimeoutError, RuntimeError)


class Bus:
    """One replica's connection to its siblings (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        service: str,
        prefix: str = DEFAULT_PREFIX,
        replica: str | None = None,
        ping_interval: float = 5.0,
        min_backoff: float = 0.1,
        max_backoff: float = 5.0,
        outbox_limit: int = 10_000,
        confirm_timeout: float = 1.0,
    ) -> None:
        self.url = url
        self.service = service
        self.prefix = prefix
        self.replica = replica or new_replica_id()
        self.ping_interval = ping_interval
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.confirm_timeout = confirm_timeout
        self.control = self.channel("bus", "control")
        self._handlers: dict[str, Handler] = {}
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._resync: list[Callable[[], None]] = []
        self._outbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(outbox_limit)
        self._commands = asyncio.Lock()
        self._client: aioredis.Redis | None = None
        self._pubsub: PubSub | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._sub_up = False
        self._pub_up = False
        self._accepting = False
        self._confirmed_once = False
        self._overflowed = False
        self._up_since: float | None = None
        self._closing = False
        self.stats: dict[str, int] = {
            "published": 0,
            "dropped": 0,
            "received": 0,
            "own": 0,
            "connects": 0,
            "resyncs": 0,
        }

    # -- naming and state ------------------------------------------------------------------

    def channel(self, topic: str, name: str) -> str:
        return f"{self.prefix}:{self.service}:{topic}:{name}"

    @property
    def up(self) -> bool:
        """Both connections work: what is published now reaches every subscribed replica."""
        return self._sub_up and self._pub_up

    def up_for(self) -> float:
        """Seconds since the bus came (back) up; 0 while it is down."""
        return 0.0 if self._up_since is None else time.monotonic() - self._up_since

    def on_resync(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` each time the bus comes (back) up, after every channel is
        subscribed again: whatever was published meanwhile may be lost."""
        self._resync.append(callback)

    def _set_link(self, *, sub: bool | None = None, pub: bool | None = None) -> None:
        was_up = self.up
        if self._closing:
            self._sub_up = self._pub_up = False
            return
        if sub is not None:
            self._sub_up = sub
        if pub is not None:
            self._pub_up = pub
        if self.up and not was_up:
            self._up_since = time.monotonic()
            log.info("fanout_up", replica=self.replica, channels=len(self._handlers))
            self._run_resync()
        elif was_up and not self.up:
            self._up_since = None
            log.warning("fanout_down", replica=self.replica)

    def _run_resync(self) -> None:
        self.stats["resyncs"] += 1
        for callback in list(self._resync):
            try:
                callback()
            except Exception:
                log.exception("fanout_resync_failed")

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start both connections in the background (an unreachable Redis is retried)."""
        self._client = aioredis.Redis.from_url(
            self.url,
            retry=Retry(NoBackoff(), 0),
            socket_connect_timeout=2.0,
            socket_timeout=max(2.0, self.ping_interval),
        )
        self._tasks = [
            asyncio.create_task(self._read_loop(), name=f"fanout-read:{self.replica}"),
            asyncio.create_task(self._publish_loop(), name=f"fanout-publish:{self.replica}"),
        ]

    async def close(self, drain: float = 1.0) -> None:
        """Publish what is queued (at most ``drain`` seconds), then stop."""
        if self._pub_up and not self._outbox.empty():
            deadline = time.monotonic() + drain
            while not self._outbox.empty() and self._pub_up and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        self._closing = True
        await cancel_and_wait(self._tasks)
        self._tasks = []
        self._sub_up = self._pub_up = False
        self._up_since = None
        if self._client is not None:
            with contextlib.suppress(*_FAILURES):
                await self._client.aclose()
            self._client = None

    # -- subscribing -----------------------------------------------------------------------

    async def subscribe(self, channel: str, handler: Handler) -> None:
        """Route ``channel``'s messages to ``handler`` (one per channel). Returns once Redis has
        confirmed (at most ``confirm_timeout``), or at once while the bus is down: the channel
        is subscribed on reconnect, followed by a resync."""
        self._handlers[channel] = handler
        pubsub = self._pubsub
        if pubsub is None or not self._accepting:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(channel, []).append(waiter)
        try:
            async with self._commands:
                await pubsub.subscribe(channel)
            await asyncio.wait_for(asyncio.shield(waiter), self.confirm_timeout)
        except _FAILURES as exc:  # the reader notices a broken link and reconnects
            log.warning("fanout_subscribe_unconfirmed", channel=channel, error=repr(exc))
        finally:
            waiting = self._waiters.get(channel, [])
            if waiter in waiting:
                waiting.remove(waiter)
            if not waiting:
                self._waiters.pop(channel, None)

    async def unsubscribe(self, channel: str) -> None:
        if self._handlers.pop(channel, None) is None:
            return
        pubsub = self._pubsub
        if pubsub is None or not self._accepting:
            return
        try:
            async with self._commands:
                await pubsub.unsubscribe(channel)
        except _FAILURES as exc:
            log.warning("fanout_unsubscribe_failed", channel=channel, error=repr(exc))

    @property
    def channels(self) -> list[str]:
        return sorted(self._handlers)

    # -- publishing ------------------------------------------------------------------------

    def publish(self, channel: str, kind: str, body: bytes) -> bool:
        """Queue a message for the other replicas; False when it was dropped (bus down or
        outbox full — a resync follows once the bus catches up)."""
        if not self._pub_up or self._closing:
            self.stats["dropped"] += 1
            return False
        try:
            self._outbox.put_nowait((channel, encode(self.replica, kind, body)))
        except asyncio.QueueFull:
            self.stats["dropped"] += 1
            if not self._overflowed:
                log.warning("fanout_outbox_full", replica=self.replica)
            self._overflowed = True
            return False
        return True

    async def _publish_loop(self) -> None:
        backoff = self.min_backoff
        while True:
            client = self._client
            assert client is not None
            try:
                await client.ping()
            except _FAILURES as exc:
                log.debug("fanout_publisher_waiting", error=repr(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            backoff = self.min_backoff
            self._set_link(pub=True)
            try:
                while True:
                    channel, data = await self._outbox.get()
                    await client.publish(channel, data)
                    self.stats["published"] += 1
                    if self._overflowed and self._outbox.empty():
                        self._overflowed = False
                        self._run_resync()
            except _FAILURES as exc:
                log.warning("fanout_publish_failed", error=repr(exc))
                self._set_link(pub=False)
                self.stats["dropped"] += 1  # the message that failed
                while not self._outbox.empty():
                    self._outbox.get_nowait()
                    self.stats["dropped"] += 1

    # -- reading ---------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        backoff = self.min_backoff
        while True:
            client = self._client
            assert client is not None
            pubsub = client.pubsub()
            self._confirmed_once = False
            try:
                # the control channel goes last: its confirmation means all are subscribed
                await pubsub.subscribe(*self._handlers, self.control)
                self._pubsub = pubsub
                await self._pump(pubsub)
            except _FAILURES as exc:
                if self._confirmed_once:
                    log.warning("fanout_subscriber_lost", error=repr(exc))
                else:
                    log.debug("fanout_subscriber_waiting", error=repr(exc))
            finally:
                self._pubsub = None
                self._accepting = False
                self._set_link(sub=False)
                for waiting in self._waiters.values():
                    for waiter in waiting:
                        if not waiter.done():
                            waiter.set_result(None)
                with contextlib.suppress(*_FAILURES):
                    await asyncio.wait_for(pubsub.aclose(), 1.0)
            backoff = self.min_backoff if self._confirmed_once else backoff
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)

    async def _pump(self, pubsub: PubSub) -> None:
        heard = pinged = time.monotonic()
        while True:
            message = await pubsub.get_message(timeout=min(1.0, self.ping_interval))
            now = time.monotonic()
            if message is not None:
                heard = now
                await self._dispatch(pubsub, message)
            if now - pinged >= self.ping_interval:
                pinged = now
                async with self._commands:
                    await pubsub.ping()
            if now - heard > 3 * self.ping_interval:
                raise ConnectionError("Redis stopped answering pings")

    async def _dispatch(self, pubsub: PubSub, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "message":
            self._deliver(_text(message["channel"]), message["data"])
        elif kind == "subscribe":
            channel = _text(message["channel"])
            for waiter in self._waiters.get(channel, []):
                if not waiter.done():
                    waiter.set_result(None)
            if channel == self.control and not self._accepting:
                await self._confirmed(pubsub)

    async def _confirmed(self, pubsub: PubSub) -> None:
        """The (re)connected subscriber is live: catch up on channels added meanwhile, then
        tell the users (resync)."""
        self._confirmed_once = True
        self.stats["connects"] += 1
        self._accepting = True  # from now on subscribe() goes straight to this connection
        missing = set(self._handlers) - {_text(c) for c in pubsub.channels}
        if missing:
            async with self._commands:
                await pubsub.subscribe(*missing)
        self._set_link(sub=True)

    def _deliver(self, channel: str, data: bytes) -> None:
        message = decode(data)
        if message is None:
            log.warning("fanout_bad_message", channel=channel)
            return
        if message.sender == self.replica:
            self.stats["own"] += 1
            return
        self.stats["received"] += 1
        handler = self._handlers.get(channel)
        if handler is None:
            return
        try:
            handler(message)
        except Exception:
            log.exception("fanout_handler_failed", channel=channel, kind=message.kind)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# -- wiring into an app ----------------------------------------------------------------------

BUS: web.AppKey[Bus] = web.AppKey("banyan_fanout_bus", Bus)


def bus_of(app: web.Application) -> Bus | None:
    """The app's bus, or None when the backend runs alone."""
    return app.get(BUS)


def install(
    app: web.Application, service: str, url: str | None = None, prefix: str | None = None
) -> Bus | None:
    """Give ``app`` a bus when a Redis URL is configured (argument, else ``BANYAN_REDIS_URL``);
    it starts with the app and stops at cleanup. None (and nothing installed) when unset."""
    url = url or os.environ.get("BANYAN_REDIS_URL") or None
    if url is None:
        return None
    bus = Bus(
        url, service=service, prefix=prefix or os.environ.get("BANYAN_REDIS_PREFIX", DEFAULT_PREFIX)
    )
    app[BUS] = bus

    async def start(_: web.Application) -> None:
        await bus.start()

    async def stop(_: web.Application) -> None:
        await bus.close()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    return bus
