"""banyan/logs.py: JSON lines, and no credential in any of them — ours or aiohttp's."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from banyan.logs import REDACTED, redact_event, redact_text
from banyan.ports import free_port
from tests.proxy.raw_upstream import raw_exchange

PROXY = [sys.executable, "-m", "banyan.proxy.cli", "proxy"]
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"


def test_text_quoting_credentials_is_redacted() -> None:
    text = (
        "b'GET /x?token=abc123&page=2 HTTP/1.1\\r\\nAuthorization: Bearer s3cr3t\\r\\n"
        "Cookie: sid=c00k1e\\r\\nX-Api-Key: k3y\\r\\n' "
        f'{{"password": "hunter2", "name": "ok"}} jwt {JWT} &api_key=zzz'
    )
    out = redact_text(text)
    for secret in ("abc123", "s3cr3t", "c00k1e", "k3y", "hunter2", JWT, "zzz"):
        assert secret not in out, (secret, out)
    assert "page=2" in out and '"name": "ok"' in out and "GET /x?token=" in out


def test_fields_named_like_secrets_are_redacted_whole() -> None:
    event = {
        "event": "x",
        "authorization": "Basic dXNlcjpwYXNz",
        "headers": {"Cookie": "a=1", "Accept": "*/*"},
        "path": "/ws?token=t0k",
        "count": 3,
    }
    out = redact_event(None, "info", event)
    assert out["authorization"] == REDACTED and out["headers"]["Cookie"] == REDACTED
    assert out["headers"]["Accept"] == "*/*" and out["count"] == 3
    assert out["path"] == f"/ws?token={REDACTED}"


def test_text_without_credentials_is_left_alone() -> None:
    text = "GET /api/sessions?page=2 200 in 1.2 ms (keep-alive)"
    assert redact_text(text) == text


def test_aiohttps_log_of_a_malformed_request_keeps_no_credential(tmp_path: Path) -> None:
    """A real proxy process: aiohttp's error log of a malformed request, our bad_request line and
    the access log all go to stderr as JSON lines, without the caller's credentials."""
    port = free_port()
    flags = tmp_path / "flags.yaml"
    flags.write_text(
        f"version: 1\nbackends:\n  legacy: http://127.0.0.1:{port}\n  new: http://127.0.0.1:{port}\n"
        "features:\n  all:\n    routes: ['/api/**']\n    mode: legacy\ndefault: legacy\n"
    )
    stderr = tmp_path / "stderr.log"
    with stderr.open("w") as err:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "banyan.proxy.cli",
                "proxy",
                "--flags",
                str(flags),
                "--port",
                "0",
            ],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env={**os.environ},
        )
        try:
            assert process.stdout is not None
            url = process.stdout.readline().rsplit(" ", 1)[1].strip()
            malformed = (
                b"GET /api/x?token=t0k3n HTTP/1.1\r\nHost: h\r\n"
                b"Authorization: Bearer s3cr3t\r\nCookie: sid=c00k1e\r\nBad\x01: x\r\n\r\n"
            )
            answer = asyncio.run(raw_exchange(url, malformed))
            refused = asyncio.run(
                raw_exchange(
                    url,
                    b"GET /api/y?password=hunter2 HTTP/1.1\r\nHost: h\r\n"
                    b"Authorization: Bearer s3cr3t\r\nConnection: close\r\n\r\n",
                )
            )
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    assert answer.startswith(b"HTTP/1.0 400") and refused.startswith(b"HTTP/1.1 502")
    text = stderr.read_text()
    for secret in ("t0k3n", "s3cr3t", "c00k1e", "hunter2", "127.0.0.1:" + str(port) + "'"):
        assert secret not in text.replace(f"127.0.0.1:{port}", "backend"), secret
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    events = {line.get("event") for line in lines}
    assert {"bad_request", "request", "upstream_failed"} <= events, events


def test_configure_routes_library_records_through_redaction(capsys: object) -> None:
    from banyan import logs

    logs.configure()
    logging.getLogger("aiohttp.server").error("Error handling request: Authorization: Bearer s3")
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    line = json.loads(err.strip().splitlines()[-1])
    assert line["component"] == "aiohttp.server" and "s3" not in line["event"]


def test_hot_event_writes_the_line_structlog_would(capsys: pytest.CaptureFixture[str]) -> None:
    from banyan import logs

    logs.configure()
    fields = {
        "request_id": "r1",
        "path": "/x?token=t0k3n",
        "status": 200,
        "duration_ms": 1.5,
        "error": None,
        "password": 7,
        "headers": {"Cookie": "c00k1e", "Accept": "*/*"},
    }
    logs.get_logger("proxy").info("request", **fields)
    logs.HotEvent("proxy", "request", tuple(fields)).emit(*fields.values())
    slow, fast = (json.loads(line) for line in capsys.readouterr().err.strip().splitlines()[-2:])
    assert list(fast) == list(slow)
    stamps = fast.pop("timestamp"), slow.pop("timestamp")
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z", s) for s in stamps)
    assert fast == slow and "t0k3n" not in str(fast) and fast["password"] == REDACTED


async def test_hot_lines_wait_for_the_end_of_the_loop_turn_and_keep_their_order(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from banyan import logs

    logs.configure()
    hot = logs.HotEvent("proxy", "request", ("request_id",))
    hot.emit("1")
    hot.emit("2")
    assert capsys.readouterr().err == ""  # held until the turn ends
    logs.get_logger("proxy").warning("now")  # written at once, after the lines held
    await asyncio.sleep(0)
    hot.emit("3")
    await asyncio.sleep(0)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(e["event"], e.get("request_id")) for e in lines] == [
        ("request", "1"),
        ("request", "2"),
        ("now", None),
        ("request", "3"),
    ]
