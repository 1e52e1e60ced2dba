"""Contract: analytics — batched ingest with validation, hour-aligned summaries, idempotency.

Summaries must be exact at any moment (rollups plus events not rolled up yet) and reflect a
user's ingest at once, although they are cached.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from banyan.backends.contract.client import User, assert_error

pytestmark = pytest.mark.asyncio(loop_scope="session")

HOUR_MS = 3_600_000
SUMMARY_FIELDS = {"from", "to", "total", "by_name", "by_hour"}


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{ms % 1000:03d}Z"
    )


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def send(user: User, events: list[dict[str, Any]], **headers: str) -> dict[str, Any]:
    response = await user.client.post(
        "/api/analytics/events", json={"events": events}, headers=headers
    )
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


async def summary(user: User, **params: str) -> dict[str, Any]:
    response = await user.client.get("/api/analytics/summary", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == SUMMARY_FIELDS
    return body


async def test_ingest_then_summary_of_the_last_day(user: User) -> None:
    assert await send(user, [{"name": "quiz.started"}, {"name": "page_view"}]) == {"accepted": 2}
    assert await send(user, [{"name": "page_view", "properties": {"path": "/a"}}]) == {
        "accepted": 1
    }
    body = await summary(user)
    assert body["total"] == 3
    assert body["by_name"] == [
        {"name": "page_view", "count": 2},
        {"name": "quiz.started", "count": 1},
    ]
    assert sum(h["count"] for h in body["by_hour"]) == 3
    start, end = (datetime.strptime(body[k], "%Y-%m-%dT%H:%M:%S.%fZ") for k in ("from", "to"))
    assert start.minute == start.second == end.minute == end.second == 0
    assert 24 <= (end - start).total_seconds() / 3600 <= 25


async def test_ranges_are_hour_aligned_and_count_each_hour(user: User) -> None:
    now = now_ms()
    hour = now - now % HOUR_MS
    events = [
        {"name": "a", "at": iso(hour - 5 * HOUR_MS + 10)},
        {"name": "a", "at": iso(hour - 5 * HOUR_MS + 20)},
        {"name": "b", "at": iso(hour - 3 * HOUR_MS + 5)},
        {"name": "b", "at": iso(hour - 30 * HOUR_MS)},
    ]
    await send(user, events)
    body = await summary(
        user, **{"from": iso(hour - 5 * HOUR_MS + 999), "to": iso(hour - 3 * HOUR_MS + 1)}
    )
    assert (body["from"], body["to"]) == (iso(hour - 5 * HOUR_MS), iso(hour - 2 * HOUR_MS))
    assert body["by_hour"] == [
        {"hour": iso(hour - 5 * HOUR_MS), "count": 2},
        {"hour": iso(hour - 3 * HOUR_MS), "count": 1},
    ]
    assert body["by_name"] == [{"name": "a", "count": 2}, {"name": "b", "count": 1}]
    week = await summary(user, **{"from": iso(hour - 48 * HOUR_MS)})
    assert week["total"] == 4
    empty = await summary(user, **{"from": iso(hour - 2 * HOUR_MS), "to": iso(hour - HOUR_MS)})
    assert (empty["total"], empty["by_name"], empty["by_hour"]) == (0, [], [])


async def test_summaries_follow_each_ingest_at_once(user: User, other: User) -> None:
    assert (await summary(user))["total"] == 0
    for expected in (1, 2, 3):
        await send(user, [{"name": "tick"}])
        assert (await summary(user))["total"] == expected
        assert (await summary(other))["total"] == 0  # one user's events are theirs alone


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "body: must be a JSON object"),
        ({"events": [{"name": "a"}], "x": 1}, "x: is not a known field"),
        ({}, "events: is required"),
        ({"events": {"name": "a"}}, "events: must be a list"),
        ({"events": []}, "events: must have between 1 and 500 items"),
        ({"events": [{"name": "a"}] * 501}, "events: must have between 1 and 500 items"),
        ({"events": ["a"]}, "events[0]: must be an object"),
        ({"events": [{"name": "a"}, {"name": "a", "y": 1}]}, "events[1].y: is not a known field"),
        ({"events": [{"name": "Page View"}]}, "events[0].name: is invalid"),
        ({"events": [{}]}, "events[0].name: is invalid"),
        ({"events": [{"name": "a", "at": 5}]}, "events[0].at: must be a string"),
        ({"events": [{"name": "a", "at": "yesterday"}]}, "events[0].at: is invalid"),
        (
            {"events": [{"name": "a", "at": "2001-01-01T00:00:00Z"}]},
            "events[0].at: must be within the last 7 days",
        ),
        ({"events": [{"name": "a", "session_id": 1}]}, "events[0].session_id: must be a string"),
        (
            {"events": [{"name": "a", "session_id": "s" * 101}]},
            "events[0].session_id: must be at most 100 characters",
        ),
        ({"events": [{"name": "a", "properties": []}]}, "events[0].properties: must be an object"),
        (
            {"events": [{"name": "a", "properties": {"k": "v" * 5000}}]},
            "events[0].properties: must be at most 4096 bytes",
        ),
    ],
)
async def test_a_bad_batch_is_refused_whole(user: User, body: object, message: str) -> None:
    response = await user.client.post("/api/analytics/events", json=body)
    assert_error(response, 400, "validation_error", message)
    assert (await summary(user))["total"] == 0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"from": "soon"}, "from: is invalid"),
        ({"to": "2026-13-01T00:00:00Z"}, "to: is invalid"),
        ({"from": "2026-11-02T00:00:00Z", "to": "2026-11-01T00:00:00Z"}, "from: must be before to"),
    ],
)
async def test_summary_validation(user: User, params: dict[str, str], message: str) -> None:
    response = await user.client.get("/api/analytics/summary", params=params)
    assert_error(response, 400, "validation_error", message)


async def test_idempotent_batches_are_counted_once(user: User) -> None:
    key = {"Idempotency-Key": f"batch-{uuid.uuid4()}"}
    events = [{"name": "x"}, {"name": "y"}]
    first = await user.client.post("/api/analytics/events", json={"events": events}, headers=key)
    again = await user.client.post("/api/analytics/events", json={"events": events}, headers=key)
    assert first.status_code == again.status_code == 202
    assert again.json() == {"accepted": 2} and again.headers["Idempotent-Replayed"] == "true"
    clash = await user.client.post(
        "/api/analytics/events", json={"events": events[:1]}, headers=key
    )
    assert_error(clash, 409, "idempotency_conflict")
    assert (await summary(user))["total"] == 2
    read = await user.client.get("/api/analytics/summary", headers=key)  # reads ignore the key
    assert read.status_code == 200 and read.json()["total"] == 2


async def test_analytics_needs_a_token(user: User) -> None:
    anonymous = {"Authorization": ""}
    response = await user.client.post(
        "/api/analytics/events", json={"events": [{"name": "a"}]}, headers=anonymous
    )
    assert_error(response, 401, "unauthorized")
    response = await user.client.get("/api/analytics/summary", headers=anonymous)
    assert_error(response, 401, "unauthorized")
