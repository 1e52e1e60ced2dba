"""Contract: register, login, logout, me — success, validation order and every error code."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import httpx
import pytest

from banyan.backends.common.ids import derived_id, user_id_for
from banyan.backends.contract.client import (
    PASSWORD,
    User,
    assert_error,
    authed,
    register,
    unique_email,
)
from banyan.backends.contract.targets import Target

pytestmark = pytest.mark.asyncio(loop_scope="session")

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def parse_iso(text: str) -> datetime:
    assert ISO_MS.match(text), text
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


async def test_register_answers_user_token_and_expiry(anon: httpx.AsyncClient) -> None:
    email = unique_email("MixedCase")
    response = await anon.post(
        "/api/auth/register", json={"email": f"  {email}  ", "password": PASSWORD, "name": " Ada "}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"user", "token", "expires_at"}
    user = body["user"]
    assert set(user) == {"id", "email", "name", "created_at"}
    assert user["email"] == email.lower()
    assert user["id"] == user_id_for(email)
    assert user["name"] == "Ada"
    parse_iso(user["created_at"])
    assert parse_iso(body["expires_at"]) > datetime.now(UTC)
    assert body["token"].count(".") == 2


async def test_register_same_email_is_email_taken(anon: httpx.AsyncClient, user: User) -> None:
    response = await anon.post(
        "/api/auth/register",
        json={"email": user.email.upper(), "password": PASSWORD, "name": "Again"},
    )
    assert_error(response, 409, "email_taken")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "body: must be a JSON object"),
        ("text", "body: must be a JSON object"),
        (
            {"email": "a@b.co", "password": PASSWORD, "name": "n", "zz": 1},
            "zz: is not a known field",
        ),
        ({"password": PASSWORD, "name": "n", "admin": True}, "admin: is not a known field"),
        ({"password": PASSWORD, "name": "n"}, "email: is required"),
        ({"email": 5, "password": 3, "name": 1}, "email: must be a string"),
        ({"email": "nope", "password": PASSWORD, "name": "n"}, "email: must be an email address"),
        (
            {"email": "x" * 250 + "@b.co", "password": PASSWORD, "name": "n"},
            "email: must be at most 254 characters",
        ),
        ({"email": "a@b.co", "name": "n"}, "password: is required"),
        ({"email": "a@b.co", "password": 12345678, "name": "n"}, "password: must be a string"),
        (
            {"email": "a@b.co", "password": "short", "name": "n"},
            "password: must be at least 8 characters",
        ),
        (
            {"email": "a@b.co", "password": "p" * 201, "name": "n"},
            "password: must be at most 200 characters",
        ),
        ({"email": "a@b.co", "password": PASSWORD}, "name: is required"),
        ({"email": "a@b.co", "password": PASSWORD, "name": "   "}, "name: must not be empty"),
        (
            {"email": "a@b.co", "password": PASSWORD, "name": "n" * 101},
            "name: must be at most 100 characters",
        ),
    ],
)
async def test_register_validation_in_order(
    anon: httpx.AsyncClient, body: object, message: str
) -> None:
    response = await anon.post("/api/auth/register", json=body)
    assert_error(response, 400, "validation_error", message)


async def test_register_malformed_json(anon: httpx.AsyncClient) -> None:
    response = await anon.post("/api/auth/register", content=b'{"email": ')
    assert_error(response, 400, "invalid_json", "request body is not valid JSON")


async def test_register_oversize_body_is_413(anon: httpx.AsyncClient) -> None:
    response = await anon.post(
        "/api/auth/register", content=b'{"name": "' + b"x" * (1_048_576 + 10) + b'"}'
    )
    assert_error(response, 413, "payload_too_large")


async def test_register_replay_with_same_key(target: Target, anon: httpx.AsyncClient) -> None:
    email = unique_email("idem")
    body = {"email": email, "password": PASSWORD, "name": "Idem"}
    headers = {"Idempotency-Key": "reg-1"}
    first = await anon.post("/api/auth/register", json=body, headers=headers)
    assert first.status_code == 201
    again = await anon.post("/api/auth/register", json=body, headers=headers)
    assert again.status_code == 201, again.text
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["user"] == first.json()["user"]
    other_key = await anon.post(
        "/api/auth/register", json=body, headers={"Idempotency-Key": "reg-2"}
    )
    assert_error(other_key, 409, "email_taken")
    wrong_password = await anon.post(
        "/api/auth/register", json={**body, "password": "another password"}, headers=headers
    )
    assert wrong_password.status_code == 409


async def test_login_and_me(target: Target, anon: httpx.AsyncClient, user: User) -> None:
    response = await anon.post(
        "/api/auth/login", json={"email": user.email.upper(), "password": user.password}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"user", "token", "expires_at"}
    assert body["user"]["id"] == user.id
    async with authed(target, body["token"]) as client:
        me = await client.get("/api/auth/me")
    assert me.status_code == 200
    assert me.json() == {"user": body["user"]}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"email": "a@b.co", "password": "x", "extra": 1}, "extra: is not a known field"),
        ({"password": "x"}, "email: is required"),
        ({"email": 1, "password": "x"}, "email: must be a string"),
        ({"email": "a@b.co"}, "password: is required"),
        ({"email": "a@b.co", "password": None}, "password: must be a string"),
    ],
)
async def test_login_validation(anon: httpx.AsyncClient, body: object, message: str) -> None:
    assert_error(await anon.post("/api/auth/login", json=body), 400, "validation_error", message)


async def test_login_wrong_password_or_email(anon: httpx.AsyncClient, user: User) -> None:
    wrong = await anon.post("/api/auth/login", json={"email": user.email, "password": "nope nope"})
    assert_error(wrong, 401, "invalid_credentials")
    unknown = await anon.post(
        "/api/auth/login", json={"email": unique_email("ghost"), "password": PASSWORD}
    )
    assert_error(unknown, 401, "invalid_credentials")


async def test_me_without_token(anon: httpx.AsyncClient) -> None:
    assert_error(await anon.get("/api/auth/me"), 401, "unauthorized")
    assert_error(
        await anon.get("/api/auth/me", headers={"Authorization": "Basic abc"}), 401, "unauthorized"
    )
    assert_error(
        await anon.get("/api/auth/me", headers={"Authorization": "Bearer not.a.jwt"}),
        401,
        "unauthorized",
    )


async def test_logout_revokes_only_that_token(target: Target, anon: httpx.AsyncClient) -> None:
    user = await register(target)
    async with user.client:
        login = await anon.post(
            "/api/auth/login", json={"email": user.email, "password": user.password}
        )
        second_token = login.json()["token"]
        response = await user.client.post("/api/auth/logout")
        assert response.status_code == 204
        assert response.content == b""
        assert_error(await user.client.get("/api/auth/me"), 401, "token_revoked")
        assert_error(await user.client.post("/api/auth/logout"), 401, "token_revoked")
        async with authed(target, second_token) as still:
            assert (await still.get("/api/auth/me")).status_code == 200


async def test_logout_needs_a_token(anon: httpx.AsyncClient) -> None:
    assert_error(await anon.post("/api/auth/logout"), 401, "unauthorized")


async def test_idempotent_ids_are_derived(user: User) -> None:
    response = await user.client.post(
        "/api/folders", json={"name": "k"}, headers={"Idempotency-Key": "derive-me"}
    )
    assert response.status_code == 201
    assert response.json()["id"] == derived_id("folder", user.id, "derive-me")
