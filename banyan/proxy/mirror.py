"""The durable mirror queue: writes served by one backend, re-applied to the other.

With ``writes: mirror`` a successful unsafe request answered by one backend is also sent to the
other with the same ``Idempotency-Key`` (for a POST the proxy generates one when the client sent
none; PUT, PATCH and DELETE are idempotent as they are), so both stores hold the same records and a
flip back loses nothing (which writes go where: :func:`banyan.proxy.app.mirror_target`). Each such
write is first stored (:mod:`banyan.proxy.mirror_store`: a SQLite file or any SQLAlchemy URL), then
delivered by a background worker (:mod:`banyan.proxy.mirror_send`); failures — server errors, and a
401 or 404 that means an earlier write (the user's registration, the record written to) has not
reached the target yet (:mod:`banyan.proxy.mirror_rules`) — are retried with exponential backoff
(``base_delay * 2**attempt``, capped; the default 12 attempts ride out about two minutes of a
target's outage) and, after ``max_attempts``, kept as ``dead`` for an operator
to see in ``/_proxy/status`` and the metrics — never dropped silently. Delivered entries are
deleted. A write may carry a ``release`` callback (its :mod:`banyan.proxy.fence` hold): it is
called once the write is delivered, dead, skipped or the queue stops, so the user's next request to
the target stops waiting for it. Bodies larger than ``max_body`` are not mirrored and are counted
as ``skipped_too_large``.

This module owns the queue's life: intake from the request path, the worker, each delivery round
(lanes side by side, a round's outcome stored at once), the counters and the dead letters'
operations.

The stored request keeps the client's ``Authorization`` header: the other backend must act as the
same user. The queue's file therefore deserves the same protection as the stores. Each row also
keeps the write's stamp time and the user it acts for (:mod:`banyan.proxy.stamping`); every
delivery, a retry included, is sent with a ``mirror`` stamp of that original time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine

from banyan.engines import make_engine
from banyan.logs import get_logger
from banyan.parity.redact import redact_url
from banyan.proxy import mirror_send, mirror_store
from banyan.proxy.mirror_rules import due_lanes
from banyan.proxy.mirror_rules import outcome as outcome  # read by the shadow too
from banyan.proxy.stamping import Stamper, WriteStamp
from banyan.tasks import cancel_and_wait, finish_or_cancel

log = get_logger("banyan.proxy.mirror")

INTAKE_BATCH = 200

Failure = tuple[dict[str, Any], str, bool]  # (row, reason, refused by the target)


@dataclass(frozen=True, slots=True)
class MirrorStats:
    pending: int
    dead: int
    delivered: int
    retried: int
    skipped_too_large: int
    dropped: int = 0


class MirrorQueue:
    def __init__(
        self,
        url: str,
        *,
        max_attempts: int = 12,
        base_delay: float = 0.2,
        max_delay: float = 30.0,
        max_body: int = 1_048_576,
        poll_interval: float = 0.1,
        timeout: float = 10.0,
        lanes: int = 16,
    ) -> None:
        self.url = url
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_body = max_body
        self.poll_interval = poll_interval
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.lanes = lanes
        self.engine: AsyncEngine | None = None
        self.stamper: Stamper | None = None  # signs each delivery (set by the proxy app)
        self.backends: dict[str, str] = {}
        self._session: aiohttp.ClientSession | None = None
        self._worker: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._intake: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._intake_task: asyncio.Task[None] | None = None
        self._taking = 0  # writes taken from the intake, being stored
        self._releases: dict[int, Callable[[], None]] = {}
        self._storing = 0  # batches between their insert and their releases' registration
        self._settled: set[int] = set()  # rows delivered (or dead) in that gap, for _store
        # One round at a time: two would send a row twice, and the later one's outcome could
        # delete a row stored meanwhile under a reused id (SQLite reuses the ids of an emptied
        # table), a write lost.
        self._round = asyncio.Lock()
        self._stopping = False
        self.stop_grace = 2.0
        self.delivered = 0
        self.retried = 0
        self.skipped_too_large = 0
        self.dropped = 0  # dead letters an operator dropped

    async def start(self, session: aiohttp.ClientSession, backends: Mapping[str, str]) -> None:
        self._session = session
        self.backends = dict(backends)
        self.engine = make_engine(self.url)  # SQLite: WAL, reads never block a write
        await mirror_store.create_tables(self.engine)
        self._worker = asyncio.create_task(self._run(), name="mirror-queue")
        self._intake_task = asyncio.create_task(self._take_in(), name="mirror-intake")

    def set_backends(self, backends: Mapping[str, str]) -> None:
        self.backends = dict(backends)

    async def stop(self) -> None:
        if self._intake_task is not None:
            while not self._intake.empty():  # persist what was submitted before stopping
                await self.enqueue(**self._intake.get_nowait())
            await cancel_and_wait([self._intake_task])
        if self._worker is not None:
            self._stopping = True  # let a round in flight store its outcome, briefly
            self._wake.set()
            await finish_or_cancel([self._worker], self.stop_grace)
        if self.engine is not None:
            await self.engine.dispose()
        for release in self._releases.values():
            release()
        self._releases.clear()

    async def announce_intent(self, target: str, user: str | None) -> None:
        """A write of ``user``'s to ``target`` is about to join the queue: nothing to tell when
        one process holds the queue (a shared queue tells the other replicas:
        :class:`banyan.control.mirror.SharedMirrorQueue`)."""
        return None

    def submit(self, **write: Any) -> None:
        """Queue a write from the request path without waiting; writes are stored in the order
        they were submitted (an update mirrored after its create stays after it)."""
        self._intake.put_nowait(write)

    async def _take_in(self) -> None:
        """Store submitted writes, every write waiting at that moment in one transaction."""
        while True:
            batch = [await self._intake.get()]
            while not self._intake.empty() and len(batch) < INTAKE_BATCH:
                batch.append(self._intake.get_nowait())
            self._taking = len(batch)
            try:
                await self._store(batch)
            except Exception:
                log.exception("mirror_store_failed", paths=[w.get("path_qs") for w in batch])
                for write in batch:
                    release = write.get("release")
                    if release is not None:
                        release()
            finally:
                self._taking = 0

    async def enqueue(
        self,
        *,
        feature: str,
        target: str,
        method: str,
        path_qs: str,
        headers: Mapping[str, str],
        body: bytes,
        idempotency_key: str,
        release: Callable[[], None] | None = None,
        stamp: WriteStamp | None = None,
    ) -> bool:
        """Store a write for delivery to ``target`` (at ``stamp``'s time, for its user); False
        (and counted) when too large."""
        write = {
            "feature": feature,
            "target": target,
            "method": method,
            "path_qs": path_qs,
            "headers": headers,
            "body": body,
            "idempotency_key": idempotency_key,
            "release": release,
            "stamp": stamp,
        }
        return bool(await self._store([write]))

    async def _store(self, writes: list[dict[str, Any]]) -> int:
        """Insert writes in order in one transaction; too large ones are skipped (and counted)."""
        kept_writes = []
        for write in writes:
            release = write.get("release")
            if len(write["body"]) > self.max_body:
                self.skipped_too_large += 1
                log.warning(
                    "mirror_skipped_too_large",
                    feature=write["feature"],
                    path=redact_url(write["path_qs"]),
                    size=len(write["body"]),
                )
                if release is not None:
                    release()
            else:
                kept_writes.append(write)
        if not kept_writes:
            return 0
        assert self.engine is not None
        self._storing += 1  # a round running meanwhile may deliver a row before its release is
        try:  # registered below: _release notes it, and the release is called here at once
            ids = await mirror_store.insert_writes(self.engine, kept_writes)
            for write, row_id in zip(kept_writes, ids, strict=True):
                release = write.get("release")
                if release is None or row_id is None:
                    continue
                if row_id in self._settled:
                    release()
                else:
                    self._releases[row_id] = release
        finally:
            self._storing -= 1
            if not self._storing:
                self._settled.clear()
        self._wake.set()
        return len(kept_writes)

    async def _run(self) -> None:
        """Deliver due writes; sleep until the next one is due or a new one arrives (no polling
        of the database while the queue is empty)."""
        while not self._stopping:
            self._wake.clear()  # before looking: a write enqueued from now on wakes us again
            try:
                await self.deliver_due()
                wait = await self._seconds_to_next()
            except Exception:
                log.exception("mirror_worker_error")
                wait = self.poll_interval * 10
            if (wait is None or wait > 0) and not self._stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)

    async def _seconds_to_next(self) -> float | None:
        """Seconds until the earliest pending write is due (0 if one is due now), None if none."""
        assert self.engine is not None
        earliest = await mirror_store.earliest_due(self.engine)
        if earliest is None:
            return None
        return max(0.0, earliest - time.time())

    async def deliver_due(self, limit: int = 500) -> bool:
        """One round of delivery (:meth:`_deliver_round`), after any round in progress."""
        async with self._round:
            return await self._deliver_round(limit)

    async def _deliver_round(self, limit: int) -> bool:
        """One round of delivery; True if any write was attempted.

        Writes are grouped in lanes, one per target and user across features
        (:func:`~banyan.proxy.mirror_rules.lane_of`). Lanes are delivered side by side (at most
        ``lanes`` at once); within a lane writes go one after the other in id order, and a lane
        stops at its first write that is not due yet or fails, so one user's writes never
        overtake each other — a message is never mirrored before the session it belongs to, a
        logout never before the user's creates. A write the target refuses
        (:func:`~banyan.proxy.mirror_rules.outcome`) is dead at once, with the answer as its
        reason, and the lane goes on. The round's outcome is stored in one transaction; a write's
        ``release`` is called as soon as the target has it."""
        assert self.engine is not None
        rows = await mirror_store.pending_rows(self.engine, limit)
        lanes = due_lanes(rows, time.time())
        if not lanes:
            return False
        delivered: list[int] = []
        failed: list[Failure] = []
        gate = asyncio.Semaphore(self.lanes)

        async def run_lane(lane_rows: list[dict[str, Any]]) -> None:
            async with gate:
                await self._deliver_lane(lane_rows, delivered, failed)

        await asyncio.gather(*(run_lane(lane_rows) for lane_rows in lanes.values()))
        dead = await self._record_round(delivered, failed)
        self.delivered += len(delivered)  # counted once the deletion is committed
        self._report_failures(failed, dead)
        return True

    async def _deliver_lane(
        self, lane_rows: list[dict[str, Any]], delivered: list[int], failed: list[Failure]
    ) -> None:
        """A lane's writes one after the other, until one fails (a refused one is passed)."""
        for row in lane_rows:
            error, refused = await self._send(row)
            if error is not None:
                failed.append((row, error, refused))
                if refused:
                    continue  # kept as a dead letter; the user's next writes go on
                return
            delivered.append(row["id"])
            self._release(row["id"])

    async def _record_round(self, delivered: list[int], failed: list[Failure]) -> set[int]:
        """Store a round's outcome in one transaction: delivered rows deleted, failed ones
        rescheduled with backoff or dead; the ids now dead."""
        assert self.engine is not None
        dead: set[int] = set()
        async with self.engine.begin() as conn:
            await mirror_store.delete_rows(conn, delivered)
            for row, error, refused in failed:
                attempts = row["attempts"] + 1
                self.retried += 0 if refused else 1
                if refused or attempts >= self.max_attempts:
                    dead.add(row["id"])
                delay = min(self.max_delay, self.base_delay * 2 ** row["attempts"])
                await mirror_store.mark_failed(
                    conn,
                    row["id"],
                    attempts=attempts,
                    next_at=time.time() + delay,
                    dead=row["id"] in dead,
                    error=error,
                )
        return dead

    def _report_failures(self, failed: list[Failure], dead: set[int]) -> None:
        for row, error, _ in failed:
            is_dead = row["id"] in dead
            if is_dead:
                self._release(row["id"])
            log.warning(
                "mirror_dead" if is_dead else "mirror_retry",
                feature=row["feature"],
                path=redact_url(row["path_qs"]),
                attempts=row["attempts"] + 1,
                error=error,
            )

    async def _send(self, row: dict[str, Any]) -> tuple[str | None, bool]:
        """Deliver one stored write (:func:`banyan.proxy.mirror_send.send`)."""
        assert self._session is not None
        base = self.backends.get(row["target"])
        return await mirror_send.send(
            self._session, base, row, stamper=self.stamper, timeout=self.timeout
        )

    def _release(self, row_id: int) -> None:
        release = self._releases.pop(row_id, None)
        if release is not None:
            release()
        elif self._storing:  # delivered before _store registered its release (a leaked hold
            self._settled.add(row_id)  # would keep the user's requests waiting 2 s each)

    async def stats(self) -> MirrorStats:
        """The queue's figures; ``pending`` counts the writes submitted but not stored yet too
        (an empty queue means every write the proxy answered has reached its target)."""
        assert self.engine is not None
        submitted = self._intake.qsize() + self._taking  # before the look at the store: a write
        pending, dead = await mirror_store.counts(self.engine)  # stored meanwhile counts twice
        return MirrorStats(
            pending=pending + submitted,
            dead=dead,
            delivered=self.delivered,
            retried=self.retried,
            skipped_too_large=self.skipped_too_large,
            dropped=self.dropped,
        )

    async def dead_letters(self, limit: int = 50) -> list[dict[str, Any]]:
        """The dead letters, oldest first: each write's id, feature, target, method, path,
        attempts, ``reason`` (the last answer or failure), the write's time (``stamp_ms``, None
        when it was stored without one) and when it was queued (``created_at``, epoch seconds)."""
        assert self.engine is not None
        return await mirror_store.dead_rows(self.engine, limit)

    async def retry_dead(self, letter: int | None = None) -> int:
        """Give dead writes a fresh set of attempts (after an operator fixed the cause): one
        (``letter``, its id) or every one; how many were dead and are pending again."""
        assert self.engine is not None
        revived = await mirror_store.revive_dead(self.engine, letter)
        self._wake.set()
        return revived

    async def drop_dead(self, letter: int | None = None) -> int:
        """Delete dead writes the operator gave up on: one (``letter``) or every one; how many.
        Only dead letters: a pending write is never dropped from under its delivery."""
        assert self.engine is not None
        dropped = await mirror_store.delete_dead(self.engine, letter)
        self.dropped += dropped
        if dropped:
            log.warning(
                "mirror_dropped", letter=letter if letter is not None else "all", count=dropped
            )
        return dropped
