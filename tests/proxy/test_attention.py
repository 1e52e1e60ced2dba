"""Tests of banyan/proxy/attention.py: what in a status document needs an operator."""

from __future__ import annotations

from typing import Any

from banyan.proxy.attention import attention


def test_attention_lists_what_needs_a_look() -> None:
    status: dict[str, Any] = {
        "mirror": {"dead": 1},
        "rollbacks": [{"feature": "sessions", "rule": "max_error_rate", "message": "guard x"}],
        "flags": {"last_error": "flags.yaml:3: bad mode"},
        "backends": {"new": {"healthy": False, "error": "connect refused"}, "legacy": {}},
    }
    kinds = [(item["kind"], item["message"]) for item in attention(status)]
    assert kinds == [
        (
            "dead_letters",
            "1 mirrored write the other store did not take: see `banyan mirror "
            "list`, then retry or drop",
        ),
        ("guard_rollback", "rolled back to legacy: guard x"),
        (
            "flags_error",
            "the flag file is invalid (the last good version serves): flags.yaml:3: bad mode",
        ),
        ("backend_down", "new: connect refused"),
    ]
    assert attention({"mirror": None, "rollbacks": [], "flags": {}}) == []
