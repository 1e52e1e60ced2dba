"""HTTP copies: send a sampled request's copy to the candidate, compare it, record the result.

A copy leaves after the primary answered and after its caller's earlier copies
(:mod:`banyan.proxy.shadow.order`); :mod:`banyan.proxy.shadow.send` sends it. A
compared write that may not have reached the candidate's store also goes to the mirror queue.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web
from multidict import MultiDict

from banyan.parity.compare import Response, Rules, compare
from banyan.parity.models import NoiseRecord
from banyan.proxy.fence import WRITE_COPY_WAIT
from banyan.proxy.flags import Feature, ParityConfig
from banyan.proxy.forward import Exchange
from banyan.proxy.mirror import outcome
from banyan.proxy.routing import Decision
from banyan.proxy.shadow.order import (
    RESERVED,
    SAFE,
    Caller,
    Reservation,
    caller_of,
    hold,
    lines_of,
    pending,
    sampled,
)
from banyan.proxy.shadow.send import Copy
from banyan.proxy.upstream import origin_of

if TYPE_CHECKING:
    from banyan.proxy.shadow.core import Shadow


@functools.lru_cache(maxsize=64)
def rules_of(parity: ParityConfig) -> Rules:
    """A feature's comparison rules (one per distinct ``parity:`` block, not one per copy)."""
    return Rules.from_config(parity)


def undelivered(primary_status: int, candidate: Response, method: str = "POST") -> bool:
    """Whether a write the primary took (2xx) may be missing from the candidate's store: its copy
    got no answer (timed out, refused, cut short), or an answer that did not take
    it (a 5xx, a 401 or 404 that means an earlier write has not landed yet, any other refusal).
    Such a write goes to the mirror queue, which retries it and keeps a refusal as a dead letter
    with its reason, besides the comparison reporting the difference: nothing is lost silently."""
    if not 200 <= primary_status < 300:
        return False
    if candidate.error is not None:
        return candidate.error != "body_too_large"  # too large: it did answer
    return outcome(method, candidate.status) != "done"


class HttpCopies:
    """The shadow's HTTP side: which requests are copied, their place in line, and the copy."""

    def __init__(self, shadow: Shadow) -> None:
        self.shadow = shadow

    def wants(
        self, feature: Feature, decision: Decision, method: str, request_id: str, path: str
    ) -> bool:
        """Whether this request is to be copied. A sampled request whose candidate rests (its
        breaker open, the probe not yet due) is skipped here, as ``candidate_failing``, before it
        takes a place in line or has its bodies kept; a write goes to the mirror queue instead."""
        if decision.mode != "shadow" or decision.shadow is None:
            return False
        if method not in SAFE and feature.writes != "mirror":
            return False
        if not sampled(request_id, feature.parity.sample):
            return False
        if self.shadow.breaker.resting(decision.shadow):
            endpoint = self.shadow.endpoints.key(feature.name, method, path)
            return self.shadow.skip(feature.name, endpoint, "candidate_failing")
        return True

    def reserve(self, feature: Feature, decision: Decision, request: web.Request) -> Reservation:
        """Take this request's place in its caller's line (see :meth:`Shadow.reserve`)."""
        state = self.shadow.state
        assert state is not None and decision.shadow is not None
        caller = caller_of(request)
        lines = lines_of(request.path, caller)
        fence = self.shadow.reads if request.method in SAFE else state.fence
        earlier = pending(state.fence, decision.shadow, lines)
        if request.method not in SAFE:
            earlier += pending(self.shadow.reads, decision.shadow, lines)
        release = hold(fence, decision.shadow, lines)
        lapse = asyncio.get_running_loop().call_later(feature.parity.shadow_timeout + 1, release)
        reservation = Reservation(earlier, release, lapse, caller)
        request[RESERVED] = reservation
        return reservation

    def _skip_reserved(
        self, request: web.Request, feature: str, endpoint: str, reason: str
    ) -> bool:
        reservation = request.pop(RESERVED, None)
        if reservation is not None:
            reservation.cancel()
        return self.shadow.skip(feature, endpoint, reason)

    def submit(
        self,
        feature: Feature,
        decision: Decision,
        request: web.Request,
        exchange: Exchange,
    ) -> bool:
        """Start comparing one answered request; False when it is skipped (and recorded so)."""
        shadow = self.shadow
        assert shadow.state is not None and decision.shadow is not None
        endpoint = shadow.endpoints.key(feature.name, exchange.method, request.path)
        primary_body = exchange.response_capture.value() if exchange.response_capture else None
        request_body = exchange.request_capture.value() if exchange.request_capture else b""
        if primary_body is None or request_body is None:
            return self._skip_reserved(request, feature.name, endpoint, "body_too_large")
        if shadow.inflight >= shadow.max_inflight:
            return self._skip_reserved(request, feature.name, endpoint, "too_many_in_flight")
        if not shadow.breaker.allows(decision.shadow):
            return self._skip_reserved(request, feature.name, endpoint, "candidate_failing")
        reservation = request.get(RESERVED) or self.reserve(feature, decision, request)
        reservation.take_over()
        writer = reservation.caller if request.method not in SAFE else None
        primary = Response(
            exchange.status,
            exchange.response_headers or MultiDict(),  # names lower-cased by relay
            primary_body,
            exchange.round_trip * 1000,  # its own round trip, as the candidate's is measured
        )
        shadow.inflight += 1
        copy = _Copy(feature, decision, exchange, request_body, primary, endpoint)
        shadow.spawn(self._compare(copy, reservation, writer))
        return True

    async def _send(self, backend: str, copy: _Copy) -> Response:
        """Send ``backend`` the request the primary was sent: the same head (but for ``Host``
        under ``host: backend``) and body, by the same upstream client.

        A copy of a write the primary accepted acts for the request's user whatever its token
        says by then (a ``mirror`` stamp: the user may have logged out meanwhile); a copy of a
        write the primary refused carries only the write's time (a ``primary`` stamp), so the
        candidate judges the same credentials the primary judged and the two refusals compare."""
        state, exchange = self.shadow.state, copy.exchange
        assert state is not None and exchange.outbound is not None
        spec = state.flags.backends[backend]
        outbound = exchange.outbound
        origin = origin_of(spec.url)
        # a copy of a write: the primary's time (banyan/stamps.py)
        stamp = state.stamper.line(
            exchange.stamp, origin.target(outbound.target), mirror=copy.primary.status < 400
        )
        return await self.shadow.sender.send(
            Copy(
                exchange.method,
                spec.url,
                outbound.head(origin, spec.host, stamp),
                copy.body,
                outbound.chunked,
                copy.feature.parity.shadow_timeout,
                copy.feature.parity.max_body_bytes,
            )
        )

    async def _compare(self, copy: _Copy, reservation: Reservation, writer: Caller | None) -> None:
        """Send the copy (after the caller's earlier copies), then compare and record. A write's
        copy (``writer``: who wrote) that may not have reached the candidate's store goes to the
        mirror queue as well, before the next copy in the caller's line may leave."""
        release: Any = reservation.release
        try:
            state, candidate_backend = self.shadow.state, copy.decision.shadow
            assert candidate_backend is not None and state is not None
            # a write's copy sent early would change what the candidate stores: it waits longer
            limit = None if writer is None else WRITE_COPY_WAIT
            in_order = await state.fence.wait(reservation.earlier, limit)
            await state.gaps.wait()  # the users' requests first
            try:
                candidate = await self._send(candidate_backend, copy)
                if writer is not None and undelivered(
                    copy.primary.status, candidate, copy.exchange.method
                ):
                    state.write_mirror.enqueue(
                        copy.feature, copy.exchange, copy.headers(), candidate_backend, *writer
                    )
            finally:
                release()
                release = None
            if in_order or candidate.error is not None or candidate.status >= 500:
                await self._judge(copy, candidate)  # a failure is the candidate's in any order
            else:  # sent before the caller's earlier writes landed: its answer proves nothing
                self.shadow.breaker.observe(candidate_backend, failed=False)  # but it answered
                self.shadow.skip(copy.feature.name, copy.endpoint, "earlier_writes_late")
        finally:
            if release is not None:
                release()
            self.shadow.inflight -= 1

    async def _judge(self, copy: _Copy, candidate: Response) -> None:
        """Compare the candidate's answer with the primary's (learning noise on the way)."""
        shadow, feature, endpoint = self.shadow, copy.feature, copy.endpoint
        assert shadow.state is not None and copy.decision.shadow is not None
        shadow.breaker.observe(
            copy.decision.shadow, failed=candidate.error not in (None, "body_too_large")
        )
        if candidate.error == "body_too_large":
            shadow.skip(feature.name, endpoint, "body_too_large")
            return
        await shadow.state.gaps.wait()  # reading the answer is the loop's work too
        rules = rules_of(feature.parity)
        exchange = copy.exchange
        if exchange.method in SAFE and sampled(
            exchange.request_id, feature.parity.noise_sample, "noise"
        ):
            again = await self._send(copy.decision.backend, copy)
            if again.error is None:
                found = shadow.learner.observe(feature.name, endpoint, copy.primary, again, rules)
                if found:
                    shadow.recorder.record(NoiseRecord(feature.name, endpoint, found))
        noise = shadow.learner.predicate(feature.name, endpoint)
        result = compare(copy.primary, candidate, rules, noise=noise)
        shadow.record(
            feature,
            endpoint,
            exchange.method,
            exchange.path_qs,
            {} if result.match and not result.error else copy.headers(),  # a match keeps none
            copy.body,
            copy.decision,
            copy.primary,
            candidate,
            result,
        )


@dataclass(frozen=True, slots=True)
class _Copy:
    """One answered request to copy: what the primary was sent and what it answered."""

    feature: Feature
    decision: Decision
    exchange: Exchange
    body: bytes
    primary: Response
    endpoint: str

    def headers(self) -> dict[str, str]:
        """The headers the primary was sent but ``Host``, as text: worked out only for what keeps
        them (a mismatch's record, the mirror queue), not for every copy."""
        assert self.exchange.outbound is not None
        return dict(self.exchange.outbound.mapping())
