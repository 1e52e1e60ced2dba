"""``banyan up`` as a real process: every available part starts, answers, and stops together."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jwt
import pytest

from banyan.ports import free_port
from banyan.proxy import stack


def test_plan_follows_the_flag_file(tmp_path: Path) -> None:
    flags = tmp_path / "flags.yaml"
    flags.write_text(
        "version: 1\nbackends:\n  legacy: http://127.0.0.1:9101\n"
        "  new: {url: 'http://127.0.0.1:9102'}\nfeatures: {}\ndefault: legacy\n"
    )
    args = stack.build_parser().parse_args(["--flags", str(flags), "--port", "0"])
    parts = {p.name: p for p in stack.plan(args)}
    assert "proxy" in parts and "model" in parts
    if "legacy" in parts:
        assert "9101" in parts["legacy"].argv and "9102" in parts["new"].argv
        assert parts["legacy"].env["OPENAI_BASE_URL"].endswith(":8003/v1")
        # the proxy stamps writes with the very secret the backends verify them with
        secret = parts["legacy"].env["BANYAN_JWT_SECRET"]
        assert (
            parts["proxy"].env["BANYAN_JWT_SECRET"]
            == secret
            == parts["new"].env["BANYAN_JWT_SECRET"]
        )
    assert (tmp_path / ".banyan").is_dir()


def test_missing_flag_file_is_an_error(tmp_path: Path) -> None:
    assert stack.main(["--flags", str(tmp_path / "nope.yaml")]) == 2


UP_MAKES = ("OPENAI_BASE_URL", "BANYAN_JWT_SECRET", "BANYAN_ADMIN_TOKEN")  # `up` makes them


def test_up_starts_and_stops_the_stack(tmp_path: Path) -> None:
    flags = tmp_path / "flags.yaml"
    legacy, new = free_port(), free_port()
    flags.write_text(
        f"version: 1\nbackends:\n  legacy: http://127.0.0.1:{legacy}\n  new: http://127.0.0.1:{new}\n"
        "features:\n  all:\n    routes: ['/api/**']\n    mode: legacy\ndefault: legacy\n"
    )
    port, model_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "banyan.proxy.cli", "up", "--flags", str(flags), "--port", str(port),
         "--model-port", str(model_port), "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={k: v for k, v in os.environ.items() if k not in UP_MAKES},
    )  # fmt: skip
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if "ready" in line:
                break
        assert any("proxy" in line and str(port) in line for line in lines), lines
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{model_port}/healthz", timeout=10).status_code == 200
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            # the tutor reaches the model server `up` started; the whiteboard has its tables
            signed = client.post(
                "/api/auth/register",
                json={"email": "up@example.com", "password": "p" * 10, "name": "Up"},
            )
            client.headers["Authorization"] = f"Bearer {signed.json()['token']}"
            session = client.post("/api/sessions", json={"title": "Up"}).json()
            asked = client.post(f"/api/sessions/{session['id']}/ask", json={"text": "Hi?"})
            assert asked.status_code == 200, asked.text
            assert asked.json()["answer"]["content"]
            board = client.get("/api/whiteboard/up-room")
            assert board.json() == {"room": "up-room", "doc": {}}
            _both_backends_share_the_kept_secret(tmp_path / "data", legacy, new, signed.json())
        _the_cli_finds_the_admin_token(flags, port)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    assert process.returncode == 0


def _both_backends_share_the_kept_secret(
    data_dir: Path, legacy: int, new: int, signed: dict[str, object]
) -> None:
    """``up`` made a secret in its data dir (0600) and gave it to both backends: the token legacy
    signed works on new (same user, registered there too), and so does one signed with the file."""
    secret_file = data_dir / stack.SECRET_FILE
    assert oct(secret_file.stat().st_mode & 0o777) == "0o600"
    secret = secret_file.read_text().strip()
    assert len(secret) >= 32
    user = signed["user"]
    assert isinstance(user, dict)
    with httpx.Client(base_url=f"http://127.0.0.1:{new}", timeout=10) as direct:
        body = {"email": user["email"], "password": "p" * 10, "name": "Up"}
        assert direct.post("/api/auth/register", json=body).status_code == 201
        me = direct.get("/api/auth/me", headers={"Authorization": f"Bearer {signed['token']}"})
        assert me.status_code == 200, me.text
    now = int(time.time())
    claims = {"sub": user["id"], "jti": "up-test", "iat": now, "exp": now + 60}
    minted = jwt.encode(claims, secret, algorithm="HS256")
    with httpx.Client(base_url=f"http://127.0.0.1:{legacy}", timeout=10) as direct:
        me = direct.get("/api/auth/me", headers={"Authorization": f"Bearer {minted}"})
        assert me.status_code == 200, me.text


def _the_cli_finds_the_admin_token(flags: Path, port: int) -> None:
    """``up`` gave its proxy a token kept beside the flag file (0600): admin calls without it are
    refused, and the CLI, with nothing exported, finds it there (reads and writes)."""
    token_file = flags.parent / ".banyan" / "admin-token"
    assert oct(token_file.stat().st_mode & 0o777) == "0o600"
    bare = httpx.get(f"http://127.0.0.1:{port}/_proxy/rollouts", timeout=10)
    assert bare.status_code == 401, bare.text
    env = {k: v for k, v in os.environ.items() if k not in (*UP_MAKES, "BANYAN_PROXY_URL")}
    for argv in (["rollout", "status"], ["mirror", "list"], ["mirror", "retry", "--all"]):
        done = subprocess.run(
            [sys.executable, "-m", "banyan.proxy.cli", *argv, "--flags", str(flags)],
            capture_output=True, text=True, env=env, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, (argv, done.stdout, done.stderr)


@pytest.fixture
def no_exported_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BANYAN_JWT_SECRET", raising=False)


def test_the_secret_is_made_once_and_kept_private(tmp_path: Path, no_exported_secret: None) -> None:
    first = stack.stack_secret(tmp_path)
    path = tmp_path / stack.SECRET_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(first) >= 32 and stack.stack_secret(tmp_path) == first
    other = tmp_path / "other"
    other.mkdir()
    assert stack.stack_secret(other) != first  # random per checkout, never a constant


def test_an_exported_secret_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BANYAN_JWT_SECRET", "e" * 40)
    assert stack.stack_secret(tmp_path) == "e" * 40
    assert not (tmp_path / stack.SECRET_FILE).exists()


def test_a_secret_others_can_read_or_an_empty_one_is_refused(
    tmp_path: Path, no_exported_secret: None
) -> None:
    path = tmp_path / stack.SECRET_FILE
    path.write_text("s" * 64)
    path.chmod(0o644)
    with pytest.raises(stack.StackError, match="other users"):
        stack.stack_secret(tmp_path)
    path.chmod(0o600)
    path.write_text("\n")
    with pytest.raises(stack.StackError, match="no usable secret"):
        stack.stack_secret(tmp_path)
    flags = tmp_path / "flags.yaml"
    flags.write_text("version: 1\nbackends: {}\nfeatures: {}\ndefault: legacy\n")
    assert stack.main(["--flags", str(flags), "--data-dir", str(tmp_path)]) == 2
