"""What every socket tap shares: teeing the client's frames to a candidate socket, in line.

A tap sends the client's frames to a candidate socket, opened only once the caller's earlier
writes reached the candidate; while frames wait in the tap they count as writes on their way, so
the caller's next HTTP copy cannot overtake them. Until the candidate's socket is open the frames
are kept, for the write-through tap made if it cannot be opened. What a tap compares, and when,
is its kind's (:mod:`.tutor`, :mod:`.whiteboard`, :mod:`.live`); the shadow is reached only
through :class:`TapHost`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import aiohttp
from aiohttp import WSMessage, WSMsgType

from banyan.logs import get_logger
from banyan.parity.compare import NoisePredicate, Response, Rules, compare
from banyan.proxy.fence import Release
from banyan.proxy.flags import Feature
from banyan.proxy.routing import Decision
from banyan.proxy.shadow.order import Caller
from banyan.tasks import cancel_and_wait

log = get_logger("banyan.proxy.shadow")
JSON_HEADERS = {"content-type": "application/json"}
# How long a closing tap waits for the lagging candidate (finished turns, converging documents).
CONVERGE_SECONDS = 1.5
FALLBACK_FRAMES = 1000  # frames a tap keeps until the candidate's socket is open


class TapHost(Protocol):
    """The part of the shadow a tap uses (:class:`banyan.proxy.shadow.core.Shadow`)."""

    quiet_seconds: float

    @property
    def stamps_asks(self) -> bool:  # writes are stamped: a tutor ask's copy carries its time
        ...

    def endpoint(self, feature: str, method: str, path: str) -> str: ...
    def tap_opened(self) -> None: ...
    def tap_closed(self) -> None: ...
    def waiting(self, backend: str, lines: list[Caller]) -> list[asyncio.Future[None]]: ...
    def hold_write(self, backend: str, lines: list[Caller]) -> Release: ...
    async def wait(
        self, earlier: list[asyncio.Future[None]], limit: float | None = None
    ) -> bool: ...
    def socket_to(self, backend: str, raw_path: str, headers: Mapping[str, str]) -> Any: ...
    def ask_stamp(self, ms: int, path: str, turn: str) -> str | None: ...
    def noise(self, feature: str, endpoint: str) -> NoisePredicate: ...
    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None: ...
    def skip(self, feature: str, endpoint: str, reason: str) -> bool: ...
    def record(
        self,
        feature: Feature,
        endpoint: str,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes | None,
        decision: Decision,
        primary: Response,
        candidate: Response,
        result: Any,
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A client frame on its way to the candidate (see :attr:`SocketTap.outbox`)."""

    frame: WSMessage
    earlier: list[asyncio.Future[None]]
    release: Release


def feed(tap: Any, from_client: bool, message: WSMessage) -> None:
    """Hand a frame to ``tap`` from the side it came from."""
    (tap.from_client if from_client else tap.from_upstream)(message)


class SocketTap:
    """Tees a client's frames to a candidate socket and compares what the two backends say."""

    kind: ClassVar[str]
    # how long a closing tap waits for the lagging candidate to catch up
    converge_seconds: ClassVar[float] = CONVERGE_SECONDS
    # how long a client frame waits for the caller's earlier copies to reach the candidate before
    # it is sent anyway (None: the write fence's limit, as an HTTP copy waits)
    patience: ClassVar[float | None] = None

    def __init__(
        self,
        host: TapHost,
        feature: Feature,
        decision: Decision,
        raw_path: str,
        headers: dict[str, str],
        lines: list[Caller] | None = None,
        fallback: Callable[[], Any] | None = None,
    ) -> None:
        assert decision.shadow is not None
        self.prepare()
        self.host = host
        self.feature = feature
        self.decision = decision
        self.candidate: str = decision.shadow
        self.raw_path = raw_path
        self.headers = headers
        self.endpoint = host.endpoint(feature.name, "GET", raw_path.split("?", 1)[0])
        # Each client frame waits in the outbox with what must reach the candidate before it (the
        # caller's copies on their way when it came) and its own fence entry, released once sent:
        # frames and HTTP copies reach the candidate in the order the client sent them.
        self.outbox: asyncio.Queue[Outgoing | None] = asyncio.Queue(1000)
        self.last_frame = time.monotonic()
        host.tap_opened()
        self.lines = lines or [(None, "")]
        self._earlier = host.waiting(self.candidate, self.lines)
        # Frames the candidate must answer before the caller's next copy may leave, by key.
        self._held: dict[str, Release] = {}
        # Until the candidate's socket is open, the frames both ways are kept (at most
        # FALLBACK_FRAMES), for the write-through tap made if it cannot be opened.
        self._make_fallback = fallback
        self._early: list[tuple[bool, WSMessage]] | None = [] if fallback else None
        self.fallback: Any = None
        self._ended = False  # the candidate's side is over: no frame is queued for it any more
        self._task = asyncio.ensure_future(self._run())

    # -- what each kind of socket decides ----------------------------------------------------------

    def prepare(self) -> None:
        """Set up what the kind compares (called first by ``__init__``)."""

    def saw_client(self, message: WSMessage) -> None:
        """A client frame, as the primary got it."""

    def saw_primary(self, message: WSMessage) -> None:
        """A frame from the primary."""

    async def saw_candidate(self, ws: aiohttp.ClientWebSocketResponse, message: WSMessage) -> None:
        """A frame from the candidate."""

    async def outgoing(self, message: WSMessage) -> str | None:
        """What the candidate is sent for the client's text frame ``message`` (None: nothing;
        the frame's place in line is released). May wait."""
        return str(message.data)

    def sent_late(self, message: WSMessage) -> None:
        """``message`` goes to the candidate before the caller's earlier copies reached it (they
        took longer than :attr:`patience`): what the candidate answers read a store they had not
        reached, and is not worth comparing."""

    def sent(self, message: WSMessage, release: Release) -> Release | None:
        """``message`` reached the candidate: return ``release`` to release its place now, or
        None when the tap keeps it (in :attr:`_held`) until the candidate answered."""
        return release

    def quiet(self, force: bool = False) -> None:
        """Nothing happened for a while (``force``: the socket is over)."""

    async def closing(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """The client is gone; the candidate's socket still open."""

    def caught_up(self) -> bool:
        """Whether the candidate has nothing left to say that is worth waiting for."""
        return True

    def given_up(self) -> None:
        """The candidate did not catch up in time: compare what there is."""

    def left_behind(self) -> None:
        """The candidate's side is over (ended, cut after ``converge_seconds`` or failed): write
        through to its store what it did not store itself."""

    def write_through_tap(self) -> Any:
        """The tap writing this socket through to the candidate's store (made once), or None
        when the socket's writes are not mirrored. Frames seen from now on are fed to it."""
        if self.fallback is None and self._make_fallback is not None:
            self.fallback = self._make_fallback()
        return self.fallback

    # -- shared ------------------------------------------------------------------------------------

    def compare_json(self, primary: Any, candidate: Any, path: str) -> None:
        left = Response(200, JSON_HEADERS, json.dumps(primary).encode())
        right = Response(200, JSON_HEADERS, json.dumps(candidate).encode())
        result = compare(
            left,
            right,
            Rules.from_config(self.feature.parity),
            noise=self.host.noise(self.feature.name, self.endpoint),
        )
        self.host.record(
            self.feature, self.endpoint, "WS", path, {}, None, self.decision, left, right, result
        )

    def answered(self, key: str) -> None:
        """The candidate answered the frame kept under ``key``: the caller's line moves on."""
        held = self._held.pop(key, None)
        if held is not None:
            held()

    def _keep(self, from_client: bool, message: WSMessage) -> None:
        if self.fallback is not None:
            feed(self.fallback, from_client, message)
        elif self._early is not None:
            if len(self._early) < FALLBACK_FRAMES:
                self._early.append((from_client, message))
            else:
                self._early = None
                log.warning("shadow_websocket_early_frames_dropped", feature=self.feature.name)

    def fall_back(self) -> None:
        """The candidate's socket could not be opened, so none of this socket's frames reached
        it: write the socket through to the candidate's store instead (a tutor's finished turns,
        a room's document, through the mirror queue), from its first frame on."""
        early, self._early = self._early, None
        if early is None:
            return
        tap = self.write_through_tap()
        if tap is None:
            return
        for from_client, message in early:
            feed(tap, from_client, message)

    def from_client(self, message: WSMessage) -> None:
        self._keep(True, message)
        self.last_frame = time.monotonic()
        self.saw_client(message)
        if self._ended or self.outbox.full():
            return
        earlier = self.host.waiting(self.candidate, self.lines)
        self.outbox.put_nowait(
            Outgoing(message, earlier, self.host.hold_write(self.candidate, self.lines))
        )

    def from_upstream(self, message: WSMessage) -> None:
        self._keep(False, message)
        self.last_frame = time.monotonic()
        self.saw_primary(message)

    async def _run(self) -> None:
        # the caller's writes (its registration) land first
        await self.host.wait(self._earlier, self.patience)
        try:
            async with self.host.socket_to(self.candidate, self.raw_path, self.headers) as ws:
                self._early = None  # frames reach the candidate from here on
                reader = asyncio.ensure_future(self._read(ws))
                try:
                    await self._send_all(ws)
                    await self._wait_for_candidate(ws)
                finally:
                    await cancel_and_wait([reader])
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning(
                "shadow_websocket_failed", feature=self.feature.name, error=type(exc).__name__
            )
            self.host.skip(self.feature.name, self.endpoint, "candidate_unavailable")
            self.fall_back()
        finally:
            self._ended = True
            try:  # before the caller's line moves on: in its place in that line
                self.left_behind()
            except Exception:  # the holds below are released whatever happens
                log.exception("shadow_write_through_failed", feature=self.feature.name)
            while not self.outbox.empty():
                left = self.outbox.get_nowait()
                if left is not None:
                    left.release()
            for held in self._held.values():
                held()
            self._held.clear()
        self.quiet(force=True)

    async def _send_all(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Send the client's frames as they come, each after the caller's earlier copies."""
        while True:
            try:
                message = await asyncio.wait_for(self.outbox.get(), self.host.quiet_seconds)
            except TimeoutError:
                self.quiet()
                continue
            if message is None:
                return
            release: Release | None = message.release
            try:
                if not await self.host.wait(message.earlier, self.patience):
                    self.sent_late(message.frame)
                if message.frame.type == WSMsgType.TEXT:
                    text = await self.outgoing(message.frame)
                    if text is not None:
                        await ws.send_str(text)
                        release = self.sent(message.frame, message.release)
                elif message.frame.type == WSMsgType.BINARY:
                    await ws.send_bytes(message.frame.data)
                    release = self.sent(message.frame, message.release)
            finally:
                if release is not None:
                    release()

    async def _wait_for_candidate(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """The client is gone: give the candidate, which lags, a moment to catch up."""
        await self.closing(ws)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.converge_seconds
        while loop.time() < deadline:
            if self.caught_up():
                return
            await asyncio.sleep(0.02)
        self.given_up()

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            await self.saw_candidate(ws, message)

    async def close(self) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.outbox.put_nowait(None)
        try:
            await asyncio.wait_for(
                asyncio.shield(self._task), self.host.quiet_seconds + self.converge_seconds + 2
            )
        except TimeoutError:
            await cancel_and_wait([self._task])
        except asyncio.CancelledError:
            self._task.cancel()  # the caller is going away: no waiting for the task here
            if self.fallback is not None:
                self.host.spawn(self.fallback.close())
            return
        finally:
            self.host.tap_closed()
        if self.fallback is not None:
            await self.fallback.close()
