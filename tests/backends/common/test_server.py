"""Tests for banyan/backends/common/server.py: a backend refuses to start without a JWT secret,
and a development run (``--dev`` / ``BANYAN_DEV=1``) signs with a random secret, never a constant.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from banyan.backends.common import tokens
from banyan.ports import free_port
from banyan.serving import serve

# The secret the code used to fall back to; a token signed with it must never be accepted again.
OLD_BUILT_IN_SECRET = "banyan-dev-secret-change-me-" + "0123456789abcdef" * 3
BACKENDS = ["legacy", "new"]


def env_without_secret(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("BANYAN_JWT_SECRET", "BANYAN_DEV")}
    return {**env, **extra}


def forged_token(user_id: str) -> str:
    """A well-formed token for ``user_id`` signed with the old built-in secret."""
    now = int(time.time())
    claims = {"sub": user_id, "jti": uuid.uuid4().hex, "iat": now, "exp": now + 600}
    return jwt.encode(claims, OLD_BUILT_IN_SECRET, algorithm="HS256")


@pytest.fixture
def no_secret(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("BANYAN_JWT_SECRET", raising=False)
    monkeypatch.delenv("BANYAN_DEV", raising=False)
    monkeypatch.setattr(tokens, "_dev_secret", None)
    yield


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_backend_without_secret_exits_2_naming_the_variable(kind: str, tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    argv = [sys.executable, "-m", "banyan.proxy.cli", kind, "--port", str(free_port()), "--db", db]
    try:
        done = subprocess.run(
            argv, env=env_without_secret(), capture_output=True, text=True, timeout=30
        )
    except subprocess.TimeoutExpired as exc:  # it started and served: the finding is back
        pytest.fail(f"banyan {kind} started without BANYAN_JWT_SECRET: {exc.stdout!r}")
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"banyan {kind}: ") and "BANYAN_JWT_SECRET" in lines[0]
    assert "listening on" not in done.stdout


@pytest.mark.parametrize("kind", BACKENDS)
def test_create_app_refuses_without_secret(kind: str, no_secret: None, tmp_path: Path) -> None:
    from banyan.backends.contract.targets import backend_factory

    with pytest.raises(tokens.MissingSecret, match="BANYAN_JWT_SECRET"):
        backend_factory(kind)(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")


@pytest.mark.parametrize("kind", BACKENDS)
@pytest.mark.parametrize("how", ["flag", "env"])
def test_a_dev_run_starts_with_a_random_secret(kind: str, how: str, tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    argv = [sys.executable, "-m", "banyan.proxy.cli", kind, "--port", "0", "--db", db]
    env = env_without_secret(**({"BANYAN_DEV": "1"} if how == "env" else {}))
    process = subprocess.Popen(
        [*argv, *(["--dev"] if how == "flag" else [])],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert " listening on " in line, line
        url = line.strip().rsplit(" ", 1)[-1]
        with httpx.Client(base_url=url, timeout=10) as http:
            _old_secret_is_refused(http)
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    assert "development run" in err and "BANYAN_JWT_SECRET" in err


def _old_secret_is_refused(http: httpx.Client) -> None:
    email = f"dev-{uuid.uuid4().hex[:8]}@example.com"
    body = {"email": email, "password": "p" * 10, "name": "D"}
    signed = http.post("/api/auth/register", json=body)
    assert signed.status_code == 201, signed.text
    user_id = signed.json()["user"]["id"]
    own = http.get("/api/auth/me", headers={"Authorization": f"Bearer {signed.json()['token']}"})
    assert own.status_code == 200
    forged = forged_token(user_id)
    for path in ("/api/auth/me", "/api/folders"):
        refused = http.get(path, headers={"Authorization": f"Bearer {forged}"})
        assert refused.status_code == 401, (path, refused.text)
        assert refused.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("kind", BACKENDS)
async def test_in_process_dev_run_refuses_the_old_constant(
    kind: str, no_secret: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from banyan.backends.contract.targets import backend_factory

    monkeypatch.setenv("BANYAN_DEV", "1")
    app = backend_factory(kind)(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    async with serve(app) as url:
        await _async_old_secret_is_refused(url)
    assert tokens.secret() != OLD_BUILT_IN_SECRET and len(tokens.secret()) >= 32


async def _async_old_secret_is_refused(url: str) -> None:
    # the synchronous client would block the loop that serves the app
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        email = f"dev-{uuid.uuid4().hex[:8]}@example.com"
        body = {"email": email, "password": "p" * 10, "name": "D"}
        signed = await http.post("/api/auth/register", json=body)
        assert signed.status_code == 201, signed.text
        forged = forged_token(signed.json()["user"]["id"])
        refused = await http.get("/api/auth/me", headers={"Authorization": f"Bearer {forged}"})
        assert refused.status_code == 401, refused.text
