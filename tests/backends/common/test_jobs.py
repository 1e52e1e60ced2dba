"""Tests of banyan/backends/common/jobs.py: settings from the environment, the backoff, error texts
and
the job object."""

from __future__ import annotations

import pytest

from banyan.backends.common import jobs as q
from banyan.backends.common.documents import ExtractionError
from banyan.backends.common.errors import UpstreamFailed


def test_settings_from_the_environment_and_overrides() -> None:
    env = {
        "BANYAN_JOB_BACKOFF": "0.5",
        "BANYAN_JOB_LEASE": "10",
        "BANYAN_JOB_MAX_ATTEMPTS": "7",
        "BANYAN_JOB_CONCURRENCY": " ",
    }
    settings = q.settings_from_env(env, lease=None, max_attempts=2)
    assert settings == q.JobSettings(backoff=0.5, lease=10.0, max_attempts=2, concurrency=4)
    assert settings.lease_ms == 10_000
    with pytest.raises(ValueError, match="BANYAN_JOB_BACKOFF must be positive"):
        q.settings_from_env({"BANYAN_JOB_BACKOFF": "0"})
    with pytest.raises(ValueError):
        q.settings_from_env({"BANYAN_JOB_LEASE": "soon"})


def test_the_nth_retry_waits_backoff_times_two_to_the_n_minus_one() -> None:
    settings = q.JobSettings(backoff=1.5)
    assert [q.retry_delay_ms(settings, n) for n in (1, 2, 3, 4)] == [1500, 3000, 6000, 12000]


def test_errors_are_contract_messages_or_type_and_text() -> None:
    assert q.describe(UpstreamFailed("the model failed (500)")) == "the model failed (500)"
    assert q.describe(ExtractionError("the PDF could not be read: x")) == (
        "the PDF could not be read: x"
    )
    assert q.describe(KeyError("name")) == "KeyError: 'name'"
    long = q.describe(RuntimeError("x" * 5000))
    assert len(long) == q.MAX_ERROR_CHARS and long.endswith("…")


def test_ids_and_rendering() -> None:
    assert q.job_id_for("document:a") == q.job_id_for("document:a") != q.job_id_for("document:b")
    assert q.periodic_job_id("k", q.periodic_slot(60_000, 120_500)) == q.periodic_job_id("k", 2)
    row = q.new_row("kind", {"b": 1}, settings=q.JobSettings(), now=1000, delay_ms=5)
    assert row["run_at_ms"] == 1005 and row["max_attempts"] == 5 and row["args"] == '{"b":1}'
    shown = q.render(row)
    assert shown["status"] == "queued" and shown["result"] is None
    assert shown["created_at"] == "1970-01-01T00:00:01.000Z"
    assert q.depth([("queued", 2), ("dead", 1)]) == {
        "queued": 2,
        "running": 0,
        "succeeded": 0,
        "failed": 0,
        "dead": 1,
    }
