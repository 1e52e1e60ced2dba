"""A population of AI Tutor users for the runbook test: people who keep arriving, registering,
logging in and out, and using folders, sessions, the tutor socket, documents and a whiteboard.

Each person is a loop of lives: register (a fresh account), then a few rounds of log in, upload
two documents, create and rename a folder, create a session in it and read it, add a message and
list them, ask the tutor over ``/ws/tutor/{id}`` (``ASKS`` times), then visit every other feature
(:mod:`tests.e2e.features`: a quiz, agents, analytics, a whiteboard room's REST face, the web
app), read the document back with the jobs of every document listed (``SETTLE`` seconds after
the upload at least: a documents page shows each upload's job), log
out, and check that the logged-out token is refused (401, as legacy refuses it too). The live
channel is opened on every page the web app shows (after folders, the session, the tutor, the
visits), so ``live`` has a few sockets per round as it has in a browser, and each page's view
is sent to analytics. Two whiteboard editors
keep drawing in one room. Every request goes through the proxy with the frontend's retry rule
(:func:`tests.e2e.traffic.exchange`); anything else than the expected answer is a user-visible
failure, kept in the tally.

:meth:`Population.quiet` holds everyone between two actions (and waits until nobody is inside
one) so the test can compare the stores at a still moment; :meth:`Population.resume` lets them go.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp

from tests.e2e import features
from tests.e2e.traffic import Editor, Tally, User, _read_turn, _ws_connect, call

QUIET_WAIT = 120.0  # an action that outlasts every timeout of its calls is stuck: say where
PASSWORD = "runbook-password"
# A document is read back (with its job) at least this long after its upload: each store processes
# it on its own, and a read while one side is still at it is a difference of timing, not of parity.
SETTLE = 4.0
# Questions a person asks the tutor per round, each on a socket of its own (the tutor's samples in
# a canary are its sockets on new: with one a round, its 10% step waited minutes for 30).
ASKS = 3


@dataclass
class Population:
    base: str
    people: int = 4
    tally: Tally = field(default_factory=Tally)
    lives: int = 0
    logouts: int = 0
    _go: asyncio.Event = field(default_factory=asyncio.Event)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _busy: int = 0
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _serial: itertools.count[int] = field(default_factory=itertools.count)
    held: float = 0.0  # seconds everyone was held still (quiet() to resume())
    holds: int = 0
    _moved_at: float = 0.0  # when they were last let go
    _held_at: float = 0.0

    def start(self) -> None:
        self._go.set()
        self._moved_at = time.monotonic()
        for n in range(self.people):
            self._tasks.append(asyncio.create_task(self._person(f"p{n}")))

    def start_drawing(self, board_users: list[User], room: str) -> None:
        for n, user in enumerate(board_users):
            editor = Editor(f"e{n}", user, self.base, room, self.tally)
            self._tasks.append(asyncio.create_task(self._draw(editor)))

    async def stop(self) -> None:
        """Let everyone finish their action and stop; a task still going after ``QUIET_WAIT``
        is stuck: it is cancelled and tallied as a failure with where it waited, so a test's
        teardown never waits for it forever."""
        self._stop.set()
        self._go.set()
        if not self._tasks:
            return
        done, pending = await asyncio.wait(self._tasks, timeout=QUIET_WAIT)
        if pending:
            stuck = self._where()
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            self.tally.fail(f"{len(pending)} people stuck at the end: {stuck}")
        for task in done:
            task.result()  # a person's own error is the test's

    async def quiet(self, after: float = 0.0) -> None:
        """Hold everyone at their next action and wait until no action is in flight; first let
        them go on for ``after`` seconds since they were last let go (holds asked back to back
        would otherwise leave them almost no time to act, and a rollout step no evidence)."""
        if self._go.is_set():
            await asyncio.sleep(max(0.0, self._moved_at + after - time.monotonic()))
            self._held_at = time.monotonic()
            self.holds += 1
        self._go.clear()
        deadline = time.monotonic() + QUIET_WAIT
        while self._busy:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self._busy} actions still going: {self._where()}")
            await asyncio.sleep(0.02)

    def _where(self) -> list[str]:
        """Where each person's task waits (its chain of awaits), to name a stuck action."""
        places = []
        for task in self._tasks:
            if task.done():
                continue
            chain, awaited = [], task.get_coro()
            while awaited is not None and hasattr(awaited, "cr_frame"):
                frame = awaited.cr_frame
                if frame is not None:
                    chain.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
                awaited = getattr(awaited, "cr_await", None)
            places.append(" > ".join(chain))
        return places

    def resume(self) -> None:
        if not self._go.is_set():
            self._moved_at = time.monotonic()
            self.held += self._moved_at - self._held_at
        self._go.set()

    def summary(self) -> str:
        t = self.tally
        return (
            f"lives {self.lives}, logouts {self.logouts}, requests {t.requests} (retried "
            f"{t.retried}), turns {t.turns}, sockets {t.ws_connects}, backends {t.backends}, "
            f"held still {self.holds} times for {self.held:.0f} s, failures {t.failures}"
        )

    @contextlib.asynccontextmanager
    async def _action(self) -> AsyncIterator[None]:
        await self._go.wait()
        self._busy += 1
        try:
            yield
        finally:
            self._busy -= 1

    async def _person(self, name: str) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            while not self._stop.is_set():
                await self._life(http, f"{name}-{next(self._serial)}")

    async def _life(self, http: aiohttp.ClientSession, name: str) -> None:
        email = f"{name}@runbook.test"
        async with self._action():
            body = {"email": email, "password": PASSWORD, "name": name}
            if await call(http, self.tally, "POST", f"{self.base}/api/auth/register", 201,
                          headers={}, body=body) is None:  # fmt: skip
                return
            self.lives += 1
        for round_ in range(2):
            if self._stop.is_set():
                return
            async with self._action():
                logged = await call(
                    http, self.tally, "POST", f"{self.base}/api/auth/login", 200, headers={},
                    body={"email": email, "password": PASSWORD},
                )  # fmt: skip
            if logged is None:
                return
            answer = logged[2]
            user = User(email, answer["token"], answer["user"]["id"])
            await self._use(http, user, f"{name}-{round_}")
            async with self._action():
                out = await call(http, self.tally, "POST", f"{self.base}/api/auth/logout", 204,
                                 headers=user.auth)  # fmt: skip
                if out is not None:
                    self.logouts += 1
                    await call(http, self.tally, "GET", f"{self.base}/api/auth/me", 401,
                               headers=user.auth)  # fmt: skip

    async def _use(self, http: aiohttp.ClientSession, user: User, key: str) -> None:
        base, auth = self.base, user.auth
        async with self._action():  # first, so that they are processed when they are read back
            document = await features.upload(http, self.tally, base, user, key)
            await features.upload(http, self.tally, base, user, f"{key}-b")  # notes come in twos
        uploaded = time.monotonic()
        async with self._action():
            folder = await call(http, self.tally, "POST", f"{base}/api/folders", 201,
                                headers={**auth, "Idempotency-Key": f"f-{key}"},
                                body={"name": f"folder {key}"})  # fmt: skip
            if folder is None:
                return
            folder_url = f"{base}/api/folders/{folder[2]['id']}"
            await call(http, self.tally, "PATCH", folder_url, 200, headers=auth,
                       body={"name": f"folder {key} (renamed)"})  # fmt: skip
            await call(http, self.tally, "GET", f"{base}/api/folders", 200, headers=auth)
        await self._page(http, user)
        async with self._action():
            body = {"title": f"session {key}", "folder_id": folder[2]["id"]}
            headers = {**auth, "Idempotency-Key": f"s-{key}"}
            made = await call(http, self.tally, "POST", f"{base}/api/sessions", 201,
                              headers=headers, body=body)  # fmt: skip
            if made is None:
                return
            url = f"{base}/api/sessions/{made[2]['id']}"
            await call(http, self.tally, "GET", url, 200, headers=auth)
            await call(http, self.tally, "POST", f"{url}/messages", 201,
                       headers={**auth, "Idempotency-Key": f"m-{key}"},
                       body={"role": "user", "content": f"note {key}"})  # fmt: skip
            await call(http, self.tally, "GET", f"{url}/messages", 200, headers=auth)
        await self._page(http, user)
        for _ in range(ASKS):  # the tutor opened afresh for each question
            async with self._action():
                await self._ask(http, user, made[2]["id"])
        await self._page(http, user)
        await self._visit(http, user, made[2]["id"], key)
        if document is not None:  # processed on both sides by now: read back, job included
            await asyncio.sleep(max(0.0, uploaded + SETTLE - time.monotonic()))
            async with self._action():
                await features.documents(http, self.tally, base, user, document)

    async def _page(self, http: aiohttp.ClientSession, user: User) -> None:
        """The web app opens the live channel on every page it shows (folders, a session, the
        tutor...), as the user moves around: one live socket per page, not one per round; and it
        sends the page's view to analytics."""
        async with self._action():
            await features.live(http, self.tally, self.base, user)
            await features.page_view(http, self.tally, self.base, user, f"{next(self._serial)}")

    async def _visit(
        self, http: aiohttp.ClientSession, user: User, session_id: str, key: str
    ) -> None:
        """The other features, one action each."""
        base, tally = self.base, self.tally
        async with self._action():
            await features.quizzes(http, tally, base, user, session_id, key)
        async with self._action():
            await features.agents(http, tally, base, user)
        async with self._action():
            await features.analytics(http, tally, base, user, key)
        async with self._action():
            await features.whiteboard(http, tally, base, user, key)
        await self._page(http, user)
        async with self._action():
            await features.web(http, tally, base)

    async def _ask(self, http: aiohttp.ClientSession, user: User, session_id: str) -> None:
        url = f"{'ws' + self.base.removeprefix('http')}/ws/tutor/{session_id}?token={user.token}"
        ws = await _ws_connect(http, url, self.tally)
        if ws is None:
            return
        try:
            await ws.send_json({"type": "ask", "text": "what is 2+2?"})
            if await _read_turn(ws, self.tally, url):
                self.tally.turns += 1
        finally:
            await ws.close()

    async def _draw(self, editor: Editor) -> None:
        async with aiohttp.ClientSession() as http:
            if not await editor.connect(http):
                return
            try:
                for n in itertools.count(1):
                    if self._stop.is_set():
                        return
                    async with self._action():
                        if not editor.client.connected:
                            self.tally.fail(f"whiteboard {editor.name}: socket closed")
                            return
                        try:  # a send the proxy never takes (its reading stalled) is a failure
                            async with asyncio.timeout(30):
                                await editor.draw(n)
                        except TimeoutError:
                            self.tally.fail(f"whiteboard {editor.name}: a send stalled for 30 s")
                            return
                    await asyncio.sleep(0.3)
            finally:
                await editor.client.close()
