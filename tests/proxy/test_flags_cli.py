"""Tests for banyan/proxy/flags_cli.py and banyan/proxy/flag_edit.py: the CLI in-process, edits
that keep comments, atomic and locked writes, edit listeners, and real ``banyan flags check``
processes, hostile files included (one line, never a traceback)."""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import structlog

from banyan import logs
from banyan.proxy import flag_edit
from banyan.proxy.flag_edit import EDIT_LISTENERS, rollback, set_fields, set_mode, write_atomically
from banyan.proxy.flag_faults import flags_text, many_features
from banyan.proxy.flags import FlagError, FlagStore, load_flags
from banyan.proxy.flags_cli import main
from banyan.proxy.routing import bucket_of

REPO_FLAGS = Path(__file__).resolve().parents[2] / "flags.yaml"

SMALL = """\
# top comment
version: 1
backends:
  legacy: http://127.0.0.1:8001   # the old service
  new: http://127.0.0.1:8002
features:
  # tutor goes first
  tutor:
    routes: ["/api/sessions/*/ask"]
    mode: legacy     # flip me
  sessions:
    routes:
      - "/api/sessions/**"
    mode: shadow     # being compared
    stick_by: user
    parity: {ignore: ["$.created_at"], sample: 100}   # flow style stays
default: legacy  # unmatched paths
"""


def comments(text: str) -> list[str]:
    """Every comment in a file, without its leading spacing."""
    return [line[line.index("#") :] for line in text.splitlines() if "#" in line]


@pytest.fixture(autouse=True)
def fresh_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """main() configures JSON logs on the stderr of the moment (here a capture stream that pytest
    closes after the test): let it, then put the previous configuration back."""
    saved = structlog.get_config()
    monkeypatch.setattr(logs, "_configured", False)
    yield
    structlog.configure(**saved)


@pytest.fixture
def small(tmp_path: Path) -> Path:
    path = tmp_path / "flags.yaml"
    path.write_text(SMALL)
    return path


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    path = tmp_path / "flags.yaml"
    shutil.copy(REPO_FLAGS, path)
    return path


@pytest.fixture
def events() -> Iterator[list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []
    EDIT_LISTENERS.append(seen.append)
    try:
        yield seen
    finally:
        EDIT_LISTENERS.remove(seen.append)


def test_check_valid(repo_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(repo_copy)]) == 0
    digest = hashlib.sha256(repo_copy.read_bytes()).hexdigest()
    assert capsys.readouterr().out.strip() == f"{repo_copy}: valid (14 features, digest {digest})"


def test_check_invalid_prints_file_line_reason(
    small: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small.write_text(SMALL.replace("mode: shadow ", "mode: shadw  "))
    assert main(["check", str(small)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().startswith(f"{small}:14: features.sessions.mode: 'shadw'")


def test_check_uses_banyan_flags_env(
    small: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BANYAN_FLAGS", str(small))
    assert main(["check"]) == 0
    assert f"{small}: valid (2 features" in capsys.readouterr().out


def test_set_with_percent_keeps_comments_and_order(
    repo_copy: Path, capsys: pytest.CaptureFixture[str], events: list[dict[str, Any]]
) -> None:
    before = repo_copy.read_text()
    code = main(["set", "sessions", "canary", "--percent", "10", "--file", str(repo_copy)])
    assert code == 0
    after = repo_copy.read_text()
    assert comments(after) == comments(before)
    diff = difflib.ndiff(before.splitlines(), after.splitlines())
    changed = [line for line in diff if line[:2] in {"- ", "+ "}]
    assert changed == ["-     mode: legacy", "+     mode: canary", "+     percent: 10"]
    flags = load_flags(repo_copy)
    sessions = flags.feature("sessions")
    assert sessions is not None and (sessions.mode, sessions.percent) == ("canary", 10.0)
    out = capsys.readouterr().out
    assert f"sessions -> canary 10% (digest {flags.digest})" in out
    assert [e["feature"] for e in events] == ["sessions"]
    assert events[0]["source"] == "cli" and events[0]["digest"] == flags.digest
    assert events[0]["before"]["mode"] == "legacy" and events[0]["after"]["mode"] == "canary"


def test_set_writes_with_the_mode(repo_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["set", "folders", "legacy", "--writes", "mirror", "--file", str(repo_copy)])
    assert code == 0
    folders = load_flags(repo_copy).feature("folders")
    assert folders is not None and (folders.mode, folders.writes) == ("legacy", "mirror")
    assert "folders -> legacy, writes mirror" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["set", "folders", "legacy", "--writes", "sometimes", "--file", str(repo_copy)])


def test_rollback_one_and_all_keep_comments(
    small: Path, capsys: pytest.CaptureFixture[str], events: list[dict[str, Any]]
) -> None:
    assert main(["set", "tutor", "new", "--file", str(small)]) == 0
    assert main(["rollback", "sessions", "--file", str(small)]) == 0
    text = small.read_text()
    assert "    mode: legacy     # being compared" in text
    assert re.search(r"\n    mode: new +# flip me\n", text)
    assert main(["rollback", "--all", "--file", str(small)]) == 0
    text = small.read_text()
    assert comments(text) == comments(SMALL)
    assert text == SMALL.replace("mode: shadow ", "mode: legacy ")
    assert [e["feature"] for e in events] == ["tutor", "sessions", "tutor"]
    assert main(["rollback", "tutor", "--file", str(small)]) == 0
    assert "already so, file unchanged" in capsys.readouterr().out
    assert len(events) == 3


def test_refused_edits_leave_the_file_alone(
    small: Path, capsys: pytest.CaptureFixture[str], events: list[dict[str, Any]]
) -> None:
    assert main(["set", "sessions", "canary", "--percent", "150", "--file", str(small)]) == 1
    assert "features.sessions.percent: 150 is outside [0, 100]" in capsys.readouterr().err
    assert main(["set", "nope", "new", "--file", str(small)]) == 1
    assert "no feature named 'nope'" in capsys.readouterr().err
    with pytest.raises(FlagError, match="routes"):
        set_fields(small, "tutor", {"routes": None})
    with pytest.raises(FlagError, match="not one of"):
        set_mode(small, "tutor", "sideways")
    assert small.read_text() == SMALL and events == []


def test_editing_a_broken_file_reports_the_line(small: Path) -> None:
    small.write_text("version: 1\nfeatures: {a: [\n")
    with pytest.raises(FlagError) as caught:
        set_mode(small, "a", "new")
    assert caught.value.line == 3 and "YAML syntax error" in caught.value.reason
    small.write_text("version: 1\n")
    with pytest.raises(FlagError, match="no features"):
        rollback(small, None)


def test_an_edit_may_repair_a_broken_file(small: Path, events: list[dict[str, Any]]) -> None:
    small.write_text(SMALL.replace("mode: shadow ", "mode: shadw  "))
    set_mode(small, "sessions", "legacy")
    assert load_flags(small).feature("sessions").mode == "legacy"  # type: ignore[union-attr]
    assert events[0]["before"] is None and events[0]["after"]["mode"] == "legacy"


def test_set_fields_merges_nested_and_deletes_with_none(
    small: Path, events: list[dict[str, Any]]
) -> None:
    result = set_fields(
        small,
        "sessions",
        {"parity": {"sample": 25}, "guards": {"window": 50}, "stick_by": None, "percent": 5},
        source="admin",
    )
    text = small.read_text()
    assert result.after == text and result.before == SMALL and result.changed
    assert result.digest == hashlib.sha256(text.encode()).hexdigest()
    assert re.search(r'parity: {ignore: \["\$.created_at"\], sample: 25} +# flow style stays', text)
    assert (
        "stick_by" not in text and "    mode: shadow     # being compared\n    percent: 5" in text
    )
    sessions = load_flags(small).feature("sessions")
    assert sessions is not None and sessions.guards.window == 50 and sessions.parity.sample == 25
    assert events[0]["source"] == "admin"


def test_edits_through_a_symlink_replace_the_target(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "flags.yaml").write_text(SMALL)
    os.chmod(real / "flags.yaml", 0o640)
    link = tmp_path / "flags.yaml"
    os.symlink(real / "flags.yaml", link)
    set_mode(link, "tutor", "canary", 12.5)
    assert link.is_symlink() and os.readlink(link) == str(real / "flags.yaml")
    assert (
        "    mode: canary     # flip me\n    percent: 12.5\n" in (real / "flags.yaml").read_text()
    )
    assert os.stat(real / "flags.yaml").st_mode & 0o777 == 0o640
    assert sorted(p.name for p in real.iterdir()) == [".flags.yaml.lock", "flags.yaml"]


def test_write_atomically_creates_and_cleans_up(tmp_path: Path) -> None:
    target = tmp_path / "new.yaml"
    write_atomically(target, "a: 1\n")
    assert target.read_text() == "a: 1\n"
    with pytest.raises(TypeError):
        write_atomically(target, b"bytes are refused")  # type: ignore[arg-type]
    assert target.read_text() == "a: 1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["new.yaml"]


def test_concurrent_editors_do_not_lose_changes(tmp_path: Path) -> None:
    names = [f"f{i}" for i in range(8)]
    body = "".join(f"  {n}:\n    routes: [/{n}/**]\n    mode: canary\n" for n in names)
    path = tmp_path / "flags.yaml"
    path.write_text("version: 1\nbackends: {legacy: http://a, new: http://b}\nfeatures:\n" + body)
    errors: list[BaseException] = []

    def edit(name: str, percent: int) -> None:
        try:
            set_mode(path, name, "canary", percent)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=edit, args=(n, i + 1)) for i, n in enumerate(names)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    flags = load_flags(path)
    assert [f.percent for f in flags.features] == [float(i + 1) for i in range(8)]


def test_a_failing_listener_is_contained(small: Path, events: list[dict[str, Any]]) -> None:
    def broken(event: dict[str, Any]) -> None:
        raise RuntimeError("listener bug")

    EDIT_LISTENERS.insert(0, broken)
    try:
        set_mode(small, "tutor", "new")
    finally:
        EDIT_LISTENERS.remove(broken)
    assert [e["feature"] for e in events] == ["tutor"]


def test_indentation_of_the_file_is_kept(tmp_path: Path) -> None:
    wide = (
        "version: 1\nbackends:\n    legacy: http://a\n    new: http://b\nfeatures:\n"
        "    a:\n        routes:\n        - /a\n        mode: legacy\n"
    )
    path = tmp_path / "flags.yaml"
    path.write_text(wide)
    set_mode(path, "a", "new")
    assert path.read_text() == wide.replace("mode: legacy", "mode: new")
    assert flag_edit._mapping_indent("a: 1\n") == 2


def test_explain_text_and_json(repo_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    set_mode(repo_copy, "sessions", "canary", 50)
    set_mode(repo_copy, "whiteboard", "shadow")
    file = ["--file", str(repo_copy)]
    assert main(["explain", "--path", "/api/whiteboard/room1", *file]) == 0
    out = capsys.readouterr().out
    assert "feature: whiteboard" in out and "backend: legacy" in out and "shadow:  new" in out
    assert main(["explain", "--path", "/api/sessions/s1", "--user", "alice", "--json", *file]) == 0
    data = json.loads(capsys.readouterr().out)
    bucket = bucket_of("sessions", "alice")
    assert data["feature"] == "sessions" and data["mode"] == "canary" and data["user"] == "alice"
    assert data["backend"] == ("new" if bucket < 5000 else "legacy")
    assert f"bucket {bucket:04d}" in data["reason"]
    assert data["digest"] == load_flags(repo_copy).digest
    token = jwt.encode({"sub": "alice"}, "x" * 32, algorithm="HS256")
    assert main(["explain", "--path", "/api/sessions/s1", "--token", token, "--json", *file]) == 0
    assert json.loads(capsys.readouterr().out)["reason"] == data["reason"]
    assert main(["explain", "--path", "/nowhere", *file]) == 0
    assert "feature: -" in capsys.readouterr().out


def test_explain_headers_cookies_and_ip(small: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for stick_by, extra in (
        ("header:X-Tenant", ["--header", "X-Tenant=acme"]),
        ("cookie:tenant", ["--cookie", "tenant=acme"]),
        ("ip", ["--ip", "acme"]),
    ):
        set_fields(small, "sessions", {"mode": "canary", "percent": 100, "stick_by": stick_by})
        capsys.readouterr()
        args = ["explain", "--path", "/api/sessions/1", "--json", "--file", str(small), *extra]
        assert main(args) == 0
        assert json.loads(capsys.readouterr().out)["backend"] == "new", stick_by
    with pytest.raises(SystemExit, match="wants NAME=VALUE"):
        main(["explain", "--path", "/x", "--header", "novalue", "--file", str(small)])


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["rollback"])
    assert caught.value.code == 2
    with pytest.raises(SystemExit) as caught:
        main(["set", "a", "sideways"])
    assert caught.value.code == 2


async def test_a_cli_edit_reaches_a_running_store(repo_copy: Path) -> None:
    store = FlagStore(repo_copy)
    await store.start()
    try:
        assert main(["set", "auth", "new", "--file", str(repo_copy)]) == 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while store.router.decide("/api/auth/login").backend != "new":
            assert loop.time() < deadline, "the edit never reached the store"
            await asyncio.sleep(0.02)
        assert store.current.digest == hashlib.sha256(repo_copy.read_bytes()).hexdigest()
    finally:
        await store.stop()


def test_banyan_flags_check_as_a_process(small: Path) -> None:
    script = Path(sys.executable).with_name("banyan")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "banyan.proxy.cli"]
    done = subprocess.run(
        [*command, "flags", "check", str(small)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and f"{small}: valid (2 features" in done.stdout
    small.write_text(SMALL.replace("  new: http://127.0.0.1:8002\n", ""))
    done = subprocess.run(
        [*command, "flags", "check", str(small)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert done.stderr.strip() == f"{small}:3: backends: missing the 'new' backend"


def _hostile(path: Path, kind: str) -> None:
    if kind == "dev_zero":
        path.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "deep":
        path.write_text(SMALL + "x: " + "[" * 100_000 + "]" * 100_000 + "\n")
    else:  # ten_thousand: valid
        path.write_text(flags_text("http://a", "http://b", many_features(10_000)))


@pytest.mark.parametrize(
    ("kind", "code", "output"),
    [
        (
            "dev_zero",
            1,
            "{f}:0: cannot read the file: it is a character device, not a regular file",
        ),
        ("fifo", 1, "{f}:0: cannot read the file: it is a FIFO (named pipe), not a regular file"),
        ("deep", 1, "{f}:18: YAML too large: nested more than 64 levels deep"),
        ("ten_thousand", 0, "{f}: valid (10000 features, digest "),
    ],
)
def test_flags_check_process_on_hostile_files(
    tmp_path: Path, kind: str, code: int, output: str
) -> None:
    path = tmp_path / "flags.yaml"
    _hostile(path, kind)
    done = subprocess.run(
        [sys.executable, "-m", "banyan.proxy.cli", "flags", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=120,  # a hang detector: a blocking open or an endless read fails here
    )
    assert done.returncode == code
    said = (done.stdout if code == 0 else done.stderr).strip()
    assert said.startswith(output.format(f=path)) and "\n" not in said
    assert "Traceback" not in done.stderr + done.stdout
