"""Tests for banyan/parity/replay.py beyond what the CLI and admin tests cover: what is sent, and
a backend that cannot be reached."""

from __future__ import annotations

from banyan.parity.compare import Rules
from banyan.parity.replay import replay, replay_headers
from banyan.ports import free_port


def test_stored_credentials_and_framing_are_never_sent() -> None:
    stored = {
        "Authorization": "[redacted]",
        "Cookie": "[redacted]",
        "Host": "proxy.example",
        "Content-Length": "3",
        "Accept": "application/json",
    }
    assert replay_headers(stored, None) == {"Accept": "application/json"}
    assert replay_headers(stored, "t0k")["Authorization"] == "Bearer t0k"


async def test_an_unreachable_backend_is_an_error_not_an_exception() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    example = {
        "id": 7,
        "method": "POST",
        "url": "/api/things",
        "request": {"headers": {"Content-Type": "application/json"}, "body": '{"a": 1}'},
        "primary_backend": "legacy",
        "candidate_backend": "new",
    }
    result = await replay(example, {"legacy": dead, "new": dead}, Rules(), timeout=5)
    assert result["request"] == "POST /api/things" and result["example"] == 7
    assert result["status"] == {"legacy": 0, "new": 0}
    assert len(result["errors"]) == 2 and all("Connect" in e for e in result["errors"])
