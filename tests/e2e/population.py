"""A population of AI Tutor users for the runbook test: people who keep arriving, registering,
logging in and out, and using folders, sessions, the tutor socket, documents and a whiteboard.

Each person is a loop of lives: register (a fresh account), then a few rounds of log in, create
and rename a folder, create a session in it and read it, add a message and list them, ask the
tutor over ``/ws/tutor/{id}``, then visit every other feature (:mod:`tests.e2e.features`: a
document upload read back with its job, a quiz, agents, analytics, a whiteboard room's REST face,
the live channel, the web app), log out, and check that the logged-out token
is refused (401, as legacy refuses it too). Two whiteboard editors keep drawing in one room. Every
request goes through the proxy with the frontend's retry rule (:func:`tests.e2e.traffic.call`);
anything else than the expected answer is a user-visible failure, kept in the tally.

:meth:`Population.quiet` holds everyone between two actions (and waits until nobody is inside
one) so the test can compare the stores at a still moment; :meth:`Population.resume` lets them go.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp

from tests.e2e import features
from tests.e2e.traffic import Editor, Tally, User, _read_turn, _ws_connect, call

PASSWORD = "runbook-password"


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

    def start(self) -> None:
        self._go.set()
        for n in range(self.people):
            self._tasks.append(asyncio.create_task(self._person(f"p{n}")))

    def start_drawing(self, board_users: list[User], room: str) -> None:
        for n, user in enumerate(board_users):
            editor = Editor(f"e{n}", user, self.base, room, self.tally)
            self._tasks.append(asyncio.create_task(self._draw(editor)))

    async def stop(self) -> None:
        self._stop.set()
        self._go.set()
        await asyncio.gather(*self._tasks, return_exceptions=False)

    async def quiet(self) -> None:
        """Hold everyone at their next action and wait until no action is in flight."""
        self._go.clear()
        while self._busy:
            await asyncio.sleep(0.02)

    def resume(self) -> None:
        self._go.set()

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
        async with self._action():
            await self._ask(http, user, made[2]["id"])
        await self._visit(http, user, made[2]["id"], key)

    async def _visit(
        self, http: aiohttp.ClientSession, user: User, session_id: str, key: str
    ) -> None:
        """The other features, one action each; the document is read back after the rest."""
        base, tally = self.base, self.tally
        async with self._action():
            document = await features.upload(http, tally, base, user, key)
        async with self._action():
            await features.quizzes(http, tally, base, user, session_id, key)
        async with self._action():
            await features.agents(http, tally, base, user)
        async with self._action():
            await features.analytics(http, tally, base, user, key)
        async with self._action():
            await features.whiteboard(http, tally, base, user, key)
        async with self._action():
            await features.live(http, tally, base, user)
        async with self._action():
            await features.web(http, tally, base)
        if document is not None:
            async with self._action():
                await features.documents(http, tally, base, user, document)

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
                        await editor.draw(n)
                    await asyncio.sleep(0.3)
            finally:
                await editor.client.close()
