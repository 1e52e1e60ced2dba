"""The durable mirror queue: writes served by one backend, re-applied to the other.

With ``writes: mirror`` a successful unsafe request answered by one backend is also sent to the
other with the same ``Idempotency-Key`` (for a POST the proxy generates one when the client sent
none; PUT, PATCH and DELETE are idempotent as they are), so both stores hold the same records and a
flip back loses nothing (which writes go where: :func:`banyan.proxy.app.mirror_target`). Each such
write is
first stored here (SQLite file or any SQLAlchemy URL), then delivered by a background worker;
failures — server errors, and a 401 or 404 that means an earlier write (the user's registration, the
record written to) has not reached the target yet — are retried with exponential backoff
(``base_delay * 2**attempt``, capped) and, after ``max_attempts``, kept as ``dead`` for an operator
to see in ``/_proxy/status`` and the metrics — never dropped silently. Delivered entries are
deleted. A write may carry a ``release`` callback (its :mod:`banyan.proxy.fence` hold): it is
called once
the write is delivered, dead, skipped or the queue stops, so the user's next request to the target
stops waiting for it. Bodies larger than ``max_body`` are not mirrored and are counted as
``skipped_too_large``.

The stored request keeps the client's ``Authorization`` header: the other backend must act as the
same user. The queue's file therefore deserves the same protection as the stores. Each row also
keeps the write's stamp time and the user it acts for (:mod:`banyan.proxy.stamping`); every
delivery, a retry included, is sent with a ``mirror`` stamp of that original time, signed when it
leaves, so the target stores the write's own times and accepts it even after the user's token
was revoked or expired. (A queue file from before these columns gains them when opened.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
import yarl
from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from banyan import stamps
from banyan.backends.common.engines import make_engine
from banyan.backends.common.ids import user_id_for
from banyan.logs import get_logger
from banyan.parity.redact import redact_url
from banyan.proxy.routing import user_from_authorization
from banyan.proxy.stamping import Stamper, WriteStamp
from banyan.proxy.upstream.origin import origin_of
from banyan.tasks import cancel_and_wait, finish_or_cancel

log = get_logger("banyan.proxy.mirror")

metadata = MetaData()
mirror_writes = Table(
    "banyan_mirror_writes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("feature", String(200), nullable=False),
    Column("target", String(20), nullable=False),
    Column("method", String(10), nullable=False),
    Column("path_qs", Text, nullable=False),
    Column("headers", Text, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("idempotency_key", String(200), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_at", Float, nullable=False, index=True),
    Column("status", String(10), nullable=False, index=True),  # pending | dead
    Column("last_error", Text),
    Column("created_at", Float, nullable=False),
    Column("stamp_ms", BigInteger),  # the write's time: every delivery is stamped with it
    Column("user_id", String(64)),  # the user a delivery acts for (its mirror stamp's user)
)
# Columns added after the first release, with their SQL types: added to an older queue file.
LATER_COLUMNS = {"stamp_ms": "BIGINT", "user_id": "VARCHAR(64)"}


def _add_later_columns(conn: Connection) -> None:
    have = {c["name"] for c in inspect(conn).get_columns(mirror_writes.name)}
    for name, sql_type in LATER_COLUMNS.items():
        if name not in have:
            conn.execute(text(f"ALTER TABLE {mirror_writes.name} ADD COLUMN {name} {sql_type}"))


INTAKE_BATCH = 200


Outcome = Literal["done", "retry", "refused"]


def outcome(method: str, status: int) -> Outcome:
    """What a target's answer to a delivered write means: ``done`` (it has the write: 2xx/3xx,
    or a DELETE of what is not there), ``retry`` (:func:`not_yet`), or ``refused`` (any other
    4xx: the target will not take this write as it stands — a dead letter at once, with the
    answer as its reason, for an operator to fix and retry or drop)."""
    if not_yet(method, status):
        return "retry"
    if status < 400 or (status == 404 and method.upper() == "DELETE"):
        return "done"
    return "refused"


def not_yet(method: str, status: int) -> bool:
    """Whether an answer means "not yet": server trouble, or a 401/404 from a target that has not
    received an earlier write yet — the registration that creates the user (mirrored in another
    lane, the caller had no token) or the record this write refers to. A DELETE that finds nothing
    is done."""
    if status >= 500 or status in (408, 429):
        return True
    if status == 404:
        return method.upper() != "DELETE"
    return status == 401


REGISTER_PATH = "/api/auth/register"


def lane_of(row: Mapping[str, Any]) -> str:
    """The delivery lane of a stored write: its user, whatever the feature — the user its stamp
    acts for, else its token's ``sub``, else, for a registration (no token yet), the id the
    backends derive from its e-mail (``ids.user_id_for``), so the user's first writes wait
    behind the registration that creates them; else its credentials."""
    if row.get("user_id"):
        return str(row["user_id"])
    auth = json.loads(row["headers"]).get("authorization", "")
    user = user_from_authorization(auth, None)
    if user:
        return user
    if not auth and row["path_qs"].split("?", 1)[0] == REGISTER_PATH:
        email = _email_of(row["body"])
        if email:
            return user_id_for(email)
    return str(auth)


def _detail(body: bytes) -> str:
    """`` <code>: <message>`` of a JSON error body (docs/api.md), else nothing; at most 300
    characters: a dead letter's reason says what the target objected to."""
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return ""
    if not isinstance(error, dict):
        return ""
    return f" {error.get('code', '')}: {error.get('message', '')}"[:300]


def _email_of(body: bytes) -> str | None:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    email = document.get("email") if isinstance(document, dict) else None
    return email if isinstance(email, str) and email else None


FORWARDED_HEADERS = ("authorization", "content-type", "cookie", "accept", "x-request-id")


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
        max_attempts: int = 8,
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
        self._releases: dict[int, Callable[[], None]] = {}
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
        async with self.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
            await conn.run_sync(_add_later_columns)
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
            try:
                await self._store(batch)
            except Exception:
                log.exception("mirror_store_failed", paths=[w.get("path_qs") for w in batch])
                for write in batch:
                    release = write.get("release")
                    if release is not None:
                        release()

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
        now = time.time()
        assert self.engine is not None
        async with self.engine.begin() as conn:
            for write in kept_writes:
                headers = write["headers"]
                stamp: WriteStamp | None = write.get("stamp")
                kept = {k.lower(): v for k, v in headers.items() if k.lower() in FORWARDED_HEADERS}
                if write["idempotency_key"]:
                    kept["idempotency-key"] = write["idempotency_key"]
                result = await conn.execute(
                    mirror_writes.insert().values(
                        feature=write["feature"],
                        target=write["target"],
                        method=write["method"],
                        path_qs=write["path_qs"],
                        headers=json.dumps(kept),
                        body=write["body"],
                        idempotency_key=write["idempotency_key"],
                        attempts=0,
                        next_at=now,
                        status="pending",
                        created_at=now,
                        stamp_ms=None if stamp is None else stamp.ms,
                        user_id=None if stamp is None else stamp.user,
                    )
                )
                release = write.get("release")
                if release is not None and result.inserted_primary_key is not None:
                    self._releases[int(result.inserted_primary_key[0])] = release
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
        async with self.engine.connect() as conn:
            earliest = (
                await conn.execute(
                    select(func.min(mirror_writes.c.next_at)).where(
                        mirror_writes.c.status == "pending"
                    )
                )
            ).scalar()
        if earliest is None:
            return None
        return max(0.0, float(earliest) - time.time())

    async def deliver_due(self, limit: int = 500) -> bool:
        """One round of delivery; True if any write was attempted.

        Writes are grouped in lanes, one per target and user across features (:func:`lane_of`).
        Lanes are delivered side by side (at most ``lanes`` at once); within a lane writes go one
        after the other in id order, and a lane stops at its first write that is not due yet or
        fails, so one user's writes never overtake each other — a message is never mirrored
        before the session it belongs to, a logout never before the user's creates. A write the
        target refuses (:func:`outcome`) is dead at once, with the answer as its reason, and the
        lane goes on. The round's outcome is stored in one transaction; a write's ``release`` is
        called as soon as the target has it."""
        assert self.engine is not None
        async with self.engine.connect() as conn:
            rows = (
                (
                    await conn.execute(
                        select(mirror_writes)
                        .where(mirror_writes.c.status == "pending")
                        .order_by(mirror_writes.c.id)
                        .limit(limit)
                    )
                )
                .mappings()
                .all()
            )
        now = time.time()
        lanes: dict[tuple[str, str], list[dict[str, Any]]] = {}
        blocked: set[tuple[str, str]] = set()
        for found in rows:
            row = dict(found)
            lane = (row["target"], lane_of(row))
            if lane in blocked:
                continue
            if row["next_at"] > now:
                blocked.add(lane)  # an earlier write of this lane waits for its retry
                continue
            lanes.setdefault(lane, []).append(row)
        if not lanes:
            return False
        delivered: list[int] = []
        failed: list[tuple[dict[str, Any], str, bool]] = []  # (row, reason, refused)
        gate = asyncio.Semaphore(self.lanes)

        async def run_lane(lane_rows: list[dict[str, Any]]) -> None:
            async with gate:
                for row in lane_rows:
                    error, refused = await self._send(row)
                    if error is not None:
                        failed.append((row, error, refused))
                        if refused:
                            continue  # kept as a dead letter; the user's next writes go on
                        return
                    delivered.append(row["id"])
                    self._release(row["id"])

        await asyncio.gather(*(run_lane(lane_rows) for lane_rows in lanes.values()))
        dead: list[int] = []
        async with self.engine.begin() as conn:
            if delivered:
                await conn.execute(mirror_writes.delete().where(mirror_writes.c.id.in_(delivered)))
            for row, error, refused in failed:
                attempts = row["attempts"] + 1
                self.retried += 0 if refused else 1
                if refused or attempts >= self.max_attempts:
                    dead.append(row["id"])
                delay = min(self.max_delay, self.base_delay * 2 ** row["attempts"])
                await conn.execute(
                    mirror_writes.update()
                    .where(mirror_writes.c.id == row["id"])
                    .values(
                        attempts=attempts,
                        next_at=time.time() + delay,
                        status="dead" if row["id"] in dead else "pending",
                        last_error=error,
                    )
                )
        self.delivered += len(delivered)  # counted once the deletion is committed
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
        return True

    async def _send(self, row: dict[str, Any]) -> tuple[str | None, bool]:
        """Deliver one stored write: (None, False) when the target has it, else why not and
        whether the target refused it (no retry will change its answer)."""
        assert self._session is not None
        base = self.backends.get(row["target"])
        if base is None:
            return f"no backend named {row['target']}", False
        try:
            origin = origin_of(base)
            target = origin.target(row["path_qs"].encode()).decode()
            headers = json.loads(row["headers"])
            stamp = self._stamp(row, target, headers)
            if stamp is not None:
                headers[stamps.HEADER] = stamp
            parts = urlsplit(base)
            url = yarl.URL(f"{parts.scheme}://{parts.netloc}{target}", encoded=True)
            async with self._session.request(
                row["method"],
                url,
                headers=headers,
                data=row["body"],
                timeout=self.timeout,
            ) as response:
                body = await response.read()
                verdict = outcome(row["method"], response.status)
                if verdict != "done":
                    reason = f"{row['target']} answered {response.status}{_detail(body)}"
                    return reason, verdict == "refused"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"{type(exc).__name__}: {exc}", False
        return None, False

    def _stamp(self, row: dict[str, Any], target: str, headers: dict[str, str]) -> str | None:
        """The ``mirror`` stamp of a stored write at its original time, for ``target`` as the
        backend receives it; None for a write stored without a time (or without a secret)."""
        if self.stamper is None or row.get("stamp_ms") is None:
            return None
        write = WriteStamp(
            int(row["stamp_ms"]), row["method"].upper(), stamps.binding_key(headers), row["user_id"]
        )
        return self.stamper.value(write, target, mirror=True)

    def _release(self, row_id: int) -> None:
        release = self._releases.pop(row_id, None)
        if release is not None:
            release()

    async def stats(self) -> MirrorStats:
        assert self.engine is not None
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(mirror_writes.c.status, mirror_writes.c.id))).all()
        pending = sum(1 for status, _ in rows if status == "pending")
        return MirrorStats(
            pending=pending,
            dead=len(rows) - pending,
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
        async with self.engine.connect() as conn:
            rows = (
                (
                    await conn.execute(
                        select(
                            mirror_writes.c.id,
                            mirror_writes.c.feature,
                            mirror_writes.c.target,
                            mirror_writes.c.method,
                            mirror_writes.c.path_qs,
                            mirror_writes.c.attempts,
                            mirror_writes.c.last_error,
                            mirror_writes.c.stamp_ms,
                            mirror_writes.c.created_at,
                        )
                        .where(mirror_writes.c.status == "dead")
                        .order_by(mirror_writes.c.id)
                        .limit(limit)
                    )
                )
                .mappings()
                .all()
            )
        return [{**dict(r), "reason": r["last_error"]} for r in rows]

    async def retry_dead(self, letter: int | None = None) -> int:
        """Give dead writes a fresh set of attempts (after an operator fixed the cause): one
        (``letter``, its id) or every one; how many were dead and are pending again."""
        assert self.engine is not None
        query = mirror_writes.update().where(mirror_writes.c.status == "dead")
        if letter is not None:
            query = query.where(mirror_writes.c.id == letter)
        async with self.engine.begin() as conn:
            result = await conn.execute(
                query.values(status="pending", attempts=0, next_at=time.time())
            )
        self._wake.set()
        return int(result.rowcount or 0)

    async def drop_dead(self, letter: int | None = None) -> int:
        """Delete dead writes the operator gave up on: one (``letter``) or every one; how many.
        Only dead letters: a pending write is never dropped from under its delivery."""
        assert self.engine is not None
        query = mirror_writes.delete().where(mirror_writes.c.status == "dead")
        if letter is not None:
            query = query.where(mirror_writes.c.id == letter)
        async with self.engine.begin() as conn:
            result = await conn.execute(query)
        dropped = int(result.rowcount or 0)
        self.dropped += dropped
        if dropped:
            log.warning(
                "mirror_dropped", letter=letter if letter is not None else "all", count=dropped
            )
        return dropped
