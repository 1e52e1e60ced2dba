"""``banyan rollout`` as a user types it, against a real proxy: start, status (text, --json,
--watch), pause, resume, promote, abort; the proxy found from the flag file's state folder."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from banyan.admin_token import admin_headers
from banyan.proxy.cli import main as banyan
from banyan.rollout.cli import DEFAULT_URL, proxy_url, render
from banyan.rollout.store import advertise

LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[")
FEATURE = """\
  api:
    routes: ["/api/**", "/status/*"]
    mode: legacy
    rollout:
      steps:
        - mirror: {}
        - shadow: {for: 1h}
        - canary: {percent: 10, for: 1h}
        - new: {}
"""


async def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(banyan, ["rollout", *argv])
    out, err = capsys.readouterr()
    # the proxy runs in this process: its log lines share stdout with the command's output
    out = "".join(line for line in out.splitlines(True) if not LOG_LINE.match(line))
    return code, out, err


async def test_every_command_through_the_running_proxy(
    make_stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    async with make_stack(FEATURE) as stack:
        flags = str(stack.flags)
        parts = urlsplit(stack.url)
        advertise(flags, parts.hostname or "", parts.port or 0)  # as `banyan proxy` does
        code, out, _ = await run(capsys, "status", "--flags", flags)
        assert (code, out.strip()) == (0, "no rollouts")
        code, out, _ = await run(capsys, "start", "api", "--flags", flags, "--json")
        assert code == 0 and json.loads(out)["state"] == "running"
        for _ in range(100):
            code, out, _ = await run(capsys, "status", "api", "--flags", flags, "--json")
            if json.loads(out)["step"] == 1 and json.loads(out)["applied"]:
                break
            await asyncio.sleep(0.05)
        record = json.loads(out)
        assert code == 0 and record["mode"] == "shadow"
        assert {"feature", "state", "step", "steps", "gates", "reason"} <= set(record)
        code, out, _ = await run(capsys, "status", "api", "--flags", flags)
        assert code == 0 and out.startswith("api: running at step 2/4 (shadow)")
        assert "steps: mirror -> shadow -> canary 10% -> new" in out
        running = {"feature": "api", "state": "running", "step": 1, "label": "shadow", "steps": 4}
        assert await _status_rollouts(stack.url) == [running]
        code, out, _ = await run(capsys, "pause", "api", "--flags", flags)
        assert code == 0 and out.startswith("api: paused at step 2/4")
        code, _, err = await run(capsys, "pause", "api", "--flags", flags)
        assert code == 1 and "409" in err and "already paused" in err
        code, out, _ = await run(capsys, "resume", "api", "--flags", flags)
        assert code == 0 and out.startswith("api: running")
        code, out, _ = await run(capsys, "promote", "api", "--proxy", stack.url)
        assert code == 0 and "step 3/4 (canary 10%)" in out
        code, out, _ = await run(capsys, "abort", "api", "--flags", flags)
        assert code == 0 and out.startswith("api: aborted at step 3/4")
        code, out, _ = await run(capsys, "status", "api", "--watch", "--flags", flags)
        assert code == 1 and "aborted by the operator" in out  # --watch ends: it aborted
        assert await _status_rollouts(stack.url) == []  # /_proxy/status shows running ones only
    assert stack.state.flags.feature("api").mode == "legacy"


async def _status_rollouts(url: str) -> Any:
    headers = admin_headers(None)  # the test's exported token
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as http:
        answer = await http.get("/_proxy/status")
    assert answer.status_code == 200, answer.text
    return answer.json()["rollouts"]


async def test_refusals_and_an_unreachable_proxy(
    make_stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = '  plain:\n    routes: ["/plain/**"]\n'
    async with make_stack(FEATURE + plain) as stack:
        code, _, err = await run(capsys, "start", "nope", "--proxy", stack.url)
        assert code == 1 and "404" in err and "no feature 'nope'" in err
        code, _, err = await run(capsys, "start", "plain", "--proxy", stack.url)
        assert code == 1 and "409" in err and "has no rollout block" in err
    code, _, err = await run(capsys, "start", "api", "--proxy", stack.url, "--timeout", "2")
    assert code == 1 and "cannot reach the proxy" in err
    code, _, err = await run(capsys, "pause")
    assert code == 2 and "FEATURE is required" in err


def test_where_the_proxy_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flags = tmp_path / "flags.yaml"
    monkeypatch.delenv("BANYAN_PROXY_URL", raising=False)
    assert proxy_url(str(flags), None) == DEFAULT_URL
    advertise(flags, "0.0.0.0", 9000)
    assert proxy_url(str(flags), None) == "http://127.0.0.1:9000"
    advertise(flags, "::1", 9001)
    assert proxy_url(str(flags), None) == "http://[::1]:9001"
    monkeypatch.setenv("BANYAN_PROXY_URL", "http://env:1/")
    assert proxy_url(str(flags), None) == "http://env:1"
    assert proxy_url(str(flags), "http://given:2/") == "http://given:2"


def test_render_shows_gates_and_their_verdicts() -> None:
    text = render(
        {
            "feature": "f",
            "state": "running",
            "step": 0,
            "steps": [{"label": "shadow", "for": "10m"}],
            "elapsed_s": 12.4,
            "gates": [
                {"name": "min_samples", "observed": 3, "limit": 5, "ok": False, "samples": 3},
                {
                    "name": "max_error_rate",
                    "observed": None,
                    "limit": 0.01,
                    "ok": True,
                    "judged": False,
                    "samples": 0,
                },
                {
                    "name": "max_status_shift",
                    "observed": 0.5,
                    "limit": 0.01,
                    "ok": False,
                    "judged": True,
                    "samples": 9,
                },
                {
                    "name": "max_latency_ratio",
                    "observed": 3.1,
                    "limit": 3.0,
                    "ok": False,
                    "judged": True,
                    "samples": 30,
                    "medians_ms": {"legacy": 2.04, "new": 6.3251},
                },
            ],
            "reason": "why",
        }
    )
    assert text.splitlines() == [
        "f: running at step 1/1 (shadow), 12s of 10m",
        "  steps: shadow",
        "  gate min_samples: 3 (limit 5, 3 samples) FAILED",
        "  gate max_error_rate: - (limit 0.01, 0 samples) not judged yet",
        "  gate max_status_shift: 0.5 (limit 0.01, 9 samples) FAILED",
        "  gate max_latency_ratio: 3.1 (limit 3, 30 samples) FAILED"
        " (medians: new 6.33 ms, legacy 2.04 ms)",
        "  reason: why",
    ]
