"""The durable job queue's shared rules: the ``jobs`` table, its states, the statements that move a
job between states, and the job object of the contract (the retry policy and settings:
:mod:`banyan.backends.common.job_policy`, its names importable from here too).

Both backends keep a ``jobs`` table with these exact columns (created by :func:`define_table` on the
backend's own ``MetaData``, migration 3); each runs its own workers (legacy: a task pool; new:
scheduler-triggered functions) but moves rows with the statements below, so the two queues have
one behaviour:

- ``queued`` -> ``running`` by a *claim*: a conditional update that only succeeds on a row that is
  still claimable, so one worker gets it. Claimable: ``queued`` or ``failed`` and due, or
  ``running`` with an expired lease (its worker died). A claim counts an attempt and takes a lease
  (``lease_token``, ``lease_until_ms``) that the worker renews while the job runs.
- ``running`` -> ``succeeded`` | ``failed`` (due again after :func:`retry_delay_ms`) | ``dead``
  (after ``max_attempts``), only by the holder of the lease: a worker that lost its lease cannot
  overwrite what happened since, and a finished job is never claimable again.
- A worker that stops cleanly *releases* its jobs (the attempt does not count); a worker that dies
  leaves a lease that expires. An expired lease on a job's last attempt makes it ``dead``.

Priorities: higher first, then due time, then id. Periodic jobs get one id per kind and time slot
(:func:`periodic_job_id`), so replicas that tick at once enqueue each slot once.

Times: a job queued by a stamped write is created at the write's time (so both stores show the same
job), but due no later than this machine's clock says. A worker runs a job's handler at the time
the attempt was due (:attr:`ClaimedJob.due_ms`, :func:`banyan.backends.common.clock.frozen_at`),
so what a first attempt writes (a processed document's ``updated_ms``) is the same on both stores
however late each store's worker got to it; leases, retries and the job row itself use this
machine's clock.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.sql import Delete, Select, Update

from banyan.backends.common.clock import iso, now_ms, wall_ms
from banyan.backends.common.ids import NAMESPACE
from banyan.backends.common.job_policy import MAX_ERROR_CHARS as MAX_ERROR_CHARS
from banyan.backends.common.job_policy import JobSettings, clip_error, retry_delay_ms
from banyan.backends.common.job_policy import describe as describe
from banyan.backends.common.job_policy import settings_from_env as settings_from_env

T = TypeVar("T")
STATUSES = ("queued", "running", "succeeded", "failed", "dead")
FINISHED = ("succeeded", "dead")
PERIODIC_RETENTION_MS = 24 * 3600 * 1000


def define_table(metadata: MetaData) -> Table:
    return Table(
        "jobs",
        metadata,
        Column("id", String(36), primary_key=True),
        Column("user_id", String(36)),  # null for system jobs (periodic)
        Column("kind", String(100), nullable=False),
        Column("args", Text, nullable=False),
        Column("status", String(10), nullable=False),
        Column("priority", Integer, nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("max_attempts", Integer, nullable=False),
        Column("run_at_ms", BigInteger, nullable=False),
        Column("lease_token", String(36)),
        Column("lease_until_ms", BigInteger),
        Column("result", Text),
        Column("error", Text),
        Column("created_ms", BigInteger, nullable=False),
        Column("updated_ms", BigInteger, nullable=False),
        Index("ix_jobs_due", "status", "priority", "run_at_ms"),
        Index("ix_jobs_user", "user_id", "created_ms"),
    )


def job_id_for(owner: str) -> str:
    """The id of the job that belongs to ``owner`` (e.g. ``"document:<id>"``): the same on both
    backends, so a mirrored upload names the same job."""
    return str(uuid.uuid5(NAMESPACE, f"job:{owner}"))


def periodic_job_id(kind: str, slot: int) -> str:
    return job_id_for(f"periodic:{kind}:{slot}")


def periodic_slot(every_ms: int, now: int) -> int:
    return now // max(every_ms, 1)


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


# -- rows and statements -----------------------------------------------------------------------


def new_row(
    kind: str,
    args: Mapping[str, Any],
    *,
    settings: JobSettings,
    user_id: str | None = None,
    priority: int = 0,
    job_id: str | None = None,
    delay_ms: int = 0,
    max_attempts: int | None = None,
    now: int | None = None,
) -> dict[str, Any]:
    at = now_ms() if now is None else now
    due = min(at, wall_ms())  # a stamped write's time may run ahead of this machine's clock
    return {
        "id": job_id or str(uuid.uuid4()),
        "user_id": user_id,
        "kind": kind,
        "args": dumps(dict(args)),
        "status": "queued",
        "priority": priority,
        "attempts": 0,
        "max_attempts": max_attempts or settings.max_attempts,
        "run_at_ms": due + delay_ms,
        "lease_token": None,
        "lease_until_ms": None,
        "result": None,
        "error": None,
        "created_ms": at,
        "updated_ms": at,
    }


def _claimable(t: Table, now: int) -> ColumnElement[bool]:
    return or_(
        and_(t.c.status.in_(("queued", "failed")), t.c.run_at_ms <= now),
        and_(
            t.c.status == "running",
            t.c.lease_until_ms < now,
            t.c.attempts < t.c.max_attempts,
        ),
    )


def due_ids(t: Table, now: int, limit: int) -> Select[Any]:
    """Candidates for a claim, best first (priority, then due time, then id)."""
    return (
        select(t.c.id)
        .where(_claimable(t, now))
        .order_by(t.c.priority.desc(), t.c.run_at_ms, t.c.id)
        .limit(limit)
    )


def claim(t: Table, job_id: str, token: str, lease_ms: int, now: int) -> Update:
    """Take ``job_id`` if it is still claimable; ``rowcount == 1`` means it is ours."""
    return (
        update(t)
        .where(t.c.id == job_id, _claimable(t, now))
        .values(
            status="running",
            attempts=t.c.attempts + 1,
            lease_token=token,
            lease_until_ms=now + lease_ms,
            updated_ms=now,
        )
    )


def _held(t: Table, job_id: str, token: str) -> Update:
    return update(t).where(t.c.id == job_id, t.c.lease_token == token, t.c.status == "running")


def renew(t: Table, job_id: str, token: str, lease_ms: int, now: int) -> Update:
    return _held(t, job_id, token).values(lease_until_ms=now + lease_ms)


def succeed(t: Table, job_id: str, token: str, result: Any, now: int) -> Update:
    return _held(t, job_id, token).values(
        status="succeeded",
        result=dumps(result),
        error=None,
        lease_token=None,
        lease_until_ms=None,
        updated_ms=now,
    )


def fail(
    t: Table,
    job_id: str,
    token: str,
    *,
    attempts: int,
    max_attempts: int,
    error: str,
    settings: JobSettings,
    now: int,
) -> tuple[Update, str]:
    """The failure of an attempt: ``failed`` (due again after the backoff) or ``dead``."""
    dead = attempts >= max_attempts
    status = "dead" if dead else "failed"
    statement = _held(t, job_id, token).values(
        status=status,
        error=clip_error(error),
        lease_token=None,
        lease_until_ms=None,
        run_at_ms=now if dead else now + retry_delay_ms(settings, attempts),
        updated_ms=now,
    )
    return statement, status


def release(t: Table, job_id: str, token: str, now: int) -> Update:
    """A clean stop hands the job back at once; the interrupted attempt does not count."""
    return _held(t, job_id, token).values(
        status="queued",
        attempts=t.c.attempts - 1,
        lease_token=None,
        lease_until_ms=None,
        run_at_ms=now,
        updated_ms=now,
    )


def bury_expired(t: Table, now: int) -> Update:
    """Jobs whose worker died during their last attempt go to the dead letters."""
    return (
        update(t)
        .where(
            t.c.status == "running",
            t.c.lease_until_ms < now,
            t.c.attempts >= t.c.max_attempts,
        )
        .values(
            status="dead",
            error="the worker stopped during the last attempt (lease expired)",
            lease_token=None,
            lease_until_ms=None,
            updated_ms=now,
        )
    )


def next_due_ms(t: Table) -> Select[Any]:
    """When the earliest waiting job is due (None when nothing waits)."""
    return select(func.min(t.c.run_at_ms)).where(t.c.status.in_(("queued", "failed")))


def count_by_status(t: Table) -> Select[Any]:
    return select(t.c.status, func.count()).group_by(t.c.status)


def prune_periodic(t: Table, now: int) -> Delete:
    """Finished system jobs older than a day go (user jobs stay: their owners may ask)."""
    return delete(t).where(
        t.c.user_id.is_(None),
        t.c.status.in_(FINISHED),
        t.c.updated_ms < now - PERIODIC_RETENTION_MS,
    )


def depth(rows: Any) -> dict[str, int]:
    """``count_by_status`` rows as a dict with every status present."""
    found = {str(status): int(count) for status, count in rows}
    return {status: found.get(status, 0) for status in STATUSES}


# -- the job as the contract shows it ------------------------------------------------------------


def render(row: Mapping[Any, Any]) -> dict[str, Any]:
    result = row["result"]
    return {
        "id": row["id"],
        "kind": row["kind"],
        "status": row["status"],
        "attempts": row["attempts"],
        "max_attempts": row["max_attempts"],
        "priority": row["priority"],
        "result": json.loads(result) if result is not None else None,
        "error": row["error"],
        "created_at": iso(row["created_ms"]),
        "updated_at": iso(row["updated_ms"]),
    }


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job a worker holds: what to run, and the token that proves the lease."""

    id: str
    kind: str
    args: dict[str, Any]
    user_id: str | None
    attempts: int
    max_attempts: int
    token: str
    due_ms: int | None = None  # when this attempt was due: the time the job's writes carry

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> ClaimedJob:
        return cls(
            id=row["id"],
            kind=row["kind"],
            args=json.loads(row["args"]),
            user_id=row["user_id"],
            attempts=row["attempts"],
            max_attempts=row["max_attempts"],
            token=row["lease_token"],
            due_ms=row["run_at_ms"],
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "args": self.args,
            "user_id": self.user_id,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "token": self.token,
            "due_ms": self.due_ms,
        }


def new_token() -> str:
    return str(uuid.uuid4())


def metric_lines(service: str, counts: Mapping[str, int]) -> list[str]:
    """The queue depth by status as a Prometheus gauge family."""
    from banyan.backends.common.metrics import family

    return family(
        "banyan_jobs",
        "gauge",
        "Jobs in the queue by status.",
        (({"backend": service, "status": status}, counts.get(status, 0)) for status in STATUSES),
    )
