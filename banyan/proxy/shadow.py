"""Shadow traffic: copy requests to the candidate backend, off the response path, and compare.

In ``shadow`` mode the primary answers the user. For a sampled share of requests (``parity.sample``
percent, decided from the request id so a retry is sampled the same way) the proxy sends a copy to
the candidate after the primary answered — the user never waits for it — and cuts the candidate at
``parity.shadow_timeout``. The copy itself is sent by a helper process
(:mod:`banyan.proxy.copy_sender`),
so sending and reading it costs the proxy's event loop one small message each way.

Writes are copied only with ``writes: mirror`` (same ``Idempotency-Key``). A write that is not
compared (sampled out, too many in flight) goes to the candidate through the durable mirror queue
instead, and so does a compared write whose copy got no answer (timed out, refused, lost by the
copy sender): the queue re-sends it with the same key until the candidate's store has it.

One user's copies reach the candidate in the order the user sent them: a copy waits for that
user's earlier writes still on their way to the candidate (:mod:`banyan.proxy.fence`), so a read
never
overtakes the create it reads, and a write's copy also waits for the user's earlier reads still on
their way (:attr:`Shadow.reads`), so a list read just before a create is not answered by a
candidate that already holds the new item. Bodies over ``parity.max_body_bytes`` are not compared,
and counted. For ``parity.noise_sample`` percent of shadowed safe requests the primary is asked a
second time and the differences between its two answers are learned as noise.

WebSockets: a tap tees the client's frames to a candidate connection, opened only once the user's
earlier writes reached the candidate; while frames wait in the tap, they count as writes on their
way, so the user's next HTTP copy (a snapshot, a read of the room) cannot overtake them. Tutor
turns are compared turn by turn (assembled text, event sequence, the stored messages), whiteboards
by document once the room is quiet, ``/ws/live`` by each subscription's first answer (and the errors
to unreadable frames); a subscribe, like an ask, stays in line until the candidate answered it.
A socket that is not sampled still writes through to the candidate, by the mirror taps of
:mod:`banyan.proxy.app`. Every result goes to the parity recorder, the metrics and the feature's
guard.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import WSMessage, WSMsgType, web
from multidict import MultiDict

from banyan.logs import get_logger
from banyan.parity.compare import Response, Rules, compare
from banyan.parity.endpoints import EndpointCap
from banyan.parity.location import default_url
from banyan.parity.models import ComparisonRecord, NoiseRecord, RollbackRecord, SkipRecord
from banyan.parity.noise import NoiseLearner
from banyan.parity.report import render_html, render_json
from banyan.parity.store import ParityRecorder, ParityStore
from banyan.parity.ws_capture import LiveAnswers, TutorTurns, WhiteboardReplica
from banyan.proxy.breaker import ShadowBreaker
from banyan.proxy.copy_sender import SENDER_ERRORS, Copy, CopySender
from banyan.proxy.fence import Release, WriteFence
from banyan.proxy.flags import Feature
from banyan.proxy.forward import Exchange, error_response
from banyan.proxy.headers import mark, request_id_of
from banyan.proxy.mirror import outcome
from banyan.proxy.routing import Decision, user_from_authorization
from banyan.proxy.upstream import PoolSettings, Upstreams, origin_of
from banyan.tasks import cancel_and_wait

if TYPE_CHECKING:
    from banyan.proxy.app import ProxyState

log = get_logger("banyan.proxy.shadow")
SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
JSON_HEADERS = {"content-type": "application/json"}
Caller = tuple[str | None, str]  # (user, client address): whose copies wait in one line
# request key: (the caller's copies on their way when it came, this copy's release, the timer
# that releases it if no comparison ever takes it over, the caller)
RESERVED: web.RequestKey[
    tuple[list[asyncio.Future[None]], Release, asyncio.TimerHandle, Caller]
] = web.RequestKey("banyan_shadow_reserved", tuple)
# How long a closing tap waits for the lagging candidate (finished turns, converging documents).
CONVERGE_SECONDS = 1.5
EMPTY_STATE = b"\x00"  # the Yjs state vector of an empty document
FALLBACK_FRAMES = 1000  # frames a tap keeps until the candidate's socket is open


def sampled(request_id: str, percent: float, salt: str = "") -> bool:
    if percent >= 100:
        return True
    if percent <= 0:
        return False
    bucket = (
        int.from_bytes(hashlib.sha256((salt + request_id).encode()).digest()[:8], "big") % 10_000
    )
    return bucket < percent * 100


def caller_of(request: web.Request) -> Caller:
    user = user_from_authorization(request.headers.get("Authorization"), request.query.get("token"))
    return user, request.remote or ""


def lines_of(path: str, caller: Caller) -> list[Caller]:
    """The lines a copy joins: its caller's, and for a whiteboard room, which every user shares,
    the room's too — so the room's copies (snapshots, restores, reads, socket frames) keep one
    order across users, as the primary saw them, and each user's copies keep theirs (an
    Idempotency-Key is the user's, whatever the room)."""
    for prefix in ("/api/whiteboard/", "/ws/whiteboard/"):
        if path.startswith(prefix):
            room = path.removeprefix(prefix).split("/", 1)[0]
            return [caller, (f"whiteboard:{room}", "")]
    return [caller]


def _pending(fence: WriteFence, backend: str, lines: list[Caller]) -> list[asyncio.Future[None]]:
    return [f for line in lines for f in fence.pending(backend, *line)]


def _hold(fence: WriteFence, backend: str, lines: list[Caller]) -> Release:
    releases = [fence.hold(backend, *line) for line in lines]

    def release() -> None:
        for each in releases:
            each()

    return release


class Shadow:
    def __init__(
        self,
        recorder: ParityRecorder,
        *,
        max_inflight: int = 64,
        quiet_seconds: float = 0.5,
        sender: CopySender | None = None,
    ) -> None:
        self.recorder = recorder
        self.sender = sender or CopySender(max_inflight)
        self.learner = NoiseLearner()
        self.endpoints = EndpointCap()  # ids collapse, and at most 200 endpoints per feature
        self.max_inflight = max_inflight
        self.quiet_seconds = quiet_seconds
        self.inflight = 0
        self.taps = 0  # WebSocket taps not yet closed (each compares once its socket ends)
        # Read copies on their way to a candidate, per user: a write copy waits for them.
        self.reads = WriteFence()
        self.breaker = ShadowBreaker()
        self.state: ProxyState | None = None
        self.session: aiohttp.ClientSession | None = None  # the candidate's WebSockets
        self.upstreams: Upstreams | None = None  # copies sent in-process
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self, state: ProxyState) -> None:
        self.state = state
        # Shadow traffic has its own small pool: a slow or hanging candidate can never take
        # connections (or connection churn) away from the users' requests.
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.max_inflight, keepalive_timeout=30),
            auto_decompress=False,
        )
        self.upstreams = Upstreams(state.limits, PoolSettings(max_connections=self.max_inflight))
        self.sender.start(self.upstreams)
        await self.recorder.start()
        self.endpoints.load(await self.recorder.store.endpoints())
        for feature, endpoint, path, count in await self.recorder.store.noise_counts():
            self.learner.load(feature, endpoint, path, count)

    async def stop(self) -> None:
        await cancel_and_wait(list(self._tasks))
        await self.sender.stop()
        await self.recorder.stop()
        if self.session is not None:
            await self.session.close()
        if self.upstreams is not None:
            self.upstreams.close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- HTTP ------------------------------------------------------------------------------------

    def wants(self, feature: Feature, decision: Decision, method: str, request_id: str) -> bool:
        if decision.mode != "shadow" or decision.shadow is None:
            return False
        if method not in SAFE and feature.writes != "mirror":
            return False
        return sampled(request_id, feature.parity.sample)

    def reserve(self, feature: Feature, decision: Decision, request: web.Request) -> None:
        """Take this request's place in its caller's line to the candidate (called before the
        primary is asked): a write is held in the fence, a read in :attr:`reads`. :meth:`submit`
        takes the hold over; when it is never called (the primary failed), the hold lapses after
        the feature's shadow timeout."""
        assert self.state is not None and decision.shadow is not None
        caller = caller_of(request)
        lines = lines_of(request.path, caller)
        fence = self.reads if request.method in SAFE else self.state.fence
        earlier = _pending(self.state.fence, decision.shadow, lines)
        if request.method not in SAFE:
            earlier += _pending(self.reads, decision.shadow, lines)
        release = _hold(fence, decision.shadow, lines)
        lapse = asyncio.get_running_loop().call_later(feature.parity.shadow_timeout + 1, release)
        request[RESERVED] = (earlier, release, lapse, caller)

    def _skip_reserved(
        self, request: web.Request, feature: str, endpoint: str, reason: str
    ) -> bool:
        reserved = request.pop(RESERVED, None)
        if reserved is not None:
            reserved[2].cancel()
            reserved[1]()  # no copy is coming: nobody waits for it
        return self._skip(feature, endpoint, reason)

    def _skip(self, feature: str, endpoint: str, reason: str) -> bool:
        assert self.state is not None
        self.state.metrics.shadow_skipped.inc(feature, reason)
        self.recorder.record(SkipRecord(feature, endpoint, reason))
        return False

    def submit(
        self,
        feature: Feature,
        decision: Decision,
        request: web.Request,
        exchange: Exchange,
        headers: Any,
    ) -> bool:
        """Start comparing one answered request; False when it is skipped (and recorded so)."""
        assert self.state is not None and decision.shadow is not None
        endpoint = self.endpoints.key(feature.name, exchange.method, request.path)
        primary_body = exchange.response_capture.value() if exchange.response_capture else None
        request_body = exchange.request_capture.value() if exchange.request_capture else b""
        if primary_body is None or request_body is None:
            return self._skip_reserved(request, feature.name, endpoint, "body_too_large")
        if self.inflight >= self.max_inflight:
            return self._skip_reserved(request, feature.name, endpoint, "too_many_in_flight")
        if not self.breaker.allows(decision.shadow):
            return self._skip_reserved(request, feature.name, endpoint, "candidate_failing")
        reserved = request.get(RESERVED)
        if reserved is None:
            self.reserve(feature, decision, request)
            reserved = request[RESERVED]
        earlier, release, lapse, caller = reserved
        lapse.cancel()  # the comparison releases the hold itself, whatever happens
        writer = caller if request.method not in SAFE else None
        primary = Response(
            exchange.status,
            MultiDict((k.lower(), v) for k, v in (exchange.response_headers or {}).items()),
            primary_body,
            exchange.round_trip * 1000,  # its own round trip, as the candidate's is measured
        )
        self.inflight += 1
        self._spawn(
            self._compare_http(
                feature,
                decision,
                exchange,
                dict(headers),
                request_body,
                primary,
                endpoint,
                (earlier, release),
                writer,
            )
        )
        return True

    async def _send(
        self,
        backend: str,
        exchange: Exchange,
        headers: Mapping[str, str],
        body: bytes,
        feature: Feature,
        primary_status: int,
    ) -> Response:
        """Send ``backend`` the request the primary was sent: the same head (but for ``Host``
        under ``host: backend``) and body, by the same upstream client.

        A copy of a write the primary accepted acts for the request's user whatever its token
        says by then (a ``mirror`` stamp: the user may have logged out meanwhile); a copy of a
        write the primary refused carries only the write's time (a ``primary`` stamp), so the
        candidate judges the same credentials the primary judged and the two refusals compare."""
        assert self.state is not None and exchange.outbound is not None
        spec = self.state.flags.backends[backend]
        outbound = exchange.outbound
        origin = origin_of(spec.url)
        # a copy of a write: the primary's time (banyan/stamps.py)
        stamp = self.state.stamper.line(
            exchange.stamp, origin.target(outbound.target), mirror=primary_status < 400
        )
        return await self.sender.send(
            Copy(
                exchange.method,
                spec.url,
                outbound.head(origin, spec.host, stamp),
                body,
                outbound.chunked,
                feature.parity.shadow_timeout,
                feature.parity.max_body_bytes,
            )
        )

    async def _compare_http(
        self,
        feature: Feature,
        decision: Decision,
        exchange: Exchange,
        headers: dict[str, str],
        body: bytes,
        primary: Response,
        endpoint: str,
        order: tuple[list[asyncio.Future[None]], Release | None] = ([], None),
        writer: Caller | None = None,
    ) -> None:
        """Send the copy (after the caller's earlier copies), then compare and record. A write's
        copy (``writer``: who wrote) that may not have reached the candidate's store goes to the
        mirror queue as well, before the next copy in the caller's line may leave."""
        earlier, release = order
        try:
            assert decision.shadow is not None and self.state is not None
            await self.state.fence.wait(earlier)
            await self.state.gaps.wait()  # the users' requests first
            try:
                candidate = await self._send(
                    decision.shadow, exchange, headers, body, feature, primary.status
                )
                if writer is not None and undelivered(primary.status, candidate, exchange.method):
                    self.state.enqueue_mirror(feature, exchange, headers, decision.shadow, *writer)
            finally:
                if release is not None:
                    release()
                    release = None
            if candidate.error in SENDER_ERRORS:  # our helper lost the copy, not the candidate
                self._skip(feature.name, endpoint, "copy_sender_failed")
                return
            self.breaker.observe(
                decision.shadow, failed=candidate.error not in (None, "body_too_large")
            )
            if candidate.error == "body_too_large":
                self._skip(feature.name, endpoint, "body_too_large")
                return
            await self.state.gaps.wait()  # reading the answer is the loop's work too
            rules = Rules.from_config(feature.parity)
            if exchange.method in SAFE and sampled(
                exchange.request_id, feature.parity.noise_sample, "noise"
            ):
                again = await self._send(
                    decision.backend, exchange, headers, body, feature, primary.status
                )
                if again.error is None:
                    found = self.learner.observe(feature.name, endpoint, primary, again, rules)
                    if found:
                        self.recorder.record(NoiseRecord(feature.name, endpoint, found))
            noise = self.learner.predicate(feature.name, endpoint)
            result = compare(primary, candidate, rules, noise=noise)
            self._record(
                feature,
                endpoint,
                exchange.method,
                exchange.path_qs,
                headers,
                body,
                decision,
                primary,
                candidate,
                result,
            )
        finally:
            if release is not None:
                release()
            self.inflight -= 1

    def _record(
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
    ) -> None:
        assert self.state is not None and decision.shadow is not None
        outcome = "error" if result.error else "match" if result.match else "mismatch"
        if outcome == "match":  # only counts and latencies are kept of a match: drop the bodies
            primary, candidate = _bare(primary), _bare(candidate)
            headers, body = {}, None
        self.state.metrics.shadow.inc(feature.name, outcome)
        observers = self.state.guards.observers(feature.name)
        if observers:
            pair = {  # an answer that did not arrive is 0: no evidence of a status shift
                decision.backend: 0 if primary.error else primary.status,
                decision.shadow: 0 if candidate.error else candidate.status,
            }
            for guard in observers:
                guard.observe_comparison(outcome)  # an error is no verdict on parity
                guard.observe_pair(pair.get("legacy", 0), pair.get("new", 0))
            self.state.check_guard(feature.name)
        self.recorder.record(
            ComparisonRecord(
                feature=feature.name,
                endpoint=endpoint,
                method=method,
                path=path,
                request_headers=headers,
                request_body=body,
                primary_backend=decision.backend,
                candidate_backend=decision.shadow,
                primary=primary,
                candidate=candidate,
                comparison=result,
                redact=feature.parity.redact,
            )
        )

    # -- WebSockets ------------------------------------------------------------------------------

    def websocket_tap(
        self,
        feature: Feature,
        decision: Decision,
        request: web.Request,
        headers: Any,
        fallback: Callable[[], Any] | None = None,
    ) -> Any:
        """A tap comparing this socket on the candidate, or None (not sampled, not comparable).
        ``fallback`` makes the tap that writes the socket through to the candidate's store when
        the candidate's socket cannot be opened (see :meth:`WebSocketTap.fall_back`)."""
        if decision.shadow is None or not sampled(request_id_of(request), feature.parity.sample):
            return None
        path = request.path
        kind = (
            "tutor"
            if path.startswith("/ws/tutor/")
            else "whiteboard"
            if path.startswith("/ws/whiteboard/")
            else "live"
            if path == "/ws/live"
            else None
        )
        if kind is None:
            return None
        lines = lines_of(path, caller_of(request))
        tap = WebSocketTap(
            self,
            feature,
            decision,
            request.raw_path,
            dict(headers),
            kind,
            lines=lines,
            fallback=fallback,
        )
        return tap

    # -- reports ---------------------------------------------------------------------------------

    def record_rollback(self, breach: Mapping[str, Any]) -> None:
        """A guard rolled a feature back: the feature's report shows it."""
        self.recorder.record(
            RollbackRecord(
                feature=str(breach["feature"]),
                rule=str(breach["rule"]),
                observed=float(breach["observed"]),
                limit=float(breach["limit"]),
                samples=int(breach["samples"]),
                message=str(breach.get("message", "")),
            )
        )

    def learned_noise(self, feature: str | None = None) -> list[dict[str, Any]]:
        return self.learner.learned(feature)

    async def forget_noise(self, path: str, feature: str | None = None) -> int:
        """Forget a learned noise path, in memory and in the store (what is queued is written
        first, so it cannot bring the path back)."""
        dropped = self.learner.forget(path, feature)
        await self.recorder.flush()
        return max(dropped, await self.recorder.store.forget_noise(path, feature))

    async def report(self, request: web.Request, *, html: bool) -> web.Response:
        await self.recorder.flush()
        try:
            since = float(request.query["since"]) if "since" in request.query else None
        except ValueError:
            return error_response(400, "validation_error", "since: seconds since the epoch")
        data = await self.recorder.store.summary(feature=request.query.get("feature"), since=since)
        if html:
            response = web.Response(text=render_html(data), content_type="text/html")
        else:
            response = web.Response(text=render_json(data), content_type="application/json")
        mark(response.headers, "_proxy", "proxy", request_id_of(request))
        return response


def undelivered(primary_status: int, candidate: Response, method: str = "POST") -> bool:
    """Whether a write the primary took (2xx) may be missing from the candidate's store: its copy
    got no answer (timed out, refused, lost by the copy sender), or an answer that did not take
    it (a 5xx, a 401 or 404 that means an earlier write has not landed yet, any other refusal).
    Such a write goes to the mirror queue, which retries it and keeps a refusal as a dead letter
    with its reason, besides the comparison reporting the difference: nothing is lost silently."""
    if not 200 <= primary_status < 300:
        return False
    if candidate.error is not None:
        return candidate.error != "body_too_large"  # too large: it did answer
    return outcome(method, candidate.status) != "done"


def _bare(answer: Response) -> Response:
    """An answer without its headers and body, for a record that does not keep them."""
    return Response(answer.status, {}, b"", answer.latency_ms, answer.error)


def _feed(tap: Any, from_client: bool, message: WSMessage) -> None:
    """Hand a frame to ``tap`` from the side it came from."""
    (tap.from_client if from_client else tap.from_upstream)(message)


def _asks_for_everything(frame: bytes) -> bool | None:
    """For a client's whiteboard frame: True for a sync step 1 with an empty state vector, False
    for one with a state, None for any other frame."""
    from banyan.backends.common.whiteboard import protocol

    try:
        parsed = protocol.parse(frame)
    except protocol.ProtocolError:
        return None
    if parsed.kind != "sync_step1":
        return None
    return parsed.payload == EMPTY_STATE


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A client frame on its way to the candidate (see :attr:`WebSocketTap.outbox`)."""

    frame: WSMessage
    earlier: list[asyncio.Future[None]]
    release: Release


class WebSocketTap:
    """Tees a client's frames to a candidate socket and compares what the two backends say."""

    def __init__(
        self,
        shadow: Shadow,
        feature: Feature,
        decision: Decision,
        raw_path: str,
        headers: dict[str, str],
        kind: str,
        lines: list[Caller] | None = None,
        fallback: Callable[[], Any] | None = None,
    ) -> None:
        self.shadow = shadow
        self.feature = feature
        self.decision = decision
        self.raw_path = raw_path
        self.headers = headers
        self.kind = kind
        self.endpoint = shadow.endpoints.key(feature.name, "GET", raw_path.split("?", 1)[0])
        # Each client frame waits in the outbox with what must reach the candidate before it (the
        # caller's copies on their way when it came) and its own fence entry, released once sent:
        # frames and HTTP copies reach the candidate in the order the client sent them.
        self.outbox: asyncio.Queue[Outgoing | None] = asyncio.Queue(1000)
        self.primary_turns, self.candidate_turns = TutorTurns(), TutorTurns()
        self.primary_board, self.candidate_board = WhiteboardReplica(), WhiteboardReplica()
        self.primary_live, self.candidate_live = LiveAnswers(), LiveAnswers()
        # What the candidate may know through this connection: the frames actually sent to it,
        # and its own. A sync step 1 of the candidate is answered from this, never from the
        # primary's document, which may hold edits that must reach the candidate in their turn.
        self.sent_board = WhiteboardReplica()
        # Whether the client's first sync asked for the whole room (it held nothing): then the
        # primary replica is the whole room, and the candidate's may be completed from its room.
        self.fresh_client: bool | None = None
        self.last_frame = time.monotonic()
        self.compared_board = True
        shadow.taps += 1
        self.lines = lines or [(None, "")]
        self._earlier = self._pending()
        # Tutor asks sent to the candidate stay held until the candidate finished their turn (by
        # turn id, numbered as the server numbers them), so a read of the session's messages
        # right after the answer never reaches the candidate before its copy of the turn.
        self._asks = 0
        self._turns_held: dict[str, Release] = {}
        # Until the candidate's socket is open, the frames both ways are kept (at most
        # FALLBACK_FRAMES), for the write-through tap made if it cannot be opened.
        self._make_fallback = fallback
        self._early: list[tuple[bool, WSMessage]] | None = [] if fallback else None
        self.fallback: Any = None
        self._ended = False  # the candidate's side is over: no frame is queued for it any more
        self._task = asyncio.ensure_future(self._run())

    def _pending(self) -> list[asyncio.Future[None]]:
        """The caller's copies (writes, reads, earlier frames) on their way to the candidate."""
        state, candidate = self.shadow.state, self.decision.shadow
        assert state is not None and candidate is not None
        return _pending(state.fence, candidate, self.lines) + _pending(
            self.shadow.reads, candidate, self.lines
        )

    def _keep(self, from_client: bool, message: WSMessage) -> None:
        if self.fallback is not None:
            _feed(self.fallback, from_client, message)
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
        if self._make_fallback is None or early is None:
            return
        tap = self._make_fallback()
        if tap is None:
            return
        for from_client, message in early:
            _feed(tap, from_client, message)
        self.fallback = tap

    def from_client(self, message: WSMessage) -> None:
        self._keep(True, message)
        self.last_frame = time.monotonic()
        if self.kind == "whiteboard" and message.type == WSMsgType.BINARY:
            self.primary_board.apply(message.data)
            self.candidate_board.apply(message.data)
            self.compared_board = False
            if self.fresh_client is None:
                self.fresh_client = _asks_for_everything(message.data)
        elif self.kind == "live" and message.type == WSMsgType.TEXT:
            self.primary_live.sent(message.data)
        if self._ended or self.outbox.full():
            return
        state, candidate = self.shadow.state, self.decision.shadow
        assert state is not None and candidate is not None
        earlier = self._pending()
        self.outbox.put_nowait(
            Outgoing(message, earlier, _hold(state.fence, candidate, self.lines))
        )

    def from_upstream(self, message: WSMessage) -> None:
        self._keep(False, message)
        self.last_frame = time.monotonic()
        if self.kind == "tutor" and message.type == WSMsgType.TEXT:
            turn = self.primary_turns.feed(message.data)
            if turn is not None:
                self._maybe_compare_turn(turn.turn)
        elif self.kind == "whiteboard" and message.type == WSMsgType.BINARY:
            self.primary_board.apply(message.data)
            self.compared_board = False
        elif self.kind == "live" and message.type == WSMsgType.TEXT:
            answered = self.primary_live.feed(message.data)
            if answered is not None:
                self._maybe_compare_answer(answered)

    def _maybe_compare_answer(self, key: str, *, final: bool = False) -> None:
        """Compare the two answers to one live subscribe (or unreadable frame) once both came;
        ``final``: the candidate had its chance (the socket closed), compare what there is."""
        a = self.primary_live.answers.get(key)
        b = self.candidate_live.answers.get(key)
        if a is None or (b is None and not final):
            return
        self.primary_live.answers.pop(key, None)
        self.candidate_live.answers.pop(key, None)
        self._compare_json(a, b, f"/ws/live#{key}")

    def _maybe_compare_turn(self, turn_id: str) -> None:
        a, b = self.primary_turns.turns.get(turn_id), self.candidate_turns.turns.get(turn_id)
        if a is None or b is None or not a.finished or not b.finished:
            return
        self.primary_turns.pop(turn_id)
        self.candidate_turns.pop(turn_id)
        self._compare_json(a.as_json(), b.as_json(), f"{self.raw_path.split('?', 1)[0]}#turn")

    def _compare_json(self, primary: Any, candidate: Any, path: str) -> None:
        import json

        left = Response(200, JSON_HEADERS, json.dumps(primary).encode())
        right = Response(200, JSON_HEADERS, json.dumps(candidate).encode())
        result = compare(
            left,
            right,
            Rules.from_config(self.feature.parity),
            noise=self.shadow.learner.predicate(self.feature.name, self.endpoint),
        )
        self.shadow._record(
            self.feature, self.endpoint, "WS", path, {}, None, self.decision, left, right, result
        )

    async def _run(self) -> None:
        state = self.shadow.state
        # the candidate's socket lives as long as the user's: on the proxy's WebSocket session,
        # never in the shadow pool whose few connections serve the HTTP copies
        session = state.ws_session if state is not None else None
        assert state is not None and session is not None and self.decision.shadow is not None
        url = state.flags.backends[self.decision.shadow].url + self.raw_path
        await state.fence.wait(self._earlier)  # the caller's writes (its registration) land first
        try:
            async with session.ws_connect(
                url, headers=self.headers, timeout=aiohttp.ClientWSTimeout(ws_close=2)
            ) as ws:
                self._early = None  # frames reach the candidate from here on
                reader = asyncio.ensure_future(self._read(ws))
                try:
                    while True:
                        try:
                            message = await asyncio.wait_for(
                                self.outbox.get(), self.shadow.quiet_seconds
                            )
                        except TimeoutError:
                            self._compare_board_if_quiet()
                            continue
                        if message is None:
                            break
                        release: Release | None = message.release
                        try:
                            await state.fence.wait(message.earlier)
                            if message.frame.type == WSMsgType.TEXT:
                                await ws.send_str(message.frame.data)
                                release = self._hold_turn(message.frame.data, message.release)
                            elif message.frame.type == WSMsgType.BINARY:
                                await ws.send_bytes(message.frame.data)
                                self.sent_board.apply(message.frame.data)
                        finally:
                            if release is not None:
                                release()
                    await self._wait_for_candidate(ws)
                finally:
                    await cancel_and_wait([reader])
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning(
                "shadow_websocket_failed", feature=self.feature.name, error=type(exc).__name__
            )
            self.shadow._skip(self.feature.name, self.endpoint, "candidate_unavailable")
            self.fall_back()
        finally:
            self._ended = True
            while not self.outbox.empty():
                left = self.outbox.get_nowait()
                if left is not None:
                    left.release()
            for held in self._turns_held.values():
                held()
            self._turns_held.clear()
        self._compare_board_if_quiet(force=True)

    def _hold_turn(self, raw: str, release: Release) -> Release | None:
        """Keep ``release`` until the candidate finishes the turn ``raw`` asks for (or answers the
        live subscribe ``raw`` is); return it when ``raw`` is neither (to be released now)."""
        if self.kind == "live":
            key = self.candidate_live.sent(raw)
            if key is None:
                return release
            self._turns_held[key] = release
            return None
        if self.kind != "tutor":
            return release
        from banyan.backends.common.tutor.socket import parse_frame

        parsed = parse_frame(raw)
        if not isinstance(parsed, tuple) or parsed[0] != "ask":
            return release
        self._asks += 1
        turn = parsed[1].get("id") or f"t{self._asks}"
        previous = self._turns_held.pop(turn, None)
        if previous is not None:
            previous()
        self._turns_held[turn] = release
        return None

    def _candidate_finished(self, turn: str) -> None:
        held = self._turns_held.pop(turn, None)
        if held is not None:
            held()

    async def _wait_for_candidate(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """The client is gone: give the candidate, which lags, a moment to catch up. A tutor turn
        the client left mid-stream is left at once (the candidate's copy is cut like the
        client's: nothing half is stored on either side); finished turns wait for the
        candidate's answer, a whiteboard for the two documents to converge — after asking the
        candidate for whatever its room holds that this replica lacks (a sync step 1, as a
        client does), since other connections' edits may have reached the candidate's room
        before this connection joined it; only for a client that joined holding nothing, whose
        primary replica is then the whole room too."""
        if self.kind == "whiteboard" and self.fresh_client:
            from banyan.backends.common.whiteboard import protocol

            with contextlib.suppress(ConnectionError, RuntimeError, aiohttp.ClientError):
                await ws.send_bytes(protocol.sync_step1(self.candidate_board.doc.get_state()))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CONVERGE_SECONDS
        while loop.time() < deadline:
            if self.kind == "tutor":
                left = list(self.primary_turns.turns.values())
                if not left or any(not t.finished for t in left):
                    return
            elif self.kind == "live":
                if not self.primary_live.answers:
                    return
            elif self.primary_board.json() == self.candidate_board.json():
                return
            await asyncio.sleep(0.02)
        for key in list(self.primary_live.answers):  # the candidate never answered these
            self._maybe_compare_answer(key, final=True)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        from banyan.backends.common.whiteboard import protocol

        async for message in ws:
            if self.kind == "tutor" and message.type == WSMsgType.TEXT:
                turn = self.candidate_turns.feed(message.data)
                if turn is not None:
                    self._candidate_finished(turn.turn)
                    self._maybe_compare_turn(turn.turn)
            elif self.kind == "live" and message.type == WSMsgType.TEXT:
                answered = self.candidate_live.feed(message.data)
                if answered is not None:
                    self._candidate_finished(answered)
                    self._maybe_compare_answer(answered)
            elif self.kind == "whiteboard" and message.type == WSMsgType.BINARY:
                self.candidate_board.apply(message.data)
                self.sent_board.apply(message.data)
                try:
                    frame = protocol.parse(message.data)
                except protocol.ProtocolError:
                    continue
                if frame.kind == "sync_step1":  # answer with what this connection sent it
                    await ws.send_bytes(
                        protocol.sync_step2(self.sent_board.doc.get_update(frame.payload))
                    )

    def _compare_board_if_quiet(self, force: bool = False) -> None:
        if self.kind != "whiteboard" or self.compared_board:
            return
        quiet = time.monotonic() - self.last_frame
        if not force and quiet < self.shadow.quiet_seconds:
            return
        if (
            not force
            and quiet < self.shadow.quiet_seconds + CONVERGE_SECONDS
            and self.primary_board.json() != self.candidate_board.json()
        ):
            return  # the candidate may still be catching up: look again at the next quiet tick
        self.compared_board = True
        self._compare_json(
            self.primary_board.json(),
            self.candidate_board.json(),
            self.raw_path.split("?", 1)[0] + "#doc",
        )

    async def close(self) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.outbox.put_nowait(None)
        try:
            await asyncio.wait_for(asyncio.shield(self._task), self.shadow.quiet_seconds + 2)
        except TimeoutError:
            await cancel_and_wait([self._task])
        except asyncio.CancelledError:
            self._task.cancel()  # the caller is going away: no waiting for the task here
            if self.fallback is not None:
                self.shadow._spawn(self.fallback.close())
            return
        finally:
            self.shadow.taps -= 1
        if self.fallback is not None:
            await self.fallback.close()


def parity_url(flags_path: str | Path) -> str:
    return default_url(flags_path)  # the store `banyan parity report` reads by default


def shadow_from_env(flags_path: str | Path) -> Shadow:
    """The proxy's shadow: parity store from ``BANYAN_PARITY_DB`` (else ``.banyan/parity.db``
    beside the flag file, :mod:`banyan.parity.location`);
    copies leave from a helper process unless ``BANYAN_SHADOW_SENDER=inline``."""
    inline = os.environ.get("BANYAN_SHADOW_SENDER", "process") == "inline"
    return Shadow(
        ParityRecorder(ParityStore(parity_url(flags_path))),
        sender=CopySender(in_process=inline),
    )
