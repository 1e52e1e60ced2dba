"""The Shadow: its lifecycle, the interface its HTTP copies and socket taps share, its reports.

It owns the shadow's resources (the copies' pools and sender, the candidate sockets' session, the
parity recorder, the noise learner, the endpoint cap, the breaker) and the one way results leave:
:meth:`Shadow.record` (metrics, the feature's guards, the parity recorder) and :meth:`Shadow.skip`.
HTTP copies live in :mod:`banyan.proxy.shadow.http`, socket taps in
:mod:`banyan.proxy.shadow.taps`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from banyan.parity.compare import NoisePredicate, Response
from banyan.parity.endpoints import EndpointCap
from banyan.parity.location import beside, default_url, store_url
from banyan.parity.models import ComparisonRecord, RollbackRecord, SkipRecord
from banyan.parity.noise import NoiseLearner
from banyan.parity.report import render_html, render_json
from banyan.parity.store import ParityRecorder, ParityStore
from banyan.proxy.breaker import ShadowBreaker
from banyan.proxy.fence import Release, WriteFence
from banyan.proxy.flags import Feature
from banyan.proxy.forward import Exchange, error_response
from banyan.proxy.headers import mark, request_id_of
from banyan.proxy.routing import Decision
from banyan.proxy.settings import Settings
from banyan.proxy.shadow.http import HttpCopies
from banyan.proxy.shadow.order import Caller, caller_of, hold, lines_of, pending, sampled
from banyan.proxy.shadow.send import CopySender
from banyan.proxy.shadow.taps import SocketTap, tap_class
from banyan.proxy.upstream import PoolSettings, Upstreams
from banyan.tasks import cancel_and_wait

if TYPE_CHECKING:
    from banyan.proxy.hooks import ShadowHost


class Shadow:
    def __init__(
        self,
        recorder: ParityRecorder,
        *,
        max_inflight: int = 64,
        quiet_seconds: float = 0.5,
    ) -> None:
        self.recorder = recorder
        self.sender = CopySender()
        self.learner = NoiseLearner()
        self.endpoints = EndpointCap()  # ids collapse, and at most 200 endpoints per feature
        self.max_inflight = max_inflight
        self.quiet_seconds = quiet_seconds
        self.inflight = 0
        self.taps = 0  # WebSocket taps not yet closed (each compares once its socket ends)
        # Read copies on their way to a candidate, per user: a write copy waits for them.
        self.reads = WriteFence()
        self.breaker = ShadowBreaker()
        self.state: ShadowHost | None = None  # the proxy, as far as copies and taps use it
        self.session: aiohttp.ClientSession | None = None  # the candidate's WebSockets
        self.upstreams: Upstreams | None = None  # the copies' pools
        self.http = HttpCopies(self)
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self, state: ShadowHost) -> None:
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
        await self.recorder.stop()
        if self.session is not None:
            await self.session.close()
        if self.upstreams is not None:
            self.upstreams.close()

    # -- the request path's entry points ---------------------------------------------------------

    def wants(
        self, feature: Feature, decision: Decision, method: str, request_id: str, path: str
    ) -> bool:
        """Whether this request is copied (see :meth:`HttpCopies.wants`)."""
        return self.http.wants(feature, decision, method, request_id, path)

    def reserve(self, feature: Feature, decision: Decision, request: web.Request) -> None:
        """Take this request's place in its caller's line to the candidate (called before the
        primary is asked): a write is held in the fence, a read in :attr:`reads`. :meth:`submit`
        takes the hold over; when it is never called (the primary failed), the hold lapses after
        the feature's shadow timeout."""
        self.http.reserve(feature, decision, request)

    def submit(
        self,
        feature: Feature,
        decision: Decision,
        request: web.Request,
        exchange: Exchange,
    ) -> bool:
        """Start comparing one answered request; False when it is skipped (and recorded so)."""
        return self.http.submit(feature, decision, request, exchange)

    def websocket_tap(
        self,
        feature: Feature,
        decision: Decision,
        request: web.Request,
        headers: Any,
        fallback: Callable[[], Any] | None = None,
    ) -> SocketTap | None:
        """A tap comparing this socket on the candidate, or None (not sampled, not comparable).
        ``fallback`` makes the tap that writes the socket through to the candidate's store when
        the candidate's socket cannot be opened (see :meth:`SocketTap.fall_back`)."""
        if decision.shadow is None or not sampled(request_id_of(request), feature.parity.sample):
            return None
        kind = tap_class(request.path)
        if kind is None:
            return None
        lines = lines_of(request.path, caller_of(request))
        return kind(self, feature, decision, request.raw_path, dict(headers), lines, fallback)

    # -- what copies and taps use (:class:`banyan.proxy.shadow.taps.TapHost`) ----------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` in the background; :meth:`stop` cancels it."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def endpoint(self, feature: str, method: str, path: str) -> str:
        """The endpoint a request counts under (ids collapsed, at most 200 per feature)."""
        return self.endpoints.key(feature, method, path)

    def tap_opened(self) -> None:
        self.taps += 1

    def tap_closed(self) -> None:
        self.taps -= 1

    def skip(self, feature: str, endpoint: str, reason: str) -> bool:
        """Count and record a comparison not made; always False (nothing was compared)."""
        assert self.state is not None
        self.state.metrics.shadow_skipped.inc(feature, reason)
        self.recorder.record(SkipRecord(feature, endpoint, reason))
        return False

    def waiting(self, backend: str, lines: list[Caller]) -> list[asyncio.Future[None]]:
        """The copies (writes, reads, socket frames) on their way to ``backend`` in ``lines``."""
        assert self.state is not None
        return pending(self.state.fence, backend, lines) + pending(self.reads, backend, lines)

    def hold_write(self, backend: str, lines: list[Caller]) -> Release:
        """Hold a place for a write on its way to ``backend`` in ``lines``."""
        assert self.state is not None
        return hold(self.state.fence, backend, lines)

    async def wait(self, earlier: list[asyncio.Future[None]], limit: float | None = None) -> bool:
        """Wait for the copies in ``earlier`` to arrive, at most ``limit`` (else the fence's
        limit); False when they had not."""
        assert self.state is not None
        return await self.state.fence.wait(earlier, limit)

    @property
    def stamps_asks(self) -> bool:
        return self.state is not None and self.state.stamper.enabled

    def ask_stamp(self, ms: int, path: str, turn: str) -> str | None:
        """A tutor ask's stamp for the candidate (None when writes are not stamped)."""
        return None if self.state is None else self.state.stamper.ask(ms, path, turn)

    def socket_to(self, backend: str, raw_path: str, headers: Mapping[str, str]) -> Any:
        """Open a socket to ``backend`` (``async with``). It lives as long as the user's: on the
        proxy's WebSocket session, never in the shadow pool that serves the HTTP copies."""
        state = self.state
        session = state.ws_session if state is not None else None
        assert state is not None and session is not None
        url = state.flags.backends[backend].url + raw_path
        return session.ws_connect(url, headers=headers, timeout=aiohttp.ClientWSTimeout(ws_close=2))

    def noise(self, feature: str, endpoint: str) -> NoisePredicate:
        """Whether a difference's path is learned noise for ``endpoint``."""
        return self.learner.predicate(feature, endpoint)

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
    ) -> None:
        """A comparison's result: to the metrics, the feature's guards and the parity recorder."""
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
            self.state.guard_feed.check(feature.name)
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

    async def reset(self, feature: str | None = None) -> int:
        """Start over (for ``feature``, or every feature): what is queued is written, then the
        store's rows, the learned noise and the endpoints counted are dropped, in memory too, so
        the running proxy learns again from nothing. Returns the rows deleted."""
        await self.recorder.flush()
        self.learner.clear(feature)
        self.endpoints.clear(feature)
        return await self.recorder.store.reset(feature)

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


def _bare(answer: Response) -> Response:
    """An answer without its headers and body, for a record that does not keep them."""
    return Response(answer.status, {}, b"", answer.latency_ms, answer.error)


def parity_url(flags_path: str | Path) -> str:
    return default_url(flags_path)  # the store `banyan parity report` reads by default


def shadow_from_env(flags_path: str | Path, settings: Settings | None = None) -> Shadow:
    """The proxy's shadow, its parity store from ``settings`` (by default the environment's now):
    ``BANYAN_PARITY_DB``, else ``.banyan/parity.db`` beside the flag file
    (:mod:`banyan.parity.location`)."""
    settings = settings if settings is not None else Settings.from_env(os.environ)
    url = store_url(settings.parity_db) if settings.parity_db else beside(flags_path)
    return Shadow(ParityRecorder(ParityStore(url)))
