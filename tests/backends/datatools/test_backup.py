"""Tests of ``banyan data backup`` and ``restore`` on SQLite files and PostgreSQL databases."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from banyan.backends.datatools.backup import sqlite_path
from banyan.backends.datatools.cli import main
from banyan.pg import postgres_available, temp_database
from tests.backends.datatools.conftest import fill_legacy, run_cli


def _make_store(path: Path, rows: int) -> None:
    con = sqlite3.connect(path)
    with con:
        con.execute("CREATE TABLE users (id TEXT PRIMARY KEY, email TEXT)")
        con.executemany(
            "INSERT INTO users VALUES (?, ?)", [(str(i), f"u{i}@x.io") for i in range(rows)]
        )
    con.close()


def test_round_trip_and_force_refusal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, out, dst = tmp_path / "a.db", tmp_path / "a.bak", tmp_path / "b.db"
    _make_store(src, 5)
    assert main(["backup", "--db", f"sqlite+aiosqlite:///{src}", "--out", str(out)]) == 0
    assert main(["backup", "--db", f"sqlite+aiosqlite:///{src}", "--out", str(out)]) == 1
    assert "backup file exists" in capsys.readouterr().err
    assert main(["restore", "--db", f"sqlite+aiosqlite:///{dst}", "--in", str(out)]) == 0
    con = sqlite3.connect(dst)
    assert con.execute("SELECT COUNT(*) FROM users").fetchone()[0] == 5
    con.close()
    assert main(["restore", "--db", f"sqlite:///{dst}", "--in", str(out)]) == 1
    assert "not empty (5 rows)" in capsys.readouterr().err
    assert main(["restore", "--db", f"sqlite:///{dst}", "--in", str(out), "--force"]) == 0


def test_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError):
        sqlite_path("postgresql+asyncpg://postgres@127.0.0.1/test")
    assert main(["backup", "--db", f"sqlite:///{tmp_path / 'none.db'}", "--out", "x"]) == 1
    assert (
        main(
            ["restore", "--db", f"sqlite:///{tmp_path / 'b.db'}", "--in", str(tmp_path / "no.bak")]
        )
        == 1
    )
    assert "no such backup" in capsys.readouterr().err
    assert not (tmp_path / "no.bak").exists()


async def test_postgres_backup_and_restore(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not await postgres_available():
        pytest.skip("PostgreSQL not reachable at 127.0.0.1:5432: backup/restore untested on it")
    out = tmp_path / "pg.bak"
    async with temp_database("dt_src") as src, temp_database("dt_dst") as dst:
        await fill_legacy(src)
        assert await run_cli(["backup", "--db", src, "--out", str(out)]) == 0
        assert "backed up" in capsys.readouterr().out
        assert await run_cli(["restore", "--db", dst, "--in", str(out)]) == 0
        assert await run_cli(["restore", "--db", dst, "--in", str(out)]) == 1
        assert "not empty" in capsys.readouterr().err
        assert await run_cli(["restore", "--db", dst, "--in", str(out), "--force"]) == 0
        # The restored database is a working legacy store: registering again still conflicts.
        restored_sqlite = f"sqlite:///{tmp_path / 'restored.db'}"
        assert await run_cli(["restore", "--db", restored_sqlite, "--in", str(out)]) == 0
        # Same records in the source and in the restore (compared as two legacy stores would be).
        con = sqlite3.connect(out)
        names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        con.close()
        assert {"users", "study_sessions", "messages", "schema_migrations"} <= set(names)
