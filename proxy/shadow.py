"""Shadow traffic: copy requests to the candidate backend, off the response path, and compare.

In ``shadow`` mode the primary answers the user. For a sampled share of requests (``parity.sample``
percent, decided from the request id so a retry is sampled the same way) the proxy sends a copy to
the candidate after the primary answered — the user never waits for it — and cuts the candidate at
``parity.shadow_timeout``. Writes are copied only with ``writes: mirror`` (same
``Idempotency-Key``). Bodies over ``parity.max_body_bytes`` are not compared, and counted. For
``parity.noise_sample`` percent of shadowed safe requests the primary is asked a second time and
the differences between its two answers are learned as noise.

WebSockets: a tap tees the client's frames to a candidate connection; tutor turns are compared turn
by turn (assembled text, event sequence, the stored messages), whiteboards by document once the room
is quiet. Every result goes to the parity recorder, the metrics and the feature's guard.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import WSMessage, WSMsgType, web

from banyan.logs import get_logger
from parity.compare import Response, Rules, compare
from parity.models import ComparisonRecord, NoiseRecord, SkipRecord
from parity.noise import NoiseLearner, endpoint_key
from parity.report import render_html, render_json
from parity.store import ParityRecorder, ParityStore
from parity.ws_capture import TutorTurns, WhiteboardReplica
from proxy.flags import Feature
from proxy.forward import Exchange
from proxy.headers import mark, request_id_of
from proxy.routing import Decision

if TYPE_CHECKING:
    from proxy.app import ProxyState

log = get_logger("proxy.shadow")
SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
JSON_HEADERS = {"content-type": "application/json"}


def sampled(request_id: str, percent: float, salt: str = "") -> bool:
    if percent >= 100:
        return True
    if percent <= 0:
        return False
    bucket = (
        int.from_bytes(hashlib.sha256((salt + request_id).encode()).digest()[:8], "big") % 10_000
    )
    return bucket < percent * 100


class Shadow:
    def __init__(
        self, recorder: ParityRecorder, *, max_inflight: int = 64, quiet_seconds: float = 0.5
    ) -> None:
        self.recorder = recorder
        self.learner = NoiseLearner()
        self.max_inflight = max_inflight
        self.quiet_seconds = quiet_seconds
        self.inflight = 0
        self.state: ProxyState | None = None
        self.session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self, state: ProxyState) -> None:
        self.state = state
        # Shadow traffic has its own small pool: a slow or hanging candidate can never take
        # connections (or connection churn) away from the users' requests.
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.max_inflight, keepalive_timeout=30),
            auto_decompress=False,
        )
        await self.recorder.start()
        for endpoint, path, count in await self.recorder.store.noise_counts():
            self.learner.load(endpoint, path, count)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.recorder.stop()
        if self.session is not None:
            await self.session.close()

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

    def _skip(self, feature: str, endpoint: str, reason: str) -> None:
        assert self.state is not None
        self.state.metrics.shadow_skipped.inc(feature, reason)
        self.recorder.record(SkipRecord(feature, endpoint, reason))

    def submit(
        self,
        feature: Feature,
        decision: Decision,
        request: web.Request,
        exchange: Exchange,
        headers: Any,
    ) -> None:
        endpoint = endpoint_key(exchange.method, request.path)
        primary_body = exchange.response_capture.value() if exchange.response_capture else None
        request_body = exchange.request_capture.value() if exchange.request_capture else b""
        if primary_body is None or request_body is None:
            self._skip(feature.name, endpoint, "body_too_large")
            return
        if self.inflight >= self.max_inflight:
            self._skip(feature.name, endpoint, "too_many_in_flight")
            return
        primary = Response(
            exchange.status,
            {k.lower(): v for k, v in (exchange.response_headers or {}).items()},
            primary_body,
            exchange.head_latency * 1000,
        )
        self.inflight += 1
        self._spawn(
            self._compare_http(
                feature, decision, exchange, dict(headers), request_body, primary, endpoint
            )
        )

    async def _send(
        self,
        backend: str,
        exchange: Exchange,
        headers: Mapping[str, str],
        body: bytes,
        feature: Feature,
    ) -> Response:
        assert self.state is not None and self.session is not None
        spec = self.state.flags.backends[backend]
        limit = feature.parity.max_body_bytes
        started = time.perf_counter()
        try:
            async with self.session.request(
                exchange.method,
                spec.url + exchange.path_qs,
                headers=headers,
                data=body or None,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=feature.parity.shadow_timeout),
            ) as answer:
                head = (time.perf_counter() - started) * 1000
                raw = await answer.content.read(limit + 1)
                if len(raw) > limit:
                    return Response(answer.status, {}, b"", head, error="body_too_large")
                return Response(
                    answer.status, {k.lower(): v for k, v in answer.headers.items()}, raw, head
                )
        except TimeoutError:
            return Response(
                0, {}, b"", (time.perf_counter() - started) * 1000, error="candidate timed out"
            )
        except (aiohttp.ClientError, OSError) as exc:
            return Response(
                0, {}, b"", (time.perf_counter() - started) * 1000, error=f"{type(exc).__name__}"
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
    ) -> None:
        try:
            assert decision.shadow is not None
            candidate = await self._send(decision.shadow, exchange, headers, body, feature)
            if candidate.error == "body_too_large":
                self._skip(feature.name, endpoint, "body_too_large")
                return
            rules = Rules.from_config(feature.parity)
            if exchange.method in SAFE and sampled(
                exchange.request_id, feature.parity.noise_sample, "noise"
            ):
                again = await self._send(decision.backend, exchange, headers, body, feature)
                if again.error is None:
                    found = self.learner.observe(endpoint, primary, again, rules)
                    if found:
                        self.recorder.record(NoiseRecord(endpoint, found))
            result = compare(primary, candidate, rules, noise=self.learner.predicate(endpoint))
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
        self.state.metrics.shadow.inc(feature.name, outcome)
        guard = self.state.guards.get(feature.name)
        if guard is not None:
            guard.observe_parity(mismatch=outcome != "match")
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
        self, feature: Feature, decision: Decision, request: web.Request, headers: Any
    ) -> Any:
        if decision.shadow is None or not sampled(request_id_of(request), feature.parity.sample):
            return None
        path = request.path
        kind = (
            "tutor"
            if path.startswith("/ws/tutor/")
            else "whiteboard"
            if path.startswith("/ws/whiteboard/")
            else None
        )
        if kind is None:
            return None
        return WebSocketTap(self, feature, decision, request.raw_path, dict(headers), kind)

    # -- reports ---------------------------------------------------------------------------------

    async def report(self, request: web.Request, *, html: bool) -> web.Response:
        await self.recorder.flush()
        data = await self.recorder.store.summary(feature=request.query.get("feature"))
        if html:
            response = web.Response(text=render_html(data), content_type="text/html")
        else:
            response = web.Response(text=render_json(data), content_type="application/json")
        mark(response.headers, "_proxy", "proxy", request_id_of(request))
        return response


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
    ) -> None:
        self.shadow = shadow
        self.feature = feature
        self.decision = decision
        self.raw_path = raw_path
        self.headers = headers
        self.kind = kind
        self.endpoint = endpoint_key("GET", raw_path.split("?", 1)[0])
        self.outbox: asyncio.Queue[WSMessage | None] = asyncio.Queue(1000)
        self.primary_turns, self.candidate_turns = TutorTurns(), TutorTurns()
        self.primary_board, self.candidate_board = WhiteboardReplica(), WhiteboardReplica()
        self.last_frame = time.monotonic()
        self.compared_board = True
        self._task = asyncio.ensure_future(self._run())

    def from_client(self, message: WSMessage) -> None:
        self.last_frame = time.monotonic()
        if self.kind == "whiteboard" and message.type == WSMsgType.BINARY:
            self.primary_board.apply(message.data)
            self.candidate_board.apply(message.data)
            self.compared_board = False
        with contextlib.suppress(asyncio.QueueFull):
            self.outbox.put_nowait(message)

    def from_upstream(self, message: WSMessage) -> None:
        self.last_frame = time.monotonic()
        if self.kind == "tutor" and message.type == WSMsgType.TEXT:
            turn = self.primary_turns.feed(message.data)
            if turn is not None:
                self._maybe_compare_turn(turn.turn)
        elif self.kind == "whiteboard" and message.type == WSMsgType.BINARY:
            self.primary_board.apply(message.data)
            self.compared_board = False

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
            noise=self.shadow.learner.predicate(self.endpoint),
        )
        self.shadow._record(
            self.feature, self.endpoint, "WS", path, {}, None, self.decision, left, right, result
        )

    async def _run(self) -> None:
        state, session = self.shadow.state, self.shadow.session
        assert state is not None and session is not None and self.decision.shadow is not None
        url = state.flags.backends[self.decision.shadow].url + self.raw_path
        try:
            async with session.ws_connect(
                url, headers=self.headers, timeout=aiohttp.ClientWSTimeout(ws_close=2)
            ) as ws:
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
                        if message.type == WSMsgType.TEXT:
                            await ws.send_str(message.data)
                        elif message.type == WSMsgType.BINARY:
                            await ws.send_bytes(message.data)
                    await asyncio.sleep(min(self.shadow.quiet_seconds, 0.5))
                finally:
                    reader.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await reader
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning(
                "shadow_websocket_failed", feature=self.feature.name, error=type(exc).__name__
            )
            self.shadow._skip(self.feature.name, self.endpoint, "candidate_unavailable")
        self._compare_board_if_quiet(force=True)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        from backends.common.whiteboard import protocol

        async for message in ws:
            if self.kind == "tutor" and message.type == WSMsgType.TEXT:
                turn = self.candidate_turns.feed(message.data)
                if turn is not None:
                    self._maybe_compare_turn(turn.turn)
            elif self.kind == "whiteboard" and message.type == WSMsgType.BINARY:
                self.candidate_board.apply(message.data)
                try:
                    frame = protocol.parse(message.data)
                except protocol.ProtocolError:
                    continue
                if frame.kind == "sync_step1":  # answer as the client would: with what it holds
                    await ws.send_bytes(
                        protocol.sync_step2(self.primary_board.doc.get_update(frame.payload))
                    )

    def _compare_board_if_quiet(self, force: bool = False) -> None:
        if self.kind != "whiteboard" or self.compared_board:
            return
        if force or time.monotonic() - self.last_frame >= self.shadow.quiet_seconds:
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
        except (TimeoutError, asyncio.CancelledError):
            self._task.cancel()


def parity_url(flags_path: str | Path) -> str:
    return (
        os.environ.get("BANYAN_PARITY_DB")
        or f"sqlite+aiosqlite:///{Path(flags_path).resolve().parent / 'parity.db'}"
    )


def shadow_from_env(flags_path: str | Path) -> Shadow:
    return Shadow(ParityRecorder(ParityStore(parity_url(flags_path))))
