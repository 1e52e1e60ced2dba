"""The AI Tutor web app in headless Chromium, through the real proxy and both real backends.

Each test starts the whole stack as ``banyan up`` does (tests/browser/harness.py) and drives the
app as people would: typing into labelled fields, pressing buttons, drawing with the mouse.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.browser.harness import Driver, Page, wait_for_route, web_stack

PASSWORD = "correct horse battery"


async def sign_up(page: Page, name: str) -> str:
    """Create an account through the sign-up form; return the user's token."""
    await page.goto("/#/signup")
    await page.wait('role=heading[name="Create your account"]')
    await page.screenshot("signup")
    await page.fill('role=textbox[name="Name"]', name)
    await page.fill('role=textbox[name="Email"]', f"{name}@example.org")
    await page.fill('input[name="password"]', PASSWORD)
    await page.click('role=button[name="Create account"]')
    await page.wait(f"text=Signed in as {name}")
    token = await page.local("banyan.token")
    assert token, "the app keeps the token after signing up"
    return str(token)


async def footer_backend(page: Page, testid: str) -> str | None:
    return await page.attr(f'[data-testid="{testid}"]', "data-backend")


async def no_problems(*pages: Page) -> None:
    for page in pages:
        assert await page.problems() == [], page.name


# -- two users on one whiteboard ------------------------------------------------------------------

COLOURS = {"alice": "#d01010", "bob": "#1010d0"}

# How many pixels of the canvas are close to a colour (anti-aliased edges excluded).
PIXELS_OF = """([r, g, b]) => {
  const canvas = document.querySelector('canvas.board')
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data
  let n = 0
  for (let i = 0; i < data.length; i += 4) {
    if (data[i + 3] > 200 && Math.abs(data[i] - r) < 30 && Math.abs(data[i + 1] - g) < 30
        && Math.abs(data[i + 2] - b) < 30) n++
  }
  return n
}"""


def rgb(colour: str) -> list[int]:
    return [int(colour[i : i + 2], 16) for i in (1, 3, 5)]


async def test_two_users_draw_on_one_board_and_see_each_others_strokes(
    tmp_path: Path, browser: Driver
) -> None:
    async with web_stack(tmp_path / "stack") as stack:
        proxy = stack.url("proxy")
        alice, bob = await browser.page("alice", proxy), await browser.page("bob", proxy)
        signed = await asyncio.gather(sign_up(alice, "alice"), sign_up(bob, "bob"))
        tokens = {"alice": signed[0], "bob": signed[1]}
        for page in (alice, bob):
            await page.goto("/#/board/studio")
            await page.wait('[data-testid="whiteboard-socket"][data-state="open"]')
            await page.fill('input[name="color"]', COLOURS[page.name])
        for page in (alice, bob):  # each sees the other here (awareness)
            await page.wait('[data-testid="presence"]:has-text("Here now: alice, bob")')

        await alice.draw("canvas.board", [(0.1, 0.2), (0.3, 0.25), (0.45, 0.5)])
        await bob.draw("canvas.board", [(0.6, 0.7), (0.75, 0.4), (0.9, 0.3)])

        for page in (alice, bob):
            await page.wait('[data-testid="strokes"][data-count="2"]')
            assert await page.text('[data-testid="strokes"]') == "2 strokes: alice 1, bob 1"
            for colour in COLOURS.values():  # both strokes are painted on both canvases
                assert await page.eval(PIXELS_OF, rgb(colour)) > 50, (page.name, colour)
            await page.screenshot("whiteboard")

        # the strokes are stored in the document's declared roots, on the serving backend
        async with httpx.AsyncClient() as client:
            answer = await client.get(
                f"{proxy}/api/whiteboard/studio",
                headers={"Authorization": f"Bearer {tokens['alice']}"},
            )
        doc = answer.json()["doc"]
        assert sorted(doc["order"]) == sorted(doc["shapes"])
        assert len(doc["order"]) == 2
        strokes = [doc["shapes"][key] for key in doc["order"]]
        assert [s["by"] for s in strokes] == ["alice", "bob"]
        assert all(s["kind"] == "stroke" and len(s["points"]) >= 3 for s in strokes)
        assert [s["color"] for s in strokes] == [COLOURS["alice"], COLOURS["bob"]]

        for page in (alice, bob):  # the footer tells the truth about the socket's backend
            assert await footer_backend(page, "whiteboard-socket") == "legacy"
            boards = [h for h in await page.handshakes() if h["path"] == "/ws/whiteboard/studio"]
            assert boards and all(h["backend"] == "legacy" for h in boards)
        await no_problems(alice, bob)


# -- a tutor answer streams across a flag flip ---------------------------------------------------

STREAMING = 'li.msg.assistant[data-state="streaming"]'
ANSWERED = 'li.msg.assistant[data-state="done"]'


async def banyan(*argv: str) -> str:
    """Run a ``banyan`` command as an operator would; return its output (exit 0 required)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "banyan.proxy.cli",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
    return output.decode()


async def stored_messages(base: str, session_id: str, token: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient() as client:
        answer = await client.get(
            f"{base}/api/sessions/{session_id}/messages?limit=200",
            headers={"Authorization": f"Bearer {token}"},
        )
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


async def ask(page: Page, question: str) -> None:
    await page.fill('role=textbox[name="Your question"]', question)
    await page.click('role=button[name="Ask"]')


async def test_tutor_answer_streams_while_the_tutor_feature_flips_to_new(
    tmp_path: Path, browser: Driver
) -> None:
    work = tmp_path / "stack"
    # slow tokens: an answer (20-60 tokens) streams for seconds, long enough to flip under it
    async with web_stack(work, model_args=["--token-delay-ms", "200"]) as stack:
        proxy, legacy, new = stack.url("proxy"), stack.url("legacy"), stack.url("new")
        page = await browser.page("alice", proxy)
        token = await sign_up(page, "alice")
        await page.fill('role=textbox[name="New session title"]', "Photosynthesis")
        await page.click('role=button[name="Start session"]')
        await page.wait('role=heading[name="Photosynthesis"]')
        await page.wait('[data-testid="tutor-socket"][data-state="open"]')
        assert await footer_backend(page, "tutor-socket") == "legacy"
        session_id = (await page.eval("() => location.hash")).rsplit("/", 1)[-1]
        # the migration's data step: the new store gets the user and the session
        stores = [f"sqlite+aiosqlite:///{work / name}.db" for name in ("legacy", "new")]
        await banyan("data", "backfill", "--legacy", stores[0], "--new", stores[1])

        await ask(page, "How do plants turn light into chemical energy?")
        await page.wait_for(
            "() => (document.querySelector('li.msg[data-state=streaming]')?.textContent ?? '')"
            ".length > 0"
        )
        await banyan("flags", "set", "tutor", "new", "--file", str(stack.flags_path))
        await wait_for_route(proxy, f"/ws/tutor/{session_id}", "new")
        # the flip is in force and the first answer is still streaming on legacy
        assert await page.count(STREAMING) == 1
        await page.screenshot("tutor-streaming")

        await page.wait(ANSWERED)
        first = await page.text(ANSWERED)
        assert await page.attr(ANSWERED, "data-served-by") == "legacy"
        on_legacy = await stored_messages(legacy, session_id, token)
        assert [m["role"] for m in on_legacy] == ["user", "assistant"]
        assert on_legacy[1]["content"] == first  # completed in full, stored where it started

        await ask(page, "Why are leaves green?")
        await page.wait(f"{ANSWERED} >> nth=1")
        second = f"{ANSWERED} >> nth=1"
        assert await page.attr(second, "data-served-by") == "new"
        assert await footer_backend(page, "tutor-socket") == "new"
        on_new = await stored_messages(new, session_id, token)
        assert [m["content"] for m in on_new if m["role"] == "user"] == ["Why are leaves green?"]
        assert on_new[-1]["content"] == await page.text(second)
        assert len(await stored_messages(legacy, session_id, token)) == 2  # legacy got no more
        await page.screenshot("tutor-after-flip")

        tutor = [h for h in await page.handshakes() if h["path"].startswith("/ws/tutor/")]
        assert [h["backend"] for h in tutor] == ["legacy", "new"]
        assert await page.text('[data-testid="tutor-socket"]') == "tutor socket: new"
        await no_problems(page)


async def test_a_tutor_socket_cut_by_a_reconnect_flip_comes_back_on_new_and_asks_again(
    tmp_path: Path, browser: Driver
) -> None:
    work = tmp_path / "stack"
    reconnect = {"tutor": {"websocket": "reconnect"}}  # the proxy closes open sockets with 1012
    async with web_stack(work, model_args=["--token-delay-ms", "200"], changes=reconnect) as stack:
        proxy, legacy, new = stack.url("proxy"), stack.url("legacy"), stack.url("new")
        page = await browser.page("dave", proxy)
        token = await sign_up(page, "dave")
        await page.fill('role=textbox[name="New session title"]', "Cells")
        await page.click('role=button[name="Start session"]')
        await page.wait('[data-testid="tutor-socket"][data-state="open"]')
        session_id = (await page.eval("() => location.hash")).rsplit("/", 1)[-1]
        stores = [f"sqlite+aiosqlite:///{work / name}.db" for name in ("legacy", "new")]
        await banyan("data", "backfill", "--legacy", stores[0], "--new", stores[1])

        await ask(page, "What does the mitochondrion do?")
        await page.wait_for(
            "() => (document.querySelector('li.msg[data-state=streaming]')?.textContent ?? '')"
            ".length > 0"
        )
        await banyan("flags", "set", "tutor", "new", "--file", str(stack.flags_path))
        # cut mid-answer (1012): the app reconnects, to new, and asks the question again there
        await page.wait('[data-testid="tutor-socket"][data-backend="new"][data-state="open"]')
        await page.wait(ANSWERED)
        assert await page.attr(ANSWERED, "data-served-by") == "new"
        assert await page.count('li.msg[data-role="user"]') == 1  # resumed, not duplicated
        on_new = await stored_messages(new, session_id, token)
        assert (on_new[0]["role"], on_new[0]["content"]) == (
            "user",
            "What does the mitochondrion do?",
        )
        assert on_new[-1]["content"] == await page.text(ANSWERED)
        assert await stored_messages(legacy, session_id, token) == []  # the cut turn stored nothing
        tutor = [h for h in await page.handshakes() if h["path"].startswith("/ws/tutor/")]
        assert [h["backend"] for h in tutor] == ["legacy", "new"]
        await no_problems(page)


# -- sign up, upload a document, take a quiz -------------------------------------------------------

NOTES = (
    "Photosynthesis happens in the chloroplasts of plant cells. Chlorophyll absorbs red and blue "
    "light and reflects green light, which is why leaves look green. The light reactions split "
    "water and release oxygen; the Calvin cycle fixes carbon dioxide into sugars using ATP and "
    "NADPH made by the light reactions.\n"
) * 20


async def test_a_new_user_uploads_a_document_and_takes_a_quiz(
    tmp_path: Path, browser: Driver
) -> None:
    async with web_stack(tmp_path / "stack") as stack:
        proxy = stack.url("proxy")
        page = await browser.page("carol", proxy)
        await page.goto("/")
        await page.wait('role=heading[name="Log in"]')
        await page.screenshot("login")
        token = await sign_up(page, "carol")
        await page.screenshot("tutor")

        await page.click('role=link[name="Documents"]')
        await page.wait('role=heading[name="Upload a document"]')
        await page.set_file(
            'input[name="file"]', "photosynthesis.txt", NOTES.encode(), "text/plain"
        )
        await page.fill('role=textbox[name="Title (optional)"]', "Photosynthesis notes")
        await page.click('role=button[name="Upload"]')
        await page.wait('[data-testid="upload-state"][data-status="ready"]')
        assert await page.eval("() => document.querySelector('progress').value") == 1
        assert await page.text('[data-testid="upload-state"]') == "Photosynthesis notes: ready"
        row = 'ul.documents li[data-status="ready"]'
        await page.wait(row)
        assert "Keywords:" in await page.text(row)
        assert await footer_backend(page, "api-backend") == "legacy"
        await page.screenshot("documents")

        await page.click('role=button[name="Make a quiz from Photosynthesis notes"]')
        await page.wait("form.quiz fieldset")
        questions = await page.count("form.quiz fieldset")
        assert questions >= 1
        for index in range(questions):
            await page.check(f'form.quiz fieldset >> nth={index} >> input[type="radio"] >> nth=0')
        await page.screenshot("quiz")
        await page.click('role=button[name="Submit answers"]')
        await page.wait('[data-testid="score"]')

        score = int(await page.attr('[data-testid="score"]', "data-score") or -1)
        total = int(await page.attr('[data-testid="score"]', "data-total") or -1)
        assert total == questions and 0 <= score <= total
        assert await page.count('.feedback li[data-correct="true"]') == score
        assert await page.count(".feedback li") == total
        assert (await page.text('[data-testid="score"]')).startswith(f"Score: {score} / {total}")
        await page.screenshot("quiz-result")

        quiz_id = (await page.eval("() => location.hash")).rsplit("/", 1)[-1]
        async with httpx.AsyncClient() as client:  # the quiz is the stored one, from the document
            quiz = (
                await client.get(
                    f"{proxy}/api/quizzes/{quiz_id}", headers={"Authorization": f"Bearer {token}"}
                )
            ).json()
        assert quiz["source"]["kind"] == "document" and len(quiz["questions"]) == questions
        await no_problems(page)
