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

from banyan.proxy.flag_edit import set_mode
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
    await page.wait(f'text=Signed in as {name}')
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
        tokens = dict(zip(("alice", "bob"), await asyncio.gather(sign_up(alice, "alice"), sign_up(bob, "bob")), strict=True))
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
