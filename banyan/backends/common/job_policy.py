"""The job queue's policy, the same on both backends: settings (from the environment), the retry
backoff, and a failure written as a job's ``error`` (:mod:`banyan.backends.common.jobs` moves the
rows).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from banyan.backends.common.documents import ExtractionError
from banyan.backends.common.errors import ApiError

MAX_ERROR_CHARS = 2000


@dataclass(frozen=True, slots=True)
class JobSettings:
    backoff: float = 1.0  # seconds; the n-th retry waits backoff * 2**(n-1)
    lease: float = 30.0  # seconds a claim lasts without a renewal
    max_attempts: int = 5
    concurrency: int = 4  # jobs one worker runs at once
    poll: float = 0.5  # seconds between looks at the table when nobody wakes the worker

    @property
    def lease_ms(self) -> int:
        return int(self.lease * 1000)


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    value = float(raw)
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {raw!r}")
    return value


def settings_from_env(env: Mapping[str, str] | None = None, **overrides: Any) -> JobSettings:
    """``BANYAN_JOB_BACKOFF``, ``BANYAN_JOB_LEASE``, ``BANYAN_JOB_MAX_ATTEMPTS`` and
    ``BANYAN_JOB_CONCURRENCY``; keyword overrides that are not None win."""
    source = os.environ if env is None else env
    values: dict[str, Any] = {
        "backoff": _number(source, "BANYAN_JOB_BACKOFF", 1.0),
        "lease": _number(source, "BANYAN_JOB_LEASE", 30.0),
        "max_attempts": int(_number(source, "BANYAN_JOB_MAX_ATTEMPTS", 5)),
        "concurrency": int(_number(source, "BANYAN_JOB_CONCURRENCY", 4)),
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return JobSettings(**values)


def retry_delay_ms(settings: JobSettings, attempts: int) -> int:
    """How long a job waits after its ``attempts``-th failed attempt."""
    return int(settings.backoff * 1000 * 2 ** max(attempts - 1, 0))


def describe(exc: BaseException) -> str:
    """A failure as a job's ``error``: the contract message of an API error, else type and text."""
    if isinstance(exc, ApiError):
        return clip_error(exc.message)
    if isinstance(exc, ExtractionError):
        return clip_error(str(exc))
    return clip_error(f"{type(exc).__name__}: {exc}")


def clip_error(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"
