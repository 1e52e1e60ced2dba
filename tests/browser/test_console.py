"""The Banyan console (/_proxy/ui/) in headless Chromium, on the whole stack started as
``banyan up`` does, the admin token set.

The planted mismatch is real: ``folders`` is shadowed (legacy serves, new gets a copy of reads)
and does not mirror writes, so a folder created through the proxy exists on legacy only, and the
next listing differs at ``$.items[0]``. A QA user finds it in the console, filters to it, sees
both answers side by side with the differing parts highlighted and replays it. An engineer reads a
flip in the features panel and the audit history, promotes and aborts a rollout while ``banyan
rollout status --json`` reports the same state, and retries a dead letter once its cause is fixed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from banyan.processes import RunningStack, running_stack
from tests.browser.harness import JWT_SECRET, Driver, Page, shipped_features

ADMIN = "console-browser-admin-token"
PASSWORD = "correct horse battery"


# quizzes carries a rollout plan whose steps never end by themselves (the engineer moves it)
PLAN = {
    "steps": [
        {"mirror": {"for": "1h"}},
        {"shadow": {"for": "1h"}},
        {"canary": {"percent": 10, "for": "1h"}},
        {"new": {}},
    ],
    "analysis": {"max_mismatch_rate": 0.01, "min_samples": 200},
}


SHIPPED_CHANGES: dict[str, dict[str, Any]] = {
    "folders": {"mode": "shadow"},
    "quizzes": {"rollout": PLAN},
}
# registration stays on new and sessions mirror to legacy: a user's session cannot land there
DEAD_LETTER_CHANGES: dict[str, dict[str, Any]] = {
    "register": {"mode": "new", "writes": "skip"},
    "auth": {"mode": "new", "writes": "skip"},
    "sessions": {"mode": "new", "writes": "mirror"},
}


@contextlib.asynccontextmanager
async def console_stack(
    workdir: Path, changes: dict[str, dict[str, Any]] | None = None
) -> AsyncIterator[RunningStack]:
    env = {"BANYAN_JWT_SECRET": JWT_SECRET, "BANYAN_ADMIN_TOKEN": ADMIN}
    features = shipped_features(changes or SHIPPED_CHANGES)
    async with running_stack(workdir, features=features, env=env) as stack:
        yield stack


async def plant_mismatch(proxy: str) -> str:
    """A user creates a folder (legacy only) and lists their folders through the proxy."""
    async with httpx.AsyncClient(base_url=proxy) as client:
        answer = await client.post(
            "/api/auth/register",
            json={"email": "qa@example.org", "password": PASSWORD, "name": "QA"},
        )
        assert answer.status_code == 201, answer.text
        token = answer.json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        made = await client.post("/api/folders", json={"name": "Biology"}, headers=auth)
        assert made.status_code == 201, made.text
        listed = await client.get("/api/folders", headers=auth)
        assert listed.status_code == 200 and listed.headers["x-banyan-backend"] == "legacy"
        # the comparison is recorded once the candidate answered: wait until the proxy has it
        admin = {"Authorization": f"Bearer {ADMIN}"}
        for _ in range(200):
            found = await client.get(
                "/_proxy/parity/mismatches",
                params={"feature": "folders", "path": "$.items[*]"},
                headers=admin,
            )
            if found.json()["items"]:
                return str(token)
            await asyncio.sleep(0.05)
        summary = (await client.get("/_proxy/parity.json", headers=admin)).text
        raise AssertionError(f"the shadowed comparison was never recorded: {summary}")


async def banyan(*argv: str) -> Any:
    """``banyan ARGV`` as an engineer types it (with the admin token in the environment), its
    output read as JSON; it must exit 0."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "banyan.proxy.cli",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "BANYAN_ADMIN_TOKEN": ADMIN},
    )
    output, errors = await process.communicate()
    assert process.returncode == 0, (output + errors).decode()
    return json.loads(output)


async def unexpected(page: Page, *expected: str) -> list[str]:
    """The page's console errors, less failed loads the test causes on purpose (``expected``:
    statuses or endpoints, such as a panel probing an endpoint this proxy may not have yet)."""
    return [
        p
        for p in await page.problems()
        if not ("Failed to load resource" in p and any(e in p for e in expected))
    ]


async def use_admin_token(page: Page) -> None:
    await page.fill('role=textbox[name="Admin token"]', ADMIN)
    await page.click('role=button[name="Use token"]')
    await page.wait('[data-testid="access"]:has-text("Admin: actions enabled")')


async def test_qa_finds_filters_and_replays_a_planted_mismatch(
    tmp_path: Path, browser: Driver
) -> None:
    async with console_stack(tmp_path / "stack") as stack:
        proxy = stack.url("proxy")
        user_token = await plant_mismatch(proxy)
        qa = await browser.page("qa", proxy)
        await qa.goto("/_proxy/parity")  # the old page's address leads to the console
        await qa.wait("#notice:has-text('Paste the admin token')")
        assert await qa.text('[data-testid="access"]') == "Read-only"
        await qa.screenshot("console-without-token")
        await use_admin_token(qa)
        assert await qa.eval("() => sessionStorage.getItem('banyan.adminToken')") == ADMIN
        assert await qa.eval("() => localStorage.length") == 0

        await qa.wait('role=heading[name="Parity"]')
        await qa.wait('role=table[name="Parity per endpoint"] >> text=folders')
        await qa.wait(".chart svg circle.dot.bad")  # the match rate fell this hour
        await qa.screenshot("parity-overview")

        # filter down to the mismatch: feature, endpoint, differing path, time window
        await qa.eval(
            """() => {
              const form = document.querySelector('form.filters')
              form.feature.value = 'folders'
              form.feature.dispatchEvent(new Event('change'))
            }"""
        )
        await qa.click('role=button[name="Apply"]')
        await qa.wait('[data-filters="#/parity?feature=folders"] form.filters')
        await qa.eval(
            """() => {
              const form = document.querySelector('form.filters')
              form.endpoint.value = 'GET /api/folders'
              form.path.value = '$.items[*]'
              form.since.value = '1h'
            }"""
        )
        await qa.click('role=button[name="Apply"]')
        await qa.wait('[data-filters*="path="] [data-testid="example-request"]')
        assert await qa.text('[data-testid="example-request"]') == "GET /api/folders"
        assert "feature=folders" in await qa.eval("() => location.hash")
        assert "path=%24.items%5B*%5D" in await qa.eval("() => location.hash")
        position = await qa.text('[data-testid="mismatch-position"]')
        assert position.strip().startswith("Mismatch 1 of ")

        # both answers side by side; what differs is highlighted on each side
        primary = '[data-testid="answer-primary"]'
        candidate = '[data-testid="answer-candidate"]'
        assert await qa.text(f"{primary} h4") == "legacy (primary)"
        assert await qa.text(f"{candidate} h4") == "new (candidate)"
        assert await qa.count('mark[data-path="status"]') == 0  # both answered 200
        assert "Biology" in await qa.text(f'{primary} pre mark.diff[data-path="$.items[0]"]')
        # new's list lacks it: the list is what is highlighted there
        assert await qa.text(f'{candidate} pre mark.diff[data-path="$.items"]') == "[]"
        await qa.screenshot("mismatch-side-by-side")

        # replay it with the user's token: new still refuses, so it still differs
        await qa.fill('role=textbox[name="Bearer token for the replayed request"]', user_token)
        await qa.click('role=button[name="Replay"]')
        await qa.wait('[data-testid="replay-result"] [data-verdict]')
        verdict = await qa.text('[data-testid="replay-result"] [data-verdict]')
        assert verdict == "Still differs (legacy 200, new 200)"
        await qa.screenshot("replayed")
        assert await unexpected(qa, "401") == []


async def test_features_audit_and_mirror_panels(tmp_path: Path, browser: Driver) -> None:
    async with console_stack(tmp_path / "stack") as stack:
        proxy = stack.url("proxy")
        engineer = await browser.page("engineer", proxy)
        await engineer.goto("/_proxy/ui/")
        await use_admin_token(engineer)
        await engineer.wait('role=heading[name="Features"]')
        assert await engineer.text('[data-testid="mode-folders"]') == "shadow (primary legacy)"
        assert await engineer.text('[data-testid="mode-quizzes"]') == "legacy"

        # traffic shows up in the live split; a flag change shows up in mode and audit
        async with httpx.AsyncClient(base_url=proxy) as client:
            for _ in range(5):
                await client.get("/api/quizzes/none")
            flipped = await client.put(
                "/_proxy/flags/quizzes",
                json={"mode": "new"},
                headers={"Authorization": f"Bearer {ADMIN}"},
            )
            assert flipped.status_code == 200, flipped.text
            for _ in range(3):
                await client.get("/api/quizzes/none")
        await engineer.wait('[data-testid="mode-quizzes"]:has-text("new")')
        await engineer.wait_for(
            """() => {
              const split = document.querySelector('[data-testid="split-quizzes"]')
              return split && split.textContent.includes('total legacy 5, new 3')
            }"""
        )
        await engineer.screenshot("features")

        await engineer.click('role=link[name="Audit"]')
        await engineer.wait('role=table[name="Audit history"] >> text=quizzes')
        row = await engineer.text('role=table[name="Audit history"] >> tr:has-text("quizzes")')
        assert "admin" in row and 'mode: "legacy" → "new"' in row
        await engineer.screenshot("audit")

        await engineer.click('role=link[name="Mirror"]')
        await engineer.wait('role=heading[name="Mirror dead letters"]')
        assert (await engineer.text('[data-testid="mirror-counts"]')).startswith("Queue: ")
        await engineer.click('role=link[name="Rollouts"]')
        await engineer.wait('role=heading[name="Rollouts"]')
        await engineer.screenshot("rollouts")
        assert await unexpected(engineer, "401") == []


async def test_an_engineer_promotes_and_aborts_a_rollout_and_the_cli_agrees(
    tmp_path: Path, browser: Driver
) -> None:
    async with console_stack(tmp_path / "stack") as stack:
        proxy = stack.url("proxy")
        engineer = await browser.page("engineer", proxy)
        await engineer.goto("/_proxy/ui/#/rollouts")
        await use_admin_token(engineer)
        card = '[data-testid="rollout-quizzes"]'

        await engineer.click('role=button[name="Start quizzes"]')
        await engineer.wait(f'{card}[data-state="running"][data-step="0"]')
        assert await engineer.text('[data-testid="rollout-quizzes-step"]') == (
            "Step 1 of 4: mirror for 1h"
        )
        await engineer.screenshot("rollout-started")

        await engineer.click(f'{card} >> role=button[name="Promote"]')
        await engineer.wait(f'{card}[data-state="running"][data-step="1"]')
        await engineer.wait(f'{card} >> role=table[name="Gates of quizzes"]')
        await engineer.screenshot("rollout-promoted")
        [shown] = await banyan("rollout", "status", "--json", "--proxy", proxy)
        assert (shown["feature"], shown["state"], shown["step"]) == ("quizzes", "running", 1)
        assert shown["mode"] == "shadow"
        assert [g["name"] for g in shown["gates"]] == [
            await engineer.eval(
                "(n) => document.querySelectorAll('[aria-label=\"Gates of quizzes\"] tbody tr')"
                "[n].cells[0].textContent",
                i,
            )
            for i in range(len(shown["gates"]))
        ]

        await engineer.click(f'{card} >> role=button[name="Abort"]')  # asks once more
        await engineer.click(f'{card} >> role=button[name="Confirm abort of quizzes"]')
        await engineer.wait(f'{card}[data-state="aborted"]')
        await engineer.screenshot("rollout-aborted")
        [shown] = await banyan("rollout", "status", "--json", "--proxy", proxy)
        assert (shown["state"], shown["step"], shown["mode"]) == ("aborted", 1, "legacy")
        assert shown["reason"] and shown["reason"] in await engineer.text(card)

        await engineer.click('role=link[name="Features"]')
        await engineer.wait('[data-testid="mode-quizzes"]:has-text("legacy")')
        await engineer.click('role=link[name="Audit"]')
        await engineer.wait('role=table[name="Audit history"] >> text=rollout')
        await engineer.screenshot("rollout-audit")
        assert await unexpected(engineer, "401") == []


@pytest.mark.timeout(600)  # the dead letter alone takes the queue's ~140 s of retries
async def test_an_engineer_retries_a_dead_letter_once_its_cause_is_fixed(
    tmp_path: Path, browser: Driver
) -> None:
    async with console_stack(tmp_path / "stack", DEAD_LETTER_CHANGES) as stack:
        proxy = stack.url("proxy")
        account = {"email": "dead@example.org", "password": PASSWORD, "name": "Dee"}
        admin = {"Authorization": f"Bearer {ADMIN}"}
        async with httpx.AsyncClient(base_url=proxy) as client:
            made = await client.post("/api/auth/register", json=account)
            assert made.status_code == 201 and made.headers["x-banyan-backend"] == "new"
            auth = {"Authorization": f"Bearer {made.json()['token']}"}
            created = await client.post("/api/sessions", json={"title": "Cells"}, headers=auth)
            assert created.status_code == 201, created.text
            # legacy refuses the mirrored session (its user is unknown there) and the queue
            # retries a 401 as "not yet": 12 attempts, about 140 s of backoff, then a dead letter
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                listing = (await client.get("/_proxy/mirror", headers=admin)).json()
                if listing["letters"]:
                    break
                await asyncio.sleep(0.2)
            [letter] = listing["letters"]
        engineer = await browser.page("engineer", proxy)
        await engineer.goto("/_proxy/ui/#/mirror")
        await use_admin_token(engineer)
        table = 'role=table[name="Dead letters"]'
        await engineer.wait(f'{table} >> code:has-text("/api/sessions")')
        row = await engineer.text(f"{table} >> tbody tr")
        assert "sessions" in row and "legacy" in row and letter["reason"] in row
        await engineer.screenshot("dead-letter")

        # the cause: the user is not on legacy. Register them there (same email, same id), retry
        async with httpx.AsyncClient(base_url=stack.url("legacy")) as client:
            assert (await client.post("/api/auth/register", json=account)).status_code == 201
        await engineer.click(f'{table} >> role=button[name="Retry"]')
        await engineer.wait('[data-testid="mirror-message"]:has-text("retry #")')
        await engineer.wait('[data-testid="no-dead-letters"]')
        await engineer.screenshot("retried")
        async with httpx.AsyncClient(base_url=stack.url("legacy")) as client:
            login = await client.post(
                "/api/auth/login", json={k: account[k] for k in ("email", "password")}
            )
            assert login.status_code == 200, login.text
            mine = await client.get(
                "/api/sessions",
                headers={"Authorization": f"Bearer {login.json()['token']}"},
            )
        assert [s["title"] for s in mine.json()["items"]] == ["Cells"]
        assert await unexpected(engineer, "401") == []
