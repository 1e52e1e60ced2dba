"""Helpers the contract tests share: fresh users, authed clients and error-body checks.

``register(client)`` signs up a user with a unique email and returns a :class:`User` holding its
id, token and an ``httpx.AsyncClient`` that sends the token. ``assert_error(response, status,
code)`` checks the contract's error shape.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from banyan.backends.contract.targets import Target

PASSWORD = "correct horse battery"
TIMEOUT = 10.0


@dataclass
class User:
    id: str
    email: str
    password: str
    token: str
    body: dict[str, Any]
    client: httpx.AsyncClient

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def unique_email(tag: str = "user") -> str:
    return f"{tag}-{uuid.uuid4().hex[:12]}@example.com"


def anonymous(target: Target) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=target.base_url, timeout=TIMEOUT)


def authed(target: Target, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=target.base_url,
        timeout=TIMEOUT,
        headers={"Authorization": f"Bearer {token}"},
    )


async def register(
    target: Target, *, email: str | None = None, name: str = "Ada", password: str = PASSWORD
) -> User:
    """Register a fresh user; the caller closes ``user.client``."""
    email = email or unique_email()
    async with anonymous(target) as client:
        response = await client.post(
            "/api/auth/register", json={"email": email, "password": password, "name": name}
        )
    assert response.status_code == 201, response.text
    body = response.json()
    token = body["token"]
    return User(body["user"]["id"], email, password, token, body, authed(target, token))


def assert_error(
    response: httpx.Response, status: int, code: str, message: str | None = None
) -> None:
    """The response is the contract's error body with this status, code (and message)."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
    if message is not None:
        assert body["error"]["message"] == message, body
