"""Tests for banyan/parity/location.py: the report reads the store the stack writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from banyan.parity.location import default_url, sqlite_file, store_url
from banyan.proxy.shadow import parity_url


def test_the_proxy_and_the_cli_agree_on_the_default_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BANYAN_PARITY_DB", raising=False)
    flags = tmp_path / "flags.yaml"
    expected = f"sqlite+aiosqlite:///{tmp_path / '.banyan' / 'parity.db'}"
    assert default_url(flags) == parity_url(flags) == expected  # banyan up's data dir
    (tmp_path / "parity.db").write_bytes(b"")  # where a proxy used to write, alone there
    assert default_url(flags) == f"sqlite+aiosqlite:///{tmp_path / 'parity.db'}"
    (tmp_path / ".banyan").mkdir()
    (tmp_path / ".banyan" / "parity.db").write_bytes(b"")
    assert default_url(flags) == expected
    monkeypatch.setenv("BANYAN_PARITY_DB", "postgresql://u@h/db")
    assert default_url(flags) == "postgresql+asyncpg://u@h/db"


def test_db_takes_a_path_or_a_url(tmp_path: Path) -> None:
    assert store_url(str(tmp_path / "p.db")) == f"sqlite+aiosqlite:///{tmp_path / 'p.db'}"
    assert store_url("sqlite:////x/p.db") == "sqlite+aiosqlite:////x/p.db"
    assert store_url("postgres://u@h/db") == "postgresql+asyncpg://u@h/db"
    assert store_url("postgresql+asyncpg://u@h/db") == "postgresql+asyncpg://u@h/db"
    assert sqlite_file("sqlite+aiosqlite:////x/p.db") == Path("/x/p.db")
    assert sqlite_file("sqlite+aiosqlite:///:memory:") is None
    assert sqlite_file("postgresql+asyncpg://u@h/db") is None
