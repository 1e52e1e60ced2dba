"""Tests for banyan/proxy/flags_history.py and ``banyan flags history``: the log a running proxy
writes,
read back line by line; corrupt lines reported with their number and skipped; readable lines."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from banyan.proxy.audit import AuditLog
from banyan.proxy.flags_cli import main
from banyan.proxy.flags_history import (
    HistoryError,
    describe_change,
    format_entry,
    log_path,
    read_history,
)

FEATURES = """\
  sessions:
    routes: ["/api/**"]
    mode: legacy
"""


@pytest.fixture(autouse=True)
def no_env_log(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BANYAN_AUDIT_LOG", raising=False)


def entry(feature: str = "sessions", **overrides: Any) -> dict[str, Any]:
    base = {
        "at": 1_800_000_000.0,
        "source": "file",
        "feature": feature,
        "before": {"mode": "legacy", "percent": 0},
        "after": {"mode": "canary", "percent": 10},
        "digest": "ab" * 32,
        "reason": None,
    }
    return {**base, **overrides}


def write_log(path: Path, *lines: str) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


async def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


async def test_history_reads_the_log_the_running_proxy_writes(
    make_stack: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each edit made the way its source makes it: by hand, by ``banyan flags set`` (the command
    audits its own edit), through the running proxy's admin API (the proxy audits it)."""
    monkeypatch.setenv("BANYAN_ADMIN_TOKEN", "t0ken")  # read once, when the proxy starts
    async with make_stack(FEATURES) as stack:
        stack.write_flags(FEATURES.replace("legacy", "shadow"))  # a hand edit of the file
        await wait_for(lambda: stack.state.flags.feature("sessions").mode == "shadow")
        command = ["set", "sessions", "canary", "--percent", "10", "--file", str(stack.flags)]
        assert await asyncio.to_thread(main, command) == 0
        await wait_for(lambda: stack.state.flags.feature("sessions").mode == "canary")
        async with httpx.AsyncClient(base_url=stack.url) as admin:
            answer = await admin.put(
                "/_proxy/flags/sessions",
                json={"writes": "mirror"},
                headers={"Authorization": "Bearer t0ken"},
            )
        assert answer.status_code == 200, answer.text
        await wait_for(lambda: stack.state.flags.feature("sessions").writes == "mirror")
    capsys.readouterr()
    assert main(["history", "--file", str(stack.flags)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert " UTC  file   sessions  legacy -> shadow  digest " in lines[0]
    assert " UTC  cli    sessions  shadow -> canary 10%  digest " in lines[1]
    assert lines[2].split("  ")[1].strip() == "admin"
    assert "writes skip -> mirror" in lines[2]
    digest = stack.state.flags.digest
    assert lines[2].endswith(f"digest {digest[:12]}")

    assert main(["history", "--file", str(stack.flags), "--json", "--limit", "1"]) == 0
    raw = capsys.readouterr().out.splitlines()
    assert len(raw) == 1 and json.loads(raw[0])["digest"] == digest


def test_default_log_follows_the_flag_files_resolved_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = tmp_path / "config" / "flags.yaml"
    real.parent.mkdir()
    real.write_text("version: 1\n")
    link = tmp_path / "flags.yaml"
    link.symlink_to(real)
    assert log_path(link) == real.parent / "flags.audit.jsonl"  # as the proxy resolves it
    assert log_path(link, tmp_path / "other.jsonl") == tmp_path / "other.jsonl"
    monkeypatch.setenv("BANYAN_AUDIT_LOG", str(tmp_path / "env.jsonl"))
    assert log_path(link) == tmp_path / "env.jsonl"


def test_corrupt_lines_are_reported_with_their_number_and_skipped(tmp_path: Path) -> None:
    path = write_log(
        tmp_path / "a.jsonl",
        json.dumps(entry()),
        '{"torn": ',
        "",
        "[1, 2]",
        json.dumps({"at": 1, "source": "cli"}),
        json.dumps(entry(at="yesterday")),
        json.dumps(entry(feature=7)),
        json.dumps(entry(source="guard")),
    )
    with path.open("ab") as handle:
        handle.write(b"\xff\xfe\n")
    history = read_history(path)
    assert [e.line for e in history.entries] == [1, 8]
    assert [p.split(": ", 1)[0] for p in history.problems] == [
        f"{path}:{n}" for n in (2, 4, 5, 6, 7, 9)
    ]
    assert "not valid JSON" in history.problems[0]
    assert "a JSON list, not an object" in history.problems[1]
    assert "missing feature, before, after, digest" in history.problems[2]
    assert "'at' is not a number" in history.problems[3]
    assert "'feature' is not a string" in history.problems[4]
    assert "not UTF-8" in history.problems[5]


def test_feature_and_limit_keep_the_newest_of_one_feature(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.jsonl")
    for index in range(5):
        log.append(source="cli", feature="a", before=None, after={"mode": "new"}, digest=str(index))
    log.append(source="cli", feature="b", before=None, after=None, digest="b")
    assert [e.data["digest"] for e in read_history(log.path, feature="a", limit=2).entries] == [
        "3",
        "4",
    ]
    assert read_history(log.path, limit=0).entries == []
    assert len(read_history(log.path).entries) == 6


def test_missing_or_unreadable_log_is_a_history_error(tmp_path: Path) -> None:
    with pytest.raises(HistoryError, match="no audit log here"):
        read_history(tmp_path / "absent.jsonl")
    with pytest.raises(HistoryError, match="cannot read the audit log"):
        read_history(tmp_path)  # a directory


def test_describe_change_names_the_routing_state_and_other_settings() -> None:
    legacy = {"mode": "legacy", "percent": 0, "primary": "legacy", "guards": {"window": 200}}
    assert describe_change(legacy, {**legacy, "mode": "new"}) == "legacy -> new"
    assert describe_change(None, legacy) == "(absent) -> legacy"
    assert describe_change(legacy, None) == "legacy -> (absent)"
    reverse = {**legacy, "mode": "shadow", "primary": "new"}
    assert describe_change(legacy, reverse) == "legacy -> shadow (primary new)"
    assert describe_change(legacy, {**legacy, "guards": {"window": 50}}) == (
        "guards.window 200 -> 50"
    )
    both = describe_change(legacy, {**legacy, "mode": "canary", "percent": 2.5, "writes": "mirror"})
    assert both == "legacy -> canary 2.5%; writes null -> mirror"
    assert describe_change("odd", legacy) == '"odd" -> legacy'
    assert describe_change(legacy, {**legacy}) == "legacy -> legacy"


def test_format_entry_is_one_line_with_time_source_change_digest_and_reason() -> None:
    line = format_entry(entry(source="guard", reason="guard max_error_rate breached"))
    assert line == (
        "2027-01-15 08:00:00 UTC  guard  sessions  legacy -> canary 10%  digest abababababab"
        "  (guard max_error_rate breached)"
    )
    assert format_entry(entry(digest=None)).endswith("digest -")


def test_cli_exit_codes_and_messages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flags = tmp_path / "flags.yaml"
    assert main(["history", "--file", str(flags)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("banyan flags history: ") and "flags.audit.jsonl" in err

    log = write_log(tmp_path / "flags.audit.jsonl", json.dumps(entry()), "garbage")
    assert main(["history", "--file", str(flags)]) == 1
    captured = capsys.readouterr()
    assert "legacy -> canary 10%" in captured.out
    assert f"{log}:2: not valid JSON" in captured.err

    write_log(log, json.dumps(entry()))
    assert main(["history", "--audit", str(log), "--feature", "other"]) == 0
    assert capsys.readouterr().out == f"{log}: no changes of other\n"
    write_log(log)
    assert main(["history", "--audit", str(log), "--json"]) == 0
    assert capsys.readouterr().out == ""
    with pytest.raises(SystemExit) as exit_info:
        main(["history", "--limit", "-1"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        main(["history", "--limit", "many"])
    assert "is not a whole number" in capsys.readouterr().err


def test_env_flags_file_picks_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_log(tmp_path / "prod.audit.jsonl", json.dumps(entry()))
    monkeypatch.setenv("BANYAN_FLAGS", str(tmp_path / "prod.yaml"))
    assert main(["history"]) == 0
    assert "legacy -> canary 10%" in capsys.readouterr().out
    assert os.environ["BANYAN_FLAGS"].endswith("prod.yaml")


async def test_a_cli_edit_from_another_process_is_audited_once_as_cli(
    make_stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    async with make_stack(FEATURES) as stack:
        command = [sys.executable, "-m", "banyan.proxy.cli", "flags", "set", "sessions", "new"]
        done = await asyncio.to_thread(
            subprocess.run, [*command, "--file", str(stack.flags)], capture_output=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        await wait_for(lambda: stack.state.flags.feature("sessions").mode == "new")
        await asyncio.sleep(0.3)  # the proxy has had its chance to audit the reload
    capsys.readouterr()
    assert main(["history", "--file", str(stack.flags), "--json"]) == 0
    entries = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(e["source"], e["feature"], e["after"]["mode"]) for e in entries] == [
        ("cli", "sessions", "new")
    ]
