"""Dead letters shown, retried and dropped: ``GET /_proxy/mirror``, ``POST
/_proxy/mirror/{id}/retry``, ``DELETE /_proxy/mirror/{id}`` (banyan/proxy/mirror_admin.py), the
``banyan mirror`` and ``banyan status`` commands (banyan/proxy/mirror_cli.py, status_cli.py) and
the ``attention`` list of ``/_proxy/status`` (banyan/proxy/attention.py).

Real parts: both backends on SQLite behind the real proxy; the commands run as a user types them
(their ``main`` with the argument list, in a thread, against the proxy's URL). Two writes become
dead letters for real reasons: one mirrored to a store where its user does not exist yet, one
the other store refuses (an ``Idempotency-Key`` it already holds for another body).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from banyan.proxy.app import STATE, ProxyState, create_app
from banyan.proxy.cli import main as banyan
from banyan.proxy.mirror import MirrorQueue
from banyan.proxy.mirror_admin import letter_of
from banyan.serving import serve
from tests.proxy.conftest import real_backends_behind_proxy

TOKEN = "admin-" + "t" * 40
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
FLAGS = """\
version: 1
backends:
  legacy: {legacy}
  new: {new}
features:
  auth:
    routes: ["/api/auth/**"]
    mode: new
    writes: skip
  sessions:
    routes: ["/api/sessions/**"]
    mode: new
    writes: mirror
default: legacy
"""
ACCOUNT = {"email": "dl@example.com", "password": "password-1", "name": "D"}


@dataclass
class Stack:
    proxy: str
    legacy: str
    state: ProxyState


@pytest.fixture
async def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stack]:
    monkeypatch.setenv("BANYAN_ADMIN_TOKEN", TOKEN)
    monkeypatch.delenv("BANYAN_PROXY_URL", raising=False)
    from banyan.backends.legacy.app import create_app as legacy_app
    from banyan.backends.new.app import create_app as new_app

    async with (
        serve(legacy_app(f"sqlite+aiosqlite:///{tmp_path / 'legacy.db'}")) as legacy_url,
        serve(new_app(f"sqlite+aiosqlite:///{tmp_path / 'new.db'}")) as new_url,
    ):
        flags = tmp_path / "flags.yaml"
        flags.write_text(FLAGS.format(legacy=legacy_url, new=new_url))
        # one attempt before a write is dead, so a "not yet" answer makes a letter at once
        queue = MirrorQueue(f"sqlite+aiosqlite:///{tmp_path / 'mirror.db'}", max_attempts=1)
        app = create_app(flags, access_log=False, mirror=queue)
        async with serve(app) as proxy_url:
            yield Stack(proxy_url, legacy_url, app[STATE])


async def _dead(state: ProxyState, count: int) -> None:
    assert state.mirror is not None
    for _ in range(200):
        stats = await state.mirror.stats()
        if stats.dead == count and stats.pending == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never {count} dead letters: {await state.mirror.stats()}")


async def _two_dead_letters(stack: Stack) -> tuple[dict[str, str], str, str]:
    """Make the two dead letters; return the user's auth and the two sessions' ids."""
    async with httpx.AsyncClient(base_url=stack.proxy, timeout=10) as http:
        made = await http.post("/api/auth/register", json=ACCOUNT)  # on new only
        auth = {"Authorization": f"Bearer {made.json()['token']}"}
        first = await http.post("/api/sessions", json={"title": "first"}, headers=auth)
        assert first.status_code == 201
        await _dead(stack.state, 1)  # legacy: 401, the user does not exist there
        async with httpx.AsyncClient(base_url=stack.legacy, timeout=10) as legacy:
            assert (await legacy.post("/api/auth/register", json=ACCOUNT)).status_code == 201
            taken = {**auth, "Idempotency-Key": "k-1"}
            answer = await legacy.post("/api/sessions", json={"title": "other"}, headers=taken)
            assert answer.status_code == 201
        second = await http.post(
            "/api/sessions", json={"title": "second"}, headers={**auth, "Idempotency-Key": "k-1"}
        )
        assert second.status_code == 201
        await _dead(stack.state, 2)  # legacy: 409, its k-1 made another session
    return auth, first.json()["id"], second.json()["id"]


async def _run(*argv: str) -> int:
    return await asyncio.to_thread(banyan, list(argv))


async def test_dead_letters_through_the_cli(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    auth, first, second = await _two_dead_letters(stack)
    capsys.readouterr()
    assert await _run("mirror", "list", "--proxy", stack.proxy, "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["dead"] == 2 and listed["pending"] == 0
    one, two = listed["letters"]
    assert (one["method"], one["path_qs"], one["target"]) == ("POST", "/api/sessions", "legacy")
    assert one["reason"].startswith("legacy answered 401")
    assert two["reason"].startswith("legacy answered 409 idempotency_conflict")
    assert await _run("mirror", "list", "--proxy", stack.proxy) == 0
    shown = capsys.readouterr().out
    assert f"#{one['id']}" in shown and "reason: legacy answered 409" in shown

    assert await _run("status", "--proxy", stack.proxy) == 1  # something needs attention
    screen = capsys.readouterr().out
    assert "NEEDS ATTENTION" in screen and "2 mirrored writes the other store did not" in screen
    assert "idempotency_conflict" in screen and "sessions" in screen

    # the user exists on legacy now: the first letter is deliverable
    assert await _run("mirror", "retry", str(one["id"]), "--proxy", stack.proxy) == 0
    assert "retried 1 dead letter" in capsys.readouterr().out
    await _dead(stack.state, 1)
    async with httpx.AsyncClient(base_url=stack.legacy, timeout=10) as legacy:
        assert (await legacy.get(f"/api/sessions/{first}", headers=auth)).status_code == 200
        # the second cannot land as it is: drop it (the operator's decision, logged)
        assert await _run("mirror", "drop", str(two["id"]), "--proxy", stack.proxy) == 0
        kept = await legacy.get(f"/api/sessions/{second}", headers=auth)  # same key, same id
        assert kept.json()["title"] == "other"  # legacy's own write under k-1 stands
    assert "dropped 1 dead letter" in capsys.readouterr().out
    assert await _run("mirror", "list", "--proxy", stack.proxy) == 0
    assert "no dead letters" in capsys.readouterr().out
    assert await _run("status", "--proxy", stack.proxy, "--json") == 0
    document = json.loads(capsys.readouterr().out)
    assert document["status"]["attention"] == [] and document["dead_letters"] == []
    assert document["status"]["mirror"]["dropped"] == 1

    # an unknown letter, a bad id, no proxy: told, exit 1 or 2
    assert await _run("mirror", "retry", str(two["id"]), "--proxy", stack.proxy) == 1
    assert "404 not_found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        await _run("mirror", "drop", "--proxy", stack.proxy)
    assert usage.value.code == 2
    with pytest.raises(SystemExit):
        await _run("mirror", "list", "7", "--proxy", stack.proxy)
    with pytest.raises(SystemExit):
        await _run("mirror", "retry", "x1", "--proxy", stack.proxy)
    dead_proxy = "http://127.0.0.1:9"
    assert await _run("mirror", "list", "--proxy", dead_proxy) == 1
    assert await _run("status", "--proxy", dead_proxy) == 1
    assert "cannot reach the proxy" in capsys.readouterr().err


async def test_dead_letters_through_the_admin_api(stack: Stack) -> None:
    await _two_dead_letters(stack)
    async with httpx.AsyncClient(base_url=stack.proxy, timeout=10) as http:
        assert (await http.get("/_proxy/mirror")).status_code == 401  # the token is set
        listed = (await http.get("/_proxy/mirror", headers=ADMIN)).json()
        assert [letter["attempts"] for letter in listed["letters"]] == [1, 1]
        status = (await http.get("/_proxy/status", headers=ADMIN)).json()
        (item,) = status["attention"]
        assert item["kind"] == "dead_letters" and item["count"] == 2
        first = listed["letters"][0]["id"]
        for bad, code in (("abc", 400), ("-1", 400), ("999999", 404)):
            assert (await http.post(f"/_proxy/mirror/{bad}/retry", headers=ADMIN)).status_code == (
                code
            )
            assert (await http.delete(f"/_proxy/mirror/{bad}", headers=ADMIN)).status_code == code
        assert (await http.get("/_proxy/mirror?limit=0", headers=ADMIN)).status_code == 400
        assert (await http.post(f"/_proxy/mirror/{first}/retry")).status_code == 401
        retried = await http.post("/_proxy/mirror/all/retry", headers=ADMIN)
        assert retried.json() == {"id": "all", "retried": 2}
        await _dead(stack.state, 1)  # the user exists on legacy now; the conflict stays
        listed = (await http.get("/_proxy/mirror", headers=ADMIN)).json()
        assert listed["delivered"] == 1 and "idempotency_conflict" in listed["letters"][0]["reason"]
        dropped = await http.delete("/_proxy/mirror/all", headers=ADMIN)
        assert dropped.json() == {"id": "all", "dropped": 1}
        listed = (await http.get("/_proxy/mirror", headers=ADMIN)).json()
        assert listed["letters"] == [] and listed["dropped"] == 1 and listed["dead"] == 0


async def test_without_a_mirror_queue_the_endpoints_say_so(tmp_path: Path) -> None:
    async with real_backends_behind_proxy(tmp_path, FLAGS) as urls:
        async with httpx.AsyncClient(base_url=urls["proxy"]) as http:
            assert (await http.get("/_proxy/mirror")).status_code == 200  # loopback may read
            assert (await http.post("/_proxy/mirror/1/retry")).status_code == 403  # no token
    queue = MirrorQueue("sqlite+aiosqlite:///unused.db")
    flags = tmp_path / "flags.yaml"
    app = create_app(flags, access_log=False, mirror=queue)
    app[STATE].mirror = None
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        answer = await http.get("/_proxy/mirror")
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "mirror_disabled"


def test_letter_ids() -> None:
    assert letter_of("12") == 12 and letter_of("all") is None
    for bad in ("", "x", "1.5", "9" * 19):
        with pytest.raises(ValueError):
            letter_of(bad)
