"""Contract: quizzes — generation from a session, reading, attempts, validation, idempotency.

The backends write questions with the deterministic local model server, so identical sources give
identical quizzes (on one backend and across both). A document is a source once its processing
job made it ``ready``; before that, or when processing failed, it is ``422``.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from banyan.backends.common.ids import derived_id
from banyan.backends.contract.client import User, assert_error
from banyan.backends.contract.test_auth import parse_iso
from banyan.backends.contract.uploads import wait_settled

pytestmark = pytest.mark.asyncio(loop_scope="session")

QUIZ_FIELDS = {"id", "source", "count", "questions", "created_at"}
ATTEMPT_FIELDS = {"id", "quiz_id", "score", "total", "percent", "results", "created_at"}
RESULT_FIELDS = {"index", "correct", "given", "expected", "explanation"}
LESSON = (
    ("user", "How do plants turn sunlight into sugar?"),
    ("assistant", "Photosynthesis: chlorophyll captures light to build glucose from CO2."),
)


async def studied_session(user: User, title: str = "Photosynthesis") -> str:
    session = (await user.client.post("/api/sessions", json={"title": title})).json()
    for role, content in LESSON:
        response = await user.client.post(
            f"/api/sessions/{session['id']}/messages", json={"role": role, "content": content}
        )
        assert response.status_code == 201, response.text
    return str(session["id"])


async def new_quiz(user: User, session_id: str, count: int = 3, **headers: str) -> dict[str, Any]:
    response = await user.client.post(
        "/api/quizzes", json={"session_id": session_id, "count": count}, headers=headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def uploaded(user: User, name: str, data: bytes, *, wait: bool = True) -> dict[str, Any]:
    """Upload a document and (with ``wait``) wait until it is ready."""
    response = await user.client.post("/api/documents", files={"file": (name, data)})
    assert response.status_code == 202, response.text
    document: dict[str, Any] = response.json()
    if wait:
        document = await wait_settled(user.client, document["id"])
    assert document["status"] == "ready" or not wait, document
    return document


async def test_quiz_from_a_ready_document(user: User) -> None:
    text = b"Mitochondria produce ATP. Ribosomes build proteins from amino acids."
    document = await uploaded(user, "cells.txt", text)
    response = await user.client.post(
        "/api/quizzes", json={"document_id": document["id"], "count": 2}
    )
    assert response.status_code == 201, response.text
    quiz = response.json()
    assert quiz["source"] == {"kind": "document", "id": document["id"]} and quiz["count"] == 2
    # a PDF that cannot be read is never ready (queued for a retry, then failed)
    broken = await uploaded(user, "broken.pdf", b"%PDF-1.4 this is no pdf", wait=False)
    response = await user.client.post(
        "/api/quizzes", json={"document_id": broken["id"], "count": 1}
    )
    assert_error(response, 422, "unprocessable")


async def test_quiz_from_a_session_hides_the_answers(user: User) -> None:
    session_id = await studied_session(user)
    quiz = await new_quiz(user, session_id, 3)
    assert set(quiz) == QUIZ_FIELDS
    assert quiz["source"] == {"kind": "session", "id": session_id}
    assert quiz["count"] == len(quiz["questions"]) == 3
    parse_iso(quiz["created_at"])
    for index, question in enumerate(quiz["questions"]):
        assert set(question) == {"index", "question", "choices"}
        assert question["index"] == index and question["question"]
        assert len(question["choices"]) == 4 and all(question["choices"])
    got = await user.client.get(f"/api/quizzes/{quiz['id']}")
    assert got.status_code == 200 and got.json() == quiz


async def test_the_same_source_gives_the_same_questions(user: User) -> None:
    first = await new_quiz(user, await studied_session(user), 2)
    second = await new_quiz(user, await studied_session(user), 2)
    assert first["id"] != second["id"]
    assert first["questions"] == second["questions"]


async def test_attempts_are_scored_with_feedback(user: User) -> None:
    quiz = await new_quiz(user, await studied_session(user), 3)
    url = f"/api/quizzes/{quiz['id']}/attempts"
    response = await user.client.post(url, json={"answers": [0, 0, 0]})
    assert response.status_code == 201, response.text
    attempt = response.json()
    assert set(attempt) == ATTEMPT_FIELDS and attempt["quiz_id"] == quiz["id"]
    assert attempt["total"] == 3
    assert [r["index"] for r in attempt["results"]] == [0, 1, 2]
    for result in attempt["results"]:
        assert set(result) == RESULT_FIELDS
        assert result["given"] == 0 and 0 <= result["expected"] <= 3
        assert result["correct"] == (result["expected"] == 0) and result["explanation"]
    assert attempt["score"] == sum(r["correct"] for r in attempt["results"])
    assert attempt["percent"] == round(100 * attempt["score"] / 3, 1)
    perfect = await user.client.post(
        url, json={"answers": [r["expected"] for r in attempt["results"]]}
    )
    assert perfect.status_code == 201
    assert (perfect.json()["score"], perfect.json()["percent"]) == (3, 100.0)
    assert perfect.json()["id"] != attempt["id"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "body: must be a JSON object"),
        ({"count": 1, "topic": "x"}, "topic: is not a known field"),
        ({"session_id": 5, "count": 1}, "session_id: must be a string"),
        ({"document_id": "", "count": 1}, "document_id: must not be empty"),
        ({"session_id": "x" * 37, "count": 1}, "session_id: must be at most 36 characters"),
        ({"session_id": "s"}, "count: is required"),
        ({"session_id": "s", "count": "3"}, "count: must be an integer"),
        ({"session_id": "s", "count": 0}, "count: must be between 1 and 20"),
        ({"session_id": "s", "count": 21}, "count: must be between 1 and 20"),
        ({"count": 2}, "body: must contain exactly one of session_id, document_id"),
        (
            {"session_id": "s", "document_id": "d", "count": 2},
            "body: must contain exactly one of session_id, document_id",
        ),
    ],
)
async def test_create_validation(user: User, body: object, message: str) -> None:
    response = await user.client.post("/api/quizzes", json=body)
    assert_error(response, 400, "validation_error", message)


async def test_unknown_foreign_or_unready_sources(user: User, other: User) -> None:
    theirs = await studied_session(other)
    for source in (
        {"session_id": str(uuid.uuid4())},
        {"session_id": "not-a-uuid"},
        {"session_id": theirs},
        {"document_id": str(uuid.uuid4())},
    ):
        response = await user.client.post("/api/quizzes", json={**source, "count": 1})
        assert_error(response, 404, "not_found")
    empty = (await user.client.post("/api/sessions", json={"title": "empty"})).json()
    response = await user.client.post("/api/quizzes", json={"session_id": empty["id"], "count": 1})
    assert_error(response, 422, "unprocessable")


async def test_quizzes_are_private(user: User, other: User) -> None:
    quiz = await new_quiz(user, await studied_session(user), 1)
    assert_error(await other.client.get(f"/api/quizzes/{quiz['id']}"), 404, "not_found")
    response = await other.client.post(f"/api/quizzes/{quiz['id']}/attempts", json={"answers": [0]})
    assert_error(response, 404, "not_found")
    for bad in (str(uuid.uuid4()), "nope", quiz["id"].upper()):
        assert_error(await user.client.get(f"/api/quizzes/{bad}"), 404, "not_found")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "answers: is required"),
        ({"answers": [0, 1], "time": 3}, "time: is not a known field"),
        ({"answers": "0,1"}, "answers: must be a list"),
        ({"answers": [0]}, "answers: must have 2 items"),
        ({"answers": [0, 4]}, "answers[1]: must be between 0 and 3"),
        ({"answers": [True, 1]}, "answers[0]: must be between 0 and 3"),
    ],
)
async def test_attempt_validation(user: User, body: object, message: str) -> None:
    quiz = await new_quiz(user, await studied_session(user), 2)
    response = await user.client.post(f"/api/quizzes/{quiz['id']}/attempts", json=body)
    assert_error(response, 400, "validation_error", message)


async def test_idempotent_quizzes_and_attempts(user: User) -> None:
    session_id = await studied_session(user)
    body = {"session_id": session_id, "count": 2}
    key = {"Idempotency-Key": f"quiz-{uuid.uuid4()}"}
    first = await user.client.post("/api/quizzes", json=body, headers=key)
    again = await user.client.post("/api/quizzes", json=body, headers=key)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == derived_id("quiz", user.id, key["Idempotency-Key"])
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    read = await user.client.get(f"/api/quizzes/{first.json()['id']}", headers=key)
    assert read.status_code == 200 and read.json() == first.json()  # reads ignore the key
    clash = await user.client.post("/api/quizzes", json={**body, "count": 3}, headers=key)
    assert_error(clash, 409, "idempotency_conflict")
    url = f"/api/quizzes/{first.json()['id']}/attempts"
    akey = {"Idempotency-Key": f"attempt-{uuid.uuid4()}"}
    one = await user.client.post(url, json={"answers": [1, 2]}, headers=akey)
    two = await user.client.post(url, json={"answers": [1, 2]}, headers=akey)
    assert one.status_code == two.status_code == 201
    assert one.json()["id"] == derived_id("attempt", user.id, akey["Idempotency-Key"])
    assert two.json() == one.json() and two.headers["Idempotent-Replayed"] == "true"
    assert_error(
        await user.client.post(url, json={"answers": [2, 2]}, headers=akey),
        409,
        "idempotency_conflict",
    )


async def test_quizzes_need_a_token(user: User) -> None:
    session_id = await studied_session(user)
    client = user.client
    anonymous = {"Authorization": ""}
    for method, path, body in (
        ("POST", "/api/quizzes", {"session_id": session_id, "count": 1}),
        ("GET", f"/api/quizzes/{uuid.uuid4()}", None),
        ("POST", f"/api/quizzes/{uuid.uuid4()}/attempts", {"answers": [0]}),
    ):
        response = await client.request(method, path, json=body, headers=anonymous)
        assert_error(response, 401, "unauthorized")
