"""Tests of banyan/proxy/mirror_order.py: a user's writes join the mirror queue in the user's
order, behind the user's copies still in flight; and, through the whole proxy, a logout mirrored
through the queue reaches the other store after the create whose shadow copy was slow."""

from __future__ import annotations

import asyncio
from pathlib import Path

from banyan.proxy.app import STATE
from banyan.proxy.mirror_order import SubmitOrder
from tests.proxy.conftest import real_backends_new_behind_faults
from tests.proxy.fault_front import Fault


async def test_nothing_to_wait_for_is_stored_at_once() -> None:
    order, stored = SubmitOrder(), []
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    done.set_result(None)
    order.submit("u", 1.0, [done], lambda: stored.append("a"))
    assert stored == ["a"] and order.waited == 0


async def test_a_write_waits_for_copies_and_earlier_writes_of_its_lane() -> None:
    order, stored = SubmitOrder(), []
    copy: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    order.submit("u", 1.0, [copy], lambda: stored.append("logout"))
    order.submit("u", 2.0, [], lambda: stored.append("after"))  # behind the waiting one
    order.submit("v", 3.0, [], lambda: stored.append("other user"))  # another lane: at once
    await asyncio.sleep(0.05)
    assert stored == ["other user"]
    copy.set_result(None)  # the copy landed (or failed and was queued before this)
    for _ in range(100):
        if len(stored) == 3:
            break
        await asyncio.sleep(0.01)
    assert stored == ["other user", "logout", "after"] and order.waited == 2


async def test_an_earlier_write_joining_late_is_stored_first() -> None:
    """A create's copy is in flight; the update after it waits for that copy. The copy fails, so
    the create joins the queue only then — after the update asked — and must still go first."""
    order, stored = SubmitOrder(), []
    create_copy: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    other_copy: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    order.submit("u", 2.0, [create_copy], lambda: stored.append("update"))
    # the copy failed: the create (arrived at 1.0) joins, itself behind another copy in flight
    order.submit("u", 1.0, [other_copy], lambda: stored.append("create"))
    create_copy.set_result(None)  # released right after the create joined
    await asyncio.sleep(0.05)
    assert stored == []  # the update waits for the create, which waits for the other copy
    other_copy.set_result(None)
    for _ in range(100):
        if len(stored) == 2:
            break
        await asyncio.sleep(0.01)
    assert stored == ["create", "update"]


async def test_the_wait_is_bounded_and_flush_stores_the_rest() -> None:
    order, stored = SubmitOrder(max_wait=0.1), []
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    order.submit("u", 1.0, [never], lambda: stored.append("late"))  # capped at max_wait
    await asyncio.sleep(0.3)
    assert stored == ["late"]
    order.submit("w", 2.0, [never], lambda: stored.append("flushed"))
    await order.flush()
    assert stored == ["late", "flushed"]


FEATURES = """\
  logout:
    routes: ["/api/auth/logout"]
    mode: legacy
    writes: always
  register:
    routes: ["/api/auth/register"]
    mode: legacy
    writes: mirror
  sessions:
    routes: ["/api/sessions/**"]
    mode: shadow
    writes: mirror
"""


async def test_a_logout_never_overtakes_a_slow_copy_of_the_create_before_it(
    tmp_path: Path,
) -> None:
    """The create's shadow copy takes 0.5 s to reach new; the logout right after it goes through
    the mirror queue. New must see the create first."""
    faults = [Fault("POST", "/api/sessions", delay=0.5)]
    async with real_backends_new_behind_faults(tmp_path, FEATURES, faults) as (app, slow, http):
        body = {"email": "o@example.com", "password": "password-1", "name": "O"}
        made = await http.post("/api/auth/register", json=body)
        auth = {"Authorization": f"Bearer {made.json()['token']}"}
        for _ in range(100):  # the registration reached new
            if ("POST", "/api/auth/register") in slow.relayed:
                break
            await asyncio.sleep(0.02)
        created = await http.post("/api/sessions", json={"title": "t"}, headers=auth)
        assert created.status_code == 201
        assert (await http.post("/api/auth/logout", headers=auth)).status_code == 204
        for _ in range(300):
            if ("POST", "/api/auth/logout") in slow.relayed:
                break
            await asyncio.sleep(0.02)
        state = app[STATE]
        assert state.mirror_order.waited >= 1
    writes = [r for r in slow.relayed if r[0] == "POST"]
    assert writes == [
        ("POST", "/api/auth/register"),
        ("POST", "/api/sessions"),
        ("POST", "/api/auth/logout"),
    ]


REGISTER_FEATURES = """\
  register:
    routes: ["/api/auth/register"]
    mode: legacy
    writes: mirror
  web:
    routes: ["/"]
    mode: shadow
  sessions:
    routes: ["/api/sessions/**"]
    mode: legacy
    writes: mirror
"""


async def test_a_registration_waiting_in_line_stays_before_its_user_s_writes(
    tmp_path: Path,
) -> None:
    """A registration has no token: its mirrored write waits for the copies in flight from its
    address (a page read, slow to reach new). Two users register meanwhile; the second one's
    first create, made with the token its registration answered, must reach new after that
    registration, not be refused there as an unknown user (the runbook once saw such creates
    hold their users' lanes until they died)."""
    faults = [Fault("GET", "/", delay=1.0)]
    async with real_backends_new_behind_faults(tmp_path, REGISTER_FEATURES, faults) as (
        app,
        slow,
        http,
    ):
        await http.get("/")  # its copy to new takes a second
        tokens = []
        for n in range(2):
            body = {"email": f"r{n}@example.com", "password": "password-1", "name": "R"}
            made = await http.post("/api/auth/register", json=body)
            tokens.append(made.json()["token"])
        auth = {"Authorization": f"Bearer {tokens[1]}"}
        created = await http.post("/api/sessions", json={"title": "t"}, headers=auth)
        assert created.status_code == 201
        queue = app[STATE].mirror
        assert queue is not None
        for _ in range(250):
            if (await queue.stats()).delivered == 3:
                break
            await asyncio.sleep(0.02)
        assert (await queue.stats()).delivered == 3
        assert queue.retried == 0  # the create was never refused by new
    writes = [r for r in slow.relayed if r[0] == "POST"]
    assert writes[-1] == ("POST", "/api/sessions"), writes
