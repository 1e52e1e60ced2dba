"""Tests of banyan/proxy/status_cli.py's screen (the command against a running proxy is in
tests/proxy/test_mirror_admin.py)."""

from __future__ import annotations

from typing import Any

from banyan.proxy.status_cli import render


def _status(**extra: Any) -> dict[str, Any]:
    return {
        "version": "1.0",
        "flags": {"digest": "abcdef0123456789"},
        "features": {
            "sessions": {
                "mode": "canary",
                "percent": 10,
                "writes": "mirror",
                "requests": {"legacy": 90, "new": 10},
            },
            "tutor": {"mode": "shadow", "primary": "legacy", "writes": "mirror", "requests": {}},
            "web": {"mode": "legacy", "writes": "skip"},
        },
        "mirror": {"pending": 2, "dead": 7, "delivered": 40},
        "rollbacks": [{"feature": "sessions", "rule": "max_error_rate", "message": "guard x"}],
        "backends": {"legacy": {"healthy": True}, "new": {"healthy": False, "error": "down"}},
        **extra,
    }


def test_one_screen_puts_what_needs_attention_first() -> None:
    letters = [
        {
            "id": n,
            "feature": "sessions",
            "target": "legacy",
            "method": "POST",
            "path_qs": "/api/sessions",
            "reason": f"legacy answered 409 #{n}",
        }
        for n in range(7)
    ]
    screen = render(_status(), letters).splitlines()
    assert screen[0] == "banyan proxy 1.0, flags abcdef012345"
    assert screen[1] == "NEEDS ATTENTION (3):"  # computed when the proxy sent no list
    assert "7 mirrored writes" in screen[2] and "guard x" in screen[3] and "new: down" in screen[4]
    text = "\n".join(screen)
    assert "canary 10%" in text and "shadow (legacy answers)" in text
    assert "mirror queue: 2 pending, 7 dead, 40 delivered" in text
    assert text.count("  dead #") == 5 and "`banyan mirror list` shows them all" in text
    assert "guard rollbacks since start: 1" in text and "backends: legacy up, new DOWN" in text
    assert "rollouts: none running" in text


def test_running_rollouts_are_shown() -> None:
    rollouts = [
        {"feature": "sessions", "state": "running", "step": 2, "label": "canary 10%", "steps": 5},
        {"feature": "tutor", "state": "paused", "step": 1, "label": "shadow", "steps": 5},
    ]
    text = render(_status(rollouts=rollouts), [])
    assert "rollout sessions: running at step 3/5 (canary 10%)" in text
    assert "rollout tutor: paused at step 2/5 (shadow)" in text
    assert "none running" not in text


def test_a_quiet_proxy() -> None:
    status = _status(attention=[], mirror=None, rollbacks=[], backends={})
    text = render(status, [])
    assert "nothing needs attention" in text and "mirror queue: off" in text
    assert "backends:" not in text
