"""The checkout's admin token: made once and private, exported one wins, found by the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from banyan import admin_token


@pytest.fixture
def flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(admin_token.TOKEN_ENV, raising=False)
    monkeypatch.delenv("BANYAN_FLAGS", raising=False)
    path = tmp_path / "flags.yaml"
    path.write_text("version: 1\n")
    return path


def test_made_once_private_and_found(flags: Path) -> None:
    assert admin_token.find_token(flags) is None
    assert admin_token.admin_headers(flags) == {}
    made = admin_token.stack_token(flags)
    path = flags.parent / ".banyan" / "admin-token"
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(made) >= 32 and admin_token.stack_token(flags) == made
    assert admin_token.find_token(flags) == made
    assert admin_token.admin_headers(str(flags)) == {"Authorization": f"Bearer {made}"}
    other = flags.parent / "other" / "flags.yaml"
    other.parent.mkdir()
    assert admin_token.stack_token(other) != made  # random per checkout


def test_the_default_flag_file_is_banyan_flags(
    flags: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = admin_token.stack_token(flags)
    monkeypatch.setenv("BANYAN_FLAGS", str(flags))
    assert admin_token.find_token(None) == made


def test_an_exported_token_wins(flags: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    admin_token.stack_token(flags)
    monkeypatch.setenv(admin_token.TOKEN_ENV, "exported-token-value")
    assert admin_token.stack_token(flags) == "exported-token-value"
    assert admin_token.find_token(flags) == "exported-token-value"


def test_a_token_others_can_read_or_a_short_one_is_refused(flags: Path) -> None:
    path = admin_token.token_path(flags)
    path.parent.mkdir()
    path.write_text("t" * 40)
    path.chmod(0o644)
    with pytest.raises(admin_token.AdminTokenError, match="other users"):
        admin_token.stack_token(flags)
    assert admin_token.find_token(flags) is None  # the CLI sends none; the proxy says why
    path.chmod(0o600)
    path.write_text("short\n")
    with pytest.raises(admin_token.AdminTokenError, match="no usable admin token"):
        admin_token.stack_token(flags)


def test_up_refuses_an_unusable_token_file(flags: Path) -> None:
    from banyan.proxy import stack

    path = admin_token.token_path(flags)
    path.parent.mkdir()
    path.write_text("t" * 40)
    path.chmod(0o640)
    flags.write_text("version: 1\nbackends: {}\nfeatures: {}\ndefault: legacy\n")
    assert stack.main(["--flags", str(flags)]) == 2
