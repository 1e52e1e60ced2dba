"""Tests of banyan/proxy/mirror_cli.py's listing (the command against a running proxy is in
tests/proxy/test_mirror_admin.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from banyan.admin_token import admin_headers
from banyan.proxy.mirror_cli import render


def test_the_listing_shows_each_letter_with_its_reason() -> None:
    body = {
        "pending": 1,
        "dead": 1,
        "delivered": 5,
        "retried": 2,
        "dropped": 0,
        "letters": [
            {
                "id": 3,
                "created_at": 1_795_417_200.5,
                "feature": "sessions",
                "target": "legacy",
                "method": "PATCH",
                "path_qs": "/api/sessions/x",
                "attempts": 1,
                "reason": "legacy answered 400 validation_error: title",
            }
        ],
    }
    lines = render(body).splitlines()
    assert lines[0] == "mirror queue: 1 pending, 1 dead, 5 delivered, 2 retried, 0 dropped"
    assert lines[1] == (
        "#3  2026-11-23 07:00:00Z  sessions -> legacy  PATCH /api/sessions/x  (1 attempt)"
    )
    assert lines[2] == "    reason: legacy answered 400 validation_error: title"
    assert render({"letters": []}).endswith("no dead letters")


def test_the_admin_token_is_sent_when_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BANYAN_ADMIN_TOKEN", "tok")
    assert admin_headers(tmp_path / "flags.yaml") == {"Authorization": "Bearer tok"}
    monkeypatch.delenv("BANYAN_ADMIN_TOKEN")
    assert admin_headers(tmp_path / "flags.yaml") == {}
