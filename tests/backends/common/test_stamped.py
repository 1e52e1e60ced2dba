"""``X-Banyan-Stamp`` on both backends (``common/stamped.py`` and the two backends' auth): a
verified stamp sets the write's time and a mirror stamp its user; anything else is refused."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from banyan import stamps
from banyan.backends.common import tokens
from banyan.backends.common.clock import iso, wall_ms
from banyan.backends.legacy.app import create_app as legacy_app
from banyan.backends.new.app import create_app as new_app
from banyan.serving import serve

SECRET = os.environ[tokens.SECRET_ENV]
EMAIL, PASSWORD = "bo@example.org", "password-123"


@dataclass
class Backend:
    http: httpx.AsyncClient

    async def send(
        self,
        method: str,
        target: str,
        *,
        token: str | None = None,
        body: Any = None,
        ms: int | None = None,
        mirror: bool = False,
        user: str | None = None,
        key: str | None = "k-1",
        stamp: str | None = None,
    ) -> httpx.Response:
        """A request as the proxy sends it: stamped at ``ms`` (None: no stamp)."""
        headers = {"X-Request-Id": uuid.uuid4().hex}
        if key is not None:
            headers["Idempotency-Key"] = key
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if ms is not None:
            stamp = stamps.make_stamp(
                secret=SECRET,
                method=method,
                target=target,
                key=stamps.binding_key(headers),
                ms=ms,
                mirror=mirror,
                user=user,
            )
        if stamp is not None:
            headers[stamps.HEADER] = stamp
        return await self.http.request(method, target, headers=headers, json=body)

    async def register(self, *, ms: int | None = None, **extra: Any) -> httpx.Response:
        body = {"email": EMAIL, "password": PASSWORD, "name": "Bo"}
        return await self.send("POST", "/api/auth/register", body=body, ms=ms, **extra)


@pytest.fixture(params=["legacy", "new"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    factory = legacy_app if request.param == "legacy" else new_app
    app = factory(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        yield Backend(http)


async def test_a_stamped_write_happens_at_the_stamp_s_time(backend: Backend) -> None:
    at = wall_ms() - 4 * 60 * 1000  # four minutes ago: inside the window
    registered = await backend.register(ms=at)
    assert registered.status_code == 201
    user, token = registered.json()["user"], registered.json()["token"]
    assert user["created_at"] == iso(at)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iat"] == at // 1000 and registered.json()["expires_at"] == iso(
        claims["exp"] * 1000
    )
    made = await backend.send("POST", "/api/sessions", token=token, body={"title": "t"}, ms=at)
    assert made.status_code == 201
    session = made.json()
    assert session["created_at"] == session["updated_at"] == iso(at)
    plain = await backend.send("POST", "/api/folders", token=token, body={"name": "f"}, key="k-2")
    assert plain.status_code == 201 and plain.json()["created_at"] > iso(at + 60_000)  # type: ignore[operator]


async def test_the_same_stamped_registration_mints_the_same_token(
    tmp_path: Path, backend: Backend
) -> None:
    """The other store, given the same stamped registration, answers the very same body."""
    at = wall_ms() - 1000
    here = await backend.register(ms=at)
    async with serve(new_app(f"sqlite+aiosqlite:///{tmp_path / 'other.db'}")) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            there = await Backend(http).register(ms=at, mirror=True)
    assert here.status_code == there.status_code == 201
    assert here.json() == there.json()


async def test_a_registration_delivered_again_is_the_same_registration(backend: Backend) -> None:
    at = wall_ms() - 1000
    first = await backend.register(ms=at)
    again = await backend.register(ms=at, mirror=True)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    other_password = await backend.send(
        "POST",
        "/api/auth/register",
        body={"email": EMAIL, "password": "another-password", "name": "Bo"},
        ms=at,
        mirror=True,
    )
    other_name = await backend.send(
        "POST",
        "/api/auth/register",
        body={"email": EMAIL, "password": PASSWORD, "name": "Bob"},
        ms=at,
        mirror=True,
        key="k-8",  # with the first key and the right password it would be a key replay
    )
    later = await backend.register(ms=at + 1, key="k-9")
    for conflict in (other_password, other_name, later):
        assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "email_taken"


async def _logged_out(backend: Backend) -> tuple[str, str]:
    registered = (await backend.register()).json()
    token, user = registered["token"], registered["user"]["id"]
    assert (await backend.send("POST", "/api/auth/logout", token=token)).status_code == 204
    return token, user


async def test_a_mirrored_write_acts_for_its_user_after_logout(backend: Backend) -> None:
    token, user = await _logged_out(backend)
    mirrored = await backend.send(
        "POST",
        "/api/sessions",
        token=token,
        body={"title": "late"},
        ms=wall_ms(),
        mirror=True,
        user=user,
    )
    assert mirrored.status_code == 201, mirrored.text
    again = await backend.send(
        "POST", "/api/auth/logout", token=token, ms=wall_ms(), mirror=True, user=user
    )
    assert again.status_code == 204  # a logout delivered twice is done, not refused
    refused = [
        await backend.send("GET", "/api/sessions", token=token),
        await backend.send("POST", "/api/sessions", token=token, body={"title": "x"}, key="k-3"),
        await backend.send(
            "POST", "/api/sessions", token=token, body={"title": "x"}, key="k-4", ms=wall_ms()
        ),  # a primary stamp does not authenticate
        await backend.send(
            "POST",
            "/api/sessions",
            token=token,
            body={"title": "x"},
            key="k-5",
            ms=wall_ms(),
            mirror=True,
        ),  # nor a mirror stamp naming nobody
    ]
    for answer in refused:
        assert answer.status_code == 401 and answer.json()["error"]["code"] == "token_revoked"


async def test_a_mirrored_write_acts_for_its_user_after_the_token_expired(backend: Backend) -> None:
    user = (await backend.register()).json()["user"]["id"]
    expired, _ = tokens.issue(user, now=wall_ms() / 1000 - 7200, ttl=60)
    plain = await backend.send("POST", "/api/folders", token=expired, body={"name": "f"})
    assert plain.status_code == 401 and plain.json()["error"]["code"] == "token_expired"
    mirrored = await backend.send(
        "POST",
        "/api/folders",
        token=expired,
        body={"name": "f"},
        ms=wall_ms(),
        mirror=True,
        user=user,
    )
    assert mirrored.status_code == 201


async def test_a_mirror_stamp_needs_a_genuine_token_of_its_user(backend: Backend) -> None:
    token, user = await _logged_out(backend)
    stranger = str(uuid.uuid4())
    answers = {
        "other user": await backend.send(
            "POST",
            "/api/folders",
            token=token,
            body={"name": "f"},
            ms=wall_ms(),
            mirror=True,
            user=stranger,
        ),
        "unknown user": await backend.send(
            "POST",
            "/api/folders",
            token=tokens.issue(stranger)[0],
            body={"name": "f"},
            ms=wall_ms(),
            mirror=True,
            user=stranger,
        ),
        "forged token": await backend.send(
            "POST",
            "/api/folders",
            token=jwt.encode({"sub": user, "jti": "j", "iat": 1, "exp": 2}, "x" * 40),
            body={"name": "f"},
            ms=wall_ms(),
            mirror=True,
            user=user,
        ),
        "no token": await backend.send(
            "POST", "/api/folders", body={"name": "f"}, ms=wall_ms(), mirror=True, user=user
        ),
    }
    for why, answer in answers.items():
        assert answer.status_code == 401, why
        assert answer.json()["error"]["code"] == "unauthorized", why


async def test_a_stamp_that_does_not_verify_is_refused_and_writes_nothing(backend: Backend) -> None:
    token = (await backend.register()).json()["token"]
    good = stamps.make_stamp(
        secret=SECRET, method="POST", target="/api/folders", key="k-7", ms=wall_ms()
    )
    cases = {
        "forged": stamps.make_stamp(
            secret="z" * 40, method="POST", target="/api/folders", key="k-7", ms=wall_ms()
        ),
        "expired": stamps.make_stamp(
            secret=SECRET, method="POST", target="/api/folders", key="k-7", ms=wall_ms() - 3_600_000
        ),
        "malformed": "v1.yesterday.primary..x",
        "for another request": stamps.make_stamp(
            secret=SECRET, method="POST", target="/api/sessions", key="k-7", ms=wall_ms()
        ),
    }
    for reason, stamp in cases.items():
        answer = await backend.send(
            "POST", "/api/folders", token=token, body={"name": "f"}, key="k-7", stamp=stamp
        )
        assert answer.status_code == 400, reason
        error = answer.json()["error"]
        assert error["code"] == "invalid_stamp", reason
        word = "forged" if reason == "for another request" else reason
        assert error["message"].startswith(f"X-Banyan-Stamp is {word}:"), reason
    twice = await backend.http.post(
        "/api/folders",
        json={"name": "f"},
        headers=[
            ("Authorization", f"Bearer {token}"),
            ("Idempotency-Key", "k-7"),
            (stamps.HEADER, good),
            (stamps.HEADER, good),
        ],
    )
    assert twice.status_code == 400 and twice.json()["error"]["code"] == "invalid_stamp"
    listed = await backend.http.get("/api/folders", headers={"Authorization": f"Bearer {token}"})
    assert listed.json()["items"] == []


async def test_a_read_ignores_the_stamp_header(backend: Backend) -> None:
    token = (await backend.register()).json()["token"]
    answer = await backend.send("GET", "/api/folders", token=token, stamp="garbage")
    assert answer.status_code == 200
