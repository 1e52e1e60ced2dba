"""Tests for banyan/control/cli.py through ``banyan flags``: flips stored as overrides, status and
explain showing file value, override, who and when, and reconcile writing them into the file."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from banyan.proxy.flags import load_flags
from banyan.proxy.flags_cli import main

pytestmark = pytest.mark.postgres

FLAGS = """\
version: 1
backends:
  legacy: http://127.0.0.1:1
  new: http://127.0.0.1:2
features:
  # the tutor API
  api:
    routes: ["/api/**"]
    mode: canary   # reviewed
    percent: 5
  docs:
    routes: ["/docs/**"]
    mode: legacy
default: legacy
"""


async def flags(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``banyan flags ARGV`` in a worker thread (it runs its own event loop)."""
    code = await asyncio.to_thread(main, argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def flag_file(tmp_path: Path) -> Path:
    path = tmp_path / "flags.yaml"
    path.write_text(FLAGS)
    path.chmod(0o444)
    return path


async def test_set_and_rollback_store_overrides_and_never_write_the_file(
    flag_file: Path, control_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ["--control-db", control_db, "--file", str(flag_file)]
    code, out, _ = await flags(["set", "docs", "canary", "--percent", "25", *db], capsys)
    assert code == 0 and "override" in out and "stored" in out
    code, out, _ = await flags(["set", "docs", "canary", "--percent", "25", *db], capsys)
    assert code == 0 and "already so" in out
    code, out, err = await flags(["set", "nope", "new", *db], capsys)
    assert code == 1 and "no feature named 'nope'" in err
    code, out, _ = await flags(["rollback", "--all", *db], capsys)
    assert code == 0 and "all features" in out
    assert flag_file.read_text() == FLAGS
    code, out, _ = await flags(
        ["status", "--json", "--file", str(flag_file), "--control-db", control_db], capsys
    )
    rows = {r["feature"]: r for r in json.loads(out)["features"]}
    assert rows["docs"]["override"] == {"mode": "legacy", "percent": 25}
    assert rows["docs"]["effective"]["mode"] == "legacy"
    assert rows["api"]["file"]["mode"] == "canary" and rows["api"]["effective"]["mode"] == "legacy"
    assert rows["api"]["source"] == "cli" and rows["api"]["actor"].startswith("cli:")


async def test_status_and_explain_show_file_override_who_and_when(
    flag_file: Path, control_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ["--control-db", control_db, "--file", str(flag_file)]
    await flags(["set", "api", "new", *db], capsys)
    code, out, _ = await flags(["status", *db], capsys)
    assert code == 0
    api, docs = out.splitlines()
    assert api.startswith("api: file mode=canary percent=5, override {'mode': 'new'} -> mode=new")
    assert "set by cli cli:" in api and "Z" in api
    assert docs == "docs: file mode=legacy, no override"
    code, out, _ = await flags(["explain", "--path", "/api/x", *db], capsys)
    assert code == 0
    assert "backend: new" in out
    assert "file:     mode=canary percent=5" in out
    assert "override: {'mode': 'new'}" in out and "set by:   cli" in out and "set at:" in out
    code, out, _ = await flags(["explain", "--path", "/api/x", "--json", *db], capsys)
    explained = json.loads(out)
    assert explained["backend"] == "new" and explained["control"]["override"] == {"mode": "new"}
    code, out, _ = await flags(["explain", "--path", "/docs/x", *db], capsys)
    assert "override: none" in out


async def test_status_without_a_control_store_says_the_file_is_the_store(
    flag_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BANYAN_CONTROL_DB", raising=False)
    code, out, _ = await flags(["status", "--file", str(flag_file)], capsys)
    assert code == 0
    assert "no control store" in out and "api: file mode=canary percent=5, no override" in out
    code, _, err = await flags(["reconcile", str(flag_file)], capsys)
    assert code == 2 and "needs --control-db" in err


async def test_reconcile_writes_overrides_into_the_file_keeping_comments_then_clears_them(
    flag_file: Path, control_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ["--control-db", control_db]
    await flags(["set", "api", "new", *db, "--file", str(flag_file)], capsys)
    await flags(["set", "docs", "canary", "--percent", "10", *db, "--file", str(flag_file)], capsys)
    flag_file.chmod(0o644)  # the operator's checkout, writable
    code, out, _ = await flags(["reconcile", *db, str(flag_file)], capsys)
    assert code == 0
    assert "api: override written" in out and "docs: override written" in out
    text = flag_file.read_text()
    assert "# the tutor API" in text and "# reviewed" in text
    written = load_flags(flag_file)
    assert written.feature("api").mode == "new"
    assert (written.feature("docs").mode, written.feature("docs").percent) == ("canary", 10)
    code, out, _ = await flags(["status", *db, "--file", str(flag_file)], capsys)
    assert "override {" not in out
    code, out, _ = await flags(["reconcile", *db, str(flag_file)], capsys)
    assert "no overrides to reconcile" in out
    assert os.access(flag_file, os.R_OK)


async def test_reconcile_keeps_an_override_of_a_feature_the_file_lost(
    flag_file: Path, control_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ["--control-db", control_db]
    await flags(["set", "docs", "new", *db, "--file", str(flag_file)], capsys)
    flag_file.chmod(0o644)
    flag_file.write_text(FLAGS.replace('  docs:\n    routes: ["/docs/**"]\n    mode: legacy\n', ""))
    code, out, err = await flags(["reconcile", *db, str(flag_file)], capsys)
    assert code == 0 and "docs: no such feature in the file; override kept" in err
    code, out, _ = await flags(["status", *db, "--file", str(flag_file)], capsys)
    assert "docs: file -, override {'mode': 'new'}" in out


async def test_history_reads_the_shared_audit_table(
    flag_file: Path, control_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ["--control-db", control_db, "--file", str(flag_file)]
    code, out, _ = await flags(["history", *db], capsys)
    assert code == 0 and out.strip() == "control store: no changes"
    await flags(["set", "api", "new", *db], capsys)
    await flags(["rollback", "api", *db], capsys)
    code, out, _ = await flags(["history", *db], capsys)
    first, second = out.splitlines()
    assert "cli" in first and "api" in first and "canary" in first and "new" in first
    assert "legacy" in second
    code, out, _ = await flags(["history", "--limit", "1", "--json", *db], capsys)
    (entry,) = [json.loads(line) for line in out.splitlines()]
    assert entry["after"]["mode"] == "legacy" and entry["actor"].startswith("cli:")
    code, out, _ = await flags(["history", "--feature", "docs", *db], capsys)
    assert out.strip() == "control store: no changes of docs"
